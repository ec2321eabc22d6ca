#!/usr/bin/env bash
# Start a single-node Slurm test cluster (slurmctld + slurmd + slurmdbd on MariaDB, munge auth)
# with every config, state and log file under $FLOWMAP_SLURM_DIR (default /tmp/flowmap-slurm).
# Nothing is written to /etc. Needs root and Debian's packages:
#   slurmctld slurmd slurm-client slurmdbd slurm-wlm-basic-plugins slurm-wlm-mysql-plugin
#   munge mariadb-server
# Afterwards: `source $FLOWMAP_SLURM_DIR/env.sh` (exports SLURM_CONF). Stop with down.sh.
# For tests only: jobs run as root, the database listens on 127.0.0.1 with a password made here,
# and a requeued job may restart after 10 s (cred_expire; Slurm's default is 120 s).
set -euo pipefail
D=${FLOWMAP_SLURM_DIR:-/tmp/flowmap-slurm}
DB_PORT=${FLOWMAP_SLURM_DB_PORT:-3307}
CTL_PORT=${FLOWMAP_SLURM_PORT:-6817}  # slurmd uses +1, slurmdbd +2
CLUSTER=flowmap
t0=$(date +%s.%N)
mkdir -p "$D"/{etc,log,state,spool,run}
export SLURM_CONF=$D/etc/slurm.conf  # a missing file makes every client retry for 60 s
echo "export SLURM_CONF=$SLURM_CONF" >"$D/env.sh"

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
  local n=$(($1 * 10)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    n=$((n - 1))
    if ((n <= 0)); then
      echo "up.sh: timed out waiting for $what; logs in $D/log" >&2
      tail -n 20 "$D"/log/*.log >&2 || true
      exit 1
    fi
    sleep 0.1
  done
}

if [ -f "$SLURM_CONF" ] && scontrol ping 2>/dev/null | grep -q UP && sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
  echo "slurm already up (SLURM_CONF=$SLURM_CONF)"
  exit 0
fi

# munge: the daemon runs as the munge user; reuse one that already answers
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  [ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key
  chmod 600 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
  runuser -u munge -- /usr/sbin/munged
  touch "$D/run/munged.ours"
  wait_for 10 munged sh -c 'munge -n | unmunge'
fi

# MariaDB: a private data directory, TCP on 127.0.0.1 only
if [ ! -d "$D/mysql/mysql" ]; then
  mariadb-install-db --no-defaults --datadir="$D/mysql" --user=root \
    --auth-root-authentication-method=socket --skip-test-db >"$D/log/mariadb-install.log" 2>&1
fi
if ! mariadb-admin --no-defaults --socket="$D/run/mysql.sock" ping >/dev/null 2>&1; then
  setsid mariadbd --no-defaults --datadir="$D/mysql" --user=root --socket="$D/run/mysql.sock" \
    --pid-file="$D/run/mariadbd.pid" --port="$DB_PORT" --bind-address=127.0.0.1 \
    --log-error="$D/log/mariadb.log" --innodb-buffer-pool-size=32M --skip-log-bin \
    </dev/null >/dev/null 2>&1 &
  wait_for 30 mariadb mariadb-admin --no-defaults --socket="$D/run/mysql.sock" ping
fi
PASS_FILE=$D/etc/.dbpass
[ -s "$PASS_FILE" ] || (umask 077 && head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$PASS_FILE")
PASS=$(cat "$PASS_FILE")
mariadb --no-defaults --socket="$D/run/mysql.sock" -u root <<SQL
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$PASS';
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL

(
  umask 077
  cat >"$D/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$((CTL_PORT + 2))
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$PASS
StorageLoc=slurm_acct_db
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
EOF
)
chmod 600 "$D/etc/slurmdbd.conf"

MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$SLURM_CONF" <<EOF
ClusterName=$CLUSTER
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmctldPort=$CTL_PORT
SlurmdPort=$((CTL_PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$((CTL_PORT + 2))
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
KillWait=5
MinJobAge=30
MessageTimeout=20
NodeName=localhost NodeAddr=127.0.0.1 NodeHostname=localhost CPUs=$(nproc) RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

if ! pgrep -F "$D/run/slurmdbd.pid" slurmdbd >/dev/null 2>&1; then
  slurmdbd
  wait_for 30 slurmdbd sacctmgr -n list cluster
fi
sacctmgr -i add cluster "$CLUSTER" >/dev/null 2>&1 || true  # "already exists" is fine
pgrep -F "$D/run/slurmctld.pid" slurmctld >/dev/null 2>&1 || slurmctld
pgrep -F "$D/run/slurmd.pid" slurmd >/dev/null 2>&1 || slurmd -N localhost
wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP'
wait_for 30 "node registration" sh -c "sinfo -h -o %t | grep -qvE 'unk|down\\*'"
# a previous stop that left the node drained ("Kill task failed") is undone here
if sinfo -h -o %t | grep -qE 'drain|down'; then
  scontrol update nodename=localhost state=resume || true
fi
wait_for 20 "idle node" sh -c "sinfo -h -o %t | grep -qE '^(idle|mix|alloc)'"
printf 'slurm up in %.1f s (SLURM_CONF=%s)\n' "$(echo "$(date +%s.%N) - $t0" | bc)" "$SLURM_CONF"
