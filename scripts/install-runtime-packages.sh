#!/usr/bin/env bash
# What Tsunagu itself needs at run time beyond Python: text-to-speech. espeak-ng speaks
# English and Japanese offline; Open JTalk gives natural Japanese once an HTS voice is
# present. Debian 12 ships no HTS voice, so the "Mei" voice (CC BY 3.0, Nagoya Institute of
# Technology) is taken from the pyopenjtalk source package on PyPI. Every step is skipped
# when already done; without root or network the server still runs (TTS falls back).
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v open_jtalk >/dev/null || need+=(open-jtalk)
[ -d /var/lib/mecab/dic/open-jtalk/naist-jdic ] || need+=(open-jtalk-mecab-naist-jdic)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "warning: missing ${need[*]} (run as root to install); TTS may be unavailable" >&2
    else
        echo "installing Debian packages: ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
fi
voice_dir=/usr/share/hts-voice/mei
if [ ! -f "$voice_dir/mei_normal.htsvoice" ] && [ "$(id -u)" -eq 0 ]; then
    if "${PYTHON:-python3}" "$(dirname "$0")/fetch-jtalk-voice.py" "$voice_dir"; then
        echo "installed the Open JTalk 'Mei' voice in $voice_dir"
    else
        echo "warning: could not fetch the Open JTalk voice; Japanese TTS uses espeak-ng" >&2
    fi
fi
