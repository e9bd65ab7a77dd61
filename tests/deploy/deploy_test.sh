#!/usr/bin/env bash
# deploy_test: offline checks of the Kubernetes deployment (deploy/k8s).
#
#  1. Renders deploy/k8s/base and every deploy/k8s/overlays/* with `kubectl kustomize`
#     (plus any kustomization folders given as arguments, e.g. your own overlay).
#  2. Validates every rendered object against the Kubernetes schemas
#     (tests/deploy/validator, npm package kubernetes-models; ServiceMonitor against a
#     small schema of its own) and rejects unknown fields.
#  3. Checks the invariants: probes, limits and non-root for every container, worker
#     replicas a multiple of the group size, every --flag in the binary's --helpfull,
#     container ports equal to the flags' ports, --workers / --memory_store listing
#     exactly the StatefulSets' pods (validator/validate.js has the full list), and
#     that each invariant check catches a deliberate break (self-check).
#
# Under Bazel (//tests/deploy:deploy_test) the binaries come from runfiles and their
# flags from `--helpfull`. Run directly, it takes each binary's --helpfull from
# bazel-bin when that binary is built, and otherwise reads the ABSL_FLAG definitions
# of its sources; LONGCTX_DEPLOY_FLAGS_FROM=help|source forces one way for all. Needs kubectl (with kustomize),
# node, and tests/deploy/validator/node_modules (tools/setup_deploy_tests.sh).
#
# Usage: tests/deploy/deploy_test.sh [KUSTOMIZATION_DIR...]
set -euo pipefail
started=$(date +%s)

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# --- where things are -----------------------------------------------------------
if [[ -n "${TEST_SRCDIR:-}" ]]; then
  root="$TEST_SRCDIR/${TEST_WORKSPACE:-longctx}"
  bin_dir="$root"
  mode=help
else
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  bin_dir="$root/bazel-bin"
  mode="${LONGCTX_DEPLOY_FLAGS_FROM:-auto}"
fi
declare -A binary=(
  [gateway]="$bin_dir/services/gateway/gateway"
  [worker]="$bin_dir/services/worker/worker"
  [memory_store]="$bin_dir/memory_store/memory_store"
  [make_tiny_model]="$bin_dir/tools/make_tiny_model/make_tiny_model"
)
declare -A source_dir=(
  [gateway]="$root/services/gateway"
  [worker]="$root/services/worker"
  [memory_store]="$root/memory_store"
  [make_tiny_model]="$root/tools/make_tiny_model"
)
# Flags a binary links from services/common (its BUILD deps), beyond its own folder.
declare -A common_flag_sources=(
  [gateway]="server_tls_flags.cc internal_tls_flags.cc"
  [worker]="server_tls_flags.cc internal_tls_flags.cc"
  [memory_store]="server_tls_flags.cc"
  [make_tiny_model]=""
)
[[ -f "$root/tests/deploy/validator/validate.js" ]] || fail "tests/deploy/validator/validate.js not found under $root"
# node_modules sit beside the real validate.js (runfiles only hold symlinks to it).
validator_dir="$(dirname "$(readlink -f "$root/tests/deploy/validator/validate.js")")"

# --- prerequisites: fail with what to do --------------------------------------------
command -v kubectl >/dev/null ||
  fail "kubectl not found on PATH; install kubectl >= 1.27 (it carries kustomize)"
kubectl kustomize --help >/dev/null 2>&1 ||
  fail "'kubectl kustomize' does not work with $(command -v kubectl); need kubectl >= 1.27"
command -v node >/dev/null || fail "node not found on PATH; install nodejs (>= 18)"
# shellcheck disable=SC2016  # JavaScript, not shell.
node -e '
  const dir = process.argv[1];
  const want = require(dir + "/package.json").dependencies;
  for (const [name, version] of Object.entries(want)) {
    let got;
    try { got = require(dir + "/node_modules/" + name + "/package.json").version; } catch (e) {}
    if (got !== version) {
      console.error(`${name} ${got ? got + " is installed, " + version + " is pinned" : "is missing"}`);
      process.exit(1);
    }
  }' "$validator_dir" ||
  fail "node modules missing or stale in $validator_dir/node_modules; run tools/setup_deploy_tests.sh"

# --- flags of the binaries -------------------------------------------------------------
work="$(mktemp -d "${TEST_TMPDIR:-${TMPDIR:-/tmp}}/deploy_test.XXXXXX")"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/flags" "$work/render"

[[ "$mode" == auto || "$mode" == help || "$mode" == source ]] ||
  fail "LONGCTX_DEPLOY_FLAGS_FROM must be help or source, not $mode"

flag_args=()
for b in gateway worker memory_store make_tiny_model; do
  out="$work/flags/$b.txt"
  if [[ "$mode" == help || ( "$mode" == auto && -x "${binary[$b]}" ) ]]; then
    [[ -x "${binary[$b]}" ]] ||
      fail "${binary[$b]} not found; build it (bazel build //services/gateway //services/worker //memory_store //tools/make_tiny_model) or run under bazel test"
    # --helpfull lists every flag, absl's own too, and exits 1: what counts is the
    # listing.
    rc=0
    "${binary[$b]}" --helpfull >"$out" 2>&1 || rc=$?
    if ! grep -q "^  Flags from " "$out"; then
      (( rc > 128 )) && echo "${binary[$b]} --helpfull was killed by signal $((rc - 128))" >&2
      fail "${binary[$b]#"$root"/} --helpfull (exit code $rc) printed no flags: $(head -c 300 "$out")"
    fi
    flag_args+=("--flags=$b=help:$out")
    echo "flags of $b: ${binary[$b]#"$root"/} --helpfull ($(grep -c '^ *--' "$out") flags)"
  else
    shopt -s nullglob
    sources=()
    for f in "${source_dir[$b]}"/*.cc; do
      [[ "$f" == *_test.cc ]] || sources+=("$f")
    done
    for f in ${common_flag_sources[$b]}; do
      sources+=("$root/services/common/$f")
    done
    shopt -u nullglob
    [[ "${#sources[@]}" -gt 0 ]] || fail "no binary and no sources for $b in ${source_dir[$b]}"
    cat "${sources[@]}" >"$out"
    flag_args+=("--flags=$b=source:$out")
    echo "flags of $b: ABSL_FLAG definitions in ${source_dir[$b]#"$root"/}/*.cc (binary not used)"
  fi
done

# --- render ---------------------------------------------------------------------------
# A copy without symlinks: kustomize refuses files whose real path leaves the
# kustomization root, which is what Bazel's runfiles symlinks look like.
cp -rL "$root/deploy/k8s" "$work/k8s"
# The base includes the Grafana dashboard's kustomization (../../grafana).
cp -rL "$root/deploy/grafana" "$work/grafana"
for copy in "$work"/k8s/overlays/*/replicas.yaml; do
  cmp -s "$copy" "$work/k8s/base/replicas.yaml" ||
    fail "${copy#"$work"/k8s/} differs from base/replicas.yaml; keep the copies identical"
done

renders=()
render() {  # name, kustomization folder
  local name="$1" dir="$2"
  if ! kubectl kustomize "$dir" >"$work/render/$name.yaml" 2>"$work/render/$name.err"; then
    cat "$work/render/$name.err" >&2
    fail "kubectl kustomize $dir failed"
  fi
  renders+=("$name=$work/render/$name.yaml")
  echo "rendered $name: $(grep -c '^kind:' "$work/render/$name.yaml") objects"
}
render base "$work/k8s/base"
for dir in "$work"/k8s/overlays/*/; do
  [[ -f "$dir/kustomization.yaml" ]] && render "$(basename "$dir")" "$dir"
done
for dir in "$@"; do
  render "arg-$(basename "$dir")" "$(cd "$dir" && pwd)"
done

# --- validate ---------------------------------------------------------------------------
status=0
node "$validator_dir/validate.js" \
  --entrypoint="$(readlink -f "$root/deploy/docker/longctx-entrypoint.sh")" \
  "${flag_args[@]}" --self-check "${renders[@]}" || status=$?

echo "deploy_test took $(($(date +%s) - started))s"
if [[ "$status" -ne 0 ]]; then
  echo "FAIL: deployment checks failed (see the FAIL lines above)"
  exit 1
fi
echo "PASS"
