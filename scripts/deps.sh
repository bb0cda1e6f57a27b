#!/usr/bin/env bash
# Installs kvsim's build and test dependencies from Debian 12's packages.
# Idempotent; needs root (or sudo).  Used by scripts/setup.sh and .ci/run.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config git
  libhdf5-dev hdf5-tools libsqlite3-dev sqlite3 libgsl-dev libcunit1-dev
  libopenblas-dev libconfig-dev gnuplot-nox
  python3 python3-h5py python3-numpy python3-torch python3-simpy
)
[ "${KVSIM_WITH_MPI:-0}" = 1 ] && PKGS+=(mpich libmpich-dev)
[ "${KVSIM_WITH_FUZZ:-0}" = 1 ] && PKGS+=(clang libclang-rt-14-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO=sudo
echo "deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
