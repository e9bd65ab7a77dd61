#!/bin/bash
# install_build_deps.sh SETUP_SH [EXTRA_PACKAGE...]: apt-get installs, in a Docker
# build stage, the packages listed in the PKGS=( ... ) array of tools/setup.sh (so the
# image builds with exactly what developers build with) plus the extras, then empties
# apt's caches. Only the array is read; nothing else of setup.sh runs.
set -euo pipefail
setup_sh="$1"
shift
PKGS=()
eval "$(sed -n '/^PKGS=(/,/^)/p' "$setup_sh")"
if [ "${#PKGS[@]}" -eq 0 ]; then
  echo "install_build_deps.sh: no PKGS=( ... ) array found in $setup_sh" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${PKGS[@]}" "$@"
rm -rf /var/lib/apt/lists/*
