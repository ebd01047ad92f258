#!/bin/sh
# Headless chromium and its WebDriver for tests/test_web_browser.py (Debian packages).
set -e
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q chromium chromium-driver >/dev/null 2>&1 || {
    apt-get update -q >/dev/null
    apt-get install -y -q chromium chromium-driver >/dev/null
}
