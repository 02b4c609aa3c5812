#!/usr/bin/env bash
# bench/run.sh - CPU benchmark of the core engine: s2s (build/bench_s2s) against eager
# PyTorch (bench/torch_bench.py, Debian's python3-torch) on the same checkpoint, the same
# inputs and the same training batches, in one run. See bench/README.md.
#
#   bash bench/run.sh                 # full run (a few minutes on 2 cores)
#   bash bench/run.sh --quick         # tiny subset, < 1 minute
#   bash bench/run.sh --model M.safetensors --threads "1 2 4" --out results.md
#   bash bench/run.sh --repeat 3      # every cell 3 times, the table keeps the fastest
# Sizes can be overridden from the environment: N1 N32 (sentences decoded at batch 1 /
# 32), NTRAIN (training pairs), TPB (tokens_per_batch), STEPS, TWARM, MAXLEN, G2P, PY;
# BUILD (build: where bench_s2s is, built there unless NO_BUILD=1).
#
# Prints a table of tokens/s per cell (mode, batch, beam, threads) with the ratio
# s2s/torch, and writes it as markdown (default bench/results-cpu.md) with the machine,
# date, commit, command and library versions. Work files go to $BUILD/bench/.
set -euo pipefail
cd "$(dirname "$0")/.."

CMDLINE="bash bench/run.sh${*:+ $*}"
QUICK=0
MODEL=""
THREADS="1 2"
OUT="bench/results-cpu.md"
PY="${PY:-/usr/bin/python3}"
BEAM=5
REPEAT=${REPEAT:-1}
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --model) MODEL="$2"; shift ;;
        --threads) THREADS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --repeat) REPEAT="$2"; shift ;;
        -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
        *) echo "bench/run.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    N1=${N1:-6}; N32=${N32:-32}; NTRAIN=${NTRAIN:-400}
    TPB=${TPB:-512}; STEPS=${STEPS:-2}; TWARM=${TWARM:-1}; RAND_MAXLEN=10
else
    N1=${N1:-48}; N32=${N32:-256}; NTRAIN=${NTRAIN:-2000}
    TPB=${TPB:-2048}; STEPS=${STEPS:-5}; TWARM=${TWARM:-1}; RAND_MAXLEN=20
fi

BUILD=${BUILD:-build}
W=$BUILD/bench
mkdir -p "$W/out"
BIN=$BUILD/bench_s2s

if [ "${NO_BUILD:-0}" != 1 ]; then
    echo "== build" >&2
    make --no-print-directory BUILD="$BUILD" "$BUILD/libs2s.a" "$BIN" >&2
fi
[ -x "$BIN" ] || { echo "bench/run.sh: no $BIN (build it, or unset NO_BUILD)" >&2; exit 1; }

HAVE_TORCH=1
if ! "$PY" -c "import torch" 2>/dev/null; then
    echo "bench/run.sh: $PY cannot import torch (apt-get install python3-torch); s2s only" >&2
    HAVE_TORCH=0
fi

# ---- model: the shipped one, else a random model of the Bible-teacher size
G2P=${G2P:-data/g2p}
if [ -z "$MODEL" ]; then
    if [ -f models/g2p-small.safetensors ]; then
        MODEL=models/g2p-small.safetensors
    else
        MODEL=$W/random-8k-fp16.safetensors
        if [ ! -f "$MODEL" ]; then
            echo "== making $MODEL (random weights, D=256 H=4 F=1024 6+6, vocab 8000)" >&2
            if [ -f $G2P/train.src ]; then
                $BIN --make-model "$MODEL" --vocab 8000 --corpus-src $G2P/train.src --corpus-tgt $G2P/train.tgt
            else
                $BIN --make-model "$MODEL" --vocab 8000
            fi
        fi
    fi
fi
[ -f "$MODEL" ] || { echo "bench/run.sh: no model $MODEL" >&2; exit 1; }
$BIN --info -m "$MODEL" > "$W/info.jsonl"
cfg() { "$PY" -c "import json,sys; print(json.loads(open('$W/info.jsonl').readlines()[1])['$1'])"; }
MAXLEN_CFG=$(cfg max_len)
VS=$(cfg src_vocab); VT=$(cfg tgt_vocab)
case "$MODEL" in
    */random-8k-fp16.safetensors) RANDOM_MODEL=1 ;;
    *) RANDOM_MODEL=0 ;;
esac
# one fixed length limit for both implementations (generated tokens incl. </s>); a random
# model never stops by itself, so the limit sets its output length
if [ -z "${MAXLEN:-}" ]; then
    if [ "$RANDOM_MODEL" = 1 ]; then MAXLEN=$RAND_MAXLEN
    else MAXLEN=$(( MAXLEN_CFG - 1 < 100 ? MAXLEN_CFG - 1 : 100 )); fi
fi

# ---- data: the first test words of data/g2p (tokenized by the model), else synthetic ids
NDEC=$(( N1 > N32 ? N1 : N32 ))
if [ -f $G2P/test.src ] && [ -f $G2P/train.src ]; then
    DATA="data/g2p, tokenized by the model: decoding the first $N32 test words at batch 32 and the first $N1 at batch 1; training on the first $NTRAIN training pairs"
    $BIN -m "$MODEL" --dump-ids $G2P/test.src --side src --limit "$NDEC" > "$W/dec.src.ids"
    $BIN -m "$MODEL" --dump-ids $G2P/train.src --side src --limit "$NTRAIN" > "$W/train.src.ids"
    $BIN -m "$MODEL" --dump-ids $G2P/train.tgt --side tgt --limit "$NTRAIN" > "$W/train.tgt.ids"
else
    DATA="synthetic ids (no data/g2p), lengths 3-14: decoding $N32 sources at batch 32 and the first $N1 at batch 1; training on $NTRAIN pairs"
    synth() { # n seed vocab -> lines of random ids in [4, vocab)
        awk -v n="$1" -v seed="$2" -v v="$3" 'BEGIN { srand(seed); for (i = 0; i < n; i++) {
            L = 3 + int(rand() * 12); s = ""; for (j = 0; j < L; j++) s = s (j ? " " : "") (4 + int(rand() * (v - 4)));
            print s } }'
    }
    synth "$NDEC" 1 "$VS" > "$W/dec.src.ids"
    synth "$NTRAIN" 2 "$VS" > "$W/train.src.ids"
    synth "$NTRAIN" 3 "$VT" > "$W/train.tgt.ids"
fi

RES=$W/results.jsonl
: > "$RES"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$(date +%s)

# ---- decoding cells: for each thread count and batch size, s2s then torch (interleaved,
# so a change of machine load hits both); greedy and beam in the same process
for T in $THREADS; do
    for BS in 1 32; do
        N=$N32; [ "$BS" = 1 ] && N=$N1
        echo "== decode threads=$T batch=$BS ($N sentences, max-len $MAXLEN, beam $BEAM)" >&2
        common=(-m "$MODEL" -i "$W/dec.src.ids" --threads "$T" --batch "$BS" --beam "$BEAM"
                --max-len "$MAXLEN" --limit "$N")
        for _ in $(seq "$REPEAT"); do
            $BIN "${common[@]}" --outputs "$W/out/s2s-greedy-b$BS-t$T.ids" \
                --beam-outputs "$W/out/s2s-beam-b$BS-t$T.ids" | tee -a "$RES"
            if [ "$HAVE_TORCH" = 1 ]; then
                "$PY" bench/torch_bench.py "${common[@]}" --outputs "$W/out/torch-greedy-b$BS-t$T.ids" \
                    --beam-outputs "$W/out/torch-beam-b$BS-t$T.ids" | tee -a "$RES"
            fi
        done
    done
done

# ---- training cells: the same token-count batches for both
for T in $THREADS; do
    echo "== train threads=$T (tokens_per_batch $TPB, $TWARM + $STEPS steps)" >&2
    common=(-m "$MODEL" --threads "$T" --train-src "$W/train.src.ids" --train-tgt "$W/train.tgt.ids"
            --tokens-per-batch "$TPB" --train-steps "$STEPS" --train-warmup "$TWARM")
    for _ in $(seq "$REPEAT"); do
        $BIN "${common[@]}" | tee -a "$RES"
        if [ "$HAVE_TORCH" = 1 ]; then "$PY" bench/torch_bench.py "${common[@]}" | tee -a "$RES"; fi
    done
done
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))

# ---- report
CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
NPROC=$(nproc)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain 2>/dev/null)" ]; then COMMIT="$COMMIT (working tree modified)"; fi
OBV=$(dpkg-query -W -f '${Version}' libopenblas0-openmp 2>/dev/null || echo "?")
TORCHV=$([ "$HAVE_TORCH" = 1 ] && "$PY" -c "import torch; print(torch.__version__)" || echo none)
TORCHV="$TORCHV, package python3-torch $(dpkg-query -W -f '${Version}' python3-torch 2>/dev/null || echo '?')"
PYV=$("$PY" --version 2>&1)
CCV=$(${CC:-cc} --version | head -1)

export W RES OUT MODEL DATA MAXLEN BEAM TPB STEPS TWARM CPU NPROC COMMIT OBV TORCHV PYV CCV \
       CMDLINE LOAD0 LOAD1 ELAPSED RANDOM_MODEL THREADS REPEAT
"$PY" - <<'EOF'
import json, os, datetime
E = os.environ
W = E["W"]
recs = [json.loads(l) for l in open(E["RES"]) if l.startswith("{")]
info = [json.loads(l) for l in open(os.path.join(W, "info.jsonl"))]
blas, cfg = info[0], info[1]
by = {}
for r in recs:  # with --repeat, keep the fastest run of each cell
    key = (r["impl"], r["mode"], r["batch"] if r["mode"] != "train" else 0, r["beam"], r["threads"])
    if key not in by or r["tok_per_s"] > by[key]["tok_per_s"]:
        by[key] = r
cells = sorted({k[1:] for k in by}, key=lambda c: ({"greedy": 0, "beam": 1, "train": 2}[c[0]], c[1], c[3]))

def same(mode, b, t):
    p = [os.path.join(W, "out", "%s-%s-b%d-t%d.ids" % (i, mode, b, t)) for i in ("s2s", "torch")]
    if not all(os.path.exists(x) for x in p):
        return "-"
    a, c = (open(x).read().splitlines() for x in p)
    return "%d/%d" % (sum(x == y for x, y in zip(a, c)), max(len(a), len(c)))

def fmt(x):
    return "%.0f" % x if x >= 100 else "%.1f" % x

rows = []
for mode, b, k, t in cells:
    s, tr = by.get(("s2s", mode, b, k, t)), by.get(("torch", mode, b, k, t))
    if mode == "train":
        b_disp = "%s tok (~%d sent)" % (E["TPB"], (s or tr)["batch"])
    else:
        b_disp = str(b)
    rows.append([mode, b_disp, str(k) if k else "-", str(t),
                 fmt(s["tok_per_s"]) if s else "n/a", fmt(tr["tok_per_s"]) if tr else "n/a",
                 "%.2f" % (s["tok_per_s"] / tr["tok_per_s"]) if s and tr else "n/a",
                 same(mode, b, t) if mode != "train" else "-"])
hdr = ["mode", "batch", "beam", "threads", "s2s tok/s", "torch tok/s", "s2s/torch", "same outputs"]

# thread scaling: tok/s at the largest thread count / at 1 thread, per impl and cell
ths = sorted({c[3] for c in cells})
scal = []
if len(ths) > 1 and ths[0] == 1:
    for mode, b, k in sorted({c[:3] for c in cells}, key=lambda c: ({"greedy": 0, "beam": 1, "train": 2}[c[0]], c[1])):
        row = [mode, str(b) if mode != "train" else E["TPB"] + " tok"]
        for impl in ("s2s", "torch"):
            r1, rn = by.get((impl, mode, b, k, 1)), by.get((impl, mode, b, k, ths[-1]))
            row.append("%.2f" % (rn["tok_per_s"] / r1["tok_per_s"]) if r1 and rn else "n/a")
        scal.append(row)

def table(h, rs):
    w = [max(len(h[i]), *(len(r[i]) for r in rs)) for i in range(len(h))]
    # text columns (mode, batch) left-aligned, numbers right-aligned
    line = lambda r: "| " + " | ".join(x.ljust(w[i]) if i < 2 else x.rjust(w[i]) for i, x in enumerate(r)) + " |"
    sep = "|" + "|".join(":" + "-" * (x + 1) if i < 2 else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|"
    return "\n".join([line(h), sep] + [line(r) for r in rs])

t1 = table(hdr, rows)
t2 = table(["mode", "batch", "s2s %d/1 threads" % ths[-1], "torch %d/1 threads" % ths[-1]], scal) if scal else ""
print()
print(t1)
if t2:
    print()
    print(t2)

model_desc = "%s: %s parameters, D=%d H=%d F=%d, %d+%d layers, vocab %d/%d, max_len %d%s" % (
    E["MODEL"], format(cfg["params"], ","), cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["enc_layers"],
    cfg["dec_layers"], cfg["src_vocab"], cfg["tgt_vocab"], cfg["max_len"],
    " (random weights: it rarely emits </s>, so nearly every sentence runs to the length limit)"
    if E["RANDOM_MODEL"] == "1" else "")
md = []
md.append("# s2s vs PyTorch eager: CPU benchmark\n")
md.append("Written by `bench/run.sh` (see bench/README.md for what is measured and how to read it).\n")
md.append("- command: `%s`%s" % (E["CMDLINE"], " (REPEAT=%s: fastest of %s runs per cell)" % (E["REPEAT"], E["REPEAT"]) if E["REPEAT"] != "1" else ""))
md.append("- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
md.append("- commit: %s" % E["COMMIT"])
md.append("- machine: %s, %s cores (nproc); load average %s before, %s after; run took %s s"
          % (E["CPU"], E["NPROC"], E["LOAD0"], E["LOAD1"], E["ELAPSED"]))
md.append("- s2s: %s; %s; OpenBLAS package %s (`%s`)" % (E["CCV"], "OpenMP %d" % blas["openmp"], E["OBV"], blas["blas"]))
md.append("- torch: %s (%s, eager, same OpenBLAS through Debian's libblas alternative)" % (E["TORCHV"], E["PYV"]))
md.append("- model: %s" % model_desc)
md.append("- data: %s" % E["DATA"])
md.append("- decoding: batches of consecutive lines, length limit %s generated tokens incl. </s>, beam %s, "
          "length penalty 1; tokens = generated tokens incl. </s>" % (E["MAXLEN"], E["BEAM"]))
md.append("- training: forward + backward + clip + AdamW on token-count batches (tokens_per_batch %s, "
          "%s warm-up + %s timed steps, dropout 0.1, label smoothing 0.1); tokens = non-pad target tokens"
          % (E["TPB"], E["TWARM"], E["STEPS"]))
md.append("")
md.append(t1)
md.append("")
md.append("`same outputs`: sentences whose s2s output ids equal torch's in that cell.")
if t2:
    md.append("")
    md.append("Thread scaling (tok/s with %d threads / with 1 thread):\n" % ths[-1])
    md.append(t2)
md.append("")
md.append("<details><summary>raw measurements (JSON lines)</summary>\n")
md.append("```")
md.extend(json.dumps(r) for r in recs)
md.append("```\n</details>")
open(E["OUT"], "w").write("\n".join(md) + "\n")
print("\nwrote %s" % E["OUT"])
EOF
