#!/usr/bin/env bash
# prepare-data.sh - build data/ (Bible EN->ES, CMUdict G2P) from Debian packages. See docs/DATA.md.
# Usage: scripts/prepare-data.sh [--out DIR] [--force] [bible] [g2p]
#   --out DIR  output directory (default: data/ in the repository)
#   --force    rebuild even when the outputs are newer than their inputs
#   bible|g2p  build only these tasks (default: both)
# Installs missing packages with scripts/install-deps.sh data (needs root or sudo), then runs
# /usr/bin/python3 scripts/prepare_data.py (standard library only). Idempotent and deterministic.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
pkgs="festlex-cmu diatheke sword-text-kjv sword-text-sparv"

for a in "$@"; do
  case "$a" in
    -h|--help) sed -n '2,8s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
  esac
done

missing() {
  local p m=""
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || m="$m $p"
  done
  echo "${m# }"
}

if ! command -v dpkg-query >/dev/null; then
  echo "prepare-data: dpkg-query not found: this script needs Debian (packages:$pkgs)" >&2; exit 1
fi
m=$(missing)
if [ -n "$m" ]; then
  echo "prepare-data: installing missing Debian packages: $m"
  bash "$here/install-deps.sh" data >&2 || true
  m=$(missing)
  if [ -n "$m" ]; then
    echo "prepare-data: error: missing Debian package(s) $m and could not install them (run as root: apt-get install $m)" >&2
    exit 1
  fi
fi
if [ ! -x /usr/bin/python3 ]; then
  echo "prepare-data: error: /usr/bin/python3 not found (run as root: apt-get install python3-minimal)" >&2
  exit 1
fi

start=$(date +%s)
/usr/bin/python3 "$here/prepare_data.py" "$@"
echo "prepare-data: done in $(( $(date +%s) - start ))s"
