#!/usr/bin/env bash
# Stops the daemons tests/slurm/up.sh started, by the pids it recorded in DIR/pids.
set -u
dir=${1:?usage: down.sh DIR}
[ -f "$dir/pids" ] || exit 0
# Reverse order: slurmd, slurmctld, then munged.
tac "$dir/pids" | while read -r name pid; do
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && echo "stopped $name ($pid)"
done
for _ in $(seq 50); do
  alive=0
  while read -r _ pid; do kill -0 "$pid" 2>/dev/null && alive=1; done < "$dir/pids"
  [ $alive = 0 ] && break
  sleep 0.1
done
: > "$dir/pids"
