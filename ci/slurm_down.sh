#!/usr/bin/env bash
# Stop what ci/slurm_up.sh started in STATE_DIR: its slurmd and slurmctld, and munged if it started it.
# Jobs still running are cancelled first. Safe to call twice, or when nothing was started.
set -uo pipefail
STATE="${1:-${GOLDEN_SLURM_DIR:-/tmp/golden-slurm}}"
. "$(dirname "$0")/slurm_lib.sh"
if [ -f "$STATE/slurm.conf" ] && [ -s "$STATE/slurm.pids" ]; then
    SLURM_CONF="$STATE/slurm.conf" timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
fi
stop_slurm_daemons "$STATE"
stop_pids "$STATE/munged.pid"
exit 0
