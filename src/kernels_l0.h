/* kernels_l0.h - kernels of structured L0 pruning (NASH / CoFi, l0.h): the group
 * scale that applies per-head / per-FFN-unit masks, the hard-concrete gate of
 * Louizos et al. (2018), its expected L0 (the expected kept fraction of the
 * prunable parameters) and the Lagrangian that pushes the expected sparsity to a
 * target.
 *
 * Three implementations with identical signatures (outputs first, then inputs,
 * then sizes; backward kernels ACCUMULATE into their gradients, NULL = not needed):
 *   s2s_kref_*  plain loops, sums in double (kernels_l0.c): the ground truth;
 *   s2s_k_*     fast CPU (kernels_l0.c): group scale with OpenMP over fixed row
 *               chunks (results independent of the thread count); the gate,
 *               density and Lagrangian kernels touch one value per head / FFN unit
 *               (a few thousand per step) and are the reference loops;
 *   s2s_kcu_*   CUDA (l0_cuda.cu, CUDA builds only): every pointer on the device,
 *               including the scalar dout / density / lambda arguments.
 *
 * Hard concrete with stretch limits l < 0 < 1 < r and temperature beta
 * (S2S_L0_LIMIT_L, S2S_L0_LIMIT_R, S2S_L0_BETA):
 *   training  s = sigmoid((log u - log(1 - u) + log_alpha) / beta), u ~ U(eps, 1 - eps)
 *             z = clamp(s * (r - l) + l, 0, 1)
 *             dz/dlog_alpha = (r - l) s (1 - s) / beta where 0 < s (r - l) + l < 1, else 0
 *   P(z > 0) = sigmoid(log_alpha - beta * log(-l / r)). */
#ifndef S2S_KERNELS_L0_H
#define S2S_KERNELS_L0_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define S2S_L0_LIMIT_L (-0.1f)
#define S2S_L0_LIMIT_R 1.1f
#define S2S_L0_BETA (2.0f / 3.0f)
/* the uniforms are drawn in (eps, 1 - eps) */
#define S2S_L0_EPS 1e-6f

#define S2S_L0_KERNEL_DECLS(P)                                                             \
    /* y[N, G*S] = x[N, G*S] * z[g] on columns g*S .. g*S+S-1 */                           \
    void P##group_scale_fwd(float *y, const float *x, const float *z, int N, int G, int S); \
    /* dx += dy * z[g];  dz[g] += sum over rows and the S columns of dy * x */             \
    void P##group_scale_bwd(float *dx, float *dz, const float *dy, const float *x,         \
                            const float *z, int N, int G, int S);                          \
    /* z[n] = hard-concrete sample from log_alpha[n] and uniforms u[n] (see above) */      \
    void P##hard_concrete_fwd(float *z, const float *log_alpha, const float *u, int n);    \
    /* dlog_alpha[n] += dz * dz/dlog_alpha (recomputed from log_alpha and u) */            \
    void P##hard_concrete_bwd(float *dlog_alpha, const float *dz, const float *log_alpha,  \
                              const float *u, int n);                                      \
    /* out[0] = inv_total * sum_i cost[i] * P(z_i > 0)  (overwrites out[0]) */             \
    void P##l0_density_fwd(float *out, const float *log_alpha, const float *cost,          \
                           float inv_total, int n);                                        \
    /* dlog_alpha[i] += dout[0] * inv_total * cost[i] * p_i (1 - p_i) */                   \
    void P##l0_density_bwd(float *dlog_alpha, const float *dout, const float *log_alpha,   \
                           const float *cost, float inv_total, int n);                     \
    /* s = 1 - density[0]:  out[0] = lambda[0] (s - t) + lambda[1] (s - t)^2 */            \
    void P##l0_lagrangian_fwd(float *out, const float *density, const float *lambda,       \
                              float t);                                                    \
    /* ddensity[0] += -dout (lambda[0] + 2 lambda[1] (s - t));                             \
     * dlambda[0] += dout (s - t);  dlambda[1] += dout (s - t)^2 */                        \
    void P##l0_lagrangian_bwd(float *ddensity, float *dlambda, const float *dout,          \
                              const float *density, const float *lambda, float t);

S2S_L0_KERNEL_DECLS(s2s_kref_)
S2S_L0_KERNEL_DECLS(s2s_k_)
#ifdef S2S_CUDA
S2S_L0_KERNEL_DECLS(s2s_kcu_)
#endif

/* log(-l / r) * beta: P(z > 0) = sigmoid(log_alpha - S2S_L0_SHIFT) */
#define S2S_L0_SHIFT (S2S_L0_BETA * -2.3978952727983707f) /* beta * log(0.1 / 1.1) */

#ifdef __cplusplus
}
#endif

#endif
