#!/usr/bin/env bash
# Start a single-host Slurm cluster for the tests: munged, slurmctld and two slurmd ("nodes" g1 and
# g2 on this host, each with its own port: Slurm's multiple-slurmd mode), or one slurmd where the
# build refuses two. Needs root and Debian's slurm-wlm + munge (`apt-get install -y slurm-wlm munge`).
#
#   ci/slurm_up.sh [STATE_DIR]     prints the slurm.conf path on stdout; exit 0 when `srun` answers
#   SLURM_CONF=$(ci/slurm_up.sh)   then srun/sbatch/scancel use this cluster
#   ci/slurm_down.sh [STATE_DIR]   stops only what this script started
#
# What it starts is recorded in STATE_DIR (slurm.pids, munged.pid); munged is started only when none
# answers already.
# Exit 1 with one line on stderr when Slurm cannot start here (tests skip with that line as reason).
set -euo pipefail
STATE="${1:-${GOLDEN_SLURM_DIR:-/tmp/golden-slurm}}"
HOST="$(hostname -s)"
PORT_BASE="${GOLDEN_SLURM_PORT_BASE:-17100}"   # slurmctld PORT_BASE, slurmd PORT_BASE+1, +2
. "$(dirname "$0")/slurm_lib.sh"
die() { echo "slurm_up: $*" >&2; exit 1; }

for tool in munged slurmctld slurmd srun scontrol sinfo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install -y slurm-wlm munge)"
done
[ "$(id -u)" = 0 ] || die "needs root (slurmd runs as root)"
mkdir -p "$STATE"
exec 9>"$STATE/.lock"
flock 9   # two calls with one STATE_DIR: the second waits, then finds the cluster up
if [ -f "$STATE/slurm.conf" ] && SLURM_CONF="$STATE/slurm.conf" timeout 20 srun -N1 -n1 true 2>/dev/null; then
    echo "$STATE/slurm.conf"   # already up (started by an earlier call with this STATE_DIR)
    exit 0
fi
mkdir -p "$STATE"/{spool,ctld,log}
stop_slurm_daemons "$STATE"   # what an earlier, failed call with this STATE_DIR left running

# munge: /run/munge owned by munge, munged run as munge (it refuses to run as root).
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
    install -d -o munge -g munge -m 0755 /run/munge
    runuser -u munge -- /usr/sbin/munged 9>&-   # (daemons must not inherit the lock)
    sleep 0.5
    cp /run/munge/munged.pid "$STATE/munged.pid" 2>/dev/null || pgrep -u munge -x munged > "$STATE/munged.pid" || true
    munge -n </dev/null | unmunge >/dev/null 2>&1 || die "munged does not answer"
fi

write_conf() {  # write_conf NODES...: one NodeName line per node, all on this host, own ports
    local names=() port="$PORT_BASE" n
    {
        echo "ClusterName=golden"
        echo "SlurmctldHost=$HOST"
        echo "SlurmctldPort=$PORT_BASE"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        echo "AuthType=auth/munge"
        echo "StateSaveLocation=$STATE/ctld"
        echo "SlurmdSpoolDir=$STATE/spool/%n"
        echo "SlurmctldPidFile=$STATE/slurmctld.pid"
        echo "SlurmdPidFile=$STATE/slurmd.%n.pid"
        echo "SlurmctldLogFile=$STATE/log/slurmctld.log"
        echo "SlurmdLogFile=$STATE/log/slurmd.%n.log"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "SchedulerType=sched/builtin"
        echo "ReturnToService=2"
        echo "KillWait=5"
        echo "MinJobAge=600"
        echo "InactiveLimit=0"
        echo "MpiDefault=none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        for n in "$@"; do
            port=$((port + 1))
            echo "NodeName=$n NodeHostname=$HOST NodeAddr=127.0.0.1 Port=$port CPUs=2 State=UNKNOWN"
            names+=("$n")
        done
        echo "PartitionName=golden Nodes=$(IFS=,; echo "${names[*]}") Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE"
    } > "$STATE/slurm.conf"
}

record_pid() {  # record_pid PIDFILE WHAT: wait for a daemon's pid file, add the pid to slurm.pids
    for _ in $(seq 300); do [ -s "$1" ] && break; sleep 0.1; done
    [ -s "$1" ] || { echo "slurm_up: $2 wrote no pid file (see $STATE/log)" >&2; return 1; }
    cat "$1" >> "$STATE/slurm.pids"
}

start_daemons() {  # start_daemons NODES...
    export SLURM_CONF="$STATE/slurm.conf"
    rm -f "$STATE"/slurm*.pid
    slurmctld -c -f "$SLURM_CONF" 9>&- || return 1
    record_pid "$STATE/slurmctld.pid" slurmctld || return 1
    for n in "$@"; do
        mkdir -p "$STATE/spool/$n"
        slurmd -f "$SLURM_CONF" -N "$n" 9>&- || return 1
        record_pid "$STATE/slurmd.$n.pid" "slurmd $n" || return 1
    done
}

answers() {  # answers NODES: srun on that many nodes within the deadline
    SLURM_CONF="$STATE/slurm.conf" timeout 60 srun -N "$1" --ntasks-per-node=1 hostname >/dev/null 2>&1
}

write_conf g1 g2
if start_daemons g1 g2 && answers 2; then
    echo "$STATE/slurm.conf"
    exit 0
fi
# Two slurmd on one host need a build with --enable-multiple-slurmd: fall back to one node.
stop_slurm_daemons "$STATE"
rm -rf "$STATE/ctld" "$STATE/spool"
mkdir -p "$STATE"/{spool,ctld,log}
write_conf g1
start_daemons g1 && answers 1 || die "slurmctld/slurmd started but srun does not answer (see $STATE/log)"
echo "$STATE/slurm.conf"
