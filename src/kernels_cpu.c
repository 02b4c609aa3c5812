/* kernels_cpu.c - fast CPU kernels (s2s_k_*): OpenBLAS sgemm, OpenMP, SIMD loops.
 *
 * Same signatures and semantics as the reference kernels (kernels_ref.c, the ground
 * truth; tests/test_kernels.c checks agreement to 1e-5 + 1e-4*|ref|). Where the time
 * goes and what is done about it:
 *   - linear / matmul: one cblas_sgemm per call (cblas_sgemv for the N == 1 decoding
 *     case); without BLAS (S2S_HAVE_BLAS undefined) a cache-blocked OpenMP loop.
 *   - attention: a fused per-query-row loop (s2s_k_attend_head, which decoding also calls:
 *     scores written straight into p, softmax normalised in place, then p @ v; with AVX-512
 *     and Dh % 16 == 0, q and the output stay in registers and exp runs 16 lanes at once),
 *     OpenMP over the B*H*Tq rows; masks only shorten
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
#if defined(__AVX512F__)
#include <immintrin.h>
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
                      const float *w, int N, int K, int M, int assign) {
    /* dx[N,K] += dy[N,M] @ w[M,K] (= with assign bit 0);  dw[M,K] += dy^T @ x[N,K];
     * db[M] += colsum(dy) */
    if (dx) gemm(0, 0, N, K, M, dy, M, w, K, assign & S2S_ASSIGN(0) ? 0.0f : 1.0f, dx, K);
    if (dw) gemm(1, 0, M, K, N, dy, M, x, K, 1.0f, dw, K);
    if (db) colsum_acc(db, dy, N, M);
}

void s2s_k_matmul_fwd(float *c, const float *a, const float *b, int M, int K, int N) {
    /* c[M,N] = a[M,K] @ b[K,N] */
    gemm(0, 0, M, N, K, a, K, b, N, 0.0f, c, N);
}

void s2s_k_matmul_bwd(float *da, float *db, const float *dc, const float *a,
                      const float *b, int M, int K, int N, int assign) {
    /* da[M,K] += dc[M,N] @ b[K,N]^T;  db[K,N] += a[M,K]^T @ dc  (=: assign bits 0, 1) */
    if (da) gemm(0, 1, M, K, N, dc, N, b, N, assign & S2S_ASSIGN(0) ? 0.0f : 1.0f, da, K);
    if (db) gemm(1, 0, K, N, M, a, K, dc, N, assign & S2S_ASSIGN(1) ? 0.0f : 1.0f, db, N);
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
                              const float *restrict g, int D, int assign) {
    float s1 = 0.0f, s2 = 0.0f; /* sum dxhat, sum dxhat * xhat */
    S2S_OMP(simd reduction(+ : s1, s2))
    for (int d = 0; d < D; d++) {
        const float dxh = dy[d] * g[d];
        s1 += dxh;
        s2 += dxh * (x[d] - m) * rs;
    }
    const float a = s1 / (float)D, c = s2 / (float)D;
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) {
        const float v = rs * (dy[d] * g[d] - a - (x[d] - m) * rs * c);
        dx[d] = assign ? v : dx[d] + v;
    }
}

void s2s_k_layernorm_bwd(float *dx, float *dg, float *db, const float *dy,
                         const float *x, const float *mean, const float *rstd,
                         const float *g, int N, int D, int assign) {
    /* dx[N,D] (+=, or = with assign bit 0), dg[D], db[D] (+=), dy[N,D], x[N,D], mean[N],
     * rstd[N], g[D] */
    const int par = (size_t)N * D >= PAR_MIN, set = assign & S2S_ASSIGN(0);
    if (dx) {
        if (par) {
            S2S_OMP(parallel for schedule(static))
            for (int n = 0; n < N; n++)
                layernorm_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, x + (size_t)n * D,
                                  mean[n], rstd[n], g, D, set);
        } else {
            for (int n = 0; n < N; n++)
                layernorm_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, x + (size_t)n * D,
                                  mean[n], rstd[n], g, D, set);
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
                            const float *restrict y, int D, int assign) {
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) s += dy[d] * y[d];
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) {
        const float v = y[d] * (dy[d] - s);
        dx[d] = assign ? v : dx[d] + v;
    }
}

void s2s_k_softmax_bwd(float *dx, const float *dy, const float *y, int N, int D, int assign) {
    /* dx[N,D] += y * (dy - sum(dy * y))  (= with assign bit 0) */
    const int set = assign & S2S_ASSIGN(0);
    if ((size_t)N * D >= PAR_MIN && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++)
            softmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D, set);
    } else {
        for (int n = 0; n < N; n++)
            softmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D, set);
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
                               const float *restrict y, int D, int assign) {
    float s = 0.0f;
    S2S_OMP(simd reduction(+ : s))
    for (int d = 0; d < D; d++) s += dy[d];
    S2S_OMP(simd)
    for (int d = 0; d < D; d++) {
        const float v = dy[d] - fexp(y[d]) * s;
        dx[d] = assign ? v : dx[d] + v;
    }
}

void s2s_k_logsoftmax_bwd(float *dx, const float *dy, const float *y, int N, int D, int assign) {
    /* dx[N,D] += dy - exp(y) * sum(dy)  (= with assign bit 0) */
    const int set = assign & S2S_ASSIGN(0);
    if ((size_t)N * D >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++)
            logsoftmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D, set);
    } else {
        for (int n = 0; n < N; n++)
            logsoftmax_bwd_row(dx + (size_t)n * D, dy + (size_t)n * D, y + (size_t)n * D, D, set);
    }
}

/* ------------------------------------------------------------------------------------
 * activations (elementwise; OpenMP splits the range, `if` keeps small calls serial)
 * ---------------------------------------------------------------------------------- */

void s2s_k_relu_fwd(float *y, const float *x, size_t n) {
    S2S_OMP(parallel for simd schedule(static) if (n >= 4 * PAR_MIN))
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void s2s_k_relu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    const int set = assign & S2S_ASSIGN(0);
    S2S_OMP(parallel for simd schedule(static) if (n >= 4 * PAR_MIN))
    for (size_t i = 0; i < n; i++) {
        const float v = x[i] > 0.0f ? dy[i] : 0.0f;
        dx[i] = set ? v : dx[i] + v;
    }
}

void s2s_k_gelu_fwd(float *y, const float *x, size_t n) {
    S2S_OMP(parallel for simd schedule(static) if (n >= PAR_MIN_TRANS))
    for (size_t i = 0; i < n; i++) y[i] = x[i] * fphi(x[i]);
}

void s2s_k_gelu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    /* d/dx x Phi(x) = Phi(x) + x phi(x) */
    const int set = assign & S2S_ASSIGN(0);
    S2S_OMP(parallel for simd schedule(static) if (n >= PAR_MIN_TRANS))
    for (size_t i = 0; i < n; i++) {
        const float v = x[i];
        const float pdf = 0.39894228040143268f * fexp(-0.5f * v * v);
        const float gi = dy[i] * (fphi(v) + v * pdf);
        dx[i] = set ? gi : dx[i] + gi;
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

#if defined(__AVX512F__)
/* fexp (kernels_simd.h) on 16 lanes: the same operations in the same order, the same bits */
static inline __m512 fexp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.0f), hi = _mm512_set1_ps(88.0f);
    const __m512 magic = _mm512_set1_ps(12582912.0f);
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __m512 xc = _mm512_mask_blend_ps(under, x, lo);
    xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(xc, hi, _CMP_GT_OQ), xc, hi);
    const __m512 t = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic);
    const __m512 n = _mm512_sub_ps(t, magic);
    __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(-0.693359375f), xc);
    r = _mm512_fmadd_ps(n, _mm512_set1_ps(2.12194440e-4f), r);
    __m512 pp = _mm512_set1_ps(1.9875691500e-4f);
    pp = _mm512_fmadd_ps(pp, r, _mm512_set1_ps(1.3981999507e-3f));
    pp = _mm512_fmadd_ps(pp, r, _mm512_set1_ps(8.3334519073e-3f));
    pp = _mm512_fmadd_ps(pp, r, _mm512_set1_ps(4.1665795894e-2f));
    pp = _mm512_fmadd_ps(pp, r, _mm512_set1_ps(1.6666665459e-1f));
    pp = _mm512_fmadd_ps(pp, r, _mm512_set1_ps(5.0000001201e-1f));
    const __m512 e = _mm512_add_ps(_mm512_fmadd_ps(pp, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
    const __m512i sb = _mm512_slli_epi32(_mm512_add_epi32(_mm512_sub_epi32(_mm512_castps_si512(t),
                                                                           _mm512_castps_si512(magic)),
                                                          _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps((__mmask16)~under, e, _mm512_castsi512_ps(sb));
}
#endif

void s2s_k_attend_head(float *restrict o, float *restrict p, const float *restrict q, const float *K,
                       const float *V, size_t js, const int32_t *slots, size_t slot0, size_t ss, int n,
                       int Dh, float scale) {
    if (n <= 0) {
        memset(o, 0, (size_t)Dh * sizeof(float));
        return;
    }
#define KEY(B, j) ((B) + (size_t)(j) * js + (slots ? (size_t)slots[j] : slot0) * ss)
#if defined(__AVX512F__)
    if (Dh % 16 == 0 && Dh <= 128) { /* decoding's case: q and the output in registers */
        const int nv = Dh / 16;
        __m512 qv[8], ov[8];
        for (int c = 0; c < nv; c++) {
            qv[c] = _mm512_loadu_ps(q + 16 * c);
            ov[c] = _mm512_setzero_ps();
        }
        for (int j = 0; j < n; j++) {
            const float *kj = KEY(K, j);
            __m512 acc = _mm512_mul_ps(qv[0], _mm512_loadu_ps(kj));
            for (int c = 1; c < nv; c++) acc = _mm512_fmadd_ps(qv[c], _mm512_loadu_ps(kj + 16 * c), acc);
            p[j] = _mm512_reduce_add_ps(acc) * scale;
        }
        __m512 mv = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < n; j += 16) {
            const __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
            mv = _mm512_mask_max_ps(mv, mk, mv, _mm512_maskz_loadu_ps(mk, p + j));
        }
        const __m512 mx = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
        for (int j = 0; j < n; j += 16) {
            const __mmask16 mk = n - j >= 16 ? 0xffff : (__mmask16)((1u << (n - j)) - 1);
            _mm512_mask_storeu_ps(p + j, mk, fexp16(_mm512_sub_ps(_mm512_maskz_loadu_ps(mk, p + j), mx)));
        }
        float sum = 0.0f;
        for (int j = 0; j < n; j++) sum += p[j];
        const float inv = 1.0f / sum;
        for (int j = 0; j < n; j++) {
            const float *vj = KEY(V, j);
            p[j] *= inv;
            const __m512 pj = _mm512_set1_ps(p[j]);
            for (int c = 0; c < nv; c++) ov[c] = _mm512_fmadd_ps(pj, _mm512_loadu_ps(vj + 16 * c), ov[c]);
        }
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(o + 16 * c, ov[c]);
        return;
    }
#endif
    /* scores, four keys at a time so each q load feeds four dot products */
    int j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *k0 = KEY(K, j), *k1 = KEY(K, j + 1), *k2 = KEY(K, j + 2), *k3 = KEY(K, j + 3);
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
        S2S_OMP(simd reduction(+ : s0, s1, s2, s3))
        for (int d = 0; d < Dh; d++) {
            const float qd = q[d];
            s0 = FMA(qd, k0[d], s0);
            s1 = FMA(qd, k1[d], s1);
            s2 = FMA(qd, k2[d], s2);
            s3 = FMA(qd, k3[d], s3);
        }
        p[j] = s0 * scale;
        p[j + 1] = s1 * scale;
        p[j + 2] = s2 * scale;
        p[j + 3] = s3 * scale;
    }
    for (; j < n; j++) {
        const float *k0 = KEY(K, j);
        float s0 = 0.0f;
        S2S_OMP(simd reduction(+ : s0))
        for (int d = 0; d < Dh; d++) s0 = FMA(q[d], k0[d], s0);
        p[j] = s0 * scale;
    }
    /* softmax in place */
    const float mx = row_max(p, n);
    float sum = 0.0f;
    S2S_OMP(simd reduction(+ : sum))
    for (int jj = 0; jj < n; jj++) {
        const float e = fexp(p[jj] - mx);
        p[jj] = e;
        sum += e;
    }
    const float inv = 1.0f / sum;
    S2S_OMP(simd)
    for (int jj = 0; jj < n; jj++) p[jj] *= inv;
    /* o = p @ v, four keys at a time */
    memset(o, 0, (size_t)Dh * sizeof(float));
    j = 0;
    for (; j + 4 <= n; j += 4) {
        const float *v0 = KEY(V, j), *v1 = KEY(V, j + 1), *v2 = KEY(V, j + 2), *v3 = KEY(V, j + 3);
        const float p0 = p[j], p1 = p[j + 1], p2 = p[j + 2], p3 = p[j + 3];
        S2S_OMP(simd)
        for (int d = 0; d < Dh; d++)
            o[d] = FMA(p3, v3[d], FMA(p2, v2[d], FMA(p1, v1[d], FMA(p0, v0[d], o[d]))));
    }
    for (; j < n; j++) {
        const float *v0 = KEY(V, j);
        const float p0 = p[j];
        S2S_OMP(simd)
        for (int d = 0; d < Dh; d++) o[d] = FMA(p0, v0[d], o[d]);
    }
#undef KEY
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
    s2s_k_attend_head(o, prow, qi, kb, vb, (size_t)HD, NULL, 0, 0, jn, Dh, scale);
    if (jn < Tk) memset(prow + jn, 0, (size_t)(Tk - jn) * sizeof(float));
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
                         const float *v, int B, int H, int Tq, int Tk, int Dh, int assign) {
    /* dq[B,Tq,H*Dh], dk,dv[B,Tk,H*Dh] (+=; each may be NULL), dout[B,Tq,H*Dh],
     * p[B,H,Tq,Tk] from the forward. The pairs accumulate over query rows (and skip
     * masked ones), so an assigned output (bits 0, 1, 2) is zeroed first. */
    const size_t nq = (size_t)B * Tq * H * Dh, nk = (size_t)B * Tk * H * Dh;
    if (dq && (assign & S2S_ASSIGN(0))) memset(dq, 0, nq * sizeof(float));
    if (dk && (assign & S2S_ASSIGN(1))) memset(dk, 0, nk * sizeof(float));
    if (dv && (assign & S2S_ASSIGN(2))) memset(dv, 0, nk * sizeof(float));
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
                         float eps, int V, int assign) {
    /* dl += c * (softmax - (1-eps) onehot(t) - eps/V)  (= with assign) */
    const float a = c * eps / (float)V;
    S2S_OMP(simd)
    for (int v = 0; v < V; v++) {
        const float g = FMA(c, fexp(lp[v]), -a);
        dl[v] = assign ? g : dl[v] + g;
    }
    dl[t] -= c * (1.0f - eps);
}

/* Row n of xent_bwd: an ignored row adds nothing (assigned: zeros). */
static inline void xent_bwd_one(float *dlogits, const float *dloss, const float *logp,
                                const int32_t *tgt, float eps, int ignore, int V, int assign,
                                int n) {
    float *dl = dlogits + (size_t)n * V;
    if (tgt[n] == ignore) {
        if (assign) memset(dl, 0, (size_t)V * sizeof(float));
        return;
    }
    S2S_ASSERT(tgt[n] >= 0 && tgt[n] < V);
    xent_bwd_row(dl, dloss[n], logp + (size_t)n * V, tgt[n], eps, V, assign);
}

void s2s_k_xent_bwd(float *dlogits, const float *dloss, const float *logp,
                    const int32_t *tgt, float eps, int ignore, int N, int V, int assign) {
    /* dlogits[N,V] (+=, or = with assign bit 0), dloss[N], logp[N,V], tgt[N] */
    const int set = assign & S2S_ASSIGN(0);
    if ((size_t)N * V >= PAR_MIN_TRANS && N > 1) {
        S2S_OMP(parallel for schedule(static))
        for (int n = 0; n < N; n++) xent_bwd_one(dlogits, dloss, logp, tgt, eps, ignore, V, set, n);
    } else {
        for (int n = 0; n < N; n++) xent_bwd_one(dlogits, dloss, logp, tgt, eps, ignore, V, set, n);
    }
}
