#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the launcher's integration test and for trying
# `--launcher slurm` without a cluster: this host is both the controller and the only node.
#
#   sudo bash scripts/slurm_local.sh start    # installs slurm-wlm and munge if missing (Debian)
#   bash scripts/slurm_local.sh status        # sinfo
#   sudo bash scripts/slurm_local.sh stop
#
# State, spool and logs live under $GBML_SLURM_DIR (default /tmp/gbml-slurm). Needs root (the
# daemons run as root: SlurmUser=root). Exits non-zero with one line if Slurm cannot start.
set -euo pipefail
DIR=${GBML_SLURM_DIR:-/tmp/gbml-slurm}
CONF=/etc/slurm/slurm.conf
HOST=$(hostname -s)
say() { printf '[slurm_local] %s\n' "$*"; }
fail() { printf 'slurm_local: %s\n' "$*" >&2; exit 1; }

install() {
  command -v slurmctld >/dev/null && command -v munged >/dev/null && return
  [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are missing; run as root to install them."
  say "installing slurm-wlm and munge"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) \
    >"$DIR/apt.log" 2>&1 || fail "apt-get install slurm-wlm munge failed (see $DIR/apt.log)."
}

write_config() {
  local cpus mem
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
  mkdir -p /etc/slurm "$DIR/state" "$DIR/spool" "$DIR/log"
  cat >"$CONF" <<CONF
ClusterName=gbml
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobRequeue=1
SchedulerType=sched/backfill
MinJobAge=60
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONF
}

start() {
  [ "$(id -u)" = 0 ] || fail "start needs root (the daemons run as root)."
  mkdir -p "$DIR"
  install
  if sinfo -h -o %t 2>/dev/null | grep -q idle; then say "already running"; return; fi
  write_config
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge && mungekey -c -f -k /etc/munge/munge.key >/dev/null 2>&1 || \
      fail "mungekey could not create /etc/munge/munge.key."
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  pgrep -x munged >/dev/null || munged --force >"$DIR/log/munged.out" 2>&1 || \
    fail "munged did not start (see $DIR/log/munged.out)."
  pgrep -x slurmctld >/dev/null || slurmctld >"$DIR/log/slurmctld.out" 2>&1 || \
    fail "slurmctld did not start (see $DIR/log/slurmctld.log)."
  pgrep -x slurmd >/dev/null || slurmd >"$DIR/log/slurmd.out" 2>&1 || \
    fail "slurmd did not start (see $DIR/log/slurmd.log)."
  for _ in $(seq 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      say "one-node cluster up: $(sinfo -h -o '%P %D %t %c CPUs')"; return
    fi
    sleep 1
  done
  fail "the node did not become idle in 60 s (see $DIR/log/slurmctld.log and slurmd.log)."
}

stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
  say "stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
