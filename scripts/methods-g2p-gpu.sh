#!/usr/bin/env bash
# methods-g2p-gpu.sh - train the G2P models of T2R, DEED and NASH from the shipped
# teacher on a GPU machine of one or more GPUs, then measure them there: test-set
# quality on the CPUs (many decodes at once) and single-thread CPU decoding speed
# (one model at a time). Runs through scripts/device-gpu.sh (prebuilt binaries of
# scripts/make-device-bundle.sh). docs/RESULTS.md quotes what it wrote.
#
#   bash scripts/methods-g2p-gpu.sh start SECS    launch every job in the background (GPUs round-robin),
#                                                 each stopped after SECS at most
#   bash scripts/methods-g2p-gpu.sh wait SECS     progress every 60 s until all jobs end or SECS pass
#   bash scripts/methods-g2p-gpu.sh finish        stop what still runs, then quality + speed -> runs/methods/
#   bash scripts/methods-g2p-gpu.sh collect       results, logs and the chosen models -> $OUT
#   bash scripts/methods-g2p-gpu.sh stacks-deed SECS  issue 9's T2R + DEED stacks, both at once, each stopped
#                                                 after SECS (the best checkpoint is kept): the teacher, and
#                                                 the NASH model models/g2p-nash-n2-s0.3.safetensors, each
#                                                 swapped to T2R attention (k = 64) with exit adapters added
#                                                 (--dec-attn t2r --multi-exit), fine-tuned in one go
#                                                 (lr 4e-4, TF32) -> runs/t2r-deed, runs/nash-t2r-deed
#   bash scripts/methods-g2p-gpu.sh optimize SECS  `s2s optimize` over its default search space on the GPU
#                                                 (1,000 steps per stage, TF32), in the background for at most
#                                                 SECS (rerun to resume) -> runs/optimize
#   bash scripts/methods-g2p-gpu.sh hybrid-orig SECS  issue 5's 1-layer SSRU, GRU and LSTM students on the original
#                                                 targets (configs/g2p-ssru.conf, TF32), all at once for SECS each,
#                                                 then their test quality -> runs/methods/hybrid-orig.txt
#   bash scripts/methods-g2p-gpu.sh stacks SECS   issue 9's first stack: distil the teacher (beam 5 on the GPU),
#                                                 then SSRU-2 and SSRU-1 decoders on the NASH encoder of
#                                                 models/g2p-nash-n2-s0.3.safetensors, SECS each, both at once,
#                                                 then their test quality -> runs/methods/stacks.txt
#
# Jobs (steps are target-token batches of 8,000; the teacher's best checkpoint was step 9,000):
#   t2r-k16/k32/k64, t2r-elu  swap + fine-tune, 2,250 steps (25% of the teacher's)
#   t2r-scratch               the T2R k=32 model trained from scratch for the whole window
#   deed (WITH_DEED=1)        exit adapters + deep-supervision fine-tuning, 3,000 steps
#                             (the shipped DEED model came from configs/g2p-deed.conf instead)
#   nash-n{1,2,3}-s{0,0.3,0.5,0.7}  s2s prune: 1,200 mask steps (t > 0) + 1,800 fine-tuning steps, KD 0.5
set -u
cd "$(dirname "$0")/.."
D="bash scripts/device-gpu.sh"
T=models/g2p-teacher.safetensors
R=runs/methods
BIN=build-dev/bin
mkdir -p $R
NGPU=$(nvidia-smi -L 2>/dev/null | wc -l); [ "$NGPU" -ge 1 ] || NGPU=1
COMMON=(--config configs/g2p-teacher.conf --threads 2 --eval-every 500 --eval-max 500 --patience 0)
NASH=(--train-src data/g2p/train.src --train-tgt data/g2p/train.tgt --dev-src data/g2p/dev.src
      --dev-tgt data/g2p/dev.tgt --metric wer --eval-every 600 --eval-max 500 --tokens-per-batch 8000
      --threads 2 --prune-steps 1200 --prune-warmup 600 --finetune-steps 1800 --lr 3e-4 --warmup 300 --fp16)
jobs_list() {
    echo t2r-k16 t2r-k32 t2r-k64 t2r-elu t2r-scratch ${WITH_DEED:+deed}
    for n in 1 2 3; do for s in 0 0.3 0.5 0.7; do echo nash-n$n-s$s; done; done
}
final_model() { # the model a job produced
    case $1 in
        nash-ssru*) echo runs/$1/best.safetensors ;;
        nash-*) echo runs/$1/model.safetensors ;;
        *) echo runs/$1/best.safetensors ;;  # also nash-ssru2 / nash-ssru1 of `stacks`
    esac
}
cmd=${1:-}; shift || true
case "$cmd" in
start)
    secs=$1; i=0
    $D help >/dev/null 2>&1  # unpacks the libraries and the data once
    for j in $(jobs_list); do
        g=$((i % NGPU)); i=$((i + 1))
        case $j in
            t2r-k*) GPU=$g $D start $j "$secs" "${COMMON[@]}" --init $T --dec-attn t2r --t2r-k ${j#t2r-k} \
                        --lr 4e-4 --warmup 300 --max-steps 2250 ;;
            t2r-elu) GPU=$g $D start $j "$secs" "${COMMON[@]}" --init $T --dec-attn t2r --t2r-map elu \
                        --lr 4e-4 --warmup 300 --max-steps 2250 ;;
            t2r-scratch) GPU=$g $D start $j "$secs" "${COMMON[@]}" --dec-attn t2r --t2r-k 32 ;;
            deed) GPU=$g $D start $j "$secs" "${COMMON[@]}" --init $T --multi-exit --exit-rank 64 \
                        --lr 3e-4 --warmup 300 --max-steps 3000 ;;
            nash-*) n=${j#nash-n}; s=${n#*-s}; n=${n%%-*}
                    GPU=$g CMD=prune $D start $j "$secs" -m $T --decoder-layers $n --encoder-sparsity $s "${NASH[@]}" ;;
        esac
    done
    ;;
wait)
    $D progress "$1" $(jobs_list)
    ;;
finish)
    $D stopall
    # speed: one thread, one model at a time, the first 100 test words at batch 1 and 256 at batch 32
    $BIN/bench_s2s -m $T --dump-ids data/g2p/test.src --side src > $R/test.ids
    head -n 100 $R/test.ids > $R/b1.ids; head -n 256 $R/test.ids > $R/b32.ids
    : > $R/speed.jsonl
    sp() { # NAME MODEL [flags]
        local n=$1 m=$2; shift 2
        for b in 1 32; do
            $BIN/bench_s2s -m "$m" -i $R/b$b.ids --threads 1 --beam 5 --batch $b "$@" 2>/dev/null \
                | sed "s/^{/{\"name\": \"$n\", /" >> $R/speed.jsonl
        done
    }
    sp teacher $T
    for j in $(jobs_list); do m=$(final_model $j); [ -f "$m" ] && sp $j "$m"; done
    if [ -f runs/deed/best.safetensors ]; then
        for tau in 0.5 0.7 0.9 0.95 0.99; do for st in jit copy; do
            sp deed-$st-$tau runs/deed/best.safetensors --exit-threshold $tau --exit-states $st
        done; done
    fi
    # quality: greedy and beam 5 of every model; DEED at several thresholds, JIT and copied states
    q=$R/quality.jobs; : > $q
    add() { echo "EVAL_DIR=$R/eval S2S=$BIN/s2s bash scripts/eval-g2p.sh $*" >> $q; }
    add teacher@greedy $T --beam 1; add teacher@beam5 $T --beam 5
    for j in $(jobs_list); do
        m=$(final_model $j); [ -f "$m" ] || { echo "$j: no model" >&2; continue; }
        add $j@greedy $m --beam 1; add $j@beam5 $m --beam 5
    done
    if [ -f runs/deed/best.safetensors ]; then
        for tau in 0.5 0.6 0.7 0.8 0.9 0.95 0.99; do for st in jit copy; do
            add deed-$st-$tau@greedy runs/deed/best.safetensors --beam 1 --exit-threshold $tau --exit-states $st
            add deed-$st-$tau@beam5 runs/deed/best.safetensors --beam 5 --exit-threshold $tau --exit-states $st
        done; done
    fi
    xargs -P "$(nproc)" -I{} bash -c '{}' < $q > $R/quality.txt 2>&1
    sort -o $R/quality.txt $R/quality.txt
    for j in $(jobs_list); do [ -f "$(final_model $j)" ] && $BIN/s2s info -m "$(final_model $j)" > $R/$j.info 2>&1; done
    lscpu | grep -m1 'Model name' > $R/machine.txt; nvidia-smi -L >> $R/machine.txt
    wc -l $R/quality.txt $R/speed.jsonl
    cat $R/quality.txt
    ;;
stacks)
    secs=$1
    $D help >/dev/null 2>&1
    [ -s data/g2p/train.kd.tgt ] || $BIN/s2s translate -m $T --beam 5 --batch 256 --device cuda --quiet \
        < data/g2p/train.src > data/g2p/train.kd.tgt
    N=models/g2p-nash-n2-s0.3.safetensors
    GPU=0 $D start nash-ssru2 "$secs" --config configs/g2p-ssru.conf --init $N --threads 4
    GPU=0 $D start nash-ssru1 "$secs" --config configs/g2p-ssru.conf --init $N --dec-layers 1 --threads 4
    sleep 5; bash "$0" wait "$secs" >/dev/null
    for i in $(seq 90); do pgrep -f "bin/s2s train" >/dev/null || break; sleep 1; done
    for j in nash-ssru2 nash-ssru1; do tail -n 2 runs/$j/stderr.log >&2; for b in 1 5; do
        echo "EVAL_DIR=$R/eval S2S=$BIN/s2s bash scripts/eval-g2p.sh $j@$([ $b = 1 ] && echo greedy || echo beam5) runs/$j/best.safetensors --beam $b"
    done; done | xargs -P 4 -I{} bash -c '{}' | sort > $R/stacks.txt
    cat $R/stacks.txt
    ;;
hybrid-orig)
    secs=$1
    $D help >/dev/null 2>&1
    for k in ssru gru lstm; do
        GPU=0 $D start $k-l1-orig "$secs" --config configs/g2p-ssru.conf --decoder $k --dec-layers 1 \
            --train-tgt data/g2p/train.tgt --tf32 --threads 2
    done
    sleep 5; bash "$0" wait "$secs" >/dev/null
    for i in $(seq 90); do pgrep -f "bin/s2s train" >/dev/null || break; sleep 1; done
    for k in ssru gru lstm; do j=$k-l1-orig; tail -n 1 runs/$j/stderr.log >&2; for b in 1 5; do
        echo "EVAL_DIR=$R/eval S2S=$BIN/s2s bash scripts/eval-g2p.sh $j@$([ $b = 1 ] && echo greedy || echo beam5) runs/$j/best.safetensors --beam $b"
    done; done | xargs -P 6 -I{} bash -c '{}' | sort > $R/hybrid-orig.txt
    cat $R/hybrid-orig.txt
    ;;
stacks-deed)
    secs=$1
    $D help >/dev/null 2>&1
    S=(--config configs/g2p-teacher.conf --dec-attn t2r --t2r-k 64 --multi-exit --exit-rank 64 --lr 4e-4
       --warmup 300 --max-steps 3000 --tf32 --threads 2 --eval-every 250 --eval-max 500 --patience 0)
    GPU=0 $D start t2r-deed "$secs" "${S[@]}" --init $T
    GPU=0 $D start nash-t2r-deed "$secs" "${S[@]}" --init models/g2p-nash-n2-s0.3.safetensors
    ;;
optimize)
    $D help >/dev/null 2>&1
    mkdir -p runs/optimize
    [ -f runs/optimize/teacher.safetensors ] || cp $T runs/optimize/teacher.safetensors  # a later call may slim models/
    setsid timeout -s TERM "$1" $BIN/s2s optimize -m runs/optimize/teacher.safetensors --data data/g2p -o runs/optimize --max-loss 1.0 --steps 1000 \
        --eval-max 500 --device cuda --tf32 --threads 2 >> runs/optimize/stderr.log 2>&1 < /dev/null &
    echo "started s2s optimize (pid $!) for at most $1 s"
    ;;
collect)
    # logs and results in one archive, then the models named in $MODELS (split into 15 MB parts)
    tar czf "$OUT/methods-logs.tgz" $(ls $R/quality.txt $R/speed.jsonl $R/stacks.txt 2>/dev/null) $R/*.info $R/machine.txt \
        runs/*/train.log runs/*/stderr.log runs/*/*/train.log 2>/dev/null
    for j in ${MODELS:-}; do
        m=$(final_model $j); [ -f "$m" ] && split -b 15M -d "$m" "$OUT/$j.part"
    done
    ls -la "$OUT"
    ;;
*) sed -n 2,22p "$0"; exit 2 ;;
esac
