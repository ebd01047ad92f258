#!/bin/sh
# Debian's Slurm and munge for the real-Slurm tests (tests/slurmcluster.py starts
# and stops the cluster itself). Idempotent and quiet when already installed.
set -e
missing=""
for command in slurmctld slurmd sbatch squeue scancel scontrol munged; do
    command -v "$command" >/dev/null 2>&1 || [ -x "/usr/sbin/$command" ] || missing="$missing $command"
done
[ -z "$missing" ] && exit 0
echo "slurm.sh: installing slurm-wlm and munge (missing:$missing)"
if [ "$(id -u)" != 0 ]; then
    echo "slurm.sh: not root, cannot apt-get install slurm-wlm munge" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
