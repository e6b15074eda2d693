#!/usr/bin/env bash
# Make sure "$1 -m venv" works; on a fresh Debian machine that needs python3-venv.
set -euo pipefail
py=${1:-python3}
if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: $py with venv is missing; run as root or install python3-venv" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends python3 python3-venv python3-dev gcc >/dev/null
