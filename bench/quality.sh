#!/usr/bin/env bash
# bench/quality.sh - test-set quality of every row of a model list, greedy and beam 5, cached:
# a row is decoded again only when its quality file has no row with the same model file
# (sha256), decoding flags and test data (sha256). Used by bench/report.sh (make bench) and
# bench/methods.sh --quality.
#
#   bash bench/quality.sh [--task g2p|bible] [--list L] [--tsv Q] [--jobs 2] [--limit N] [--force]
#
# g2p: scripts/eval-g2p.sh (WER / PER on data/g2p/test.*), list bench/methods-g2p.txt, file
# bench/quality-g2p.tsv; bible: scripts/eval-bible.sh (BLEU / chrF2 on data/bible/test.*), list
# bench/latency-bible.txt, file bench/quality-bible.tsv. --limit N scores the first N test lines
# only (a different data hash, so it never mixes with full-set rows; --quick runs use their own
# file). --force decodes every row again. JOBS (2) decoders run at once, one thread each;
# `s2s translate --beam 1|5 --batch 32 FLAGS`. Hypotheses go to $BUILD/bench-quality/. The file
# is rewritten atomically with the rows of other models kept (bench/report.py quality-merge).
# BUILD (build): where s2s is; built unless NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
TASK=g2p LIST="" TSV="" JOBS=${JOBS:-2} LIMIT="" FORCE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --task) TASK="$2"; shift ;;
        --list) LIST="$2"; shift ;;
        --tsv) TSV="$2"; shift ;;
        --jobs) JOBS="$2"; shift ;;
        --limit) LIMIT="$2"; shift ;;
        --force) FORCE=--force ;;
        -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
        *) echo "bench/quality.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$TASK" in
    g2p) LIST=${LIST:-bench/methods-g2p.txt}; TSV=${TSV:-bench/quality-g2p.tsv}; EVAL=scripts/eval-g2p.sh ;;
    bible) LIST=${LIST:-bench/latency-bible.txt}; TSV=${TSV:-bench/quality-bible.tsv}; EVAL=scripts/eval-bible.sh ;;
    *) echo "bench/quality.sh: unknown task $TASK (g2p|bible)" >&2; exit 2 ;;
esac
BUILD=${BUILD:-build}
if [ "${NO_BUILD:-0}" != 1 ]; then make --no-print-directory BUILD="$BUILD" "$BUILD/s2s" >&2; fi
[ -x "$BUILD/s2s" ] || { echo "bench/quality.sh: no $BUILD/s2s" >&2; exit 1; }
W=$BUILD/bench-quality/$TASK${LIMIT:+-$LIMIT}
mkdir -p "$W"
lim=(); [ -n "$LIMIT" ] && lim=(--limit "$LIMIT")
echo "== quality ($TASK${LIMIT:+, first $LIMIT test lines}): $(python3 bench/report.py quality-todo --task "$TASK" \
    --list "$LIST" --tsv "$TSV" --jobs-file "$W/jobs" "${lim[@]}" $FORCE), $JOBS at once" >&2
: > "$W/results"
if [ -s "$W/jobs" ]; then
    export S2S="$BUILD/s2s" EVAL_DIR="$W/eval" LIMIT EVAL
    # one line per job: NAME@MODE MODEL FLAGS (tab-separated) -> "NAME@MODE m1 V1 m2 V2 note"
    cut -f1-3 "$W/jobs" | xargs -d '\n' -P "$JOBS" -I{} bash -c '
        IFS="$(printf "\t")" read -r key model flags <<< "$1"
        echo "   $key" >&2
        # shellcheck disable=SC2086
        bash "$EVAL" "$key" "$model" $flags || echo "bench/quality.sh: $key failed (see $EVAL_DIR/$key.err)" >&2
    ' _ {} >> "$W/results"
fi
python3 bench/report.py quality-merge --task "$TASK" --list "$LIST" --tsv "$TSV" --jobs-file "$W/jobs" \
    --results "$W/results" "${lim[@]}" >&2
