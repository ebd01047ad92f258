#!/bin/sh
# %check of the RPM (a fast subset): from the buildroot, with the declared interpreter and no
# site-packages of the build host, the commands start, check-config reads a Local and (where the
# bindings are there) a CondorCE queue, and a Local queue runs one cycle that submits one pilot.
#   sh rpm/check.sh BUILDROOT PYTHON
set -eu
root=$1
python=$2
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' autopyfactory/__init__.py)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
apf() { "$python" -S "$root/usr/bin/apf" "$@"; }

[ "$(apf --version)" = "apf (autopyfactory) $version" ]
[ "$("$python" -S "$root/usr/bin/autopyfactory" --version)" = "autopyfactory $version" ]

mkdir -p "$work/spool/CHECK" "$work/logs"
echo '{"command": ["true"]}' > "$work/spool/CHECK/item.json"
cat > "$work/factory.conf" <<CONF
[Factory]
factoryId = rpm-check
queueConf = $work/queues.conf
baseLogDir = $work/logs
persistence.dbpath = $work/apf.sqlite
logserver.enabled = False
CONF
cat > "$work/queues.conf" <<CONF
[CHECK]
wmsstatusplugin = Local
wmsstatus.local.spooldir = $work/spool
batchstatusplugin = Local
batchsubmitplugin = Local
schedplugin = Ready
executable = /bin/true
CONF
if "$python" -S -c "import sys; sys.path.insert(0, '$root/usr/lib64/autopyfactory/bundled'); import htcondor2" \
        2>/dev/null; then
    cat >> "$work/queues.conf" <<CONF

[CE]
enabled = False
wmsstatusplugin = Local
wmsstatus.local.spooldir = $work/spool
batchstatusplugin = Condor
batchsubmitplugin = CondorCE
batchsubmit.condorce.gridresource = ce.example.org
CONF
fi
apf check-config --conf "$work/factory.conf" > "$work/check-config.out"
grep -q '^\[CHECK\]' "$work/check-config.out"
"$python" -S "$root/usr/bin/autopyfactory" --conf "$work/factory.conf" --foreground --cycles 1 \
    --log stdout > "$work/cycle.log" 2>&1 || { cat "$work/cycle.log"; exit 1; }
grep -q 'queue CHECK cycle 1: .*submitted 1' "$work/cycle.log" || { cat "$work/cycle.log"; exit 1; }
echo "rpm check: apf, autopyfactory, check-config and one cycle from the buildroot with $python"
