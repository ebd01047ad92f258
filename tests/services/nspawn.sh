#!/bin/bash
# A real systemd (PID 1) for tests/test_systemd_nspawn.py: systemd-nspawn and a minimal Debian 12 root
# booted with `systemd-nspawn --boot --volatile=overlay` (the root itself is never changed by a run).
# The root is built once with debootstrap from the host's Debian mirror (about a minute) and kept in
# $APF_NSPAWN_ROOT (default /var/lib/apf-nspawn/bookworm); idempotent and quiet once it is there.
# What the root holds: systemd, dbus, python3.11 (the EL9 RPM's interpreter, so the RPM's payload runs
# as it is), rpm (to install the RPM with its scriptlets, as a site does) and acl (setfacl for credentials).
set -euo pipefail
root=${APF_NSPAWN_ROOT:-/var/lib/apf-nspawn/bookworm}
packages=systemd,systemd-sysv,dbus,procps,python3-minimal,libpython3.11-stdlib,rpm,acl
stamp="$root/.apf-nspawn"
if command -v systemd-nspawn >/dev/null 2>&1 && command -v debootstrap >/dev/null 2>&1 \
        && [ "$(cat "$stamp" 2>/dev/null)" = "$packages" ]; then
    exit 0
fi
mkdir -p "$(dirname "$root")"
exec 9>"$root.lock"
flock 9  # one build at a time; a second caller finds the root ready
if [ "$(cat "$stamp" 2>/dev/null)" = "$packages" ] && command -v systemd-nspawn >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! command -v systemd-nspawn >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
    apt-get update -qq >/dev/null
    # --no-install-recommends: libnss-mymachines would edit the host's /etc/nsswitch.conf
    apt-get install -y -qq --no-install-recommends debootstrap systemd-container >/dev/null
fi
# the mirror the host's own apt uses (deb822 sources or sources.list)
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p; s/^deb \(\[[^]]*\] \)\?\(http[^ ]*debian\/\?\) .*/\2/p' \
    /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 || true)
mirror=${mirror:-http://deb.debian.org/debian}
building="$root.building"
rm -rf "$building"
if ! debootstrap --variant=minbase --include="$packages" bookworm "$building" "$mirror" \
        >"$building.log" 2>&1; then
    tail -20 "$building.log" >&2
    exit 1
fi
rm -rf "$building"/var/cache/apt/archives/*.deb "$building"/var/lib/apt/lists/*_Packages
# each boot makes a machine id of its own
rm -f "$building/etc/machine-id" "$building.log"
echo "$packages" > "$building/.apf-nspawn"
rm -rf "$root"
mv "$building" "$root"
