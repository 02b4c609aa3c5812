#!/usr/bin/env bash
# eval-g2p.sh - G2P test-set WER and PER of one model and decoding setting: prints
# "NAME wer W per P [stderr tail]" (scripts/eval.sh g2p, which says the rest).
#   bash scripts/eval-g2p.sh NAME MODEL [s2s translate flags...]
exec bash "$(dirname "$0")/eval.sh" g2p "$@"
