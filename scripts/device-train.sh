#!/usr/bin/env bash
# device-train.sh - run `s2s train` on a rented many-core machine for a fixed time
# (SIGTERM at the end makes the trainer save last.safetensors), then put the
# checkpoints, split into 15 MB parts, under $OUT. Used to train the shipped
# models (docs/RESULTS.md says which run made which model).
# usage: scripts/device-train.sh SECONDS OUT_NAME [s2s train options...]
set -u
secs=$1; name=$2; shift 2
export LD_LIBRARY_PATH=$PWD/build-dev/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
nproc; grep -m1 'model name' /proc/cpuinfo
mkdir -p runs
timeout -s TERM "$secs" build-dev/s2s train -o "runs/$name" "$@" 2>&1 | tail -n 40
ls -la "runs/$name"
for f in best last; do
  [ -f "runs/$name/$f.safetensors" ] && split -b 15M -d "runs/$name/$f.safetensors" "$OUT/$name.$f.part"
done
cp "runs/$name/train.log" "$OUT/$name.train.log"
