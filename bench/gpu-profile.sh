#!/usr/bin/env bash
# bench/gpu-profile.sh - where the GPU training step spends its time (issue 4): the
# training cells of bench/gpu.sh (random D=256 6+6 model with an 8k vocabulary, the
# first 20,000 G2P training pairs, token-count batches) run with the graph's op
# profiler (S2S_PROFILE=1: forward / backward seconds per op kind, GPU-synchronised),
# once per TPBS value, strict fp32 unless TF32=1. The profiler synchronises after every
# op, so its total is above the unprofiled step time; the shares are what it is for.
#   BIN=build-dev/bin/bench_s2s bash bench/gpu-profile.sh [OUTFILE]
# Env: TPBS ("4096 16384"), STEPS (10), TWARM (2), W (work dir, build/bench-gpu).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-build/bench_s2s}
W=${W:-build/bench-gpu}
OUTF=${1:-/dev/stdout}
TPBS=${TPBS:-4096 16384}; STEPS=${STEPS:-10}; TWARM=${TWARM:-2}
[ -d /tmp/s2s-lib ] && export LD_LIBRARY_PATH=/tmp/s2s-lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
mkdir -p "$W"
M=$W/random-8k-fp16.safetensors
[ -f "$M" ] || "$BIN" --make-model "$M" --vocab 8000 --corpus-src data/g2p/train.src --corpus-tgt data/g2p/train.tgt
"$BIN" -m "$M" --dump-ids data/g2p/train.src --side src --limit 20000 > "$W/train.src.ids"
"$BIN" -m "$M" --dump-ids data/g2p/train.tgt --side tgt --limit 20000 > "$W/train.tgt.ids"
{
    for tpb in $TPBS; do
        for prof in 0 1; do
            echo "== tokens_per_batch $tpb, S2S_PROFILE=$prof, tf32 ${TF32:-0}"
            S2S_PROFILE=$prof "$BIN" -m "$M" --device cuda --threads 1 --train-src "$W/train.src.ids" \
                --train-tgt "$W/train.tgt.ids" --tokens-per-batch "$tpb" --train-steps "$STEPS" \
                --train-warmup "$TWARM" $([ "${TF32:-0}" = 1 ] && echo --tf32) 2>&1
        done
    done
} > "$OUTF"
