#!/bin/bash
# Build the autopyfactory RPMs for EL9 and EL10 from this checkout.
#   rpm/build-rpm.sh [TOPDIR]   (default build/rpm; RPMs land in TOPDIR/RPMS/noarch/, *.el9 and *.el10)
#   APF_RPM_TARGETS="9 10"      which EL releases to build for
#   APF_RPM_PYTHON              the python that builds the wheel off EL (needs pip, setuptools>=64, wheel)
# The bundled libraries (rpm/bundled.txt) are downloaded as wheels with pip into Source1, the EL9
# RPM's HTCondor bindings (rpm/htcondor.txt: python3.11, this machine's architecture) into Source4.
# %check runs only where the target's interpreter is on the build host (python3.11 here, not 3.12).
# Off EL (this Debian build host) rpm/macros.fallback stands in for EL's python, pyproject and
# systemd macros, and --nodeps skips BuildRequires (they are EL packages).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
topdir=$(mkdir -p "${1:-$here/build/rpm}" && cd "${1:-$here/build/rpm}" && pwd)
python=${APF_RPM_PYTHON:-python3}
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$here/autopyfactory/__init__.py")
spec_version=$(sed -n 's/^Version: *//p' "$here/rpm/autopyfactory.spec")
if [ "$version" != "$spec_version" ]; then
    echo "build-rpm: autopyfactory/__init__.py says $version, rpm/autopyfactory.spec says $spec_version" >&2
    exit 1
fi
mkdir -p "$topdir"/SOURCES "$topdir"/SPECS "$topdir"/BUILD "$topdir"/RPMS "$topdir"/SRPMS
tar -C "$here" --exclude-vcs --exclude=./.venv --exclude=./var --exclude=./build --exclude=./dist \
    --exclude=__pycache__ --exclude='*.egg-info' --exclude=./.pytest_cache --exclude=./.ruff_cache \
    --exclude=./.hypothesis --transform "s,^\.,autopyfactory-$version," \
    -czf "$topdir/SOURCES/autopyfactory-$version.tar.gz" .
wheels=$(mktemp -d)
trap 'rm -rf "$wheels"' EXIT
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform manylinux2014_x86_64 --python-version 3.11 --implementation cp \
    -d "$wheels" -r "$here/rpm/bundled.txt" 2>"$wheels/pip.log" || { cat "$wheels/pip.log" >&2; exit 1; }
rm "$wheels/pip.log"
tar -C "$wheels" -czf "$topdir/SOURCES/autopyfactory-bundled-$version.tar.gz" .
condor="$wheels/condor"
mkdir "$condor"
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
    --platform "manylinux_2_28_$(uname -m)" --python-version 3.11 --implementation cp \
    -d "$condor" -r "$here/rpm/htcondor.txt" 2>"$wheels/pip.log" || { cat "$wheels/pip.log" >&2; exit 1; }
tar -C "$condor" -czf "$topdir/SOURCES/autopyfactory-htcondor-$version.tar.gz" .
cp "$here/rpm/bundled.txt" "$here/rpm/htcondor.txt" "$topdir/SOURCES/"
cp "$here/etc/sysusers.d/autopyfactory.conf" "$topdir/SOURCES/autopyfactory.sysusers"
cp "$here/rpm/autopyfactory.spec" "$topdir/SPECS/"
fallback=()
if [ -z "$(rpm --eval '%{?pyproject_wheel}')" ]; then
    fallback=(--load "$here/rpm/macros.fallback" --nodeps)
fi
for release in ${APF_RPM_TARGETS:-9 10}; do
    check=()
    case $release in 9) interpreter=/usr/bin/python3.11 ;; *) interpreter=/usr/bin/python3.12 ;; esac
    if [ ! -x "$interpreter" ]; then
        echo "build-rpm: $interpreter (EL$release's interpreter) is not here: no %check, no bytecode" >&2
        check=(--nocheck)
    fi
    rpmbuild -bb --quiet "${fallback[@]}" "${check[@]}" --define "_topdir $topdir" \
        --define "apf_build_python $python" --define "rhel $release" --define "dist .el$release" \
        "$topdir/SPECS/autopyfactory.spec"
done
