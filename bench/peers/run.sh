#!/usr/bin/env bash
# bench/peers/run.sh - peer comparison: s2s (build/bench_s2s) against CTranslate2 (PyPI
# ctranslate2, in .venv-peers) on the same weights, the same first test lines, the same
# batches, beam and threads. See bench/peers/README.md.
#
#   bash bench/peers/run.sh                  # full run (G2P teacher, threads 1 and 2)
#   bash bench/peers/run.sh --quick          # small N: checks the machinery (< 1 minute)
#   bash bench/peers/run.sh --model M.safetensors --threads "1 2 4" --repeat 3 --out /tmp/r.md
#   bash bench/peers/run.sh --quick --check  # exit 1 unless every greedy fp32 line is identical
# Environment: N1 N32 (sentences decoded at batch 1 / 32; default 200 / 1024, --quick 24 / 64),
#   BEAM (4), MAXLEN (default min(max_len - 1, 100)), BUILD (build: where bench_s2s and s2s
#   are, built here unless NO_BUILD=1), PY (.venv-peers/bin/python), G2P (data/g2p),
#   F16=0 (skip the s2s fp16 rows).
#
# Cells: greedy and beam BEAM, batch 1 and 32, each thread count; for each cell, in this
# order (interleaved, so a change of machine load hits all of them):
#   s2s fp32   - the checkpoint rewritten in fp32 (s2s convert --fp32): no fp16 copy of the
#                weights exists, so every layer runs the fp32 kernels (OpenBLAS / AVX)
#   ct2 fp32   - CTranslate2 compute_type float32 on the same fp32 values
#   ct2 int8   - compute_type int8 (weights quantized when loaded; reference point)
#   s2s fp16   - the checkpoint in fp16 (s2s's fp16 small-batch kernels; reference point)
# Writes a markdown table (default bench/results-peers.md): tok/s, s2s/ct2, identical
# outputs, thread scaling, the issue's target, machine, commit and versions.
set -euo pipefail
cd "$(dirname "$0")/../.."

CMDLINE="bash bench/peers/run.sh${*:+ $*}"
QUICK=0
MODEL=models/g2p-teacher.safetensors
THREADS="1 2"
OUT=bench/results-peers.md
REPEAT=${REPEAT:-1}
CHECK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --model) MODEL="$2"; shift ;;
        --threads) THREADS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --repeat) REPEAT="$2"; shift ;;
        --check) CHECK=1 ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "bench/peers/run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then N1=${N1:-24}; N32=${N32:-64}; else N1=${N1:-200}; N32=${N32:-1024}; fi
BEAM=${BEAM:-4}
BUILD=${BUILD:-build}
PY=${PY:-.venv-peers/bin/python}
G2P=${G2P:-data/g2p}
F16=${F16:-1}
BIN=$BUILD/bench_s2s
S2S=$BUILD/s2s
W=$BUILD/peers
die() { echo "bench/peers/run.sh: $*" >&2; exit 1; }

[ -f "$MODEL" ] || die "no model $MODEL"
[ -f "$G2P/test.src" ] || die "no $G2P/test.src (run: make data)"
if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "== build ($BUILD)" >&2
    make --no-print-directory BUILD="$BUILD" "$BIN" "$S2S" >&2
fi
[ -x "$BIN" ] && [ -x "$S2S" ] || die "$BIN or $S2S missing (build them, or unset NO_BUILD)"
if ! "$PY" -c "import ctranslate2" 2>/dev/null; then
    if [ "$PY" = .venv-peers/bin/python ]; then bash scripts/install-deps.sh peers; fi
    "$PY" -c "import ctranslate2" 2>/dev/null || die "$PY cannot import ctranslate2 (bash scripts/install-deps.sh peers)"
fi

mkdir -p "$W/out"
rm -f "$W"/out/*.ids
echo "== models ($W)" >&2
"$S2S" convert --fp32 -m "$MODEL" -o "$W/model-fp32.safetensors"
[ "$F16" = 1 ] && "$S2S" convert --fp16 -m "$MODEL" -o "$W/model-fp16.safetensors"
"$PY" bench/peers/export_ct2.py -m "$W/model-fp32.safetensors" -o "$W/ct2"
"$BIN" --info -m "$W/model-fp32.safetensors" > "$W/info.jsonl"
MAXLEN_CFG=$("$PY" -c "import json; print(json.loads(open('$W/info.jsonl').readlines()[1])['max_len'])")
MAXLEN=${MAXLEN:-$(( MAXLEN_CFG - 1 < 100 ? MAXLEN_CFG - 1 : 100 ))}
SRC_KIND=$("$PY" -c "import json; print(json.load(open('$W/ct2/s2s_export.json'))['src_tokenizer'])")

# the same source ids for both: s2s's tokenizer (bench_s2s --dump-ids); CTranslate2's side
# tokenizes the text itself (char / symbol tokenizers) and checks it equals these ids
NDEC=$(( N1 > N32 ? N1 : N32 ))
"$BIN" -m "$MODEL" --dump-ids "$G2P/test.src" --side src --limit "$NDEC" > "$W/src.ids"
case "$SRC_KIND" in
    char|symbol) CT2_IN=(--text "$G2P/test.src" --expect-ids "$W/src.ids") ;;
    *) CT2_IN=(-i "$W/src.ids") ;;
esac

RES=$W/results.jsonl
: > "$RES"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)
tag() { sed -u "s/^{/{\"variant\": \"$1\", /" | tee -a "$RES"; }
for T in $THREADS; do
    export OMP_NUM_THREADS=$T
    for BS in 1 32; do
        N=$N32; [ "$BS" = 1 ] && N=$N1
        echo "== threads=$T batch=$BS ($N sentences, max-len $MAXLEN, greedy and beam $BEAM)" >&2
        common=(--threads "$T" --batch "$BS" --beam "$BEAM" --max-len "$MAXLEN" --limit "$N")
        o() { echo --outputs "$W/out/$1-greedy-b$BS-t$T.ids" --beam-outputs "$W/out/$1-beam-b$BS-t$T.ids"; }
        for _ in $(seq "$REPEAT"); do
            "$BIN" -m "$W/model-fp32.safetensors" -i "$W/src.ids" "${common[@]}" $(o s2s-fp32) | tag s2s-fp32
            "$PY" bench/peers/ct2_bench.py --ct2 "$W/ct2" "${CT2_IN[@]}" "${common[@]}" --compute-type float32 \
                $(o ct2-float32) | tag ct2-float32
            "$PY" bench/peers/ct2_bench.py --ct2 "$W/ct2" "${CT2_IN[@]}" "${common[@]}" --compute-type int8 \
                $(o ct2-int8) | tag ct2-int8
            if [ "$F16" = 1 ]; then
                "$BIN" -m "$W/model-fp16.safetensors" -i "$W/src.ids" "${common[@]}" $(o s2s-fp16) | tag s2s-fp16
            fi
        done
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "${GIT_COMMIT:-unknown}")
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then COMMIT="$COMMIT (working tree modified)"; fi
export W RES OUT MODEL MAXLEN BEAM N1 N32 COMMIT CMDLINE LOAD0 LOAD1 ELAPSED THREADS REPEAT G2P CHECK
export CPU="$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')" NPROC="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"
export CCV="$(${CC:-cc} --version | head -1)"
export OBV="$(dpkg-query -W -f '${Version}' libopenblas0-openmp 2>/dev/null || echo '?')"
"$PY" bench/peers/report.py
