#!/bin/bash
# rpmbuild for tests/test_packaging.py (Debian's "rpm" package); idempotent and quiet.
set -euo pipefail
if command -v rpmbuild >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends rpm >/dev/null
command -v rpmbuild >/dev/null
