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
    /* DEED (model.multi_exit, model.exit_rank): from scratch, or with init a converted
     * copy of the init model (s2s_model_to_multi_exit) unless it is multi-exit already */
    float exit_last_weight;   /* loss = mean of the exits' CEs + this * the last exit's CE */
    /* word-level distillation (kd.h): with kd_teacher and kd_weight > 0 the loss is
     * (1 - kd_weight) * CE + kd_weight * kd_temp^2 * KL(teacher || student) at
     * temperature kd_temp; the teacher (same tokenizers) runs without gradients */
    const char *kd_teacher;
    float kd_weight, kd_temp;
    /* NASH structured L0 pruning of the encoder (l0.h): with l0_target > 0, hard-concrete
     * gates on every encoder head and FFN unit, trained (AdamW, learning rate l0_lr) with
     * the Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 added to the loss, whose target
     * t ramps linearly from 0 to l0_target over l0_warmup_steps steps (lambdas: gradient
     * ascent); gates start at log_alpha ~ N(log((1-d)/d), 0.01), d = l0_droprate_init.
     * Checkpoints get the log_alphas (enc.{l}.l0.heads / .ff), last.safetensors also the
     * lambdas and the gates' AdamW state. */
    float l0_target, l0_lr, l0_droprate_init;
    int l0_warmup_steps;
    /* which weights train (s2s_param_entry.frozen on the others): NULL or "all"; "attn":
     * the decoder's self- and cross-attention (dec.{i}.self.* / dec.{i}.cross.*, T2R
     * feature maps included); "phi": the T2R feature maps only. A static string. */
    const char *train_only;
} s2s_train_opts;

void s2s_train_opts_default(s2s_train_opts *o);
/* Runs training; 0 on success (finished or stopped early), 1 on error (message
 * in err), 2 when interrupted by SIGINT/SIGTERM after saving last.safetensors. */
int s2s_train(const s2s_train_opts *o, char *err, size_t errlen);

#endif
