#!/bin/bash
# Build the autopyfactory RPM from this checkout, offline.
#   rpm/build-rpm.sh [TOPDIR]      (default: build/rpm; the RPM lands in TOPDIR/RPMS/noarch/)
# APF_RPM_PYTHON: the python that runs pip in %install (needs pip, setuptools>=64, wheel;
# default python3). --nodeps: BuildRequires are RPM packages, and a Debian build
# host's RPM database is empty.
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
    --exclude=./.hypothesis --transform "s,^\.,$(printf 'autopyfactory-%s' "$version")," \
    -czf "$topdir/SOURCES/autopyfactory-$version.tar.gz" .
cp "$here/rpm/autopyfactory.spec" "$topdir/SPECS/"
exec rpmbuild -bb --nodeps --define "_topdir $topdir" --define "apf_python $python" \
    "$topdir/SPECS/autopyfactory.spec"
