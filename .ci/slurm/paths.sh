# Paths shared by start.sh and stop.sh (sourced).
MARKER="# Written by brainldm .ci/slurm/start.sh"
SLURM_CONF=/etc/slurm/slurm.conf
SLURMCTLD_PID=/run/slurm/slurmctld.pid
SLURMD_PID=/run/slurm/slurmd.pid
SLURM_STATE=/var/lib/slurm/slurmctld
SLURMD_SPOOL=/var/lib/slurm/slurmd
SLURM_LOGS=/var/log/slurm
MUNGE_PID=/run/munge/munged.pid
MUNGE_SOCKET=/run/munge/munge.socket.2
