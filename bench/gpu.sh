#!/usr/bin/env bash
# bench/gpu.sh - GPU benchmark (issue 4): s2s (bench_s2s --device cuda) against eager
# PyTorch (bench/torch_bench.py --device cuda) on the same GPU, the same checkpoint, the
# same inputs and the same training batches, in one run. See bench/README.md.
#
#   bash bench/gpu.sh                        # full run (about 3-5 minutes on an H100)
#   bash bench/gpu.sh --quick                # tiny subset (about a minute): checks that all works
#   bash bench/gpu.sh --model M.safetensors --out /tmp/r.md --repeat 3
#   BIN=build-dev/bench_s2s bash bench/gpu.sh --out "$OUT/results-gpu.md"
#
# Builds nothing: BIN (default build/bench_s2s) must be a CUDA build of bench_s2s; if
# a bundle.tar.xz of shared libraries lies beside it (scripts/device-gpu.sh), it is
# unpacked to /tmp/s2s-lib and put on bench_s2s's LD_LIBRARY_PATH. PY (default python3)
# must import torch with CUDA; without it the run is s2s only. Without a GPU (or with a
# bench_s2s built without CUDA) it stops with a message; DEVICE=cpu runs the same cells
# on the CPU, only to check this script on a machine without a GPU.
# Sizes from the environment: N1 N32 N256 (sentences decoded at batch 1/32/256), NTRAIN
# (training pairs), TPBS (tokens_per_batch values, "4096 16384"), STEPS/TWARM (timed/
# untimed training steps), MAXLEN (decoding length limit), G2P (data directory), BEAM,
# THREADS (CPU threads of both, 1), CELL_TIMEOUT (seconds per process, 180), WORK
# (work files, build/bench-gpu), GIT_COMMIT (the commit, when git is absent).
#
# Prints the tables and writes them as markdown (default bench/results-gpu.md) with the
# GPU, date, commit, command, versions and the raw JSON lines.
set -euo pipefail
cd "$(dirname "$0")/.."

CMDLINE="bash bench/gpu.sh${*:+ $*}"
QUICK=0
MODEL=""
RESULTS="bench/results-gpu.md"
REPEAT=${REPEAT:-1}
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --model) MODEL="$2"; shift ;;
        --out) RESULTS="$2"; shift ;;
        --repeat) REPEAT="$2"; shift ;;
        -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
        *) echo "bench/gpu.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    N1=${N1:-8}; N32=${N32:-64}; N256=${N256:-256}; NTRAIN=${NTRAIN:-2000}
    TPBS=${TPBS:-2048}; STEPS=${STEPS:-3}; TWARM=${TWARM:-1}; RAND_MAXLEN=10
else
    N1=${N1:-100}; N32=${N32:-1024}; N256=${N256:-2048}; NTRAIN=${NTRAIN:-20000}
    TPBS=${TPBS:-4096 16384}; STEPS=${STEPS:-20}; TWARM=${TWARM:-3}; RAND_MAXLEN=32
fi
BEAM=${BEAM:-5}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-cuda}
CELL_TIMEOUT=${CELL_TIMEOUT:-180}
BIN=${BIN:-build/bench_s2s}
PY=${PY:-python3}
W=${WORK:-build/bench-gpu}
# the fp32 cells must be strict fp32: no TF32 forced from the environment
unset NVIDIA_TF32_OVERRIDE TORCH_ALLOW_TF32_CUBLAS_OVERRIDE

case "$DEVICE" in cuda|cpu) ;; *) echo "bench/gpu.sh: DEVICE must be cuda or cpu" >&2; exit 2 ;; esac
if [ ! -x "$BIN" ]; then
    echo "bench/gpu.sh: no $BIN (gpu.sh builds nothing: make CUDA=1 $BIN, or set BIN)" >&2
    exit 1
fi

# ---- bench_s2s, with the shipped library bundle if there is one beside it
S2S=("$BIN")
BUNDLE=${BUNDLE:-$(dirname "$BIN")/bundle.tar.xz}
if [ -f "$BUNDLE" ]; then
    L=/tmp/s2s-lib
    if [ ! -f $L/.done ]; then mkdir -p $L && tar xJf "$BUNDLE" -C $L && touch $L/.done; fi
    # only for bench_s2s: the bundle's libz/libffi/libcrypto must not reach python
    S2S=(env "LD_LIBRARY_PATH=$L:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$BIN")
fi

# ---- the GPU: a clear stop when there is none
GPU_NAME="" GPU_DRIVER="" GPU_MEM=""
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
    GPU_DRIVER=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)
    GPU_MEM=$(nvidia-smi --query-gpu=memory.total --format=csv,noheader | head -1)
fi
if [ "$DEVICE" = cuda ]; then
    if ! msg=$("${S2S[@]}" --info --device cuda 2>&1 >/dev/null); then
        echo "bench/gpu.sh: $BIN cannot run on the GPU: ${msg:-bench_s2s --info --device cuda failed}" >&2
        [ -z "$GPU_NAME" ] && echo "bench/gpu.sh: no GPU found (nvidia-smi missing or sees no GPU); this benchmark needs one" >&2
        echo "bench/gpu.sh: (to check this script without a GPU: DEVICE=cpu BIN=build-nocuda/bench_s2s bash bench/gpu.sh --quick)" >&2
        exit 1
    fi
    [ -n "$GPU_NAME" ] || GPU_NAME=$("${S2S[@]}" --info --device cuda | sed -n 's/.*"cuda_device":"\([^"]*\)".*/\1/p')
else
    GPU_NAME="none: DEVICE=cpu ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //'), $(nproc) cores), a check of the script, not a GPU result"
fi

HAVE_TORCH=1
if ! "$PY" -c "import torch, sys; sys.exit(0 if '$DEVICE' == 'cpu' or torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "bench/gpu.sh: $PY cannot import torch with $DEVICE; s2s only" >&2
    HAVE_TORCH=0
fi

mkdir -p "$W/out"

# ---- model: --model M, else a random model of the Bible-teacher size
G2P=${G2P:-}
if [ -z "$G2P" ]; then
    for d in data/g2p "$(dirname "$BIN")/data/g2p"; do
        if [ -f "$d/test.src" ] && [ -f "$d/train.src" ]; then G2P=$d; break; fi
    done
fi
RANDOM_MODEL=0
if [ -z "$MODEL" ]; then
    RANDOM_MODEL=1
    MODEL=$W/random-8k-fp16.safetensors
    if [ ! -f "$MODEL" ]; then
        echo "== making $MODEL (random weights, D=256 H=4 F=1024 6+6, vocab 8000)" >&2
        if [ -n "$G2P" ]; then
            "${S2S[@]}" --make-model "$MODEL" --vocab 8000 --corpus-src "$G2P/train.src" --corpus-tgt "$G2P/train.tgt"
        else
            "${S2S[@]}" --make-model "$MODEL" --vocab 8000
        fi
    fi
fi
[ -f "$MODEL" ] || { echo "bench/gpu.sh: no model $MODEL" >&2; exit 1; }
"${S2S[@]}" --info -m "$MODEL" > "$W/info.jsonl"
cfg() { "$PY" -c "import json; print([json.loads(l) for l in open('$W/info.jsonl') if '\"params\"' in l][0]['$1'])"; }
MAXLEN_CFG=$(cfg max_len)
VS=$(cfg src_vocab); VT=$(cfg tgt_vocab)
if [ -z "${MAXLEN:-}" ]; then
    if [ "$RANDOM_MODEL" = 1 ]; then MAXLEN=$RAND_MAXLEN
    else MAXLEN=$(( MAXLEN_CFG - 1 < 100 ? MAXLEN_CFG - 1 : 100 )); fi
fi

# ---- data: test words / training pairs of data/g2p (tokenized by the model), else synthetic
NDEC=$N1; [ "$N32" -gt "$NDEC" ] && NDEC=$N32; [ "$N256" -gt "$NDEC" ] && NDEC=$N256
if [ -n "$G2P" ]; then
    DATA="$G2P, tokenized by the model: decoding the first $N1 / $N32 / $N256 test words at batch 1 / 32 / 256; training on the first $NTRAIN training pairs"
    "${S2S[@]}" -m "$MODEL" --dump-ids "$G2P/test.src" --side src --limit "$NDEC" > "$W/dec.src.ids"
    if [ "$(wc -l < "$W/dec.src.ids")" -lt "$NDEC" ]; then # a small test set: add the dev words
        "${S2S[@]}" -m "$MODEL" --dump-ids "$G2P/dev.src" --side src --limit "$NDEC" >> "$W/dec.src.ids"
    fi
    "${S2S[@]}" -m "$MODEL" --dump-ids "$G2P/train.src" --side src --limit "$NTRAIN" > "$W/train.src.ids"
    "${S2S[@]}" -m "$MODEL" --dump-ids "$G2P/train.tgt" --side tgt --limit "$NTRAIN" > "$W/train.tgt.ids"
else
    DATA="synthetic ids (no data/g2p), lengths 3-14: decoding $N1 / $N32 / $N256 sources at batch 1 / 32 / 256; training on $NTRAIN pairs"
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
FAILED=()
# runj TAG CMD...: run one process (under CELL_TIMEOUT), append its JSON lines to $RES
# with TAG inserted after "{"; a failure is reported and the run goes on
runj() {
    local tag=$1 rc=0
    shift
    timeout "$CELL_TIMEOUT" "$@" > "$W/last.out" || rc=$?
    if [ "$rc" != 0 ]; then
        local why="exit $rc"
        [ "$rc" = 124 ] && why="timed out after ${CELL_TIMEOUT}s"
        echo "bench/gpu.sh: FAILED ($why): $*" >&2
        FAILED+=("$why: $*")
    fi
    grep '^{' "$W/last.out" | sed "s/^{/{$tag/" | tee -a "$RES" || true
}
TORCH=("$PY" bench/torch_bench.py)
T0=$(date +%s)

# ---- decoding: per batch size, s2s then torch (greedy and beam in the same process)
for BS in 1 32 256; do
    case $BS in 1) N=$N1 ;; 32) N=$N32 ;; *) N=$N256 ;; esac
    echo "== decode batch=$BS ($N sentences, max-len $MAXLEN, greedy + beam $BEAM, $DEVICE)" >&2
    common=(-m "$MODEL" -i "$W/dec.src.ids" --device "$DEVICE" --threads "$THREADS" --batch "$BS"
            --beam "$BEAM" --max-len "$MAXLEN" --limit "$N")
    for _ in $(seq "$REPEAT"); do
        runj "" "${S2S[@]}" "${common[@]}" --outputs "$W/out/s2s-greedy-b$BS.ids" \
            --beam-outputs "$W/out/s2s-beam-b$BS.ids"
        if [ "$HAVE_TORCH" = 1 ]; then
            runj '"tf32": 0, ' "${TORCH[@]}" "${common[@]}" --outputs "$W/out/torch-greedy-b$BS.ids" \
                --beam-outputs "$W/out/torch-beam-b$BS.ids"
        fi
    done
done

# ---- training: the same token-count batches for both; fp32, then TF32 for both on the GPU
for TPB in $TPBS; do
    echo "== train tokens_per_batch=$TPB ($TWARM + $STEPS steps, $DEVICE)" >&2
    common=(-m "$MODEL" --device "$DEVICE" --threads "$THREADS" --train-src "$W/train.src.ids"
            --train-tgt "$W/train.tgt.ids" --tokens-per-batch "$TPB" --train-steps "$STEPS"
            --train-warmup "$TWARM")
    for _ in $(seq "$REPEAT"); do
        runj "" "${S2S[@]}" "${common[@]}"
        if [ "$HAVE_TORCH" = 1 ]; then runj '"tf32": 0, ' "${TORCH[@]}" "${common[@]}"; fi
        if [ "$DEVICE" = cuda ]; then
            runj "" "${S2S[@]}" "${common[@]}" --tf32
            if [ "$HAVE_TORCH" = 1 ]; then
                runj '"tf32": 1, ' env TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 "${TORCH[@]}" "${common[@]}"
            fi
        fi
    done
done
ELAPSED=$(( $(date +%s) - T0 ))

# ---- report
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo "${GIT_COMMIT:-unknown}")
if git rev-parse HEAD >/dev/null 2>&1 && [ -n "$(git status --porcelain 2>/dev/null)" ]; then
    COMMIT="$COMMIT (working tree modified)"
fi
TORCHV=none
if [ "$HAVE_TORCH" = 1 ]; then
    TORCHV=$(TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 "$PY" -c "import torch, sys
print('torch %s, CUDA %s, %s; TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 gives allow_tf32=%s' % (torch.__version__,
      torch.version.cuda, sys.version.split()[0], torch.backends.cuda.matmul.allow_tf32))")
fi
CPU=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
FAILS=$(printf '%s\n' "${FAILED[@]+"${FAILED[@]}"}")
export W RES RESULTS MODEL DATA MAXLEN BEAM TPBS STEPS TWARM N1 N32 N256 COMMIT TORCHV CPU CMDLINE \
       ELAPSED RANDOM_MODEL REPEAT DEVICE GPU_NAME GPU_DRIVER GPU_MEM BIN FAILS THREADS
"$PY" - <<'EOF'
import json, os, datetime
E = os.environ
W = E["W"]
recs = [json.loads(l) for l in open(E["RES"]) if l.startswith("{")]
info = [json.loads(l) for l in open(os.path.join(W, "info.jsonl"))]
blas = info[0]
cfg = [x for x in info if "params" in x][0]

def key(r):
    if r["mode"] == "train":
        return (r["impl"], "train", r["tokens_per_batch"], 0, r.get("tf32", 0))
    return (r["impl"], r["mode"], r["batch"], r["beam"], r.get("tf32", 0))

by = {}
for r in recs:  # with --repeat, the fastest run of each cell
    k = key(r)
    if k not in by or r["tok_per_s"] > by[k]["tok_per_s"]:
        by[k] = r

def fmt(x):
    return "%.0f" % x if x >= 100 else "%.1f" % x

def same(mode, b):
    p = [os.path.join(W, "out", "%s-%s-b%d.ids" % (i, mode, b)) for i in ("s2s", "torch")]
    if not all(os.path.exists(x) for x in p):
        return "-"
    a, c = (open(x).read().splitlines() for x in p)
    return "%d/%d" % (sum(x == y for x, y in zip(a, c)), max(len(a), len(c)))

def ratio(s, t):
    return s["tok_per_s"] / t["tok_per_s"] if s and t and t["tok_per_s"] > 0 else None

def mem(s):
    return "%.0f" % s["gpu_mem_mb"] if s and "gpu_mem_mb" in s else "-"

dec = sorted({k[1:] for k in by if k[1] != "train"}, key=lambda c: ({"greedy": 0, "beam": 1}[c[0]], c[1]))
rows1 = []
for mode, b, k, tf in dec:
    s, t = by.get(("s2s", mode, b, k, tf)), by.get(("torch", mode, b, k, tf))
    r = ratio(s, t)
    rows1.append([mode, str(b), str(k) if mode == "beam" else "-", str((s or t)["sentences"]),
                  fmt(s["tok_per_s"]) if s else "failed", fmt(t["tok_per_s"]) if t else "n/a",
                  "%.2f" % r if r else "n/a", same(mode, b), mem(s)])
hdr1 = ["mode", "batch", "beam", "sentences", "s2s tok/s", "torch tok/s", "s2s/torch", "same outputs", "s2s GPU MB"]

tr = sorted({k[2:] for k in by if k[1] == "train"}, key=lambda c: (c[0], c[2]))
rows2 = []
for tpb, _, tf in tr:
    s, t = by.get(("s2s", "train", tpb, 0, tf)), by.get(("torch", "train", tpb, 0, tf))
    r = ratio(s, t)
    loss = "%s / %s" % ("%.3f" % s["last_loss"] if s else "-", "%.3f" % t["last_loss"] if t else "-")
    rows2.append(["%d tok (~%d sent)" % (tpb, (s or t)["batch"]), "tf32" if tf else "fp32",
                  fmt(s["tok_per_s"]) if s else "failed", fmt(t["tok_per_s"]) if t else "n/a",
                  "%.2f" % r if r else "n/a", mem(s), loss])
hdr2 = ["batch", "matmuls", "s2s tok/s", "torch tok/s", "s2s/torch", "s2s GPU MB", "last loss s2s / torch"]

def table(h, rs, left=2):
    if not rs:
        return "(no measurements)"
    w = [max(len(h[i]), *(len(r[i]) for r in rs)) for i in range(len(h))]
    line = lambda r: "| " + " | ".join(x.ljust(w[i]) if i < left else x.rjust(w[i]) for i, x in enumerate(r)) + " |"
    sep = "|" + "|".join(":" + "-" * (x + 1) if i < left else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|"
    return "\n".join([line(h), sep] + [line(r) for r in rs])

# the targets of issue 4
tg = []
tr_r = [(tpb, ratio(by.get(("s2s", "train", tpb, 0, 0)), by.get(("torch", "train", tpb, 0, 0)))) for tpb, _, tf in tr if not tf]
tr_r = [x for x in tr_r if x[1] is not None]
if tr_r:
    ok = all(r >= 1.0 for _, r in tr_r)
    tg.append("- training at least PyTorch eager's tokens/s (fp32, same batches): **%s** (s2s/torch %s)"
              % ("met" if ok else "not met", ", ".join("%.2f at %d tok" % (r, tpb) for tpb, r in tr_r)))
d1 = [(m, ratio(by.get(("s2s", m, 1, k, 0)), by.get(("torch", m, 1, k, 0)))) for m, b, k, tf in dec if b == 1 and not tf]
d1 = [x for x in d1 if x[1] is not None]
if d1:
    ok = all(r >= 3.0 for _, r in d1)
    tg.append("- decoding at batch 1 at least 3x PyTorch eager: **%s** (s2s/torch %s)"
              % ("met" if ok else "not met", ", ".join("%s %.2f" % (m, r) for m, r in d1)))

t1, t2 = table(hdr1, rows1), table(hdr2, rows2, left=1)
print()
print(t1)
print()
print(t2)
if tg:
    print()
    print("\n".join(tg))

model_desc = "%s: %s parameters, D=%d H=%d F=%d, %d+%d layers, vocab %d/%d, max_len %d%s" % (
    E["MODEL"], format(cfg["params"], ","), cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["enc_layers"],
    cfg["dec_layers"], cfg["src_vocab"], cfg["tgt_vocab"], cfg["max_len"],
    " (random weights: it rarely emits </s>, so nearly every sentence runs to the length limit)"
    if E["RANDOM_MODEL"] == "1" else "")
gpu = E["GPU_NAME"]
if E["GPU_DRIVER"] and E["DEVICE"] == "cuda":
    gpu += " (%s, driver %s)" % (E["GPU_MEM"], E["GPU_DRIVER"])
md = []
md.append("# s2s vs PyTorch eager: GPU benchmark\n")
md.append("Written by `bench/gpu.sh` (see bench/README.md for what is measured and how to read it).\n")
md.append("- GPU: **%s**" % gpu)
md.append("- command: `%s`%s" % (E["CMDLINE"], " (REPEAT=%s: fastest of %s runs per cell)" % (E["REPEAT"], E["REPEAT"]) if E["REPEAT"] != "1" else ""))
md.append("- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"))
md.append("- commit: %s" % E["COMMIT"])
md.append("- host: %s; %s CPU thread(s) for each implementation; the cells took %s s" % (E["CPU"], E["THREADS"], E["ELAPSED"]))
md.append("- s2s: `%s` (%s; OpenMP %d)" % (E["BIN"], blas["compiler"], blas["openmp"]))
md.append("- torch: %s (eager)" % E["TORCHV"])
md.append("- model: %s" % model_desc)
md.append("- data: %s" % E["DATA"])
md.append("- decoding: fp32; batches of consecutive lines, length limit %s generated tokens incl. </s>, beam %s, "
          "length penalty 1; tokens = generated tokens incl. </s>, over the wall time after a warm-up" % (E["MAXLEN"], E["BEAM"]))
md.append("- training: forward + backward + clip + AdamW on token-count batches (tokens_per_batch %s; %s warm-up + %s "
          "timed steps; dropout 0.1, label smoothing 0.1); tokens = non-pad target tokens. `fp32`: strict fp32 "
          "matmuls in both; `tf32`: s2s `--tf32`, torch with TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1"
          % (E["TPBS"], E["TWARM"], E["STEPS"]))
if E["FAILS"].strip():
    md.append("- **failed processes** (their cells are missing or marked failed):")
    md.extend("  - `%s`" % f for f in E["FAILS"].strip().splitlines())
md.append("")
md.append("## Targets (issue 4)\n")
md.extend(tg or ["(not enough measurements)"])
md.append("")
md.append("## Decoding\n")
md.append(t1)
md.append("")
md.append("`same outputs`: sentences whose s2s output ids equal torch's in that cell. "
          "`s2s GPU MB`: device memory in use by bench_s2s above what was in use before the model was "
          "uploaded (cudaMemGetInfo, largest value seen after the warm-up and after the timed run).")
md.append("")
md.append("## Training\n")
md.append(t2)
md.append("")
md.append("<details><summary>raw measurements (JSON lines)</summary>\n")
md.append("```")
md.extend(json.dumps(r) for r in recs)
md.append("```\n</details>")
os.makedirs(os.path.dirname(E["RESULTS"]) or ".", exist_ok=True)
open(E["RESULTS"], "w").write("\n".join(md) + "\n")
print("\nwrote %s" % E["RESULTS"])
EOF
if [ "${#FAILED[@]}" -gt 0 ]; then
    echo "bench/gpu.sh: ${#FAILED[@]} process(es) failed (listed in $RESULTS)" >&2
    exit 1
fi
