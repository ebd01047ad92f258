#!/bin/sh
# AutoPyFactory Slurm launcher: names this pilot, then runs the pilot wrapper.
APFCID="${SLURM_ARRAY_JOB_ID:-$SLURM_JOB_ID}.${SLURM_ARRAY_TASK_ID:-0}"
GTAG="${APF_GTAG_BASE}/${APFCID}.out"
export APFCID GTAG
exec "$APF_EXECUTABLE" "$@"
