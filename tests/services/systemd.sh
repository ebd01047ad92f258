#!/bin/bash
# systemd-analyze for tests/test_packaging.py (rates the unit offline; no running systemd needed).
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends systemd >/dev/null
command -v systemd-analyze >/dev/null
