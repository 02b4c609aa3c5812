#!/usr/bin/env bash
# eval-g2p.sh - G2P test-set quality of one model and decoding setting: decodes
# data/g2p/test.src, scores WER and PER against data/g2p/test.tgt (any listed
# pronunciation counts) and prints one line "NAME wer W per P [stderr tail]".
#   bash scripts/eval-g2p.sh NAME MODEL [s2s translate flags...]
# Hypotheses and the decoder's stderr go to ${EVAL_DIR:-runs/eval}/NAME.{hyp,err}.
# S2S (default build/s2s) names the binary. Many can run at once (one thread each).
set -euo pipefail
name=$1 model=$2; shift 2
s2s=${S2S:-build/s2s}
dir=${EVAL_DIR:-runs/eval}
mkdir -p "$dir"
"$s2s" translate -m "$model" --threads 1 --quiet "$@" < data/g2p/test.src > "$dir/$name.hyp" 2> "$dir/$name.err"
w=$("$s2s" score --metric wer --ref data/g2p/test.tgt --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
p=$("$s2s" score --metric per --ref data/g2p/test.tgt --hyp "$dir/$name.hyp" --json | sed 's/.*"score": *\([0-9.]*\).*/\1/')
echo "$name wer $w per $p $(tail -n 1 "$dir/$name.err" | tr '\n' ' ')"
