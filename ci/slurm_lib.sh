# Shared by slurm_up.sh and slurm_down.sh (sourced).
stop_pids() {  # stop_pids FILE: SIGTERM each recorded pid that is still alive, then SIGKILL stragglers
    local file="$1" pid left
    [ -f "$file" ] || return 0
    for pid in $(cat "$file"); do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        left=0
        for pid in $(cat "$file"); do kill -0 "$pid" 2>/dev/null && left=1; done
        [ "$left" = 0 ] && break
        sleep 0.1
    done
    for pid in $(cat "$file"); do kill -KILL "$pid" 2>/dev/null || true; done
    rm -f "$file"
}
stop_slurm_daemons() { stop_pids "$1/slurm.pids"; }
