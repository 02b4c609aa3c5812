#!/usr/bin/env bash
# install-deps.sh - install the Debian packages s2s needs (build, tests, data, reference tools).
# Usage: scripts/install-deps.sh [build|test|data|torch|peers|bench|all]   (default: build)
# bench: gnuplot (the plots of bench/methods.sh and bench/report.sh, make bench).
# Idempotent: only missing packages are installed. Needs root (or sudo) on Debian.
# peers: python3-venv, then a virtual environment .venv-peers/ (gitignored) with the PyPI
# packages of the peer comparison (bench/peers/: ctranslate2, numpy).
set -euo pipefail
what=${1:-build}
build_pkgs="build-essential libopenblas-openmp-dev pkg-config"
test_pkgs="$build_pkgs libcriterion-dev"
data_pkgs="python3-minimal festlex-cmu diatheke sword-text-kjv sword-text-sparv"
torch_pkgs="$build_pkgs python3-torch python3-numpy"
peers_pkgs="$build_pkgs python3-venv"
peers_pip="ctranslate2 numpy"
bench_pkgs="$build_pkgs gnuplot-nox"
case "$what" in
  build) pkgs="$build_pkgs" ;;
  test)  pkgs="$test_pkgs" ;;
  data)  pkgs="$data_pkgs" ;;
  torch) pkgs="$torch_pkgs" ;;
  peers) pkgs="$peers_pkgs" ;;
  bench) pkgs="$bench_pkgs" ;;
  all)   pkgs="$test_pkgs $data_pkgs $torch_pkgs" ;;
  *) echo "install-deps.sh: unknown set '$what' (build|test|data|torch|peers|bench|all)" >&2; exit 2 ;;
esac
# peers: the venv (after the Debian packages), idempotent like the rest
peers_venv() {
  [ "$what" = peers ] || return 0
  local venv=.venv-peers py=/usr/bin/python3
  cd "$(dirname "$0")/.."
  [ -x "$py" ] || py=$(command -v python3)
  if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import ctranslate2, numpy" 2>/dev/null; then
    return 0
  fi
  echo "install-deps: creating $PWD/$venv with: $peers_pip" >&2
  "$py" -m venv "$venv" || { echo "install-deps: could not create $venv (python3 -m venv failed)" >&2; exit 1; }
  if ! "$venv/bin/python" -m pip install -q --disable-pip-version-check $peers_pip; then
    echo "install-deps: pip could not install: $peers_pip (into $venv)" >&2; exit 1
  fi
}
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && { peers_venv; exit 0; }
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
peers_venv
