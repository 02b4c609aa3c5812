#!/usr/bin/env bash
# methods-bible-gpu.sh - T2R and DEED on the Bible EN->ES teacher (the second task of
# issues 6 and 7), on a GPU machine through scripts/device-gpu.sh: both fine-tunings at
# once on GPU 0 for at most SECS, then test BLEU / chrF2 on the machine's CPUs, written to
# runs/bible-methods/quality.txt. The teacher is not in models/ (26.5 MB > 25 MB): carry it.
#   bash scripts/methods-bible-gpu.sh TEACHER SECS
# Needs data/bible (carry build-dev/bible.tar.xz: `tar cJf build-dev/bible.tar.xz data/bible/*.{src,tgt}`).
# Steps: 8k-token batches; the teacher's best checkpoint was step 10,000 (docs/RESULTS.md):
#   t2r  : --dec-attn t2r --t2r-k 32, 2,500 steps (25 %), lr 4e-4, warmup 300
#   deed : --multi-exit --exit-rank 64, 2,500 steps, lr 3e-4, warmup 300
set -u
cd "$(dirname "$0")/.."
T=$1 SECS=$2
D="bash scripts/device-gpu.sh"
BIN=build-dev/bin
R=runs/bible-methods
$D help >/dev/null 2>&1                      # libraries and G2P data (if carried)
if [ ! -f data/bible/train.src ]; then
    mkdir -p /tmp/s2s-bible && tar xJf build-dev/bible.tar.xz -C /tmp/s2s-bible
    [ -d data ] || { rm -f data; mkdir data; }
    rm -rf data/bible; ln -s /tmp/s2s-bible/data/bible data/bible
fi
mkdir -p $R
C=(--config configs/bible-teacher.conf --init "$T" --threads 4 --eval-every 500 --eval-max 200 --patience 0
   --lr 4e-4 --warmup 300 --max-steps 2500)
GPU=0 $D start bible-t2r "$SECS" "${C[@]}" --dec-attn t2r --t2r-k 32
GPU=0 $D start bible-deed "$SECS" "${C[@]}" --multi-exit --exit-rank 64 --lr 3e-4
sleep 5
end=$((SECONDS + SECS + 30))
while [ $SECONDS -lt $end ] && pgrep -f "bin/s2s train" >/dev/null; do sleep 10; done
pkill -TERM -f "bin/s2s train"; sleep 3
for j in bible-t2r bible-deed; do grep -E "^eval|done|interrupted" runs/$j/stderr.log | tail -n 4 >&2; done
ev() { # NAME MODEL flags...: BLEU and chrF2 of the test set
    local n=$1 m=$2; shift 2
    $BIN/s2s translate -m "$m" --threads 1 --quiet "$@" < data/bible/test.src > $R/$n.hyp 2> $R/$n.err
    echo "$n $($BIN/s2s score --metric bleu --ref data/bible/test.tgt --hyp $R/$n.hyp | cut -c1-60) |" \
         "$($BIN/s2s score --metric chrf --ref data/bible/test.tgt --hyp $R/$n.hyp | cut -c1-40) | $(tail -n 1 $R/$n.err)"
}
export -f ev; export BIN R
{
    echo "ev teacher@greedy $T --beam 1"
    for j in bible-t2r bible-deed; do
        [ -f runs/$j/best.safetensors ] || continue
        echo "ev $j@greedy runs/$j/best.safetensors --beam 1"; echo "ev $j@beam5 runs/$j/best.safetensors --beam 5"
    done
    if [ -f runs/bible-deed/best.safetensors ]; then
        for t in 0.6 0.7 0.8 0.9 0.95; do
            echo "ev bible-deed-jit-$t@greedy runs/bible-deed/best.safetensors --beam 1 --exit-threshold $t"
        done
        echo "ev bible-deed-copy-0.8@greedy runs/bible-deed/best.safetensors --beam 1 --exit-threshold 0.8 --exit-states copy"
    fi
} | xargs -P "$(nproc)" -I{} bash -c '{}' | sort > $R/quality.txt
cat $R/quality.txt
