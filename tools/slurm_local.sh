#!/usr/bin/env bash
# A single-node Slurm cluster on localhost, for tests: Debian's slurm-wlm and munge, every file
# (config, state, logs, sockets) under DIR, daemons started by `start` and stopped by `stop`.
#   tools/slurm_local.sh start DIR    prints the SLURM_CONF to export
#   tools/slurm_local.sh stop DIR
set -euo pipefail
cmd=${1:?start or stop}; dir=$(mkdir -p "${2:?directory}" && cd "$2" && pwd)
case "$cmd" in
start)
    # no descriptor of the caller's reaches the daemons (a caller waiting for this script to end,
    # e.g. through a pipe it inherited, would wait for them too)
    for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-" 2>/dev/null || true; done
    mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
    # munge: its own key and socket here (root is allowed with --force)
    [ -f "$dir/munge/munge.key" ] || dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 600 "$dir/munge/munge.key"
    setsid munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
           --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" --seed-file="$dir/munge/seed" </dev/null >/dev/null 2>&1
    cpus=$(nproc); mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    cat > "$dir/slurm.conf" <<CONF
ClusterName=zoo-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CryptoType=crypto/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldPort=$((17000 + RANDOM % 1000))
SlurmdPort=$((18000 + RANDOM % 1000))
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=localhost CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF="$dir/slurm.conf"
    setsid slurmctld -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
    setsid slurmd -f "$SLURM_CONF" </dev/null >/dev/null 2>&1
    for _ in $(seq 50); do sinfo -h -o %T 2>/dev/null | grep -qx idle && break; sleep 0.2; done
    sinfo -h -o %T | grep -qx idle || { echo "slurm did not come up; logs in $dir/log" >&2; exit 1; }
    echo "$SLURM_CONF"
    ;;
stop)
    for pid in "$dir/slurmd.pid" "$dir/slurmctld.pid" "$dir/munge/munged.pid"; do
        [ -f "$pid" ] && kill "$(cat "$pid")" 2>/dev/null || true
    done
    ;;
*) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
