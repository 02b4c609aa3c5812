#!/usr/bin/env bash
# methods-bible-gpu.sh - the Bible EN->ES runs of every method (issues 5-8) on a GPU
# machine of one or more GPUs, through scripts/device-gpu.sh (prebuilt binaries of
# scripts/make-device-bundle.sh), then their measurements there: test-set quality
# (BLEU / chrF2; on the GPU where the decoder runs there, DEED on the CPUs) and
# single-thread CPU decoding speed. docs/RESULTS.md quotes what it wrote.
#
#   bash scripts/methods-bible-gpu.sh start SECS   distil the teacher (beam 5 on the GPU), then launch
#                                                  every job in the background, each stopped after SECS
#   bash scripts/methods-bible-gpu.sh wait SECS    progress every 60 s until all jobs end or SECS pass
#   bash scripts/methods-bible-gpu.sh finish       stop what still runs, then quality + speed -> runs/bible/
#                                                  (SPEED=0: quality only)
#   bash scripts/methods-bible-gpu.sh collect      results and logs -> $OUT, plus the models named in $MODELS
#
# TEACHER (default build-dev/bible/teacher.safetensors: not in models/, 26.5 MB > 25 MB: carry it)
# and the data: carry build-dev/bible.tar.xz (`tar cJf build-dev/bible.tar.xz data/bible/*.{src,tgt}`).
# Jobs (8k-token batches, TF32 matmuls; the teacher's best checkpoint was step 10,000):
#   nash-n{1,2,3}-s{0,0.3,0.5,0.7}  s2s prune: 1,200 mask steps (t > 0) + 1,800 fine-tuning steps, KD 0.5
#                                   (the recipe of the G2P grid)
#   deed                            exit adapters (rank 64) + deep supervision, 2,500 steps, lr 3e-4
#   t2r-k64, t2r-k64-lr8            swap + fine-tune, 2,500 steps (25 %), lr 4e-4 / 8e-4
#   t2r-k{16,32,48,64}-kd           the lr 8e-4 run on the teacher's beam-5 outputs (sequence-level KD),
#                                   feature size k (only t2r-k64-kd in the default list)
#   t2r-elu-kd                      the same swap with the fixed elu(x)+1 map (Katharopoulos et al.)
#   t2r-k32-scratch-kd              the T2R k = 32 model from scratch on the distilled targets, the
#                                   teacher's recipe (10,000 steps) or until SECS
#   {ssru,gru,lstm}{1,2}-{kd,orig}  hybrid students: the teacher's encoder and embeddings, a new
#                                   recurrent decoder, 4,000 steps, lr 1e-3, on the teacher's beam-5
#                                   outputs (kd) or the original targets (orig)
#   nash-ssru{1,2}-kd               issue 9's stack: the same SSRU students on the NASH-narrowed encoder
#                                   of NASH_MODEL (default build-dev/bible/nash-n2-s0.5.safetensors; only
#                                   with JOBS=..., carry it)
# JOBS="..." restricts the list (names as above).
set -u
cd "$(dirname "$0")/.."
D="bash scripts/device-gpu.sh"
T=${TEACHER:-build-dev/bible/teacher.safetensors}
R=runs/bible
BIN=build-dev/bin
mkdir -p $R
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l); [ "$NGPU" -ge 1 ] || NGPU=1
$D help >/dev/null 2>&1                      # libraries (and the G2P data, if carried)
if [ ! -f data/bible/train.src ]; then
    mkdir -p /tmp/s2s-bible && tar xJf build-dev/bible.tar.xz -C /tmp/s2s-bible
    [ -d data ] || { rm -f data; mkdir data; }
    rm -rf data/bible; ln -s /tmp/s2s-bible/data/bible data/bible
fi
export LD_LIBRARY_PATH=/tmp/s2s-lib:/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
COMMON=(--config configs/bible-teacher.conf --threads 2 --tf32 --eval-every 500 --eval-max 200 --patience 0)
BASE=("${COMMON[@]}" --init "$T")  # fine-tuning from the teacher
NASH=(--train-src data/bible/train.src --train-tgt data/bible/train.tgt --dev-src data/bible/dev.src
      --dev-tgt data/bible/dev.tgt --metric bleu --eval-every 600 --eval-max 200 --tokens-per-batch 8000
      --threads 2 --tf32 --prune-steps 1200 --prune-warmup 600 --finetune-steps 1800 --lr 3e-4 --warmup 300
      --fp16)
jobs_list() {
    if [ -n "${JOBS:-}" ]; then echo $JOBS; return; fi
    for n in 1 2 3; do for s in 0 0.3 0.5 0.7; do echo nash-n$n-s$s; done; done
    echo deed t2r-k64 t2r-k64-lr8 t2r-k64-kd
    for k in ssru gru lstm; do for n in 1 2; do echo $k$n-kd $k$n-orig; done; done
}
final_model() { case $1 in nash-ssru*) echo runs/$1/best.safetensors ;; nash-*) echo runs/$1/model.safetensors ;;
                 *) echo runs/$1/best.safetensors ;; esac; }
gpu_of() { # NAME -> GPU: NASH n on GPU n-1, the rest spread so every GPU carries about the same work
    local g
    case $1 in
        nash-n*) g=${1#nash-n}; g=$(( ${g%%-*} - 1 )) ;;
        deed|t2r-*) g=3 ;;
        ssru1-kd|gru2-kd|lstm2-orig) g=0 ;;
        ssru1-orig|gru2-orig|lstm1-kd) g=1 ;;
        gru1-kd|lstm1-orig) g=2 ;;
        *) g=3 ;;
    esac
    echo $(( g % NGPU ))
}
cmd=${1:-}; shift || true
case "$cmd" in
start)
    secs=$1
    [ -s data/bible/train.kd.tgt ] || { CUDA_VISIBLE_DEVICES=$((3 % NGPU)) $BIN/s2s translate -m "$T" --beam 5 --batch 256 \
        --device cuda --quiet < data/bible/train.src > data/bible/train.kd.tgt.tmp \
        && mv data/bible/train.kd.tgt.tmp data/bible/train.kd.tgt; }
    wc -l data/bible/train.kd.tgt
    for j in $(jobs_list); do
        g=$(gpu_of $j)
        case $j in
            nash-ssru*) n=${j#nash-ssru}; n=${n%%-*}
                    GPU=$g $D start $j "$secs" "${BASE[@]}" --init "${NASH_MODEL:-build-dev/bible/nash-n2-s0.5.safetensors}" \
                        --decoder ssru --dec-layers $n --lr 1e-3 --warmup 1000 --max-steps 4000 \
                        --train-tgt data/bible/train.kd.tgt ;;
            nash-*) n=${j#nash-n}; s=${n#*-s}; n=${n%%-*}
                    GPU=$g CMD=prune $D start $j "$secs" -m "$T" --decoder-layers $n --encoder-sparsity $s "${NASH[@]}" ;;
            deed) GPU=$g $D start $j "$secs" "${BASE[@]}" --multi-exit --exit-rank 64 --lr 3e-4 --warmup 300 \
                      --max-steps 2500 ;;
            t2r-k64) GPU=$g $D start $j "$secs" "${BASE[@]}" --dec-attn t2r --t2r-k 64 --lr 4e-4 --warmup 300 \
                      --max-steps 2500 ;;
            t2r-k64-lr8) GPU=$g $D start $j "$secs" "${BASE[@]}" --dec-attn t2r --t2r-k 64 --lr 8e-4 --warmup 300 \
                      --max-steps 2500 ;;
            t2r-elu-kd) GPU=$g $D start $j "$secs" "${BASE[@]}" --dec-attn t2r --t2r-map elu --lr 8e-4 --warmup 300 \
                      --max-steps 2500 --train-tgt data/bible/train.kd.tgt ;;
            t2r-k32-scratch-kd) GPU=$g $D start $j "$secs" "${COMMON[@]}" --dec-attn t2r --t2r-k 32 --max-steps 10000 \
                      --train-tgt data/bible/train.kd.tgt ;;
            t2r-k*-kd) k=${j#t2r-k}; k=${k%-kd}
                      GPU=$g $D start $j "$secs" "${BASE[@]}" --dec-attn t2r --t2r-k $k --lr 8e-4 --warmup 300 \
                      --max-steps 2500 --train-tgt data/bible/train.kd.tgt ;;
            *-kd|*-orig) k=${j%%[12]-*}; n=${j#$k}; n=${n%%-*}
                      tg=data/bible/train.tgt; [ "${j##*-}" = kd ] && tg=data/bible/train.kd.tgt
                      GPU=$g $D start $j "$secs" "${BASE[@]}" --decoder $k --dec-layers $n --lr 1e-3 --warmup 1000 \
                          --max-steps 4000 --train-tgt $tg ;;
        esac
    done
    ;;
wait)
    $D progress "$1" $(jobs_list)
    ;;
finish)
    $D stopall
    for j in $(jobs_list); do grep -E "^eval|done|interrupted|saved" runs/$j/stderr.log | tail -n 2 | sed "s|^|$j: |"; done \
        > $R/train-tail.txt 2>&1
    # quality: every model greedy and beam 5 on the GPU (DEED early exit on the CPUs)
    ev() { # NAME MODEL flags...: "NAME bleu ... | chrf ... | stderr tail"
        local n=$1 m=$2; shift 2
        $BIN/s2s translate -m "$m" --quiet "$@" < data/bible/test.src > $R/$n.hyp 2> $R/$n.err
        echo "$n $($BIN/s2s score --metric bleu --ref data/bible/test.tgt --hyp $R/$n.hyp | cut -c1-60) |" \
             "$($BIN/s2s score --metric chrf --ref data/bible/test.tgt --hyp $R/$n.hyp | cut -c1-40) | $(tail -n 1 $R/$n.err)"
    }
    export -f ev; export BIN R
    q=$R/quality.jobs; : > $q
    gpuq() { echo "CUDA_VISIBLE_DEVICES=$(( $(wc -l < $q) % NGPU )) ev $1 --device cuda --batch 64 --threads 2" >> $q; }
    for b in 1 5; do gpuq "teacher@b$b $T --beam $b"; done
    for j in $(jobs_list); do
        m=$(final_model $j); [ -f "$m" ] || { echo "$j: no model" >&2; continue; }
        case $j in
            deed) continue ;;
            t2r-*) for b in 1 5; do echo "ev $j@b$b $m --beam $b --threads 1" >> $q; done ;;  # CPU only
            *) for b in 1 5; do gpuq "$j@b$b $m --beam $b"; done ;;
        esac
    done
    if [ -f runs/deed/best.safetensors ]; then
        M=runs/deed/best.safetensors
        echo "ev deed-full@b1 $M --beam 1 --threads 1" >> $q; echo "ev deed-full@b5 $M --beam 5 --threads 1" >> $q
        for t in 0.5 0.6 0.7 0.8 0.9 0.95 0.99; do
            echo "ev deed-jit-$t@b1 $M --beam 1 --threads 1 --exit-threshold $t" >> $q
            echo "ev deed-copy-$t@b1 $M --beam 1 --threads 1 --exit-threshold $t --exit-states copy" >> $q
        done
        for t in 0.8 0.9; do echo "ev deed-jit-$t@b5 $M --beam 5 --threads 1 --exit-threshold $t" >> $q; done
    fi
    xargs -P 24 -I{} bash -c '{}' < $q 2>&1 | sort > $R/quality.txt
    [ "${SPEED:-1}" = 0 ] && { cat $R/quality.txt; exit 0; }
    # speed: one thread per process, 8 processes at once on separate cores (the host has many);
    # the first 60 test verses at batch 1, 128 at batch 32; greedy and beam 5
    $BIN/bench_s2s -m "$T" --dump-ids data/bible/test.src --side src > $R/test.ids
    head -n 60 $R/test.ids > $R/b1.ids; head -n 128 $R/test.ids > $R/b32.ids
    sp() { # CORE NAME MODEL [flags]
        local c=$1 n=$2 m=$3; shift 3
        for b in 1 32; do
            taskset -c $c $BIN/bench_s2s -m "$m" -i $R/b$b.ids --threads 1 --beam 5 --batch $b "$@" 2>/dev/null \
                | sed "s/^{/{\"name\": \"$n\", /"
        done > $R/speed-$n.jsonl
    }
    export -f sp
    s=$R/speed.jobs; : > $s; i=0
    add() { echo "sp $(( (i % 8) * 4 + 2 )) $*" >> $s; i=$((i + 1)); }
    add teacher "$T"
    for j in $(jobs_list); do m=$(final_model $j); [ -f "$m" ] && [ $j != deed ] && add $j "$m"; done
    if [ -f runs/deed/best.safetensors ]; then
        add deed-full runs/deed/best.safetensors
        for t in 0.6 0.8 0.9; do add deed-jit-$t runs/deed/best.safetensors --exit-threshold $t; done
        add deed-copy-0.8 runs/deed/best.safetensors --exit-threshold 0.8 --exit-states copy
    fi
    add teacher-again "$T"
    xargs -P 8 -I{} bash -c '{}' < $s
    cat $R/speed-*.jsonl > $R/speed.jsonl
    for j in $(jobs_list); do [ -f "$(final_model $j)" ] && $BIN/s2s info -m "$(final_model $j)" > $R/$j.info 2>&1; done
    lscpu | grep -m1 'Model name' > $R/machine.txt; nproc >> $R/machine.txt; nvidia-smi -L >> $R/machine.txt
    wc -l $R/quality.txt $R/speed.jsonl
    cat $R/quality.txt
    ;;
collect)
    tar czf "$OUT/bible-logs.tgz" $R/quality.txt $R/speed.jsonl $R/train-tail.txt $R/*.info $R/machine.txt \
        runs/*/train.log runs/*/stderr.log runs/*/*/train.log 2>/dev/null
    for j in ${MODELS:-}; do
        m=$(final_model $j); [ -f "$m" ] && split -b 15M -d "$m" "$OUT/$j.part"
    done
    ls -la "$OUT"
    ;;
*) sed -n 2,25p "$0"; exit 2 ;;
esac
