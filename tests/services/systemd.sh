#!/bin/bash
# systemd-analyze for tests/test_systemd_unit.py and tests/test_packaging.py (rates and verifies the unit
# offline; no running systemd needed), and man, which verify runs on the unit's Documentation= pages.
set -euo pipefail
if command -v systemd-analyze >/dev/null 2>&1 && command -v man >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends systemd man-db >/dev/null
command -v systemd-analyze >/dev/null
command -v man >/dev/null
