#!/usr/bin/env bash
# device-gpu.sh - run s2s on a rented GPU machine that has the CUDA driver and
# toolkit but none of our Debian libraries. Binaries are built here by
# scripts/make-device-bundle.sh and travel in build-dev/bin/ with
# build-dev/bundle.tar.xz (OpenBLAS, libgomp, Criterion and their libraries) and
# build-dev/data.tar.xz (the prepared data sets, unpacked and linked as data/).
# docs/RESULTS.md says which run made which model.
#
#   bash scripts/device-gpu.sh test [FILTER]          run build-dev/bin/s2s_tests (CUDA suites by default)
#   bash scripts/device-gpu.sh start NAME SECS ARGS   start `s2s train --device cuda -o runs/NAME ARGS`
#                                                     in the background for at most SECS (SIGTERM
#                                                     then: the trainer saves last.safetensors)
#   GPU=i ...start ...                                on GPU i of several (CUDA_VISIBLE_DEVICES)
#   CMD=prune ...start ...                            another s2s subcommand (`s2s prune ... -o runs/NAME`)
#   bash scripts/device-gpu.sh wait SECS NAME...      print progress every 60 s for SECS
#   bash scripts/device-gpu.sh stop NAME...           SIGTERM the runs and wait for their saves
#   bash scripts/device-gpu.sh progress SECS NAME...  every 60 s, each run's last line and the GPUs, until
#                                                     no s2s train/prune runs any more or SECS pass
#   bash scripts/device-gpu.sh stopall                SIGTERM every s2s train/prune and wait (90 s at most)
#   bash scripts/device-gpu.sh collect NAME...        checkpoints (split into 15 MB parts) + logs -> $OUT
# Every subcommand first unpacks the libraries (once per machine).
set -u
cd "$(dirname "$0")/.."
L=/tmp/s2s-lib
if [ ! -f $L/.done ]; then
    mkdir -p $L && tar xJf build-dev/bundle.tar.xz -C $L && touch $L/.done
fi
export LD_LIBRARY_PATH=$L:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
if [ -f build-dev/data.tar.xz ] && [ ! -f /tmp/s2s-data/.done ]; then
    mkdir -p /tmp/s2s-data && tar xJf build-dev/data.tar.xz -C /tmp/s2s-data && touch /tmp/s2s-data/.done
fi
[ -e data ] || ln -s /tmp/s2s-data/data data
BIN=build-dev/bin
cmd=${1:-}; shift || true
case "$cmd" in
test)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    S2S_BIN=$BIN/s2s $BIN/s2s_tests --filter="${1:-cuda*/*}" --verbose=0 -j1 2>&1
    ;;
start)
    name=$1; secs=$2; shift 2
    mkdir -p runs/$name
    CUDA_VISIBLE_DEVICES=${GPU:-0} setsid timeout -s TERM "$secs" $BIN/s2s ${CMD:-train} --device cuda \
        -o runs/$name "$@" > runs/$name/stderr.log 2>&1 < /dev/null &
    echo "started $name (pid $!) on GPU ${GPU:-0} for at most $secs s"
    ;;
wait)
    secs=$1; shift
    end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ]; do
        sleep $(( end - SECONDS < 60 ? end - SECONDS : 60 ))
        for n in "$@"; do echo "== $n: $(grep -v '^eval' runs/$n/stderr.log | tail -n 1)"; grep '^eval' runs/$n/stderr.log | tail -n 1; done
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader
    done
    ;;
stop)
    for n in "$@"; do pkill -TERM -f "runs/$n( |$)" ; done
    for i in $(seq 60); do pgrep -f "bin/s2s (train|prune)" >/dev/null || break; sleep 1; done
    for n in "$@"; do tail -n 3 runs/$n/stderr.log; done
    ;;
progress)
    secs=$1; shift
    end=$((SECONDS + secs))
    while [ $SECONDS -lt $end ] && pgrep -f "bin/s2s (train|prune)" >/dev/null; do
        sleep $(( end - SECONDS < 60 ? end - SECONDS : 60 ))
        for n in "$@"; do echo "$n: $(grep -v '^eval' runs/$n/stderr.log 2>/dev/null | tail -n 1 | cut -c1-150)"; done
        nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader | tr '\n' ' '; echo
    done
    ;;
stopall)
    pkill -TERM -f "bin/s2s (train|prune)"
    for i in $(seq 90); do pgrep -f "bin/s2s (train|prune)" >/dev/null || break; sleep 1; done
    ;;
collect)
    for n in "$@"; do
        for f in best last; do
            [ -f runs/$n/$f.safetensors ] && split -b 15M -d runs/$n/$f.safetensors "$OUT/$n.$f.part"
        done
        cp runs/$n/train.log "$OUT/$n.train.log"; cp runs/$n/stderr.log "$OUT/$n.stderr.log"
    done
    ls -la "$OUT"
    ;;
*) sed -n 2,23p "$0"; exit 2 ;;
esac
