#!/bin/bash
# A real PanDA server for tests/pandainstance.py, and the real PanDA pilot for the wrapper's PanDA stage:
# Debian's PostgreSQL 15 with pg_cron and pg_partman (the PanDA schema needs both), a user that is not
# root (PanDA's build hook refuses root without its production account; the pilot must never run as
# root), panda-server==0.8.1 in its own virtualenv (the last release with the legacy getJob/updateJob
# the pilot speaks; without mod_wsgi: the tests serve it with gunicorn) and the panda-pilot sdist (only
# the sdist has pilot.py). Idempotent, and quiet when everything is there.
set -euo pipefail
HOME_DIR=${APF_PANDA_HOME:-/opt/apf-panda}
USER_NAME=${APF_PILOT_USER:-apfpilot}
SERVER_VERSION=0.8.1
PILOT_VERSION=3.7.0.36
PG=/usr/lib/postgresql/15
venv=$HOME_DIR/venv
stamp=$HOME_DIR/.installed-$SERVER_VERSION-$PILOT_VERSION

[ -x $PG/bin/initdb ] && [ -f $PG/lib/pg_cron.so ] && [ -f $PG/lib/pg_partman_bgw.so ] &&
    command -v curl >/dev/null && id "$USER_NAME" >/dev/null 2>&1 && [ -f "$stamp" ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "panda.sh: not root, cannot install PostgreSQL 15 and panda-server" >&2
    exit 1
fi
echo "panda.sh: installing PostgreSQL 15 (+pg_cron, pg_partman), panda-server $SERVER_VERSION and panda-pilot $PILOT_VERSION in $HOME_DIR"
export DEBIAN_FRONTEND=noninteractive
packages=""
for p in postgresql-15 postgresql-15-cron postgresql-15-partman python3-venv curl; do
    dpkg -s "$p" >/dev/null 2>&1 || packages="$packages $p"
done
if [ -n "$packages" ]; then
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi
# Debian starts a "main" cluster on 5432 at install; the tests make their own, on a free port.
id "$USER_NAME" >/dev/null 2>&1 || useradd --system --create-home --home-dir "/var/lib/$USER_NAME" \
    --shell /bin/sh "$USER_NAME"

mkdir -p "$HOME_DIR"
chown "$USER_NAME": "$HOME_DIR"
as_user() { runuser -u "$USER_NAME" -- env HOME="$HOME_DIR" PIP_DISABLE_PIP_VERSION_CHECK=1 "$@"; }
[ -x "$venv/bin/python" ] || as_user /usr/bin/python3 -m venv "$venv"
# every package pinned (panda-requirements.txt): no resolver run, and none of panda-server's declared
# mod_wsgi (a C build against Apache's apxs), which gunicorn makes unneeded here
cp "$(dirname "$0")/panda-requirements.txt" "$HOME_DIR/requirements.txt"
as_user "$venv/bin/pip" install -q --no-deps -r "$HOME_DIR/requirements.txt"
as_user mkdir -p "$HOME_DIR/pilot"
( cd "$HOME_DIR/pilot" && [ -f "panda-pilot-$PILOT_VERSION.tar.gz" ] ||
    as_user "$venv/bin/pip" download -q --no-deps --no-binary :all: -d "$HOME_DIR/pilot" "panda-pilot==$PILOT_VERSION" )
touch "$stamp"
