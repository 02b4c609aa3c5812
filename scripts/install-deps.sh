#!/usr/bin/env bash
# install-deps.sh - install the Debian packages s2s needs (build, tests, data, reference tools).
# Usage: scripts/install-deps.sh [build|test|data|torch|all]   (default: build)
# Idempotent: only missing packages are installed. Needs root (or sudo) on Debian.
set -euo pipefail
what=${1:-build}
build_pkgs="build-essential libopenblas-openmp-dev pkg-config"
test_pkgs="$build_pkgs libcriterion-dev"
data_pkgs="python3-minimal festlex-cmu diatheke sword-text-kjv sword-text-sparv"
torch_pkgs="$build_pkgs python3-torch python3-numpy"
case "$what" in
  build) pkgs="$build_pkgs" ;;
  test)  pkgs="$test_pkgs" ;;
  data)  pkgs="$data_pkgs" ;;
  torch) pkgs="$torch_pkgs" ;;
  all)   pkgs="$test_pkgs $data_pkgs $torch_pkgs" ;;
  *) echo "install-deps.sh: unknown set '$what' (build|test|data|torch|all)" >&2; exit 2 ;;
esac
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing" >&2
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
if ! command -v apt-get >/dev/null; then
  echo "install-deps: apt-get not found; install these packages by hand:$missing" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null || true
if ! $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null; then
  echo "install-deps: could not install:$missing (apt-get failed)" >&2; exit 1
fi
