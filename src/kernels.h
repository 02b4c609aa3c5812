/* kernels.h - the numeric kernels of s2s: forward and backward of every op.
 *
 * Two implementations with identical signatures:
 *   s2s_kref_*  plain fp32 reference loops (kernels_ref.c): easy to read, no BLAS,
 *               no OpenMP, no intrinsics. The ground truth for tests.
 *   s2s_k_*     fast CPU versions (kernels_cpu.c): OpenBLAS sgemm, OpenMP, SIMD.
 * Tests (tests/test_kernels.c) check s2s_k_* against s2s_kref_* and every
 * backward against finite differences of its forward.
 *
 * Conventions: outputs first, then const inputs, then sizes. All tensors are
 * contiguous row-major fp32. Backward kernels ACCUMULATE (+=) into the gradient
 * buffers they are given (a NULL gradient pointer means "not needed"), except that
 * those with a last argument `assign` OVERWRITE their i-th gradient output when bit i
 * of assign is set (S2S_ASSIGN(i)): every element is written and the old contents,
 * even NaN, are never read. That is how the graph's backward writes the first
 * gradient of an activation without zeroing its buffer first (graph.c: gbuf_first).
 * Each kernel says which bits it honours; the others' outputs always accumulate.
 * Size letters: N rows (= B*T), K in-features, M out-features, D model dim,
 * B batch, H heads, Tq query length, Tk key length, V vocabulary. */
#ifndef S2S_KERNELS_H
#define S2S_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define S2S_KERNEL_DECLS(P)                                                               \
    /* y[N,M] = x[N,K] @ w[M,K]^T + b[M]   (b may be NULL) */                             \
    void P##linear_fwd(float *y, const float *x, const float *w, const float *b, int N,  \
                       int K, int M);                                                     \
    /* dx[N,K] += dy @ w;  dw[M,K] += dy^T @ x;  db[M] += sum_n dy  (each may be NULL); \
     * assign: bit 0 (dx) */                                                             \
    void P##linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x, \
                       const float *w, int N, int K, int M, int assign);                  \
    /* c[M,N] = a[M,K] @ b[K,N] (plain matmul, overwrite) */                              \
    void P##matmul_fwd(float *c, const float *a, const float *b, int M, int K, int N);   \
    /* da[M,K] += dc @ b^T;  db[K,N] += a^T @ dc;  assign: bits 0 (da), 1 (db) */         \
    void P##matmul_bwd(float *da, float *db, const float *dc, const float *a,            \
                       const float *b, int M, int K, int N, int assign);                  \
    /* y[N,D] = (x - mean) * rstd * g + b; saves mean[N], rstd[N]; eps = 1e-5 */          \
    void P##layernorm_fwd(float *y, float *mean, float *rstd, const float *x,            \
                          const float *g, const float *b, int N, int D);                  \
    /* assign: bit 0 (dx) */                                                              \
    void P##layernorm_bwd(float *dx, float *dg, float *db, const float *dy,              \
                          const float *x, const float *mean, const float *rstd,           \
                          const float *g, int N, int D, int assign);                      \
    /* row softmax over the last dim: y[N,D] */                                           \
    void P##softmax_fwd(float *y, const float *x, int N, int D);                         \
    void P##softmax_bwd(float *dx, const float *dy, const float *y, int N, int D,        \
                        int assign);                                                      \
    /* row log-softmax: y[N,D] */                                                         \
    void P##logsoftmax_fwd(float *y, const float *x, int N, int D);                      \
    void P##logsoftmax_bwd(float *dx, const float *dy, const float *y, int N, int D,     \
                           int assign);                                                   \
    /* elementwise activations over n values; bwd uses the INPUT x. The single-gradient  \
     * backward kernels (softmax, log-softmax, relu, gelu, xent) honour assign bit 0. */  \
    void P##relu_fwd(float *y, const float *x, size_t n);                                \
    void P##relu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign);  \
    /* GELU, tanh approximation is NOT used: exact erf form, as torch's default */       \
    void P##gelu_fwd(float *y, const float *x, size_t n);                                \
    void P##gelu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign);  \
    /* out[N,D] = table[ids[n], :] ; dtable[V,D] += scatter of dout */                   \
    void P##embedding_fwd(float *out, const float *table, const int32_t *ids, int N,     \
                          int D);                                                         \
    void P##embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int N,   \
                          int D);                                                         \
    /* Multi-head scaled dot-product attention.                                           \
     * q[B,Tq,H*Dh], k,v[B,Tk,H*Dh] (head h occupies columns h*Dh..h*Dh+Dh-1).           \
     * kv_len[B]: keys j >= kv_len[b] are masked (padding); kv_len may be NULL (none).   \
     * causal: key j is masked for query i when j > i + (Tk - Tq).                       \
     * out[B,Tq,H*Dh]; p[B,H,Tq,Tk] saves the probabilities (masked entries 0).          \
     * scale = 1/sqrt(Dh). A query row with every key masked gets p = 0, out = 0.        \
     * bwd assign: bits 0 (dq), 1 (dk), 2 (dv). */                                        \
    void P##attention_fwd(float *out, float *p, const float *q, const float *k,          \
                          const float *v, const int32_t *kv_len, int causal, int B,      \
                          int H, int Tq, int Tk, int Dh);                                 \
    void P##attention_bwd(float *dq, float *dk, float *dv, const float *dout,            \
                          const float *p, const float *q, const float *k,                \
                          const float *v, int B, int H, int Tq, int Tk, int Dh,          \
                          int assign);                                                    \
    /* Cross-entropy with label smoothing eps over logits[N,V] (as torch's               \
     * CrossEntropyLoss(label_smoothing=eps, ignore_index=ignore)):                       \
     *   loss_n = (1-eps) * -logp[n,t_n] + eps * mean_v(-logp[n,v]),  0 if t_n==ignore.   \
     * Writes logp[N,V] (log-softmax, saved for bwd) and loss[N]; returns the number      \
     * of non-ignored rows. */                                                            \
    int P##xent_fwd(float *loss, float *logp, const float *logits, const int32_t *tgt,   \
                    float eps, int ignore, int N, int V);                                 \
    /* dlogits[N,V] += dloss[n] * d loss_n / d logits (ignored rows: += 0) */             \
    void P##xent_bwd(float *dlogits, const float *dloss, const float *logp,              \
                     const int32_t *tgt, float eps, int ignore, int N, int V, int assign);

/* The assign bit of a kernel's i-th gradient output (see the conventions above). */
#define S2S_ASSIGN(i) (1 << (i))

S2S_KERNEL_DECLS(s2s_kref_)
S2S_KERNEL_DECLS(s2s_k_)

/* One query, one head: the core of s2s_k_attention_fwd, which decoding also calls directly
 * (decoder_common.c), so both give the same bits. p[j] = softmax_j(scale * q . k_j) for
 * j < n, o[Dh] = sum_j p[j] v_j; key j at K + j * js + (slots ? slots[j] : slot0) * ss,
 * V likewise (keys anywhere: a time-major cache with a slot table). n <= 0: o = 0. */
void s2s_k_attend_head(float *o, float *p, const float *q, const float *K, const float *V, size_t js,
                       const int32_t *slots, size_t slot0, size_t ss, int n, int Dh, float scale);

/* Linear layer with fp16 weights (inference on fp16 models: half the bytes per
 * decoding step, so a small model's weights stay in cache). Same contract as
 * linear_fwd: y[N,M] = x[N,K] @ w[M,K]^T + b[M]; w holds IEEE binary16 values,
 * accumulation is fp32. Meant for small N (batch-1/beam decoding); kernels_f16.c. */
void s2s_kref_linear_f16_fwd(float *y, const float *x, const uint16_t *w, const float *b, int N,
                             int K, int M);
void s2s_k_linear_f16_fwd(float *y, const float *x, const uint16_t *w, const float *b, int N,
                          int K, int M);
/* Up to this many rows the fp16 kernel beats OpenBLAS sgemm on fp32 weights, which
 * packs the whole weight matrix on every call (measured, 1 thread, AVX-512 Xeon:
 * 256x1024 at N=8 67 us vs 137 us, N=16 142 vs 165, N=29 266 vs 244). Inference
 * layers with fp16 weights (encoder and decoder) take it below the bound. */
#define S2S_F16_MAX_ROWS 24

/* Linear with fp32 weights for a few input rows (kernels_small.c; AVX-512 builds only):
 * y[N,M] = x[N,K] @ w[M,K]^T (+ b). s2s_k_linear_fwd uses it when S2S_SMALL_ROWS_OK. */
#define S2S_SMALL_MAX_ROWS 24
#if defined(__AVX512F__)
#define S2S_SMALL_ROWS_OK(N, K) ((N) >= 2 && (N) <= S2S_SMALL_MAX_ROWS && (K) > 0 && (K) % 16 == 0)
void s2s_k_linear_small_fwd(float *y, const float *x, const float *w, const float *b, int N,
                            int K, int M);
#else
#define S2S_SMALL_ROWS_OK(N, K) 0
#endif

/* Linear with fp32 weights packed once (kernels_gemm.c; inference weights, which never
 * change): y[N,M] = x[N,K] @ w[M,K]^T (+ b) with w given as pw, made by s2s_gemm_pack
 * (s2s_gemm_packed_floats(K, M) floats, 64-byte aligned: panels of S2S_GEMM_NR output
 * features, pw[(p * K + k) * NR + j] = w[p * NR + j, k], zero beyond M). No per-call
 * packing of the weights, unlike sgemm. Decoding and the encoder take it from
 * S2S_PACKED_MIN_ROWS rows (graph.h: s2s_weight_packed). */
#define S2S_GEMM_NR 32
size_t s2s_gemm_packed_floats(int K, int M);
void s2s_gemm_pack(float *pw, const float *w, int K, int M);
void s2s_k_linear_packed_fwd(float *y, const float *x, const float *pw, const float *b, int N,
                             int K, int M);
/* The same with the next ops fused: y = relu(x @ w^T + b) when relu != 0, then + res[N, M]
 * when res != NULL (res may be y: y += ...); the values of linear, then relu, then add. */
void s2s_k_linear_packed_ex_fwd(float *y, const float *x, const float *pw, const float *b, int N,
                                int K, int M, const float *res, int relu);
/* Block-diagonal (grouped) linear, no bias: y[N, G*M] column block g = x[N, G*K] column
 * block g @ w_g[M, K]^T, with the G weights packed one after another (pw + g *
 * s2s_gemm_packed_floats(K, M); when M % S2S_GEMM_NR == 0 that is the packing of the
 * stacked [G*M, K] matrix, s2s_gemm_pack / s2s_weight_packed of it). Each y element is
 * the same FMA chain as s2s_k_linear_packed_fwd of its group. */
void s2s_k_linear_packed_groups_fwd(float *y, const float *x, const float *pw, int N, int G, int K,
                                    int M);
#if defined(__AVX512F__)
#define S2S_PACKED_MIN_ROWS 2
#else
#define S2S_PACKED_MIN_ROWS 0x7fffffff /* the plain fallback is for tests only */
#endif

/* Threads used by the fast kernels (OpenMP and OpenBLAS share one pool). */
void s2s_set_threads(int n);
int s2s_get_threads(void);

#endif
