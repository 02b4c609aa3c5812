/* kernels_t2r.h - T2R linear attention (Kasai et al. 2021, "Finetuning pretrained
 * transformers into RNNs"): the numeric kernels, parallel form (training: forward and
 * backward) and recurrent form (decoding: one causal step on a constant-size state;
 * cross attention on a state precomputed once per source).
 *
 * Per head h (d = head dim, kf = feature size), the SAME learned feature map for
 * queries and keys, queries scaled by s = d^-0.5 BEFORE it:
 *   phi(x) = relu(W_h x + b_h)            W_h [kf, d], b_h [kf]
 *   a_ij   = phi(s q_i) . phi(k_j)
 *   out_i  = sum_{j visible} a_ij v_j / max(sum_{j visible} a_ij, S2S_T2R_EPS)
 * Visible keys (as attention_fwd of kernels.h): j < kv_len[b] (kv_len NULL: all Tk),
 * and when causal also j <= i + (Tk - Tq) (i.e. j <= i for self-attention, Tq = Tk).
 * Fixed map (Katharopoulos et al. 2020, "Transformers are RNNs"): W == NULL (b unused,
 * may be NULL) means phi(x) = elu(x) + 1 elementwise on the head vector, kf = d; no
 * feature-map gradients (dW, db ignored). Queries are still scaled by s before it.
 * A query that sees nothing, or whose features are orthogonal to every visible key
 * (relu zeros), has denominator 0 -> clamped to eps -> out = 0, no gradient.
 * Recurrent form: S_t = S_{t-1} + phi(k_t) v_t^T [kf, d], z_t = z_{t-1} + phi(k_t) [kf],
 *   out_t = phi(s q_t)^T S_t / max(phi(s q_t)^T z_t, eps)  == the causal parallel form.
 *
 * Layout: q [B, Tq, H*d], k, v [B, Tk, H*d] (head h = columns h*d..h*d+d-1),
 * W [H, kf, d], b [H, kf] (or NULL, NULL: elu+1, kf = d), out [B, Tq, H*d]; states S [B, H, kf, d], z [B, H, kf].
 * Saved for backward by t2r_fwd: pq [B, H, Tq, kf] = phi(s q), pk [B, H, Tk, kf] =
 * phi(k), den [B, H, Tq] = the UNCLAMPED denominators; the backward also takes out.
 *
 * Conventions as kernels.h / kernels_rnn.h: two implementations with identical
 * signatures, s2s_kref_* (plain loops, double accumulation, O(Tq Tk kf d)) and s2s_k_*
 * (OpenMP over (b, h), float accumulation, running prefix sums: O((Tq + Tk) kf d));
 * outputs first, then inputs, then sizes; t2r_bwd ACCUMULATES (+=) into the gradient
 * buffers it is given (each may be NULL = not needed). The gradient is exact: relu has
 * subgradient 0 at 0, the clamp passes gradient only where den > eps, and dq includes
 * the scale s. tests/test_t2r.c checks the reference backward against finite
 * differences, fast against reference, the recurrent form against the parallel one,
 * and a tiny case by hand. */
#ifndef S2S_KERNELS_T2R_H
#define S2S_KERNELS_T2R_H

#include <stddef.h>
#include <stdint.h>

/* the floor of the normalizer: out = num / max(den, S2S_T2R_EPS) */
#define S2S_T2R_EPS 1e-6f
/* the query scale s = d^-0.5 of the fast kernels (needs math.h) */
#define S2S_T2R_QSCALE(d) ((float)(1.0 / sqrt((double)(d))))

#define S2S_T2R_KERNEL_DECLS(P)                                                              \
    /* Parallel form. out [B,Tq,H*d]; saved: pq [B,H,Tq,kf], pk [B,H,Tk,kf], den [B,H,Tq]  \
     * (unclamped); q [B,Tq,H*d], k, v [B,Tk,H*d], W [H,kf,d], b [H,kf]; kv_len [B] or     \
     * NULL; causal: key j visible to query i iff j <= i + Tk - Tq. */                      \
    void P##t2r_fwd(float *out, float *pq, float *pk, float *den, const float *q,          \
                    const float *k, const float *v, const float *W, const float *b,        \
                    const int32_t *kv_len, int causal, int B, int H, int Tq, int Tk,       \
                    int d, int kf);                                                         \
    /* dq [B,Tq,H*d], dk, dv [B,Tk,H*d], dW [H,kf,d], db [H,kf] (+=, each may be NULL)     \
     * of sum(dout * out); dout, out [B,Tq,H*d] (out: the forward output); pq, pk, den:    \
     * saved by t2r_fwd; q, k, v, W, kv_len, causal and sizes as given to t2r_fwd. */      \
    void P##t2r_bwd(float *dq, float *dk, float *dv, float *dW, float *db,                  \
                    const float *dout, const float *out, const float *pq, const float *pk, \
                    const float *den, const float *q, const float *k, const float *v,      \
                    const float *W, const int32_t *kv_len, int causal, int B, int H,       \
                    int Tq, int Tk, int d, int kf);                                         \
    /* One causal decoding step, forward only. out [B,H*d]; S [B,H,kf,d], z [B,H,kf]:     \
     * the state, updated in place (zeros before the first step); q, k, v [B,H*d]. */       \
    void P##t2r_step(float *out, float *S, float *z, const float *q, const float *k,       \
                     const float *v, const float *W, const float *b, int B, int H, int d,  \
                     int kf);                                                               \
    /* Cross-attention state of a source, forward only: S [B,H,kf,d], z [B,H,kf]          \
     * (overwritten) = sums over j < kv_len[b] (NULL: all Tk) of phi(k_j) v_j^T, phi(k_j); \
     * k, v [B,Tk,H*d]. */                                                                  \
    void P##t2r_cross_state(float *S, float *z, const float *k, const float *v,            \
                            const float *W, const float *b, const int32_t *kv_len, int B,  \
                            int H, int Tk, int d, int kf);                                  \
    /* out [B,Tq,H*d] = phi(s q)^T S / max(phi(s q)^T z, eps) for every query;            \
     * S [B,H,kf,d], z [B,H,kf] from t2r_cross_state; q [B,Tq,H*d]. */                     \
    void P##t2r_cross_query(float *out, const float *S, const float *z, const float *q,    \
                            const float *W, const float *b, int B, int H, int Tq, int d,   \
                            int kf);                                                        \
    /* Decoding in two halves (the features of many rows at once, e.g. by a GEMM, then     \
     * the state): ph [B,H,kf] = phi(scale x) of x [B,H*d] (scale: d^-0.5 for queries, 1   \
     * for keys); t2r_phi_act (relu map only): ph = relu(b + scale ph) in place, from     \
     * ph = W_h x_h (the same map, the dot products computed elsewhere). */                 \
    void P##t2r_phi(float *ph, const float *x, const float *W, const float *b, float scale, \
                    int B, int H, int d, int kf);                                           \
    void P##t2r_phi_act(float *ph, const float *b, float scale, int B, int H, int kf);     \
    /* t2r_step from the features: pq = phi(s q), pk = phi(k) [B,H,kf]; out, S, z, v as   \
     * t2r_step. */                                                                         \
    void P##t2r_step_feat(float *out, float *S, float *z, const float *pq, const float *pk, \
                          const float *v, int B, int H, int d, int kf);                     \
    /* t2r_cross_query from the features pq = phi(s q) [B,Tq,H,kf]. */                     \
    void P##t2r_cross_query_feat(float *out, const float *S, const float *z, const float *pq, \
                                 int B, int H, int Tq, int d, int kf);

S2S_T2R_KERNEL_DECLS(s2s_kref_)
S2S_T2R_KERNEL_DECLS(s2s_k_)

#endif
