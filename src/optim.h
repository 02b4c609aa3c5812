/* optim.h - AdamW (torch semantics, docs/MODEL.md), global-norm gradient
 * clipping and the inverse-square-root warmup schedule. */
#ifndef S2S_OPTIM_H
#define S2S_OPTIM_H

#include "model.h"

typedef struct {
    float **mom, **var; /* per parameter [n]: first and second moments (host) */
    int n;
    float beta1, beta2, eps;
    float *dev_block;   /* on the GPU (s2s_adamw_to_cuda): [2][model dev_floats], or NULL */
} s2s_adamw;

void s2s_adamw_init(s2s_adamw *a, const s2s_model *m);
void s2s_adamw_free(s2s_adamw *a);
/* Move the moments to the GPU beside a model already moved by s2s_model_to_cuda;
 * from then on every function below runs on the GPU for that model.
 * sync_host copies the device moments back into mom/var (before a checkpoint). */
void s2s_adamw_to_cuda(s2s_adamw *a, const s2s_model *m);
void s2s_adamw_sync_host(s2s_adamw *a, const s2s_model *m);
/* One update with learning rate lr and decoupled weight decay wd (2-D tensors
 * only); step is 1-based (bias correction). Frozen parameters (s2s_param_entry.frozen)
 * are left alone (no update, no decay). */
void s2s_adamw_step(s2s_adamw *a, s2s_model *m, float lr, float wd, long step);
/* Scale all gradients so their global L2 norm is at most max_norm (if > 0);
 * returns the norm before clipping (torch clip_grad_norm_). Frozen parameters'
 * gradients are zeroed first (so they count neither in the norm nor anywhere). */
double s2s_clip_grad_norm(s2s_model *m, float max_norm);
void s2s_zero_grad(s2s_model *m);
/* lr * min(step / warmup, sqrt(warmup / step)), step 1-based. */
float s2s_lr_at(float lr, float warmup, long step);

#endif
