#!/usr/bin/env bash
# Starts a private single-node Slurm cluster (munged, slurmctld, slurmd) for loracycle's tests.
#
#   tests/slurm/up.sh DIR     writes DIR/slurm.conf, starts the daemons, waits for the node
#   tests/slurm/down.sh DIR   stops the daemons this script started, by the pids in DIR/pids
#
# Everything lives under DIR: the munge key and socket, Slurm's state, spool and logs, on ports
# picked free at start. Clients use it through SLURM_CONF=DIR/slurm.conf. Needs root (slurmd
# runs jobs as their submitting user) and Debian's slurmctld, slurmd and munge packages.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"
dir=$(realpath -m "${1:?usage: up.sh DIR}")
mkdir -p "$dir"/{state,spool,log,munge}
chmod 700 "$dir/munge"
: > "$dir/pids"

host=$(hostname -s)
cpus=$(nproc)
mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])
PY
}
ctld_port=$(free_port)
slurmd_port=$(free_port)

# munge: a fresh key and a private socket.
dd if=/dev/urandom bs=1 count=1024 of="$dir/munge/munge.key" status=none
chmod 400 "$dir/munge/munge.key"
munged --force --key-file="$dir/munge/munge.key" --socket="$dir/munge/munge.socket" \
  --pid-file="$dir/munge/munged.pid" --log-file="$dir/log/munged.log" \
  --seed-file="$dir/munge/munged.seed"
for _ in $(seq 50); do [ -s "$dir/munge/munged.pid" ] && break; sleep 0.1; done
echo "munged $(cat "$dir/munge/munged.pid")" >> "$dir/pids"

cat > "$dir/slurm.conf" <<CONF
ClusterName=loracycle-test
SlurmctldHost=$host
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$dir/slurm.conf"

slurmctld -i -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$dir/slurmctld.pid" ] && break; sleep 0.1; done
echo "slurmctld $(cat "$dir/slurmctld.pid")" >> "$dir/pids"
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$dir/slurmd.pid" ] && break; sleep 0.1; done
echo "slurmd $(cat "$dir/slurmd.pid")" >> "$dir/pids"

# The node registers within a few seconds; wait until it takes jobs.
for _ in $(seq 300); do
  state=$(sinfo -h -n "$host" -o %T 2>/dev/null || true)
  case "$state" in idle|mixed|allocated) echo "slurm up: node $host $state, SLURM_CONF=$SLURM_CONF"; exit 0 ;; esac
  sleep 0.2
done
echo "slurm did not come up (node state: ${state:-none}); logs in $dir/log" >&2
tail -n 20 "$dir"/log/*.log >&2 || true
exit 1
