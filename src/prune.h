/* prune.h - the model surgery of NASH structured pruning (Ko et al., Findings of
 * EMNLP 2023; docs/MODEL.md "NASH structured pruning"): uniform selection of the
 * decoder layers to keep, and the physical removal of pruned encoder heads and FFN
 * units (with the surviving mask values folded into the weights). The mask training
 * between the two is l0.h's; s2s_prune_run (prune_run.c) chains the phases for `s2s prune`
 * (cli/cmd_prune.c) and `s2s optimize`. */
#ifndef S2S_PRUNE_H
#define S2S_PRUNE_H

#include <stddef.h>

#include "model.h"
#include "train.h"

/* Uniform layer selection: the n of L layers at floor((L-1)/(n-1) * d), d = 0..n-1
 * (L = 6: n = 2 -> {0, 5}, n = 3 -> {0, 2, 5}); n = 1 keeps {0} (the d = 0 term).
 * keep [n], increasing. 0, or -1 if not 1 <= n <= L. */
int s2s_prune_select_layers(int *keep, int n, int L);

/* A new trainable model with only src's decoder layers keep[0..n) (increasing, in
 * [0, Ld)), renumbered 0..n-1; every other weight copied, tokenizers and training
 * metadata moved from src. NULL + message on bad indices (src then unchanged). */
s2s_model *s2s_prune_decoder(s2s_model *src, const int *keep, int n, char *err, size_t errlen);

/* Physical removal. zh[l] [H_l] / zf[l] [F_l]: the (deterministic) mask value of
 * each head / FFN unit of encoder layer l (H_l, F_l: src's widths; zh or zf or one
 * of their entries NULL: all 1). Units with z == 0 are dropped; a kept unit's z is
 * folded into the weights (o's input columns of head h times z_h, fc2's input
 * column of unit u times z_u), so the result computes what the masked src computes
 * in eval mode. A sublayer left with no unit is skipped; its output bias (the only
 * thing the masked sublayer still added) moves into the output bias of the nearest
 * earlier surviving sublayer, or, when there is none, one unit with z folded as 0 is
 * kept. A new trainable model with per-layer widths (cfg.enc_widths); tokenizers and
 * metadata moved from src. */
s2s_model *s2s_prune_encoder(s2s_model *src, float *const *zh, float *const *zf);

/* The deterministic masks (l0.h s2s_l0_deterministic) of the log_alphas stored in
 * checkpoint path as enc.{l}.l0.heads [H_l] / enc.{l}.l0.ff [F_l] for model m's
 * encoder widths: *zh, *zf get [Le] malloc'd arrays (entries NULL for width-0
 * groups). 0, or -1 + message. */
int s2s_prune_read_masks(const char *path, const s2s_model *m, float ***zh, float ***zf, char *err,
                         size_t errlen);
void s2s_prune_masks_free(float **zh, float **zf, int Le);

/* The NASH pipeline (prune_run.c), in phases that are each resumable and skipped once
 * finished:
 *   0. keep dec_layers decoder layers of teacher, uniformly spread -> out/0-short.safetensors
 *   1. sparsity > 0: L0 mask training of the encoder's heads and FFN units to that
 *      expected sparsity (prune_steps, target ramp prune_warmup)  -> out/1-prune/
 *   2. removal of the pruned heads and units                      -> out/pruned.safetensors
 *   3. finetune_steps > 0: fine-tuning of the dense pruned model  -> out/2-finetune/
 * and the result is written to out/model.safetensors (fp16 if fp16); when that file
 * exists every phase is done and nothing runs. to: the training options of phases 1
 * and 3 (data, optimisation, distillation teacher, device; init, out_dir, max_steps
 * and the L0 fields are set per phase). Progress lines "s2s prune: ..." on stderr
 * unless quiet. Returns 0, 1 with a message in err, or 2 when a phase's training was
 * interrupted by SIGINT/SIGTERM (its state saved: run again to resume). */
typedef struct {
    const char *teacher, *out;
    int dec_layers;
    float sparsity;
    int prune_steps, prune_warmup, finetune_steps;
    int fp16, quiet;
} s2s_prune_opts;
int s2s_prune_run(const s2s_prune_opts *p, const s2s_train_opts *to, char *err, size_t errlen);

#endif
