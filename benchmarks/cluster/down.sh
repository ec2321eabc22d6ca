#!/usr/bin/env bash
# Stop the test cluster started by up.sh: cancel every job, wait for an empty queue (a node killed
# with tasks still running comes back drained), then stop slurmctld/slurmd, slurmdbd, MariaDB and
# munged (only if up.sh started it). Safe to run twice; never fails.
set -uo pipefail
D=${FLOWMAP_SLURM_DIR:-/tmp/flowmap-slurm}
export SLURM_CONF=$D/etc/slurm.conf
[ -f "$SLURM_CONF" ] || exit 0

stop_pid() {  # stop_pid PIDFILE NAME: TERM, wait up to 20 s, then KILL
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null && grep -q "$2" "/proc/$pid/comm" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if timeout 10 scontrol ping 2>/dev/null | grep -q UP; then
  scancel --full --quiet --user=root 2>/dev/null || true
  for _ in $(seq 300); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
    sleep 0.1
  done
  timeout 20 scontrol shutdown >/dev/null 2>&1 || true
fi
stop_pid "$D/run/slurmctld.pid" slurmctld
stop_pid "$D/run/slurmd.pid" slurmd
stop_pid "$D/run/slurmdbd.pid" slurmdbd
stop_pid "$D/run/mariadbd.pid" mariadbd
if [ -f "$D/run/munged.ours" ]; then
  stop_pid /run/munge/munged.pid munged
  rm -f "$D/run/munged.ours"
fi
echo "slurm down (state kept in $D)"
