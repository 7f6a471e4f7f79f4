#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the tests and CI (docs/environment.md).
#   source slurm/local_cluster.sh start    # exports SLURM_CONF; needs root and Debian's slurm + munge
#   bash slurm/local_cluster.sh stop
# With slurmdbd + MariaDB installed it also starts accounting, so sacct (and submitit's job states) work.
set -euo pipefail
DIR=${USM_SLURM_DIR:-/tmp/usm-slurm}
export SLURM_CONF=$DIR/slurm.conf

start() {
  mkdir -p "$DIR"/state "$DIR"/spool "$DIR"/log /run/munge
  chown munge:munge /run/munge
  [ -f /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null;
                                   chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  local accounting="AccountingStorageType=accounting_storage/none"
  if command -v slurmdbd >/dev/null && command -v mariadbd >/dev/null; then
    accounting="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
    start_accounting
  fi
  cat > "$SLURM_CONF" <<CONF
ClusterName=usmbench
SlurmctldHost=localhost
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
$accounting
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=20000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  pgrep -x slurmctld >/dev/null || slurmctld
  pgrep -x slurmd >/dev/null || slurmd -N localhost
  for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -q idle && break; sleep 1; done
  sinfo
}

start_accounting() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  pgrep -x mariadbd >/dev/null || (mysqld_safe >/dev/null 2>&1 &)
  for _ in $(seq 30); do mysqladmin ping >/dev/null 2>&1 && break; sleep 1; done
  mysql -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > "$DIR/slurmdbd.conf" <<CONF
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
LogFile=$DIR/log/slurmdbd.log
PidFile=$DIR/slurmdbd.pid
CONF
  chmod 600 "$DIR/slurmdbd.conf"
  pgrep -x slurmdbd >/dev/null || slurmdbd  # reads slurmdbd.conf beside $SLURM_CONF
  sleep 2
}

stop() {
  pkill -x slurmd || true
  pkill -x slurmctld || true
  pkill -x slurmdbd || true
  mysqladmin shutdown 2>/dev/null || true
}

"${1:-start}"
