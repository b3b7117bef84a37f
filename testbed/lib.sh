# Shared helpers for testbed/up and testbed/down (sourced, not run).
# shellcheck shell=bash
TB_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB_RUN=${K5UP_TESTBED_RUN:-$TB_HERE/run}
TB_PY=/usr/bin/python3   # Debian's python: the pyenv one on PATH cannot see Debian's packages

# Ports (loopback only). Override with the environment if one is taken.
TB_MEMCACHED_PORT=${K5UP_TB_MEMCACHED_PORT:-11251}
TB_ACCOUNT_PORT=${K5UP_TB_ACCOUNT_PORT:-6212}
TB_CONTAINER_PORT=${K5UP_TB_CONTAINER_PORT:-6211}
TB_OBJECT_PORT=${K5UP_TB_OBJECT_PORT:-6210}
TB_STOCK_PORT=${K5UP_TB_STOCK_PORT:-8080}
TB_SMALL_PORT=${K5UP_TB_SMALL_PORT:-8081}
TB_SHORT_PORT=${K5UP_TB_SHORT_PORT:-8082}
TB_KSWIFT_PORT=${K5UP_TB_KSWIFT_PORT:-8083}     # Swift proxy behind Keystone
TB_TLS_PORT=${K5UP_TB_TLS_PORT:-8443}            # stock proxy over TLS (testbed CA)
TB_KEYSTONE_PORT=${K5UP_TB_KEYSTONE_PORT:-5000}
TB_GLANCE_PORT=${K5UP_TB_GLANCE_PORT:-9292}
TB_GLANCE_MEMBER_QUOTA=2
TB_VMIMPORT_PORT=${K5UP_TB_VMIMPORT_PORT:-9393}     # K5 vmimport emulator
TB_KEYSTONE_ADMIN_PW=${K5UP_TB_KEYSTONE_ADMIN_PW:-admin-secret-pw}

# The test proxies' limits: small enough that multi-segment and nested-SLO
# tests are cheap, and tokens that expire several times during one test.
TB_SMALL_MAX_FILE_SIZE=${K5UP_TB_SMALL_MAX_FILE_SIZE:-16777216}
TB_SMALL_MAX_MANIFEST_SEGMENTS=${K5UP_TB_SMALL_MAX_MANIFEST_SEGMENTS:-16}
TB_SHORT_TOKEN_LIFE=${K5UP_TB_SHORT_TOKEN_LIFE:-4}

tb_log() { echo "testbed: $*" >&2; }

# tb_alive NAME: true when run/pids/NAME holds the pid of a live process we started.
tb_alive() {
  local f="$TB_RUN/pids/$1" pid
  [ -f "$f" ] || return 1
  local start
  read -r pid start <"$f" || true
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  # Guard against a recycled pid: the process start time must be the one recorded.
  [ "$(tb_starttime "$pid")" = "$start" ]
}

# tb_starttime PID: the process start time (clock ticks since boot), field 22 of /proc/PID/stat.
tb_starttime() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{print $20}'; }

# tb_wait_port PORT SECONDS: wait until something listens on 127.0.0.1:PORT.
tb_wait_http() {
  local url=$1 secs=$2 i
  for ((i = 0; i < secs * 10; i++)); do
    if curl -s -o /dev/null --max-time 2 "$url"; then return 0; fi
    sleep 0.1
  done
  return 1
}

# Ceph (testbed/rgw): mon (msgr2, msgr1), the OSD's port range, radosgw.
TB_CEPH_MON_PORT=${K5UP_TB_CEPH_MON_PORT:-17300}
TB_CEPH_MON1_PORT=${K5UP_TB_CEPH_MON1_PORT:-17301}
TB_CEPH_OSD_PORT_MIN=${K5UP_TB_CEPH_OSD_PORT_MIN:-17310}
TB_CEPH_OSD_PORT_MAX=${K5UP_TB_CEPH_OSD_PORT_MAX:-17399}
TB_RGW_PORT=${K5UP_TB_RGW_PORT:-17480}
