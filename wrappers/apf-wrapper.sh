#!/bin/sh
# AutoPyFactory top-level pilot wrapper.
#
# This file is what the batch system starts. It never changes: it checks for
# python3, sets up the environment and hands over to the python stage
# (apf_wrapper.py), which picks the pilot plugin from the --wrapper* options.
# Batch systems that copy the job script (Slurm) lose our directory, so the
# submit plugin exports APF_WRAPPER_DIR.
#
# Exit codes: 0 pilot ended well; 64 no python3; others from the python stage.
# The last line of the .out file is always "APF-WRAPPER-END status=... exit=...".

dir=${APF_WRAPPER_DIR:-$(cd "$(dirname "$0")" && pwd)}
PY=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1; then PY=$candidate; break; fi
done
echo "APF-WRAPPER-START host=$(hostname) date=$(date -u +%Y-%m-%dT%H:%M:%SZ) queue=${FACTORYQUEUE:-} cid=${APFCID:-}"
if [ -z "$PY" ]; then
    echo "APF-WRAPPER-END status=nopython exit=64"
    exit 64
fi
if [ ! -f "$dir/apf_wrapper.py" ]; then
    echo "APF-WRAPPER-END status=nostage exit=65 (no $dir/apf_wrapper.py)"
    exit 65
fi
exec "$PY" "$dir/apf_wrapper.py" "$@"
