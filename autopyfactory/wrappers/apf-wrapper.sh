#!/bin/sh
# AutoPyFactory top-level pilot wrapper.
#
# This file is what the batch system starts, and it never changes: it checks
# for python3, sets up the environment and hands over to the python stage
# (apf_wrapper.py), which picks the pilot plugin from the --wrapper* options
# (--wrappervo --wrapperwmsqueue --wrapperbatchqueue --wrappergrid
# --wrapperpurpose --wrapperserverurl --wrapperplugin --wrapperpilottype
# --wrapperloglevel --wrappermode). Pilot plugins are drop-in files:
# <this dir>/plugins/*.py and the directories in $APF_WRAPPER_PLUGINS.
# Batch systems that copy the job script (Slurm) lose our directory, so the
# submit plugin exports APF_WRAPPER_DIR.
#
# Exit codes: 0 pilot ended well; 64 no usable python3; 65 python stage
# missing; others from the python stage (see apf_wrapper.py).
# The last line of the .out file is always "APF-WRAPPER-END status=... exit=...".

dir=${APF_WRAPPER_DIR:-$(cd "$(dirname "$0")" && pwd)}
echo "APF-WRAPPER-START host=$(hostname 2>/dev/null || uname -n) date=$(date -u +%Y-%m-%dT%H:%M:%SZ) queue=${FACTORYQUEUE:-} cid=${APFCID:-}"

PY=""
for candidate in ${APF_WRAPPER_PYTHON:-} python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 6) else 1)' >/dev/null 2>&1; then
        PY=$candidate
        break
    fi
done
if [ -z "$PY" ]; then
    echo "no python3 (3.6 or newer) on this worker node: PATH=$PATH" >&2
    echo "APF-WRAPPER-END status=nopython exit=64"
    exit 64
fi
if [ ! -f "$dir/apf_wrapper.py" ]; then
    echo "APF-WRAPPER-END status=nostage exit=65 (no $dir/apf_wrapper.py)"
    exit 65
fi

# A clean, predictable environment for the python stage and the pilot.
APF_WRAPPER_DIR=$dir
LANG=${LANG:-C.UTF-8}
PYTHONUNBUFFERED=1
PYTHONDONTWRITEBYTECODE=1
export APF_WRAPPER_DIR LANG PYTHONUNBUFFERED PYTHONDONTWRITEBYTECODE
unset PYTHONHOME PYTHONSTARTUP

exec "$PY" "$dir/apf_wrapper.py" "$@"
