/* model.h - the pre-LayerNorm Transformer encoder-decoder (docs/MODEL.md), whose
 * decoder is a Transformer or recurrent (SSRU, GRU, LSTM: cfg.decoder).
 *
 * A model owns its weights (immutable once loaded for inference, so one model
 * can be shared by many decoding threads), its tokenizers and its config.
 * Training builds the forward pass on a graph (graph.h); inference runs the
 * encoder on a no-grad graph and the decoder through the step interface of
 * decoder.h. Checkpoint I/O lives in checkpoint.c. */
#ifndef S2S_MODEL_H
#define S2S_MODEL_H

#include <stdint.h>

#include "config.h"
#include "graph.h"

struct s2s_tokenizer;
struct s2s_st_file;

typedef struct { s2s_tensor *w, *b; } s2s_lin_p; /* w [out, in], b [out] */
typedef struct { s2s_tensor *w, *b; } s2s_ln_p;  /* w, b [D] */

typedef struct {
    s2s_ln_p ln1, ln2;
    s2s_lin_p q, k, v, o; /* [D, D] */
    s2s_lin_p fc1;        /* [F, D] */
    s2s_lin_p fc2;        /* [D, F] */
} s2s_enc_layer;

typedef struct {
    s2s_ln_p ln1, ln2, ln3;   /* ln3 only with an FFN (cfg.dec_ffn) */
    s2s_lin_p sq, sk, sv, so; /* self-attention [D, D] (Transformer) */
    s2s_lin_p rx;             /* recurrent kinds: rnn.wx [G*D, D] + [G*D], all gates' input projections */
    s2s_lin_p rh;             /* GRU/LSTM: rnn.wh [G*D, D] + [G*D] recurrent; SSRU: none (NULL) */
    s2s_lin_p cq, ck, cv, co; /* cross-attention [D, D] */
    s2s_lin_p fc1, fc2;       /* FFN (cfg.dec_ffn) */
    /* T2R (cfg.dec_attn t2r) feature maps of self- and cross-attention,
     * "dec.{i}.self.phi" / "dec.{i}.cross.phi": weight [H*k, Dh] (= [H, k, Dh] row-major,
     * the W of kernels_t2r.h; head h's rows h*k..h*k+k-1), bias [H*k] (= [H, k]);
     * cfg.t2r_map elu: none (w = b = NULL, the fixed elu+1 map) */
    s2s_lin_p sphi, cphi;
    /* DEED exit adapter of layer l < Ld-1 (cfg.multi_exit; docs/MODEL.md "DEED"):
     * a_l(h) = exln(h + exup(relu(exdown(h)))), "dec.{l}.exit.{ln,down,up}";
     * exdown [r, D] + [r], exup [D, r] + [D], exln [D]. The last layer uses dec_ln. */
    s2s_ln_p exln;
    s2s_lin_p exdown, exup;
} s2s_dec_layer;

typedef struct {
    char name[64];   /* safetensors name */
    s2s_tensor *t;
    int decay;       /* weight decay applies (2-D tensors) */
    int frozen;      /* not trained: no optimizer update, gradient zeroed (s2s train --train-only) */
} s2s_param_entry;

typedef struct s2s_model {
    s2s_config cfg;
    s2s_tensor *tgt_emb;  /* [Vt, D] tied output projection */
    s2s_tensor *src_emb;  /* [Vs, D], == tgt_emb when shared */
    s2s_enc_layer *enc;   /* [Le] */
    s2s_ln_p enc_ln;
    s2s_dec_layer *dec;   /* [Ld] */
    s2s_ln_p dec_ln;
    s2s_param_entry *params; /* every weight, in save order */
    int n_params;
    float *pe;            /* [max_len, D] sinusoidal positions */
    struct s2s_tokenizer *src_tok, *tgt_tok;
    char *train_meta;     /* JSON from __metadata__["s2s.train"], or NULL */
    struct s2s_st_file *file; /* open mapping when weights point into it */
    int trainable;        /* weights are private, writable, with grads */
    int on_cuda;          /* s2s_model_to_cuda: every param has dev_data (+ dev_grad if trainable) */
    void *dev_block, *dev_grad_block; /* the device allocations behind them */
    float *dev_pe;        /* [max_len, D] positions on the GPU */
    size_t dev_floats;    /* floats in each device block (params padded to 64) */
    double *dev_scratch;  /* [8] device doubles for reductions (gradient norm) */
    /* structured L0 masks of the encoder (l0.h), or NULL: when set, s2s_model_encode
     * scales each head's attention output and each FFN hidden unit by its gate.
     * Not owned (the trainer attaches, detaches and frees it). */
    struct s2s_l0 *l0;
} s2s_model;

/* New randomly initialised trainable model; takes ownership of the tokenizers. */
s2s_model *s2s_model_create(const s2s_config *cfg, struct s2s_tokenizer *src_tok,
                            struct s2s_tokenizer *tgt_tok, uint64_t seed);
void s2s_model_free(s2s_model *m);
size_t s2s_model_param_count(const s2s_model *m);
s2s_tensor *s2s_model_param(const s2s_model *m, const char *name); /* NULL if absent */

/* Encoder: src [B, Ts] ids, src_len [B] -> [B, Ts, D] (graph-owned). Rows t >= src_len[b]
 * (padding) carry no meaning; an inference model on the CPU skips them (they come out 0). */
s2s_tensor *s2s_model_encode(s2s_graph *g, const s2s_model *m, const int32_t *src,
                             const int32_t *src_len, int B, int Ts, float dropout);
/* Teacher-forced decoder: tgt_in [B, Tt] -> logits [B, Tt, Vt]. */
s2s_tensor *s2s_model_decode_train(s2s_graph *g, const s2s_model *m, s2s_tensor *enc,
                                   const int32_t *src_len, const int32_t *tgt_in, int B,
                                   int Tt, float dropout);

/* DEED multi-exit (cfg.multi_exit): the logits of every exit, exits[l] [B, Tt, Vt]
 * for l = 0..Ld-1 (exit l: a_l(y_l) @ tgt_emb^T, the last one LN_dec(y) @ tgt_emb^T,
 * equal to s2s_model_decode_train's logits). */
void s2s_model_decode_train_exits(s2s_graph *g, const s2s_model *m, s2s_tensor *enc,
                                  const int32_t *src_len, const int32_t *tgt_in, int B, int Tt,
                                  float dropout, s2s_tensor **exits);
/* The DEED training loss over exits[Ld] (s2s_model_decode_train_exits): (1/Ld) *
 * sum_l CE_l + last_weight * CE_{Ld-1}, each CE the label-smoothed cross-entropy
 * of s2s_xent (mean over non-pad targets tgt_out [B*Tt]) -> scalar. */
s2s_tensor *s2s_model_exit_loss(s2s_graph *g, const s2s_model *m, s2s_tensor **exits,
                                const int32_t *tgt_out, float eps, float last_weight);
/* A trainable multi-exit copy of a Transformer model, softmax or T2R attention
 * (tokenizers moved from src, every weight copied) with exit adapters of rank r: exln
 * from dec_ln's weights, exup 0 (each exit starts as LN_dec of its layer's state),
 * exdown xavier uniform from seed. NULL + message if src is already multi-exit, not a
 * Transformer, or r is out of range (src is then unchanged). */
s2s_model *s2s_model_to_multi_exit(s2s_model *src, int rank, uint64_t seed, char *err, size_t errlen);

/* Distillation student: a new random model with the teacher's config except the
 * decoder (decoder, dec_layers, dec_ffn taken from dec), the teacher's tokenizers
 * (moved: the teacher is left without them) and the teacher's embeddings and
 * encoder copied; the decoder stays randomly initialised. NULL + message if the
 * resulting config is invalid (the teacher is then unchanged). */
s2s_model *s2s_model_student(s2s_model *teacher, const s2s_config *dec, uint64_t seed,
                             char *err, size_t errlen);
/* Set dec_attn t2r with k features per head on a copy of a softmax Transformer model
 * (a multi-exit one stays multi-exit, its adapters copied):
 * a new trainable model (tokenizers moved from src, every weight copied) whose phi
 * weights are random as in s2s_model_create (xavier uniform on each head's [k, Dh],
 * biases 0) from seed. map: S2S_T2R_MAP_RELU (learned, k features) or
 * S2S_T2R_MAP_ELU (fixed elu+1, no phi weights, k ignored: Dh). NULL + message if src
 * is not a softmax Transformer or k is out of range (src is then unchanged). */
s2s_model *s2s_model_to_t2r(s2s_model *src, int k, int map, uint64_t seed, char *err, size_t errlen);
/* Copy every weight of src whose name and shape dst also has (with_decoder = 0:
 * not the "dec.*" ones). Returns how many tensors were copied. dst is trainable. */
int s2s_model_copy_matching(s2s_model *dst, const s2s_model *src, int with_decoder);

/* GPU copies (model_cuda.c; with CUDA builds only, else they fail cleanly).
 * to_cuda uploads every weight into one device block (and zeroed gradients into a
 * second when trainable); host data stays valid but goes stale while training on
 * the GPU: sync_host copies the device weights back (before a checkpoint is saved
 * or host-side decoding reads them). Returns 0, or -1 with a message. */
int s2s_model_to_cuda(s2s_model *m, char *err, size_t errlen);
void s2s_model_sync_host(s2s_model *m);
void s2s_model_free_cuda(s2s_model *m); /* also called by s2s_model_free */

/* Checkpoints (checkpoint.c). Extra tensors/metadata let the trainer store its state. */
typedef struct {
    const char *name;
    const float *data;
    int ndim;
    int64_t shape[4];
} s2s_extra_tensor;

/* Internal (checkpoint.c / model.c): empty parameter table; release the mapping. */
s2s_model *s2s_model_new_empty(const s2s_config *cfg, int trainable);
void s2s_model_close_file(s2s_model *m);

s2s_model *s2s_model_load(const char *path, int trainable, char *err, size_t errlen);
int s2s_model_save(const s2s_model *m, const char *path, const s2s_extra_tensor *extra,
                   int n_extra, const char *const *meta_kv, int n_meta, int fp16, char *err,
                   size_t errlen);

#define S2S_FORMAT_VERSION "1"

#endif
