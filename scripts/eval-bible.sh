#!/usr/bin/env bash
# eval-bible.sh - Bible EN->ES test-set quality of one model and decoding setting: decodes
# data/bible/test.src, scores sacreBLEU-compatible BLEU (13a) and chrF2 against
# data/bible/test.tgt and prints one line "NAME bleu B chrf C [stderr tail]"
# (the counterpart of scripts/eval-g2p.sh; bench/quality.sh runs either).
#   bash scripts/eval-bible.sh NAME MODEL [s2s translate flags...]
# Hypotheses and the decoder's stderr go to ${EVAL_DIR:-runs/eval}/NAME.{hyp,err}.
# S2S (default build/s2s) names the binary. Many can run at once (one thread each).
# LIMIT=N scores only the first N test verses (bench/report.sh --quick).
set -euo pipefail
name=$1 model=$2; shift 2
s2s=${S2S:-build/s2s}
dir=${EVAL_DIR:-runs/eval}
mkdir -p "$dir"
src=data/bible/test.src ref=data/bible/test.tgt
if [ -n "${LIMIT:-}" ]; then
    head -n "$LIMIT" "$src" > "$dir/$name.src"; head -n "$LIMIT" "$ref" > "$dir/$name.ref"
    src=$dir/$name.src ref=$dir/$name.ref
fi
"$s2s" translate -m "$model" --threads 1 --quiet "$@" < "$src" > "$dir/$name.hyp" 2> "$dir/$name.err"
b=$("$s2s" score --metric bleu --ref "$ref" --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
c=$("$s2s" score --metric chrf --ref "$ref" --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
echo "$name bleu $b chrf $c $(tail -n 1 "$dir/$name.err" | tr '\n' ' ')"
