#!/usr/bin/env bash
# device-slim.sh - keep the shipped models a GPU run does not need out of the working tree
# that the rented GPU machine receives (limited to 64 MiB: tracked files + untracked files
# git does not ignore + carried paths; models/ alone holds ~110 MB).
#   bash scripts/device-slim.sh on [KEEP...]   untrack (index only: files stay on disk) and
#                                              ignore (.git/info/exclude) every models/*.safetensors
#                                              except KEEP... (default: models/g2p-teacher.safetensors)
#   bash scripts/device-slim.sh off            undo: restore the index from HEAD, drop the excludes
# Never commit while it is on (the commit would delete the models). `status` shows it.
set -euo pipefail
cd "$(dirname "$0")/.."
ex=.git/info/exclude
mark="# device-slim.sh"
case "${1:-}" in
on)
    shift
    keep=" ${*:-models/g2p-teacher.safetensors} "
    grep -q "^$mark" "$ex" 2>/dev/null && { echo "device-slim: already on" >&2; exit 1; }
    echo "$mark begin" >> "$ex"
    for m in models/*.safetensors; do
        case "$keep" in *" $m "*) continue ;; esac
        if git ls-files --error-unmatch "$m" >/dev/null 2>&1; then git rm -q --cached "$m"; fi
        echo "/$m" >> "$ex"
    done
    echo "$mark end" >> "$ex"
    echo "device-slim: on; the device tree now holds: $(git ls-files models | tr '\n' ' ')" >&2
    ;;
off)
    sed -i "/^$mark begin\$/,/^$mark end\$/d" "$ex"
    git reset -q -- models
    echo "device-slim: off" >&2
    ;;
status)
    if grep -q "$mark" "$ex" 2>/dev/null; then echo on; else echo off; fi
    ;;
*) sed -n 2,10p "$0"; exit 2 ;;
esac
