#!/usr/bin/env bash
# bench/report.sh - `make bench`: every benchmark of bench/, then the generated tables and plots
# of docs/RESULTS.md (the blocks between `<!-- bench:begin NAME -->` and `<!-- bench:end NAME -->`).
#
#   bash bench/report.sh                     # full run: about 20 minutes on a 2-core machine, more where
#                                            #   quality must be decoded or the Bible models are here
#                                            #   (bench/README.md) -> bench/results-*, docs/RESULTS.md
#   bash bench/report.sh --quick             # tiny subsets (about a minute): checks the machinery; writes
#                                            #   only to $BUILD/bench-quick/ (RESULTS.md there is a copy)
#   bash bench/report.sh --quick --out F.md  # the same, the updated copy of docs/RESULTS.md to F.md
#   bash bench/report.sh --only tables       # no measurement: regenerate the blocks from the results files
#   bash bench/report.sh --skip "core peers" # steps: core quality methods latency peers bible tables
#   bash bench/report.sh --requality         # decode the test sets again even where bench/quality-*.tsv has the row
#
# Steps, in this order (each logged to $BUILD/bench-report/logs/STEP.log; a failed step is reported
# at the end and the others still run):
#   core     bench/run.sh: the core engine against PyTorch eager (bench/results-cpu.md)
#   quality  bench/quality.sh: G2P test-set WER / PER of every row of bench/methods-g2p.txt, greedy and
#            beam 5, JOBS (2) at once; cached by model sha256 + flags + test data (bench/quality-g2p.tsv)
#   methods  bench/methods.sh: tokens/s of every row, batch 1 and 32, greedy and beam 5, 1 thread
#            (REPEAT=3 N1=200 N32=512; bench/results-methods.{md,jsonl,png})
#   latency  bench/latency.sh over the same list: greedy batch-1 ms per word, LAT_REPS (7) shuffled
#            rounds of LAT_WORDS (300) words (bench/results-latency.{md,jsonl})
#   peers    bench/peers/run.sh: CTranslate2 on the teacher's weights (bench/results-peers.md); only
#            where .venv-peers imports ctranslate2 or `scripts/install-deps.sh peers` can make it
#            (--quick: only where it is already there), else skipped with a message
#   bible    quality, methods and latency of bench/latency-bible.txt on data/bible (BLEU / chrF2;
#            bench/{quality-bible.tsv,results-methods-bible.*,results-latency-bible.*}); only where
#            every model of that list and data/bible/test.src exist (they are not shipped);
#            --quick: the first model of each group only
#   tables   bench/report.py blocks + bench/update_results.py: the blocks methods-g2p and
#            methods-bible of docs/RESULTS.md, with bench/results-{g2p,bible}.png; a block whose
#            inputs are missing is left as it was (a note on stderr)
# Environment: BUILD (build; binaries built there unless NO_BUILD=1), JOBS, REPEAT, N1, N32,
# LAT_REPS, LAT_WORDS, PEERS_ARGS (extra bench/peers/run.sh options), BIBLE_REPEAT (1),
# BIBLE_N1 (60), BIBLE_N32 (128), BIBLE_LAT_REPS (5), BIBLE_LAT_WORDS (60), QUICK_N (20).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

CMDLINE="bash bench/report.sh${*:+ $*}"
QUICK=0 OUT="" ONLY="" SKIP="" FORCE=""
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) OUT="$2"; shift ;;
        --only) ONLY="$2"; shift ;;
        --skip) SKIP="$2"; shift ;;
        --requality) FORCE=--force ;;
        -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
        *) echo "bench/report.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
STEPS="core quality methods latency peers bible tables"
for s in $ONLY $SKIP; do
    case " $STEPS " in *" $s "*) ;; *) echo "bench/report.sh: unknown step $s ($STEPS)" >&2; exit 2 ;; esac
done
want() { # STEP: selected by --only / --skip?
    if [ -n "$ONLY" ]; then case " $ONLY " in *" $1 "*) ;; *) return 1 ;; esac; fi
    case " $SKIP " in *" $1 "*) return 1 ;; esac
    return 0
}

export BUILD=${BUILD:-build}
export JOBS=${JOBS:-2}
W=$BUILD/bench-report
mkdir -p "$W/logs"
DOC=docs/RESULTS.md
if [ "$QUICK" = 1 ]; then
    D=$BUILD/bench-quick                      # every results file of a quick run goes here
    mkdir -p "$D"
    OUT=${OUT:-$D/RESULTS.md}
    QN=${QUICK_N:-20}
    N1=$QN N32=$(( QN > 32 ? QN : 32 )) REPEAT=1 LAT_REPS=1 LAT_WORDS=$QN
    BIBLE_REPEAT=1 BIBLE_N1=2 BIBLE_N32=4 BIBLE_LAT_REPS=1 BIBLE_LAT_WORDS=2 BQN=2
else
    D=bench
    OUT=${OUT:-$DOC}
    QN="" BQN=""
    N1=${N1:-200} N32=${N32:-512} REPEAT=${REPEAT:-3} LAT_REPS=${LAT_REPS:-7} LAT_WORDS=${LAT_WORDS:-300}
    BIBLE_REPEAT=${BIBLE_REPEAT:-1} BIBLE_N1=${BIBLE_N1:-60} BIBLE_N32=${BIBLE_N32:-128}
    BIBLE_LAT_REPS=${BIBLE_LAT_REPS:-5} BIBLE_LAT_WORDS=${BIBLE_LAT_WORDS:-60}
fi
G2P_LIST=bench/methods-g2p.txt BIBLE_LIST=bench/latency-bible.txt

T0=$SECONDS
FAILED="" SKIPPED="" TIMES=""
note() { echo "bench/report.sh: $*" >&2; }
step() { # NAME COMMAND...: run, log, time
    local name=$1 t=$SECONDS rc; shift
    echo "==== $name: $*" >&2
    "$@" 2>&1 | tee "$W/logs/$name.log" >&2
    rc=${PIPESTATUS[0]}
    TIMES="$TIMES$(printf '%-16s %5d s  %s' "$name" $((SECONDS - t)) "$([ "$rc" = 0 ] && echo ok || echo "FAILED (exit $rc)")")\n"
    [ "$rc" = 0 ] || FAILED="$FAILED $name"
    return 0
}
skip() { SKIPPED="$SKIPPED\n  $1: $2"; note "skipping $1: $2"; }

# ---- binaries (unless NO_BUILD=1): the CLI, bench_s2s, libs2s
if [ "${NO_BUILD:-0}" != 1 ] && [ "$ONLY" != tables ]; then
    echo "==== build ($BUILD)" >&2
    make --no-print-directory BUILD="$BUILD" "$BUILD/s2s" "$BUILD/bench_s2s" "$BUILD/libs2s.a" >&2 \
        || { note "build failed"; exit 1; }
fi
export NO_BUILD=1

HAVE_G2P=0; [ -f data/g2p/test.src ] && [ -f data/g2p/test.tgt ] && HAVE_G2P=1
[ "$HAVE_G2P" = 1 ] || note "data/g2p missing (make data): no G2P quality, methods, latency or peers steps"
for f in models/g2p-*.safetensors; do
    [ -f "$f" ] && ! grep -q "|$f|" "$G2P_LIST" && note "$f is not in $G2P_LIST: it gets no row"
done

# ---- core engine vs PyTorch
if want core; then
    if [ "$QUICK" = 1 ]; then
        step core env N1=4 N32=8 NTRAIN=200 TPB=256 STEPS=1 bash bench/run.sh --quick --threads 1 --out "$D/results-cpu.md"
    else step core bash bench/run.sh; fi
fi

# ---- G2P: quality (cached), tokens/s, latency
if [ "$HAVE_G2P" = 1 ]; then
    want quality && step quality bash bench/quality.sh --task g2p --list "$G2P_LIST" --tsv "$D/quality-g2p.tsv" \
        ${QN:+--limit "$QN"} $FORCE
    want methods && step methods env REPEAT="$REPEAT" N1="$N1" N32="$N32" QLIMIT="$QN" bash bench/methods.sh --list "$G2P_LIST" \
        --out "$D/results-methods.md" --qual "$D/quality-g2p.tsv"
    want latency && step latency bash bench/latency.sh --list "$G2P_LIST" --reps "$LAT_REPS" --words "$LAT_WORDS" \
        --out "$D/results-latency.md"
fi

# ---- CTranslate2 on the teacher's weights
if want peers && [ "$HAVE_G2P" = 1 ]; then
    PY=.venv-peers/bin/python
    if ! { [ -x "$PY" ] && "$PY" -c "import ctranslate2" 2>/dev/null; } && [ "$QUICK" != 1 ]; then
        note "no .venv-peers with ctranslate2: trying bash scripts/install-deps.sh peers"
        bash scripts/install-deps.sh peers >&2 || true
    fi
    if [ -x "$PY" ] && "$PY" -c "import ctranslate2" 2>/dev/null; then
        if [ "$QUICK" = 1 ]; then
            step peers env N1="$N1" N32="$N32" bash bench/peers/run.sh --threads 1 --out "$D/results-peers.md" ${PEERS_ARGS:-}
        else
            step peers bash bench/peers/run.sh ${PEERS_ARGS:-}
        fi
    else
        skip peers "no .venv-peers with ctranslate2 (bash scripts/install-deps.sh peers)"
    fi
fi

# ---- Bible: only where its (unshipped) models are here
if want bible; then
    miss=""
    while IFS='|' read -r _ model _; do
        [ -f "$model" ] || miss="$miss $model"
    done < <(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$BIBLE_LIST")
    if [ ! -f data/bible/test.src ]; then
        skip bible "data/bible/test.src missing (make data)"
    elif [ -n "$miss" ]; then
        skip bible "models of $BIBLE_LIST not here (not shipped; scripts/methods-bible-gpu.sh makes them):$miss"
    else
        if [ "$QUICK" = 1 ]; then  # the first row of each group
            grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$BIBLE_LIST" | awk -F'|' '!seen[$4]++' > "$W/bible-quick.txt"
            BIBLE_LIST=$W/bible-quick.txt
        fi
        step bible-quality bash bench/quality.sh --task bible --list "$BIBLE_LIST" --tsv "$D/quality-bible.tsv" \
            ${BQN:+--limit "$BQN"} $FORCE
        step bible-methods env REPEAT="$BIBLE_REPEAT" N1="$BIBLE_N1" N32="$BIBLE_N32" QLIMIT="$BQN" bash bench/methods.sh \
            --task bible --list "$BIBLE_LIST" --out "$D/results-methods-bible.md" --qual "$D/quality-bible.tsv"
        step bible-latency bash bench/latency.sh --list "$BIBLE_LIST" --src data/bible/test.src \
            --reps "$BIBLE_LAT_REPS" --words "$BIBLE_LAT_WORDS" --out "$D/results-latency-bible.md"
    fi
fi

# ---- the generated blocks of docs/RESULTS.md
if want tables; then
    rm -rf "$W/blocks"
    step tables-blocks python3 bench/report.py blocks --dir "$D" --out-dir "$W/blocks" --doc-out "$OUT" \
        --work "$W" --g2p-list "$G2P_LIST" --bible-list "$BIBLE_LIST" ${QN:+--qlimit "$QN"} \
        ${BQN:+--bible-qlimit "$BQN"} --cmd "$CMDLINE"
    step tables-update python3 bench/update_results.py --doc "$DOC" --blocks "$W/blocks" --out "$OUT"
fi

echo >&2
echo "==== bench/report.sh: done in $((SECONDS - T0)) s ($CMDLINE)" >&2
printf "$TIMES" >&2
printf "$TIMES" > "$W/timings.txt"
[ -n "$SKIPPED" ] && printf "skipped:$SKIPPED\n" >&2
echo "results: $D/   updated document: $OUT" >&2
if [ -n "$FAILED" ]; then note "failed steps:$FAILED (logs: $W/logs/)"; exit 1; fi
