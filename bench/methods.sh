#!/usr/bin/env bash
# bench/methods.sh - the four accelerations side by side: decoding speed of every model of a
# list on this machine, its test-set quality, the speed-up over the first row, and a plot of
# quality against batch-1 latency with the Pareto front.
#
#   bash bench/methods.sh                          # bench/methods-g2p.txt -> bench/results-methods.{md,jsonl,png}
#   bash bench/methods.sh --quick                  # 40 / 128 words, only the first 4 models: a smoke test
#   bash bench/methods.sh --quality                # first (re)compute missing quality rows (bench/quality.sh)
#   bash bench/methods.sh --list L --out R.md      # another model list / output
#   bash bench/methods.sh --task bible             # bench/latency-bible.txt on data/bible/test.src, BLEU / chrF2
#                                                  # -> bench/results-methods-bible.{md,jsonl,png}
#   REPEAT=3 bash bench/methods.sh                 # every cell 3 times (rows interleaved), keep the fastest
#
# The list has one row per line, `NAME|MODEL|FLAGS|GROUP` (FLAGS: extra decoding flags
# of `s2s translate` and bench_s2s, e.g. `--exit-threshold 0.9`; GROUP: teacher, hybrid,
# t2r, deed, nash, stack); `#` starts a comment; the first row is the baseline.
# Quality (G2P: WER/PER on all 5,226 test words; Bible: BLEU/chrF2 on the 557 test verses;
# greedy and beam 5) is read from bench/quality-TASK.tsv (--qual), which --quality
# completes with bench/quality.sh (cached by model sha256 + flags; JOBS at once); rows
# without a quality line are shown as "-" (QLIMIT=N: show the rows scored on the first N test
# lines, `bench/quality.sh --limit N`, instead).
# Speed: $BUILD/bench_s2s (BUILD=build; built unless NO_BUILD=1), THREADS (1) thread(s),
# the first N1 (300) test lines at batch 1 and N32 (1024) at batch 32, greedy and beam 5;
# latency = wall time per sentence at batch 1. The raw JSON lines go beside the page
# (same name, .jsonl), the table and plot are drawn by bench/report.py methods-md.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVS=""
for v in REPEAT N1 N32 THREADS; do [ -n "${!v:-}" ] && ENVS="$ENVS$v=${!v} "; done
CMDLINE="${ENVS}bash bench/methods.sh${*:+ $*}"
TASK=g2p
LIST=""
OUT=""
QUAL=""
QUICK=0
QUALITY=0
THREADS=${THREADS:-1}
JOBS=${JOBS:-2}
REPEAT=${REPEAT:-1}
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --quality) QUALITY=1 ;;
        --task) TASK="$2"; shift ;;
        --list) LIST="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --qual) QUAL="$2"; shift ;;
        -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
        *) echo "bench/methods.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
case "$TASK" in
    g2p) SRC=data/g2p/test.src; LIST=${LIST:-bench/methods-g2p.txt}; OUT=${OUT:-bench/results-methods.md}
         QUAL=${QUAL:-bench/quality-g2p.tsv} ;;
    bible) SRC=data/bible/test.src; LIST=${LIST:-bench/latency-bible.txt}; OUT=${OUT:-bench/results-methods-bible.md}
           QUAL=${QUAL:-bench/quality-bible.tsv} ;;
    *) echo "bench/methods.sh: unknown task $TASK (g2p|bible)" >&2; exit 2 ;;
esac
if [ "$QUICK" = 1 ]; then N1=${N1:-40}; N32=${N32:-128}; else N1=${N1:-300}; N32=${N32:-1024}; fi
[ -f "$SRC" ] || { echo "bench/methods.sh: $SRC missing (run make data)" >&2; exit 1; }
[ -f "$LIST" ] || { echo "bench/methods.sh: no model list $LIST" >&2; exit 1; }

BUILD=${BUILD:-build}
BIN=$BUILD/bench_s2s
W=$BUILD/bench-methods; [ "$TASK" = g2p ] || W=$W-$TASK
mkdir -p "$W" "$(dirname "$OUT")"
if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "== build" >&2
    bash scripts/install-deps.sh bench
    make --no-print-directory BUILD="$BUILD" "$BUILD/s2s" "$BIN" >&2
fi
[ -x "$BIN" ] || { echo "bench/methods.sh: no $BIN (build it, or unset NO_BUILD)" >&2; exit 1; }

rows=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$LIST")
[ "$QUICK" = 1 ] && rows=$(echo "$rows" | head -n 4)
missing=0
while IFS='|' read -r name model flags group; do
    [ -f "$model" ] || { echo "bench/methods.sh: $name: no model file $model" >&2; missing=1; }
done <<< "$rows"
[ $missing = 0 ] || exit 1

# ---- quality: every row, greedy and beam 5, on the whole test set (cached: bench/quality.sh)
if [ "$QUALITY" = 1 ]; then
    tmp_list=$W/list.txt; echo "$rows" > "$tmp_list"
    NO_BUILD=1 BUILD="$BUILD" bash bench/quality.sh --task "$TASK" --list "$tmp_list" --tsv "$QUAL"
fi

# ---- speed
ids=$W/test.ids
first_model=$(echo "$rows" | head -n 1 | cut -d'|' -f2)
"$BIN" -m "$first_model" --dump-ids "$SRC" --side src > "$ids"
head -n "$N1" "$ids" > "$W/b1.ids"
head -n "$N32" "$ids" > "$W/b32.ids"
res=$W/results.jsonl; : > "$res"
t0=$SECONDS
for rep in $(seq "$REPEAT"); do
    while IFS='|' read -r name model flags group; do
        echo "== $name (run $rep of $REPEAT)" >&2
        for b in 1 32; do
            # shellcheck disable=SC2086
            "$BIN" -m "$model" -i "$W/b$b.ids" --threads "$THREADS" --beam 5 --batch "$b" $flags \
                2> "$W/$name.b$b.err" | sed "s/^{/{\"name\": \"$name\", \"group\": \"$group\", /" >> "$res"
        done
    done <<< "$rows"
done
secs=$((SECONDS - t0))

raw=${OUT%.md}.jsonl
cp "$res" "$raw.tmp.$$" && mv "$raw.tmp.$$" "$raw"

# ---- table + plot (bench/report.py methods-md; only the rows run here)
echo "$rows" > "$W/list.txt"
python3 bench/report.py methods-md --task "$TASK" --list "$W/list.txt" --raw "$raw" --qual "$QUAL" --out "$OUT" \
    --work "$W" --cmd "$CMDLINE" --n1 "$N1" --n32 "$N32" --threads "$THREADS" --secs "$secs" --repeat "$REPEAT" \
    --bin "$BIN" ${QLIMIT:+--qlimit "$QLIMIT"}
