/* l0.h - structured L0 pruning masks of a model's encoder (NASH, Ko et al. 2023,
 * built on CoFi): one hard-concrete gate (Louizos et al. 2018; kernels_l0.h) per
 * attention head and per FFN unit of every encoder layer, their expected density,
 * the Lagrangian lambda1 (s - t) + lambda2 (s - t)^2 that drives the expected
 * sparsity s = 1 - density to a target t, and the optimiser of the gates (AdamW,
 * descent) and multipliers (AdamW on the negated gradients: ascent).
 *
 * Use (train.c): l0 = s2s_l0_new(m, ...); m->l0 = l0; then s2s_model_encode scales
 * each head's attention output (before the o projection) and each FFN hidden unit
 * (after the activation) by its gate z (s2s_l0_mask): sampled on a graph that is
 * training with the tape on (s2s_graph_sampling), the deterministic inference
 * values (s2s_l0_deterministic) otherwise (dev loss, greedy dev decoding).
 * The loss gets s2s_l0_loss; after backward, s2s_l0_step.
 *
 * The log_alphas are stored flat: layer 0's heads, layer 0's FFN units, layer 1's
 * heads, ... In checkpoints they are the tensors enc.{l}.l0.heads [H_l] and
 * enc.{l}.l0.ff [F_l] (omitted for a group of width 0); last.safetensors adds
 * l0.lambda [2], l0.opt.{m,v}.log_alpha [N], l0.opt.{m,v}.lambda [2] and
 * l0.opt.step [1] so that training resumes exactly.
 *
 * Not thread-safe: the deterministic masks are cached and refreshed lazily. */
#ifndef S2S_L0_H
#define S2S_L0_H

#include <stddef.h>
#include <stdint.h>

#include "graph.h"
#include "kernels_l0.h"
#include "model.h"

struct s2s_st_file;

typedef struct s2s_l0 s2s_l0;            /* owned masks of one model's encoder */

/* Default droprate_init d (log_alpha ~ N(log(1 - d) - log(d), 0.01)). CoFi uses 0.5,
 * which makes P(z > 0) = 0.83 for every unit: the deterministic (eval) rule then
 * zeroes round(0.17 * n) units of every group from step 0 and the model starts far
 * below the teacher. d = 0.05 gives log_alpha = 2.94, P(z > 0) = 0.989, eval masks
 * z = 1 on all heads of a 4-head layer and on all but ~1% of the FFN units, so a
 * short run starts at the teacher's quality; the gates still leave the
 * always-open region within a few dozen AdamW steps at the default l0 lr. */
#define S2S_L0_DROPRATE_INIT 0.05f
#define S2S_L0_LR_DEFAULT 0.02f

s2s_l0 *s2s_l0_new(const s2s_model *m, float droprate_init, uint64_t seed); /* one log_alpha per head/FFN unit */
void s2s_l0_free(s2s_l0 *l0);
/* Deterministic (inference) mask values from log_alphas, CoFi rule: per layer group compute the expected number
 * of zeros round(sum_i (1 - P(z_i > 0))), zero the units with the smallest log_alpha accordingly (ties: the
 * lower index is zeroed first), others get clamp(sigmoid(log_alpha) * (r - l) + l, 0, 1). z_out [n]. */
void s2s_l0_deterministic(float *z_out, const float *log_alpha, int n);
/* Expected kept fraction of encoder prunable params (heads: 4*D*Dh + biases each, FFN units: 2*D + 1 each).
 * The biases of a head are its q, k and v biases (3*Dh; the o bias is not per head), so a head costs
 * 4*D*Dh + 3*Dh. Reads the host log_alphas (s2s_l0_sync_host first when training on the GPU). */
double s2s_l0_expected_density(const s2s_l0 *l0, const s2s_model *m);

/* Sizes and the flat parameters. */
int s2s_l0_size(const s2s_l0 *l0);                        /* N: all gates */
int s2s_l0_group(const s2s_l0 *l0, int layer, int ffn, int *off); /* width of a group, *off its offset */
s2s_tensor *s2s_l0_log_alpha(s2s_l0 *l0);                 /* param [N] */
s2s_tensor *s2s_l0_lambdas(s2s_l0 *l0);                   /* param [2]: lambda1, lambda2 (init 0) */
/* Host values changed by the caller (tests): re-upload if on the GPU, refresh the eval masks. */
void s2s_l0_touch(s2s_l0 *l0);

/* The mask z [width] of encoder layer's heads (ffn = 0) or FFN units (ffn = 1) on g,
 * or NULL for a group of width 0. Sampled (uniforms from s2s_graph_rng) with
 * gradients to the log_alphas when s2s_graph_sampling(g), else deterministic. */
s2s_tensor *s2s_l0_mask(s2s_graph *g, s2s_l0 *l0, int layer, int ffn);
/* The Lagrangian term for target sparsity t (scalar, to add to the loss). */
s2s_tensor *s2s_l0_loss(s2s_graph *g, s2s_l0 *l0, float t);
/* Target of step (1-based): t * min(1, step / warmup) (warmup <= 0: t from the start). */
float s2s_l0_target_at(float t, long warmup, long step);

/* Optimisation: zero the gradients; one AdamW step (betas 0.9/0.999, eps 1e-8, no
 * weight decay) with learning rate lr: log_alphas descend, lambdas ascend. */
void s2s_l0_zero_grad(s2s_l0 *l0);
void s2s_l0_step(s2s_l0 *l0, float lr);

/* GPU: parameters, gradients, moments and costs in one device block (0, or -1 with
 * a message); sync_host copies parameters and moments back. */
int s2s_l0_to_cuda(s2s_l0 *l0, char *err, size_t errlen);
void s2s_l0_sync_host(s2s_l0 *l0);

/* Checkpoint tensors (model.h's s2s_extra_tensor, pointing into l0: valid until the
 * next step): the log_alphas, plus with_state the lambdas and optimiser state.
 * Syncs from the GPU first. Writes at most s2s_l0_max_extra(l0) entries into ex,
 * returns how many. */
int s2s_l0_max_extra(const s2s_l0 *l0);
int s2s_l0_extra(s2s_l0 *l0, s2s_extra_tensor *ex, int with_state);
/* Read them back from an open checkpoint: 1 if f has no l0 tensors (l0 unchanged),
 * 0 when loaded, -1 + message when they are incomplete or of the wrong size. */
int s2s_l0_load(s2s_l0 *l0, const struct s2s_st_file *f, int with_state, char *err, size_t errlen);

#endif
