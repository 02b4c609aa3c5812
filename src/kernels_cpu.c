/* kernels_cpu.c - fast CPU kernels (s2s_k_*): OpenBLAS sgemm, OpenMP, SIMD loops.
 *
 * Same signatures and semantics as the reference kernels (kernels_ref.c, the ground
 * truth; tests/test_kernels.c checks agreement to 1e-5 + 1e-4*|ref|). Where the time
 * goes and what is done about it:
 *   - linear / matmul: one cblas_sgemm per call (cblas_sgemv for the N == 1 decoding
 *     case); without BLAS (S2S_HAVE_BLAS undefined) a cache-blocked OpenMP loop.
 *   - attention: a fused per-query-row loop (scores written straight into p, softmax
 *     normalised in place, then p @ v), OpenMP over the B*H*Tq rows; masks only shorten
 *     the key range, since both padding and causality hide a suffix of the keys. No
 *     scratch memory, so batch-1 decoding (Tq == 1) costs no allocation. The backward
 *     runs OpenMP over (b,h) pairs, so dk/dv accumulate without races.
 *   - row kernels (layernorm, softmax, log-softmax, xent) and elementwise kernels run
 *     OpenMP over rows only above PAR_MIN elements, and use `omp simd` loops; exp() and
 *     the normal CDF are evaluated by polynomial forms that vectorise (libm's expf/erff
 *     do not), accurate to a few float ulps.
 *   - reductions across rows (bias/gain gradients, embedding scatter) run OpenMP over
 *     column blocks, so no thread shares an output element and nothing is allocated.
 * BLAS is never called from inside an OpenMP parallel region: it has its own threads,
 * which share OpenMP's pool in Debian's openblas-openmp build (s2s_set_threads sets
 * both). */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "kernels_simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef S2S_HAVE_BLAS
#include <cblas.h>
#endif

/* `S2S_OMP(parallel for)` expands to `#pragma omp parallel for` when OpenMP is on,
 * and to nothing otherwise (no unknown-pragma warnings in OPENMP=0 builds). */
#ifdef _OPENMP
#define S2S_OMP(...) _Pragma(S2S_STR_(omp __VA_ARGS__))
#define S2S_STR_(...) #__VA_ARGS__
#else
#define S2S_OMP(...)
#endif

/* Below this many elements a parallel region costs more than it saves. */
#define PAR_MIN 32768
/* Same, for kernels doing a transcendental function per element. */
#define PAR_MIN_TRANS 8192
/* Attention: multiply-adds (rows * keys * head dim) above which rows go parallel. */
#define PAR_MIN_ATTN 262144
/* Column block for reductions across rows (dg, db, embedding scatter). */
#define COL_BLOCK 64

/* ------------------------------------------------------------------------------------
 * vectorisable math
 * ---------------------------------------------------------------------------------- */


/* Phi(x) = 0.5 * (1 + erf(x / sqrt 2)), the standard normal CDF, through
 * erfc(z) = t exp(-z^2 + P(t)), t = 1 / (1 + z/2) for z >= 0: the Chebyshev fit of
 * Press et al. (Numerical Recipes, erfcc), fractional error < 1.2e-7 everywhere, so the
 * tails keep their relative accuracy. */
static inline float fphi(float x) {
    float z = fabsf(x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float pp = 0.17087277f;
    pp = FMA(pp, t, -0.82215223f);
    pp = FMA(pp, t, 1.48851587f);
    pp = FMA(pp, t, -1.13520398f);
    pp = FMA(pp, t, 0.27886807f);
    pp = FMA(pp, t, -0.18628806f);
    pp = FMA(pp, t, 0.09678418f);
    pp = FMA(pp, t, 0.37409196f);
    pp = FMA(pp, t, 1.00002368f);
    pp = FMA(pp, t, -1.26551223f);
    /* -z^2 = -x^2/2 taken from x (exact product inside the FMA), not from rounded z */
    const float half_erfc = 0.5f * t * fexp(FMA(-0.5f * x, x, pp)); /* 0.5 erfc(|x|/sqrt 2) */
    return fsel(x < 0.0f, half_erfc, 1.0f - half_erfc);
}

/* ------------------------------------------------------------------------------------
 * threads
 * ---------------------------------------------------------------------------------- */

void s2s_set_threads(int n) {
#ifdef _OPENMP
    if (n <= 0) n = omp_get_num_procs();
    omp_set_num_threads(n);
#endif
#ifdef S2S_HAVE_BLAS
    if (n <= 0) n = 1;
    openblas_set_num_threads(n);
#endif
    (void)n;
}

int s2s_get_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* ------------------------------------------------------------------------------------
 * gemm: C[M,N] = op(A)[M,K] @ op(B)[K,N] + beta * C
 * ---------------------------------------------------------------------------------- */

#ifndef S2S_HAVE_BLAS
/* Cache-blocked loops, OpenMP over blocks of rows of C. A is [M,K] (ta: stored [K,M]),
 * B is [K,N] (tb: stored [N,K]). C is already scaled by beta. */
static void gemm_loops(int ta, int tb, int M, int N, int K, const float *A, int lda,
                       const float *B, int ldb, float *C, int ldc) {
    enum { MB = 8, KB = 128, NB = 512 };
    const int nblk = (M + MB - 1) / MB;
    const int par = (double)M * N * K >= 262144.0;
    (void)par; /* unused without OpenMP */
    S2S_OMP(parallel for schedule(dynamic, 1) if (par))
    for (int ib = 0; ib < nblk; ib++) {
        const int i0 = ib * MB, i1 = i0 + MB < M ? i0 + MB : M;
        if (tb) {
            /* C[i,j] += sum_p A(i,p) * B[j,p]: dot products along contiguous B rows */
            for (int i = i0; i < i1; i++) {
                for (int j = 0; j < N; j++) {
                    const float *b = B + (size_t)j * ldb;
                    float s = 0.0f;
                    if (!ta) {
                        const float *a = A + (size_t)i * lda;
                        S2S_OMP(simd reduction(+ : s))
                        for (int p = 0; p < K; p++) s = FMA(a[p], b[p], s);
                    } else {
                        for (int p = 0; p < K; p++) s += A[(size_t)p * lda + i] * b[p];
                    }
                    C[(size_t)i * ldc + j] += s;
                }
            }
        } else {
            /* C[i,:] += A(i,p) * B[p,:]: row updates, blocked so a KB x NB tile of B
             * stays in cache for the MB rows */
            for (int p0 = 0; p0 < K; p0 += KB) {
                const int p1 = p0 + KB < K ? p0 + KB : K;
                for (int j0 = 0; j0 < N; j0 += NB) {
                    const int j1 = j0 + NB < N ? j0 + NB : N;
                    for (int i = i0; i < i1; i++) {
                        float *c = C + (size_t)i * ldc;
                        for (int p = p0; p < p1; p++) {
                            const float a = ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
                            const float *b = B + (size_t)p * ldb;
                            S2S_OMP(simd)
                            for (int j = j0; j < j1; j++) c[j] = FMA(a, b[j], c[j]);
                        }
                    }
                }
            }
        }
    }
}
#endif

/* C <- beta * C (beta == 0: C may hold garbage, it is overwritten) */
static void scale_rows(float *C, int M, int N, int ldc, float beta) {
    if (beta == 1.0f) return;
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(c, 0, (size_t)N * sizeof(float));
        else for (int j = 0; j < N; j++) c[j] *= beta;
    }
}

static void gemm(int ta, int tb, int M, int N, int K, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* an empty sum; BLAS would reject lda = 0 */
        scale_rows(C, M, N, ldc, beta);
        return;
    }
#ifdef S2S_HAVE_BLAS
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
#else
    scale_rows(C, M, N, ldc, beta);
    gemm_loops(ta, tb, M, N, K, A, lda, B, ldb, C, ldc);
#endif
}

/* out[M] += sum over N rows of a[N,M] (column sums), OpenMP over column blocks. */
static void colsum_acc(float *out, const float *a, int N, int M) {
    const int nblk = (M + COL_BLOCK - 1) / COL_BLOCK;
    S2S_OMP(parallel for schedule(static) if ((size_t)N * M >= PAR_MIN && nblk > 1))
    for (int cb = 0; cb < nblk; cb++) {
        const int c0 = cb * COL_BLOCK, nc = M - c0 < COL_BLOCK ? M - c0 : COL_BLOCK;
        float acc[COL_BLOCK] = {0};
        for (int n = 0; n < N; n++) {
            const float *r = a + (size_t)n * M + c0;
            S2S_OMP(simd)
            for (int c = 0; c < nc; c++) acc[c] += r[c];
        }
        for (int c = 0; c < nc; c++) out[c0 + c] += acc[c];
    }
}

/* ------------------------------------------------------------------------------------
 * linear and matmul
 * ---------------------------------------------------------------------------------- */

void s2s_k_linear_fwd(float *y, const float *x, const float *w, const float *b, int N,
                      int K, int M) {
    /* y[N,M] = x[N,K] @ w[M,K]^T + b[M] */
    if (N <= 0 || M <= 0) return;
#if defined(__AVX512F__)
    if (S2S_SMALL_ROWS_OK(N, K)) { /* few rows: no sgemm packing (kernels_small.c) */
        s2s_k_linear_small_fwd(y, x, w, b, N, K, M);
        return;
    }
#endif
    if (b) {
        for (int n = 0; n < N; n++) memcpy(y + (size_t)n * M, b, (size_t)M * sizeof(float));
    }
    const float beta = b ? 1.0f : 0.0f;
#ifdef S2S_HAVE_BLAS
    if (N == 1 && K > 0) { /* decoding: matrix-vector */
        cblas_sgemv(CblasRowMajor, CblasNoTrans, M, K, 1.0f, w, K, x, 1, beta, y, 1);
        return;
    }
#endif
    gemm(0, 1, N, M, K, x, K, w, K, beta, y, M);
}

void s2s_k_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                      const float *w, int N, int K, int M) {
    /* dx[N,K] += dy[N,M] @ w[M,K];  dw[M,K] += dy^T @ x[N,K];  db[M] += colsum(dy) */
    if (dx) gemm(0, 0, N, K, M, dy, M, w, K, 1.0f, dx, K);
    if (dw) gemm(1, 0, M, K, N, dy, M, x, K, 1.0f, dw, K);
    if (db) colsum_acc(db, dy, N, M);
}

void s2s_k_matmul_fwd(float *c, const float *a, const float *b, int M, int K, int N) {
    /* c[M,N] = a[M,K] @ b[K,N] */
    gemm(0, 0, M, N, K, a, K, b, N, 0.0f, c, N);
}

void s2s_k_matmul_bwd(float *da, float *db, const float *dc, const float *a,
                      const float *b, int M, int K, int N) {
    /* da[M,K] += dc[M,N] @ b[K,N]^T;  db[K,N] += a[M,K]^T @ dc */
    if (da) gemm(0, 1, M, K, N, dc, N, b, N, 1.0f, da, K);
    if (db) gemm(1, 0, K, N, M, a, K, dc, N, 1.0f, db, N);
}

/* ------------------------------------------------------------------------------------
 * layernorm
 * ---------------------------------------------------------------------------------- */

static void layernorm_row(float *restrict y, float *mean, float *rstd, const float *restrict x,
                          const float *restrict g, const float *restrict b, int D) {
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) s += x[d];
    const float m = s / (float)D;
    float v = 0.0f;
    S2S_OMP(simd reduction(+ : v))
    for (int d = 0; d < D; d++) v += (x[d] - m) * (x[d] - m);
    const float rs = 1.0f / sqrtf(v / (float)D + 1e-5f);
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) y[d] = FMA((x[d] - m) * rs, g[d], b[d]);
    *mean = m;
    *rstd = rs;
}

void s2s_k_layernorm_fwd(float *y, float *mean, float *rstd, const float *x,
                         const float *g, const float *b, int N, int D) {
    /* y[N,D], mean[N], rstd[N], x[N,D], g[D], b[D] */
    if ((size_t)N * D >= PAR_MIN) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++)
            layernorm_row(y + (size_t)n * D, mean + n, rstd + n, x + (size_t)n * D, g, b, D);
    } else {
        for (int n = 0; n < N; n++)
            layernorm_row(y + (size_t)n * D, mean + n, rstd + n, x + (size_t)n * D, g, b, D);
    }
}

static void layernorm_bwd_row(float *restrict dx, const float *restrict dy,
                              const float *restrict x, float m, float rs,
                              const float *restrict g, int D) {
    float s1 = 0.0f, s2 = 0.0f; /* sum dxhat, sum dxhat * xhat */
    S2S_OMP(simd reduction(+ : s1, s2))
    for (int d = 0; d < D; d++) {
        const float dxh = dy[d] * g[d];
        s1 += dxh;
        s2 += dxh * (x[d] - m) * rs;
    }
    const float a = s1 / (float)D, c = s2 / (float)D;
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) dx[d] += rs * (dy[d] * g[d] - a - (x[d] - m) * rs * c);
}

void s2s_k_layernorm_bwd(float *dx, float *dg, float *db, const float *dy,
                         const float *x, const float *mean, const float *rstd,
                         const float *g, int N, int D) {
    /* dx[N,D], dg[D], db[D] (+=), dy[N,D], x[N,D], mean[N], rstd[N], g[D] */
    const int par = (size_t)N * D >= PAR_MIN;
    if (dx) {
        if (par) {
            S2S_OMP(parallel for schedule(static))
            for (int n = 0; n < N; n++)
                layernorm_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, x + (size_t)n * D,
                                  mean[n], rstd[n], g, D);
        } else {
            for (int n = 0; n < N; n++)
                layernorm_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, x + (size_t)n * D,
                                  mean[n], rstd[n], g, D);
        }
    }
    if (dg || db) {
        /* dg += sum_n dy * xhat, db += sum_n dy: column blocks, no shared outputs */
        const int nblk = (D + COL_BLOCK - 1) / COL_BLOCK;
        S2S_OMP(parallel for schedule(static) if (par && nblk > 1))
        for (int cb = 0; cb < nblk; cb++) {
            const int c0 = cb * COL_BLOCK, nc = D - c0 < COL_BLOCK ? D - c0 : COL_BLOCK;
            float ag[COL_BLOCK] = {0}, ab[COL_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *xr = x + (size_t)n * D + c0, *dyr = dy + (size_t)n * D + c0;
                const float m = mean[n], rs = rstd[n];
                S2S_OMP(simd)
                for (int c = 0; c < nc; c++) {
                    ag[c] += dyr[c] * ((xr[c] - m) * rs);
                    ab[c] += dyr[c];
                }
            }
            for (int c = 0; c < nc; c++) {
                if (dg) dg[c0 + c] += ag[c];
                if (db) db[c0 + c] += ab[c];
            }
        }
    }
}

/* ------------------------------------------------------------------------------------
 * softmax, log-softmax
 * ---------------------------------------------------------------------------------- */

static float row_max(const float *x, int D) {
    float mx = -INFINITY;
    S2S_OMP(simd reduction(max : mx))
    for (int d = 0; d < D; d++) mx = x[d] > mx ? x[d] : mx;
    return mx;
}

static void softmax_row(float *restrict y, const float *restrict x, int D) {
    const float mx = row_max(x, D);
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) {
        const float e = fexp(x[d] - mx);
        y[d] = e;
        s += e;
    }
    const float inv = 1.0f / s;
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) y[d] *= inv;
}

/* y = (x - max) - log(sum exp(x - max)); returns nothing, writes y[D] */
static void logsoftmax_row(float *restrict y, const float *restrict x, int D) {
    const float mx = row_max(x, D);
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) s += fexp(x[d] - mx);
    const float lse = logf(s);
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) y[d] = (x[d] - mx) - lse;
}

void s2s_k_softmax_fwd(float *y, const float *x, int N, int D) {
    /* y[N,D], x[N,D] */
    if ((size_t)N * D >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++) softmax_row(y + (size_t)n * D, x + (size_t)n * D, D);
    } else {
        for (int n = 0; n < N; n++) softmax_row(y + (size_t)n * D, x + (size_t)n * D, D);
    }
}

static void softmax_bwd_row(float *restrict dx, const float *restrict dy,
                            const float *restrict y, int D) {
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) s += dy[d] * y[d];
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) dx[d] += y[d] * (dy[d] - s);
}

void s2s_k_softmax_bwd(float *dx, const float *dy, const float *y, int N, int D) {
    /* dx[N,D] += y * (dy - sum(dy * y)) */
    if ((size_t)N * D >= PAR_MIN && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++)
            softmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D);
    } else {
        for (int n = 0; n < N; n++)
            softmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D);
    }
}

void s2s_k_logsoftmax_fwd(float *y, const float *x, int N, int D) {
    /* y[N,D], x[N,D] */
    if ((size_t)N * D >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++) logsoftmax_row(y + (size_t)n * D, x + (size_t)n * D, D);
    } else {
        for (int n = 0; n < N; n++) logsoftmax_row(y + (size_t)n * D, x + (size_t)n * D, D);
    }
}

static void logsoftmax_bwd_row(float *restrict dx, const float *restrict dy,
                               const float *restrict y, int D) {
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) s += dy[d];
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) dx[d] += dy[d] - fexp(y[d]) * s;
}

void s2s_k_logsoftmax_bwd(float *dx, const float *dy, const float *y, int N, int D) {
    /* dx[N,D] += dy - exp(y) * sum(dy) */
    if ((size_t)N * D >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++)
            logsoftmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D);
    } else {
        for (int n = 0; n < N; n++)
            logsoftmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D);
    }
}

/* ------------------------------------------------------------------------------------
 * activations (elementwise; OpenMP splits the range, `if` keeps small calls serial)
 * ---------------------------------------------------------------------------------- */

void s2s_k_relu_fwd(float *y, const float *x, size_t n) {
    S2S_OMP(parallel for simd schedule(static) if (n >= 4 * PAR_MIN))
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void s2s_k_relu_bwd(float *dx, const float *dy, const float *x, size_t n) {
    S2S_OMP(parallel for simd schedule(static) if (n >= 4 * PAR_MIN))
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

void s2s_k_gelu_fwd(float *y, const float *x, size_t n) {
    S2S_OMP(parallel for simd schedule(static) if (n >= PAR_MIN_TRANS))
    for (size_t i = 0; i < n; i++) y[i] = x[i] * fphi(x[i]);
}

void s2s_k_gelu_bwd(float *dx, const float *dy, const float *x, size_t n) {
    /* d/dx x Phi(x) = Phi(x) + x phi(x) */
    S2S_OMP(parallel for simd schedule(static) if (n >= PAR_MIN_TRANS))
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        const float pdf = 0.39894228040143268f * fexp(-0.5f * v * v);
        dx[i] += dy[i] * (fphi(v) + v * pdf);
    }
}

/* ------------------------------------------------------------------------------------
 * embedding
 * ---------------------------------------------------------------------------------- */

void s2s_k_embedding_fwd(float *out, const float *table, const int32_t *ids, int N,
                         int D) {
    /* out[N,D] = table[ids[n], :] */
    S2S_OMP(parallel for schedule(static) if ((size_t)N * D >= 4 * PAR_MIN))
    for (int n = 0; n < N; n++) {
        S2S_ASSERT(ids[n] >= 0);
        memcpy(out + (size_t)n * D, table + (size_t)ids[n] * D, (size_t)D * sizeof(float));
    }
}

void s2s_k_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int N,
                         int D) {
    /* dtable[V,D] += scatter of dout[N,D]; ids repeat, so threads own column blocks */
    const int nblk = (D + COL_BLOCK - 1) / COL_BLOCK;
    S2S_OMP(parallel for schedule(static) if ((size_t)N * D >= PAR_MIN && nblk > 1))
    for (int cb = 0; cb < nblk; cb++) {
        const int c0 = cb * COL_BLOCK, nc = D - c0 < COL_BLOCK ? D - c0 : COL_BLOCK;
        for (int n = 0; n < N; n++) {
            S2S_ASSERT(ids[n] >= 0);
            float *t = dtable + (size_t)ids[n] * D + c0;
            const float *o = dout + (size_t)n * D + c0;
            S2S_OMP(simd)
            for (int c = 0; c < nc; c++) t[c] += o[c];
        }
    }
}

/* ------------------------------------------------------------------------------------
 * attention
 * ---------------------------------------------------------------------------------- */

/* Number of keys visible to query i of batch row b: both masks hide a suffix. */
static inline int visible_keys(const int32_t *kv_len, int causal, int b, int i, int Tq,
                               int Tk) {
    int n = Tk;
    if (kv_len && kv_len[b] < n) n = kv_len[b];
    if (causal && i + (Tk - Tq) + 1 < n) n = i + (Tk - Tq) + 1;
    return n < 0 ? 0 : n;
}

/* One query row of one head: prow[Tk] = softmax(scale * q . k_j) over the jn visible
 * keys (0 beyond), o[Dh] = prow @ v. k and v rows are HD floats apart. */
static void attn_fwd_row(float *restrict o, float *restrict prow, const float *restrict qi,
                         const float *restrict kb, const float *restrict vb, int HD, int jn,
                         int Tk, int Dh, float scale) {
    if (jn <= 0) {
        memset(prow, 0, (size_t)Tk * sizeof(float));
        memset(o, 0, (size_t)Dh * sizeof(float));
        return;
    }
    /* scores, four keys at a time so each q load feeds four dot products */
    int j = 0;
    for (; j + 4 <= jn; j += 4) {
        const float *k0 = kb + (size_t)j * HD, *k1 = k0 + HD, *k2 = k1 + HD, *k3 = k2 + HD;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        S2S_OMP(simd reduction(+ : s0, s1, s2, s3))
        for (int d = 0; d < Dh; d++) {
            const float qd = qi[d];
            s0 = FMA(qd, k0[d], s0);
            s1 = FMA(qd, k1[d], s1);
            s2 = FMA(qd, k2[d], s2);
            s3 = FMA(qd, k3[d], s3);
        }
        prow[j] = s0 * scale;
        prow[j + 1] = s1 * scale;
        prow[j + 2] = s2 * scale;
        prow[j + 3] = s3 * scale;
    }
    for (; j < jn; j++) {
        const float *k0 = kb + (size_t)j * HD;
        float s0 = 0.0f;
        S2S_OMP(simd reduction(+ : s0))
        for (int d = 0; d < Dh; d++) s0 = FMA(qi[d], k0[d], s0);
        prow[j] = s0 * scale;
    }
    /* softmax in place */
    const float mx = row_max(prow, jn);
    float sum = 0.0f;
    S2S_OMP(simd reduction(+ : sum))
    for (int jj = 0; jj < jn; jj++) {
        const float e = fexp(prow[jj] - mx);
        prow[jj] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
    S2S_OMP(simd)
    for (int jj = 0; jj < jn; jj++) prow[jj] *= inv;
    if (jn < Tk) memset(prow + jn, 0, (size_t)(Tk - jn) * sizeof(float));
    /* o = p @ v, four keys at a time */
    memset(o, 0, (size_t)Dh * sizeof(float));
    j = 0;
    for (; j + 4 <= jn; j += 4) {
        const float *v0 = vb + (size_t)j * HD, *v1 = v0 + HD, *v2 = v1 + HD, *v3 = v2 + HD;
        const float p0 = prow[j], p1 = prow[j + 1], p2 = prow[j + 2], p3 = prow[j + 3];
        S2S_OMP(simd)
        for (int d = 0; d < Dh; d++)
            o[d] = FMA(p3, v3[d], FMA(p2, v2[d], FMA(p1, v1[d], FMA(p0, v0[d], o[d]))));
    }
    for (; j < jn; j++) {
        const float *v0 = vb + (size_t)j * HD;
        const float p0 = prow[j];
        S2S_OMP(simd)
        for (int d = 0; d < Dh; d++) o[d] = FMA(p0, v0[d], o[d]);
    }
}

/* Row r of the [B,H,Tq] row space (the p row index). */
static inline void attn_fwd_one(float *out, float *p, const float *q, const float *k,
                                const float *v, const int32_t *kv_len, int causal, int H,
                                int Tq, int Tk, int Dh, float scale, size_t r) {
    const int HD = H * Dh;
    const int i = (int)(r % (size_t)Tq);
    const int h = (int)((r / (size_t)Tq) % (size_t)H);
    const int b = (int)(r / ((size_t)Tq * H));
    const size_t qo = ((size_t)b * Tq + i) * HD + (size_t)h * Dh;
    const size_t ko = (size_t)b * Tk * HD + (size_t)h * Dh;
    attn_fwd_row(out + qo, p + r * Tk, q + qo, k + ko, v + ko, HD,
                 visible_keys(kv_len, causal, b, i, Tq, Tk), Tk, Dh, scale);
}

void s2s_k_attention_fwd(float *out, float *p, const float *q, const float *k,
                         const float *v, const int32_t *kv_len, int causal, int B,
                         int H, int Tq, int Tk, int Dh) {
    /* out[B,Tq,H*Dh], p[B,H,Tq,Tk], q[B,Tq,H*Dh], k,v[B,Tk,H*Dh], kv_len[B] or NULL */
    if (B <= 0 || H <= 0 || Tq <= 0) return;
    const float scale = 1.0f / sqrtf((float)Dh);
    const size_t rows = (size_t)B * H * Tq;
    if (rows > 1 && (double)rows * Tk * Dh >= PAR_MIN_ATTN) {
        S2S_OMP(parallel for schedule(static))
        for (size_t r = 0; r < rows; r++)
            attn_fwd_one(out, p, q, k, v, kv_len, causal, H, Tq, Tk, Dh, scale, r);
    } else {
        for (size_t r = 0; r < rows; r++)
            attn_fwd_one(out, p, q, k, v, kv_len, causal, H, Tq, Tk, Dh, scale, r);
    }
}

/* Backward of one (b,h) pair. dp[Tk] is scratch. Per query row i, with P the saved
 * probabilities (masked entries exactly 0, and then dS = 0 too):
 *   dP_ij = dout_i . v_j;  r_i = sum_j P_ij dP_ij;  dS_ij = P_ij (dP_ij - r_i);
 *   dq_i += scale sum_j dS_ij k_j;  dk_j += scale dS_ij q_i;  dv_j += P_ij dout_i. */
static void attn_bwd_pair(float *dq, float *dk, float *dv, float *restrict dp,
                          const float *dout, const float *p, const float *q, const float *k,
                          const float *v, int b, int h, int H, int Tq, int Tk, int Dh,
                          float scale) {
    const int HD = H * Dh;
    const size_t ko = (size_t)b * Tk * HD + (size_t)h * Dh;
    for (int i = 0; i < Tq; i++) {
        const float *prow = p + (((size_t)b * H + h) * Tq + i) * Tk;
        const size_t qo = ((size_t)b * Tq + i) * HD + (size_t)h * Dh;
        const float *restrict qi = q + qo, *restrict doi = dout + qo;
        int jn = Tk; /* trailing masked keys need no work */
        while (jn > 0 && prow[jn - 1] == 0.0f) jn--;
        if (jn == 0) continue;
        int j = 0;
        for (; j + 4 <= jn; j += 4) {
            const float *v0 = v + ko + (size_t)j * HD, *v1 = v0 + HD, *v2 = v1 + HD, *v3 = v2 + HD;
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            S2S_OMP(simd reduction(+ : s0, s1, s2, s3))
            for (int d = 0; d < Dh; d++) {
                const float g = doi[d];
                s0 = FMA(g, v0[d], s0);
                s1 = FMA(g, v1[d], s1);
                s2 = FMA(g, v2[d], s2);
                s3 = FMA(g, v3[d], s3);
            }
            dp[j] = s0;
            dp[j + 1] = s1;
            dp[j + 2] = s2;
            dp[j + 3] = s3;
        }
        for (; j < jn; j++) {
            const float *v0 = v + ko + (size_t)j * HD;
            float s0 = 0.0f;
            S2S_OMP(simd reduction(+ : s0))
            for (int d = 0; d < Dh; d++) s0 = FMA(doi[d], v0[d], s0);
            dp[j] = s0;
        }
        float r = 0.0f;
        S2S_OMP(simd reduction(+ : r))
        for (int jj = 0; jj < jn; jj++) r += prow[jj] * dp[jj];
        float *restrict dqi = dq ? dq + qo : NULL;
        for (j = 0; j < jn; j++) {
            const float pj = prow[j];
            if (pj == 0.0f) continue;
            const float ds = pj * (dp[j] - r) * scale;
            const size_t o = ko + (size_t)j * HD;
            if (dqi) {
                const float *restrict kj = k + o;
                S2S_OMP(simd)
                for (int d = 0; d < Dh; d++) dqi[d] = FMA(ds, kj[d], dqi[d]);
            }
            if (dk) {
                float *restrict dkj = dk + o;
                S2S_OMP(simd)
                for (int d = 0; d < Dh; d++) dkj[d] = FMA(ds, qi[d], dkj[d]);
            }
            if (dv) {
                float *restrict dvj = dv + o;
                S2S_OMP(simd)
                for (int d = 0; d < Dh; d++) dvj[d] = FMA(pj, doi[d], dvj[d]);
            }
        }
    }
}

void s2s_k_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                         const float *p, const float *q, const float *k,
                         const float *v, int B, int H, int Tq, int Tk, int Dh) {
    /* dq[B,Tq,H*Dh], dk,dv[B,Tk,H*Dh] (+=; each may be NULL), dout[B,Tq,H*Dh],
     * p[B,H,Tq,Tk] from the forward */
    if (B <= 0 || H <= 0 || Tq <= 0 || Tk <= 0 || (!dq && !dk && !dv)) return;
    const float scale = 1.0f / sqrtf((float)Dh);
    const int pairs = B * H;
    const int par = pairs > 1 && (double)B * H * Tq * Tk * Dh >= PAR_MIN_ATTN;
    (void)par; /* unused without OpenMP */
    S2S_OMP(parallel if (par))
    {
        float *dp = s2s_xmalloc((size_t)Tk * sizeof(float)); /* per thread, per call */
        S2S_OMP(for schedule(static))
        for (int bh = 0; bh < pairs; bh++)
            attn_bwd_pair(dq, dk, dv, dp, dout, p, q, k, v, bh / H, bh % H, H, Tq, Tk, Dh,
                          scale);
        free(dp);
    }
}

/* ------------------------------------------------------------------------------------
 * cross-entropy with label smoothing
 * ---------------------------------------------------------------------------------- */

/* One row: writes logp[V] and *loss; returns 1 if the row counts (not ignored). */
static int xent_row(float *loss, float *restrict logp, const float *restrict x, int32_t t,
                    float eps, int ignore, int V) {
    const float mx = row_max(x, V);
    float s = 0.0f, sx = 0.0f;
    S2S_OMP(simd reduction(+ : s, sx))
    for (int v = 0; v < V; v++) {
        const float xm = x[v] - mx;
        s += fexp(xm);
        sx += xm;
    }
    const float lse = logf(s);
    S2S_OMP(simd)
    for (int v = 0; v < V; v++) logp[v] = (x[v] - mx) - lse;
    if (t == ignore) {
        *loss = 0.0f;
        return 0;
    }
    S2S_ASSERT(t >= 0 && t < V);
    /* mean_v(-logp) = lse - mean_v(x - max) */
    const float smooth = lse - sx / (float)V;
    *loss = (1.0f - eps) * -logp[t] + eps * smooth;
    return 1;
}

int s2s_k_xent_fwd(float *loss, float *logp, const float *logits, const int32_t *tgt,
                   float eps, int ignore, int N, int V) {
    /* loss[N], logp[N,V], logits[N,V], tgt[N]; returns the non-ignored row count */
    int count = 0;
    if ((size_t)N * V >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static) reduction(+ : count))
        for (int n = 0; n < N; n++)
            count += xent_row(loss + n, logp + (size_t)n * V, logits + (size_t)n * V, tgt[n],
                              eps, ignore, V);
    } else {
        for (int n = 0; n < N; n++)
            count += xent_row(loss + n, logp + (size_t)n * V, logits + (size_t)n * V, tgt[n],
                              eps, ignore, V);
    }
    return count;
}

static void xent_bwd_row(float *restrict dl, float c, const float *restrict lp, int32_t t,
                         float eps, int V) {
    /* dl += c * (softmax - (1-eps) onehot(t) - eps/V) */
    const float a = c * eps / (float)V;
    S2S_OMP(simd)
    for (int v = 0; v < V; v++) dl[v] += FMA(c, fexp(lp[v]), -a);
    dl[t] -= c * (1.0f - eps);
}

void s2s_k_xent_bwd(float *dlogits, const float *dloss, const float *logp,
                    const int32_t *tgt, float eps, int ignore, int N, int V) {
    /* dlogits[N,V] (+=), dloss[N], logp[N,V], tgt[N] */
    if ((size_t)N * V >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++) {
            if (tgt[n] == ignore) continue;
            S2S_ASSERT(tgt[n] >= 0 && tgt[n] < V);
            xent_bwd_row(dlogits + (size_t)n * V, dloss[n], logp + (size_t)n * V, tgt[n], eps, V);
        }
    } else {
        for (int n = 0; n < N; n++) {
            if (tgt[n] == ignore) continue;
            S2S_ASSERT(tgt[n] >= 0 && tgt[n] < V);
            xent_bwd_row(dlogits + (size_t)n * V, dloss[n], logp + (size_t)n * V, tgt[n], eps, V);
        }
    }
}
