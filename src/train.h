/* train.h - the training loop behind `s2s train`: AdamW with inverse-sqrt warmup,
 * gradient clipping, dropout, label smoothing, token-count batching with length
 * bucketing, periodic validation (loss + quality metric), best/last checkpoints,
 * early stopping, and exact resume (weights, Adam moments, step, data position,
 * RNG) from out_dir/last.safetensors. */
#ifndef S2S_TRAIN_H
#define S2S_TRAIN_H

#include <stdint.h>

#include "config.h"

typedef struct {
    /* data */
    const char *train_src, *train_tgt, *dev_src, *dev_tgt;
    const char *out_dir;      /* last.safetensors, best.safetensors, train.log */
    const char *init;         /* start from this model's weights (fine-tuning), or NULL */
    int student;              /* with init: if model's decoder (decoder, dec_layers, dec_ffn)
                               * differs from init's, train a new student with init's
                               * tokenizers, embeddings and encoder and a random decoder
                               * (set by --decoder) */
    /* model (ignored with init) */
    s2s_config model;
    int src_tok, tgt_tok;     /* s2s_tok_kind */
    int src_vocab, tgt_vocab; /* tokenizer vocabulary sizes (BPE merges target, 0 = all) */
    int joint_vocab;          /* one tokenizer for both sides (implies share_src_emb) */
    /* optimisation */
    float lr, warmup, weight_decay, clip, dropout, label_smoothing;
    int tokens_per_batch;
    int max_steps, max_epochs;
    uint64_t seed;
    /* evaluation */
    int eval_every, patience, eval_max; /* eval_max: dev sentences decoded for the metric */
    const char *metric;       /* "wer", "per", "bleu", "chrf", or "loss" */
    int log_every;
    int threads;
    int cuda;                 /* --device cuda: train on the GPU (kernels_cuda.h) */
    int tf32;                 /* with cuda: cuBLAS may use TF32 tensor cores */
    int bf16;                 /* with cuda: bf16 mixed-precision matmuls (kernels_cuda.h) */
    int fresh;                /* ignore an existing out_dir/last.safetensors */
    int quiet;
    int save_fp16;            /* best.safetensors stored in fp16 */
} s2s_train_opts;

void s2s_train_opts_default(s2s_train_opts *o);
/* Runs training; 0 on success (finished or stopped early), 1 on error (message
 * in err), 2 when interrupted by SIGINT/SIGTERM after saving last.safetensors. */
int s2s_train(const s2s_train_opts *o, char *err, size_t errlen);

#endif
