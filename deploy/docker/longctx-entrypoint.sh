#!/bin/sh
# longctx-entrypoint: starts one longctx binary inside a container, adding the flags
# that depend on where the pod sits in the cluster, then exec's it (the binary is
# PID 1 and receives SIGTERM itself).
#
# Usage: longctx-entrypoint BINARY [FLAG...]
#   BINARY is gateway, worker, memory_store, make_tiny_model or gpu_selftest, found in
#   $LONGCTX_BIN_DIR (default /usr/local/bin). FLAGs are passed on after the derived
#   ones, so a flag given explicitly wins over a derived one (the last value counts).
#
# Derived flags, each only when its variables are set (deploy/k8s sets them from the
# longctx-config ConfigMap and the downward API):
#   worker:  --rendezvous_address, --gloo_hostname  (groups of more than one rank)
#            from LONGCTX_RENDEZVOUS_ADDRESS (default longctx-rendezvous:50053) and
#            LONGCTX_POD_IP (default: hostname -i);
#   worker:  --group_size, --rank, --group_id  from LONGCTX_GROUP_SIZE and the pod's
#            StatefulSet ordinal (the number after the last '-' of LONGCTX_POD_NAME,
#            else of the host name): ordinal o is rank o % G of group-(o / G).
#   gateway: --group_size and --workers  from LONGCTX_GROUP_SIZE and
#            LONGCTX_WORKER_{REPLICAS,STATEFULSET,SERVICE,PORT}: every rank's stable
#            DNS name, ordinal 0 first, which is "group after group".
#   gateway, worker: --memory_store  from LONGCTX_MEMORY_STORE_{REPLICAS,STATEFULSET,
#            SERVICE,PORT} (no flag when REPLICAS is 0).
# Names are <statefulset>-<i>.<service>, plus .<LONGCTX_NAMESPACE>.svc.<cluster domain>
# when LONGCTX_NAMESPACE is set (LONGCTX_CLUSTER_DOMAIN, default cluster.local).
#
# LONGCTX_ENTRYPOINT_DRY_RUN=1 prints the final command line, one word per line, and
# exits 0 instead of starting anything (tests/deploy uses it).
set -eu

die() {
  echo "longctx-entrypoint: $*" >&2
  exit 2
}

# number NAME VALUE: VALUE must be a non-negative decimal integer.
number() {
  case "$2" in
    '' | *[!0-9]*) die "$1='$2' must be a non-negative integer" ;;
  esac
}

# ordinal: this pod's StatefulSet ordinal.
ordinal() {
  name="${LONGCTX_POD_NAME:-$(hostname)}"
  o="${name##*-}"
  case "$o" in
    '' | *[!0-9]*) die "cannot read a StatefulSet ordinal from pod name '$name'" ;;
  esac
  echo "$o"
}

# addresses PREFIX REPLICAS STATEFULSET SERVICE PORT: comma-separated host:port of
# every pod of a StatefulSet behind its headless Service.
addresses() {
  number "$1_REPLICAS" "$2"
  [ -n "$3" ] || die "$1_STATEFULSET is not set"
  [ -n "$4" ] || die "$1_SERVICE is not set"
  number "$1_PORT" "$5"
  suffix=""
  if [ -n "${LONGCTX_NAMESPACE:-}" ]; then
    suffix=".${LONGCTX_NAMESPACE}.svc.${LONGCTX_CLUSTER_DOMAIN:-cluster.local}"
  fi
  i=0
  list=""
  while [ "$i" -lt "$2" ]; do
    list="${list:+$list,}$3-$i.$4$suffix:$5"
    i=$((i + 1))
  done
  echo "$list"
}

[ "$#" -ge 1 ] || die "usage: longctx-entrypoint BINARY [FLAG...]"
binary="$1"
shift
case "$binary" in
  gateway | worker | memory_store | make_tiny_model | gpu_selftest) ;;
  *) die "unknown binary '$binary' (gateway, worker, memory_store, make_tiny_model, gpu_selftest)" ;;
esac

group_size="${LONGCTX_GROUP_SIZE:-}"
if [ -n "$group_size" ]; then
  number LONGCTX_GROUP_SIZE "$group_size"
  [ "$group_size" -ge 1 ] || die "LONGCTX_GROUP_SIZE must be >= 1"
fi

# Derived flags are put in front of the given ones with `set --`, last one first.
if [ "$binary" = gateway ] || [ "$binary" = worker ]; then
  stores="${LONGCTX_MEMORY_STORE_REPLICAS:-}"
  if [ -n "$stores" ] && [ "$stores" != 0 ]; then
    # An assignment, not an argument, so that a failure stops the script (set -e).
    list="$(addresses LONGCTX_MEMORY_STORE "$stores" \
      "${LONGCTX_MEMORY_STORE_STATEFULSET:-}" "${LONGCTX_MEMORY_STORE_SERVICE:-}" \
      "${LONGCTX_MEMORY_STORE_PORT:-}")"
    set -- "--memory_store=$list" "$@"
  fi
fi

if [ "$binary" = worker ] && [ -n "$group_size" ]; then
  o="$(ordinal)"
  set -- "--group_size=$group_size" "--rank=$((o % group_size))" \
    "--group_id=group-$((o / group_size))" "$@"
  if [ "$group_size" -gt 1 ]; then
    # The ranks meet at the gateway's rendezvous service and reach each other at
    # the pod IP (Gloo's TCP listener binds to it).
    set -- "--rendezvous_address=${LONGCTX_RENDEZVOUS_ADDRESS:-longctx-rendezvous:50053}" \
      "--gloo_hostname=${LONGCTX_POD_IP:-$(hostname -i | cut -d' ' -f1)}" "$@"
  fi
fi

if [ "$binary" = gateway ] && [ -n "${LONGCTX_WORKER_REPLICAS:-}" ]; then
  replicas="$LONGCTX_WORKER_REPLICAS"
  number LONGCTX_WORKER_REPLICAS "$replicas"
  g="${group_size:-1}"
  if [ "$replicas" -lt 1 ] || [ $((replicas % g)) -ne 0 ]; then
    die "LONGCTX_WORKER_REPLICAS=$replicas must be a positive multiple of the group size $g"
  fi
  list="$(addresses LONGCTX_WORKER "$replicas" \
    "${LONGCTX_WORKER_STATEFULSET:-}" "${LONGCTX_WORKER_SERVICE:-}" \
    "${LONGCTX_WORKER_PORT:-}")"
  set -- "--workers=$list" "--group_size=$g" "$@"
fi

path="${LONGCTX_BIN_DIR:-/usr/local/bin}/$binary"
if [ "${LONGCTX_ENTRYPOINT_DRY_RUN:-}" = 1 ]; then
  printf '%s\n' "$path" "$@"
  exit 0
fi
exec "$path" "$@"
