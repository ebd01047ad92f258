#!/bin/bash
# tests/test_panda_tls.py makes a throw-away CA, server and client certificates with the openssl tool.
set -e
command -v openssl >/dev/null 2>&1 && exit 0
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq openssl >/dev/null
