#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: real SIP peers (baresip, SIPp), audio tools
# (sox, espeak-ng) and PostgreSQL. Extra package names given as arguments (the benchmarks'
# kamailio, rtpengine-daemon) are installed too. Skips apt when everything is there.
set -euo pipefail
need=()
for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
command -v baresip >/dev/null || need+=(baresip-core)
command -v sipp >/dev/null || need+=(sip-tester)
command -v sox >/dev/null || need+=(sox)
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ -x /usr/lib/postgresql/15/bin/initdb ] || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: missing Debian packages ${need[*]}; run as root to install them" >&2
    exit 1
fi
echo "installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
