#!/usr/bin/env bash
# Stop the single-node SLURM of start.sh: cancel its jobs, then stop slurmd, slurmctld and
# munged by their pid files (never by name). Safe to run when nothing is running.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/paths.sh"

# Jobs first, while slurmctld still answers (only this script's private cluster is touched).
if [ -s "$SLURMCTLD_PID" ] && grep -q "^$MARKER" "$SLURM_CONF" 2>/dev/null \
    && timeout 10 squeue --noheader >/dev/null 2>&1; then
    jobs="$(timeout 10 squeue --noheader --format=%i 2>/dev/null)"
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086
        timeout 10 scancel $jobs || true
        sleep 2
    fi
fi

# Stop the process of a pid file if it is the expected program; remove the pid file.
stop() {
    local pid_file=$1 program=$2 pid
    [ -e "$pid_file" ] || return 0
    pid="$(cat "$pid_file" 2>/dev/null)"
    if [[ "$pid" =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$program" ]; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "stop.sh: $program ($pid) ignored SIGTERM; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        echo "stopped $program ($pid)"
    fi
    rm -f "$pid_file"
}
stop "$SLURMD_PID" slurmd
stop "$SLURMCTLD_PID" slurmctld
stop "$MUNGE_PID" munged
exit 0
