#!/usr/bin/env bash
# eval-g2p.sh - G2P test-set quality of one model and decoding setting: decodes
# data/g2p/test.src, scores WER and PER against data/g2p/test.tgt (any listed
# pronunciation counts) and prints one line "NAME wer W per P [stderr tail]".
#   bash scripts/eval-g2p.sh NAME MODEL [s2s translate flags...]
# Hypotheses and the decoder's stderr go to ${EVAL_DIR:-runs/eval}/NAME.{hyp,err}.
# S2S (default build/s2s) names the binary. Many can run at once (one thread each).
# LIMIT=N scores only the first N test words (bench/report.sh --quick).
set -euo pipefail
name=$1 model=$2; shift 2
s2s=${S2S:-build/s2s}
dir=${EVAL_DIR:-runs/eval}
mkdir -p "$dir"
src=data/g2p/test.src ref=data/g2p/test.tgt
if [ -n "${LIMIT:-}" ]; then
    head -n "$LIMIT" "$src" > "$dir/$name.src"; head -n "$LIMIT" "$ref" > "$dir/$name.ref"
    src=$dir/$name.src ref=$dir/$name.ref
fi
"$s2s" translate -m "$model" --threads 1 --quiet "$@" < "$src" > "$dir/$name.hyp" 2> "$dir/$name.err"
w=$("$s2s" score --metric wer --ref "$ref" --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
p=$("$s2s" score --metric per --ref "$ref" --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
echo "$name wer $w per $p $(tail -n 1 "$dir/$name.err" | tr '\n' ' ')"
