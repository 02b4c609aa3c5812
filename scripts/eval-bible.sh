#!/usr/bin/env bash
# eval-bible.sh - Bible EN->ES test-set BLEU and chrF2 of one model and decoding setting:
# prints "NAME bleu B chrf C [stderr tail]" (scripts/eval.sh bible, which says the rest).
#   bash scripts/eval-bible.sh NAME MODEL [s2s translate flags...]
exec bash "$(dirname "$0")/eval.sh" bible "$@"
