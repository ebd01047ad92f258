#!/bin/bash
# tests/test_metrics.py checks /metrics with `promtool check metrics`. Debian ships promtool in its
# prometheus package; only that one binary is taken from the package (installing the package would
# enable a Prometheus server on hosts with systemd).
set -e
command -v promtool >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apt-get update -qq >/dev/null
cd "$work" && chmod 777 "$work" && apt-get download -qq prometheus >/dev/null 2>&1
dpkg-deb -x "$work"/prometheus_*.deb "$work/root"
install -m 0755 "$work/root/usr/bin/promtool" /usr/local/bin/promtool
