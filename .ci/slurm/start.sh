#!/usr/bin/env bash
# Bring up a single-node SLURM (munged, slurmctld, slurmd) on this machine without systemd,
# for tests/test_slurm.py. Needs root and Debian's `slurmctld slurmd slurm-client munge`
# (.ci/run installs them). A rerun restarts the daemons (stale ones are stopped by their
# pid files first), so it also works after a crash. Stop with .ci/slurm/stop.sh.
#
# The node is this machine: its real CPU count and memory (`slurmd -C`), NodeAddr=127.0.0.1 and
# four fake GPUs (Gres=gpu:4, gres.conf File=/dev/null,...) so that GPU requests can be scheduled,
# several at once (feature jobs scattered over GPUs).
# No accounting: finished jobs stay in slurmctld's memory for MinJobAge seconds (`scontrol show
# job`, `squeue --states=all`), which is what the SLURM profile's `slurm-status-command: squeue`
# and the test read. MinJobAge is a day, not the usual 300-600 s, so the test still finds the
# first jobs of a long run; each start clears the state, so records do not pile up.
# Exit status 3: /etc/slurm/slurm.conf belongs to another SLURM (left alone).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/paths.sh"

if [ "$(id -u)" != 0 ]; then
    echo "start.sh: needs root (it writes $SLURM_CONF and runs the daemons)" >&2
    exit 1
fi
for command in munged slurmctld slurmd sinfo scontrol; do
    command -v "$command" >/dev/null || {
        echo "start.sh: '$command' not found; install Debian's slurmctld slurmd slurm-client munge (see .ci/run)" >&2
        exit 1
    }
done
# The SLURM configuration must be the default path: the plugin's job step drops SLURM_CONF.
if [ -e "$SLURM_CONF" ] && ! grep -q "^$MARKER" "$SLURM_CONF"; then
    echo "start.sh: $SLURM_CONF exists and was not written by this script; not overwriting it" >&2
    exit 3
fi

"$here/stop.sh" >/dev/null

# munge: a generated key, its socket folder world-readable (mode 755) so clients can connect.
install -d -m 700 -o munge -g munge /etc/munge /var/lib/munge /var/log/munge
install -d -m 755 -o munge -g munge "$(dirname "$MUNGE_PID")"
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
runuser -u munge -- munged --pid-file="$MUNGE_PID" --socket="$MUNGE_SOCKET"
for _ in $(seq 50); do
    [ -S "$MUNGE_SOCKET" ] && munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1 && break
    sleep 0.2
done
munge -n -S "$MUNGE_SOCKET" | unmunge -S "$MUNGE_SOCKET" >/dev/null

# slurm.conf and gres.conf for one node: this machine.
node="$(hostname -s)"
read -r -a hardware <<<"$(slurmd -C | head -1)"
node_hardware=()
for field in "${hardware[@]}"; do
    case "$field" in
    CPUs=* | Boards=* | SocketsPerBoard=* | CoresPerSocket=* | ThreadsPerCore=* | RealMemory=*) node_hardware+=("$field") ;;
    esac
done
install -d -m 755 "$(dirname "$SLURM_CONF")" "$(dirname "$SLURMCTLD_PID")" "$SLURM_STATE" "$SLURMD_SPOOL" "$SLURM_LOGS"
cat >"$SLURM_CONF" <<EOF
$MARKER (rewritten on every start; stop with .ci/slurm/stop.sh)
ClusterName=brainldm
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
ReturnToService=2
MailProg=/bin/true
SlurmctldPidFile=$SLURMCTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$SLURM_STATE
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldLogFile=$SLURM_LOGS/slurmctld.log
SlurmdLogFile=$SLURM_LOGS/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
MinJobAge=86400
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
GresTypes=gpu
NodeName=$node NodeAddr=127.0.0.1 ${node_hardware[*]} Gres=gpu:4 State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$(dirname "$SLURM_CONF")/gres.conf" <<EOF
$MARKER
NodeName=$node Name=gpu File=/dev/null,/dev/zero,/dev/full,/dev/urandom
EOF

# On failure, show why and leave nothing running.
fail() {
    echo "start.sh: $1" >&2
    tail -n 5 "$SLURM_LOGS/slurmctld.log" "$SLURM_LOGS/slurmd.log" >&2 2>/dev/null
    "$here/stop.sh" >/dev/null
    exit 1
}

# -c: start from a clean state (no jobs or node states left over from a crashed run).
slurmctld -c || fail "slurmctld did not start"
slurmd || fail "slurmd did not start"

# Ready when the node is idle (ReturnToService=2 brings a node back that a crash left down).
state=""
for _ in $(seq 60); do
    for pid_file in "$SLURMCTLD_PID" "$SLURMD_PID"; do
        kill -0 "$(cat "$pid_file" 2>/dev/null)" 2>/dev/null || sleep 1
        kill -0 "$(cat "$pid_file" 2>/dev/null)" 2>/dev/null || fail "$(basename "$pid_file" .pid) exited"
    done
    state="$(sinfo --noheader --nodes="$node" --format=%T 2>/dev/null || true)"
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || fail "node $node is '${state:-unknown}', not idle, after 60 s"
echo "SLURM is up: node $node (${node_hardware[*]}, gpu:4), partition main"
