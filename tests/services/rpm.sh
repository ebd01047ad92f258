#!/bin/bash
# For tests/test_packaging.py (Debian packages): rpmbuild, cpio to unpack the payload,
# python3-packaging for rpm's python3dist() generator, and rpmlint; idempotent and quiet.
set -euo pipefail
if command -v rpmbuild >/dev/null 2>&1 && command -v cpio >/dev/null 2>&1 && command -v rpmlint >/dev/null 2>&1 \
        && /usr/bin/python3 -c 'import packaging' 2>/dev/null; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends rpm cpio python3-packaging rpmlint >/dev/null
command -v rpmbuild >/dev/null
command -v rpmlint >/dev/null
