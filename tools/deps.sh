#!/bin/sh
# tools/deps.sh - install the Debian packages a build needs, only those
# missing. Usage: tools/deps.sh [build|demo|bench|all]   (default: build)
set -eu
what=${1:-build}
pkgs="build-essential cmake pkg-config check openmpi-bin libopenmpi-dev"
case "$what" in
  build) ;;
  demo) pkgs="$pkgs libcurl4-openssl-dev libmicrohttpd-dev" ;;
  bench) pkgs="$pkgs libglib2.0-dev libtbb-dev python3 parallel python3-mpi4py" ;; # OpenMP: gcc's own libgomp
  all) pkgs="$pkgs libcurl4-openssl-dev libmicrohttpd-dev libglib2.0-dev libtbb-dev python3" ;;
  *) echo "usage: $0 [build|demo|bench|all]" >&2; exit 2 ;;
esac
[ "$what" = all ] && pkgs="$pkgs clang"

missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "installing:$missing"
if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# shellcheck disable=SC2086
$sudo apt-get install -y -qq --no-install-recommends $missing
