#!/usr/bin/env bash
# eval.sh - test-set quality of one model and decoding setting on a task: decodes
# data/TASK/test.src and prints one line "NAME M1 V1 M2 V2 [stderr tail]" with the task's
# two metrics against data/TASK/test.tgt:
#   g2p    wer, per   (any listed pronunciation counts)
#   bible  bleu, chrf (sacreBLEU-compatible BLEU 13a and chrF2)
#   bash scripts/eval.sh TASK NAME MODEL [s2s translate flags...]
# (scripts/eval-g2p.sh and scripts/eval-bible.sh are this with the task filled in; bench/quality.sh
# runs them.) Hypotheses and the decoder's stderr go to ${EVAL_DIR:-runs/eval}/NAME.{hyp,err}.
# S2S (default build/s2s) names the binary. Many can run at once (one thread each).
# LIMIT=N scores only the first N test lines (bench/report.sh --quick).
set -euo pipefail
task=$1 name=$2 model=$3; shift 3
case "$task" in
    g2p) metrics="wer per" ;;
    bible) metrics="bleu chrf" ;;
    *) echo "scripts/eval.sh: unknown task '$task' (g2p or bible)" >&2; exit 2 ;;
esac
s2s=${S2S:-build/s2s}
dir=${EVAL_DIR:-runs/eval}
mkdir -p "$dir"
src=data/$task/test.src ref=data/$task/test.tgt
if [ -n "${LIMIT:-}" ]; then
    head -n "$LIMIT" "$src" > "$dir/$name.src"; head -n "$LIMIT" "$ref" > "$dir/$name.ref"
    src=$dir/$name.src ref=$dir/$name.ref
fi
"$s2s" translate -m "$model" --threads 1 --quiet "$@" < "$src" > "$dir/$name.hyp" 2> "$dir/$name.err"
line=$name
for m in $metrics; do
    v=$("$s2s" score --metric "$m" --ref "$ref" --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
    line="$line $m $v"
done
echo "$line $(tail -n 1 "$dir/$name.err" | tr '\n' ' ')"
