#!/bin/sh
# runtime_packages.sh BINARY...: prints, one per line and sorted, the Debian packages
# that own the shared libraries the binaries load: what a runtime image must install
# to run them, derived from the build instead of kept by hand. NVIDIA's packages
# (cuda-*, libcublas*, libnccl*) are printed as name=version, so that the runtime
# gets exactly the CUDA and NCCL the binaries were linked against; Debian's are left
# unpinned (their ABI is stable within a release and security updates must apply).
# The GPU driver's own libraries (libcuda, libnvidia-*) are skipped: the NVIDIA
# container runtime mounts the host's. Fails, naming it, on a library that is not
# found or that no package owns.
set -eu
[ "$#" -ge 1 ] || { echo "usage: runtime_packages.sh BINARY..." >&2; exit 2; }

is_driver_lib() {
  case "$(basename "$1")" in
    libcuda.so* | libnvidia-*) return 0 ;;
  esac
  return 1
}

# owner PATH: the package that installed PATH (trying its real path and both sides of
# Debian's merged /usr, since ldd may print either).
owner() {
  real="$(readlink -f "$1")"
  for p in "$1" "$real" "/usr$1" "/usr$real" "${1#/usr}" "${real#/usr}"; do
    if out="$(dpkg-query -S "$p" 2>/dev/null)"; then
      # "pkg:arch: /path" or "pkg1, pkg2: /path": keep the first package, drop :arch.
      echo "$out" | head -n 1 | cut -d: -f1 | cut -d, -f1
      return 0
    fi
  done
  return 1
}

deps="$(ldd "$@")"
status=0
for lib in $(echo "$deps" | awk '$2 == "=>" && $3 == "not" { print $1 }' | sort -u); do
  is_driver_lib "$lib" && continue
  echo "runtime_packages.sh: $lib is not found (ldd $*)" >&2
  status=1
done

packages=""
for lib in $(echo "$deps" | awk '$2 == "=>" && $3 ~ /^\// { print $3 }' | sort -u); do
  is_driver_lib "$lib" && continue
  if ! pkg="$(owner "$lib")"; then
    echo "runtime_packages.sh: no package owns $lib" >&2
    status=1
    continue
  fi
  case "$pkg" in
    cuda-* | libcublas* | libnccl*) pkg="$pkg=$(dpkg-query -W -f='${Version}' "$pkg")" ;;
  esac
  packages="$packages $pkg"
done
[ "$status" -eq 0 ] || exit "$status"
# Word splitting is wanted: one package per line.
# shellcheck disable=SC2086
printf "%s\n" $packages | sort -u
