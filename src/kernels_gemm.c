/* kernels_gemm.c - linear layer with fp32 weights packed once (inference models).
 *
 * OpenBLAS's sgemm copies ("packs") the weight matrix into its micro-kernel's layout on
 * every call. Decoding calls each weight with a few dozen rows (batch 32, beam 4), where
 * that copy cost as much as the multiply (measured, G2P teacher fp32, batch 32, 1 thread:
 * sgemm_incopy 14-19% of the whole run, sgemm's kernel 13-35%). Inference weights never
 * change, so they are packed here once (s2s_gemm_pack; graph.c's s2s_weight_packed does it
 * on first use) into panels of 32 output features,
 *
 *     pw[(p * K + k) * 32 + j] = w[p * 32 + j, k]      (0 beyond M),
 *
 * and the kernel streams them straight from that layout. The AVX-512 micro-kernel keeps a
 * block of up to 12 rows x 32 features of y in 24 registers: per k, two loads of weights
 * (and a prefetch 24 steps ahead), one broadcast of x per row, two FMAs per row. Rows are
 * split into ceil(N / 12) blocks of near-equal size (25 rows: 9 + 8 + 8), each taken by the
 * micro-kernel compiled for its row count; a panel is reused by every block while it is in
 * cache. Each y element is one FMA chain over k = 0..K-1 in order, plus the bias, so a
 * row's result does not depend on N, on the other rows or on the thread count. OpenMP runs
 * over the panels. Without AVX-512, plain loops with the same layout (tests only).
 * Reference: s2s_kref_linear_fwd on the unpacked weights (tests/test_kernels.c,
 * linear_packed). */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define NR S2S_GEMM_NR /* output features per panel */
#define MR 12          /* input rows per register block */
#define PF 24          /* prefetch distance in k steps (24 x 128 bytes) */

size_t s2s_gemm_packed_floats(int K, int M) {
    return (size_t)((M + NR - 1) / NR) * NR * (size_t)K;
}

void s2s_gemm_pack(float *pw, const float *w, int K, int M) {
    const int np = (M + NR - 1) / NR;
    for (int p = 0; p < np; p++) {
        float *dst = pw + (size_t)p * K * NR;
        for (int j = 0; j < NR; j++) {
            const int m = p * NR + j;
            if (m < M) {
                const float *src = w + (size_t)m * K;
                for (int k = 0; k < K; k++) dst[(size_t)k * NR + j] = src[k];
            } else {
                for (int k = 0; k < K; k++) dst[(size_t)k * NR + j] = 0.0f;
            }
        }
    }
}

#if defined(__AVX512F__)
/* y[i, 0..31] (masks m0, m1 for the two halves) = x_i . w + b for NI rows x_i = x + i * ldx;
 * wp: one panel [K][32]; b: the panel's 32 biases or NULL. Inlined with a constant NI, so
 * the 2 * NI accumulators live in registers. */
static inline __attribute__((always_inline)) void micro(const int NI, float *y, int ldy,
                                                        const float *x, int ldx, const float *wp,
                                                        int K, const float *b, __mmask16 m0,
                                                        __mmask16 m1, const float *res,
                                                        int relu) {
    __m512 c0[MR], c1[MR];
    const float *xr[MR];
#pragma GCC unroll 12
    for (int i = 0; i < NI; i++) { c0[i] = c1[i] = _mm512_setzero_ps(); xr[i] = x + (size_t)i * ldx; }
    for (int k = 0; k < K; k++) {
        const __m512 w0 = _mm512_load_ps(wp + (size_t)k * NR);
        const __m512 w1 = _mm512_load_ps(wp + (size_t)k * NR + 16);
        _mm_prefetch((const char *)(wp + (size_t)(k + PF) * NR), _MM_HINT_T0); /* may run past */
        _mm_prefetch((const char *)(wp + (size_t)(k + PF) * NR + 16), _MM_HINT_T0); /* the panel */
#pragma GCC unroll 12
        for (int i = 0; i < NI; i++) {
            const __m512 xv = _mm512_set1_ps(xr[i][k]);
            c0[i] = _mm512_fmadd_ps(xv, w0, c0[i]);
            c1[i] = _mm512_fmadd_ps(xv, w1, c1[i]);
        }
    }
    const __m512 b0 = b ? _mm512_maskz_loadu_ps(m0, b) : _mm512_setzero_ps();
    const __m512 b1 = b ? _mm512_maskz_loadu_ps(m1, b + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
    for (int i = 0; i < NI; i++) {
        __m512 v0 = _mm512_add_ps(c0[i], b0), v1 = _mm512_add_ps(c1[i], b1);
        if (relu) { /* max(v, +0): NaN and -0 give +0, as s2s_k_relu_fwd */
            v0 = _mm512_max_ps(v0, _mm512_setzero_ps());
            v1 = _mm512_max_ps(v1, _mm512_setzero_ps());
        }
        if (res) {
            v0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, res + (size_t)i * ldy), v0);
            v1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, res + (size_t)i * ldy + 16), v1);
        }
        _mm512_mask_storeu_ps(y + (size_t)i * ldy, m0, v0);
        _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16, m1, v1);
    }
}

static void micro_n(int ni, int nc, float *y, int ldy, const float *x, int ldx, const float *wp, int K,
                    const float *b, const float *res, int relu) {
    const __mmask16 m0 = (__mmask16)(nc >= 16 ? 0xffff : (1u << nc) - 1);
    const __mmask16 m1 = (__mmask16)(nc >= 32 ? 0xffff : nc <= 16 ? 0 : (1u << (nc - 16)) - 1);
    switch (ni) {
#define CASE(n) case n: micro(n, y, ldy, x, ldx, wp, K, b, m0, m1, res, relu); break;
    CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
    CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
    default: S2S_ASSERT(0 && "row block larger than MR");
    }
}
#else
/* the same blocks and order without intrinsics */
static void micro_n(int ni, int nc, float *y, int ldy, const float *x, int ldx, const float *wp, int K,
                    const float *b, const float *res, int relu) {
    for (int i = 0; i < ni; i++) {
        float acc[NR] = {0};
        for (int k = 0; k < K; k++) {
            const float xv = x[(size_t)i * ldx + k];
            const float *wk = wp + (size_t)k * NR;
            for (int j = 0; j < NR; j++) acc[j] += xv * wk[j];
        }
        for (int j = 0; j < nc; j++) {
            float v = acc[j] + (b ? b[j] : 0.0f);
            if (relu) v = v > 0.0f ? v : 0.0f;
            y[(size_t)i * ldy + j] = res ? res[(size_t)i * ldy + j] + v : v;
        }
    }
}
#endif

void s2s_k_linear_packed_fwd(float *y, const float *x, const float *pw, const float *b, int N,
                             int K, int M) {
    s2s_k_linear_packed_ex_fwd(y, x, pw, b, N, K, M, NULL, 0);
}

/* One panel (nc <= NR output features, weights wp [K][NR]) for all N rows: y[N, nc] (row
 * stride ldy) = act(x[N, K] (row stride ldx) @ w^T + b) (+ res, row stride ldy), in the
 * row blocks of near-equal size. */
static void panel(float *y, int ldy, const float *x, int ldx, const float *wp, const float *b,
                  const float *res, int N, int K, int nc, int relu) {
    const int nb = (N + MR - 1) / MR, base = N / nb, extra = N % nb; /* row blocks */
    for (int ib = 0, r0 = 0; ib < nb; ib++) {
        const int ni = base + (ib < extra);
        micro_n(ni, nc, y + (size_t)r0 * ldy, ldy, x + (size_t)r0 * ldx, ldx, wp, K, b,
                res ? res + (size_t)r0 * ldy : NULL, relu);
        r0 += ni;
    }
}

/* y[i] = act(b) (+ res[i]) for y [n]: the empty sum (K == 0), b indexed modulo M */
static void empty_sum(float *y, const float *b, const float *res, size_t n, int M, int relu) {
    for (size_t i = 0; i < n; i++) {
        float v = b ? b[i % (size_t)M] : 0.0f;
        if (relu) v = v > 0.0f ? v : 0.0f;
        y[i] = res ? res[i] + v : v;
    }
}

void s2s_k_linear_packed_ex_fwd(float *y, const float *x, const float *pw, const float *b, int N,
                                int K, int M, const float *res, int relu) {
    /* y[N,M] = act(x[N,K] @ w[M,K]^T + b[M]) (+ res[N,M]), w given packed (s2s_gemm_pack) */
    if (N <= 0 || M <= 0) return;
    if (K <= 0) { empty_sum(y, b, res, (size_t)N * M, M, relu); return; }
    const int np = (M + NR - 1) / NR;
#pragma omp parallel for schedule(static) if (np > 1 && (size_t)N * K * M >= 262144)
    for (int p = 0; p < np; p++) {
        const int c0 = p * NR, nc = M - c0 < NR ? M - c0 : NR;
        panel(y + c0, M, x, K, pw + (size_t)p * K * NR, b ? b + c0 : NULL, res ? res + c0 : NULL, N, K, nc, relu);
    }
}

void s2s_k_linear_packed_groups_fwd(float *y, const float *x, const float *pw, int N, int G, int K,
                                    int M) {
    /* y[N, G*M]: group g's columns = x[N, G*K]'s columns g*K.. @ w_g[M,K]^T, each w_g packed
     * (s2s_gemm_packed_floats(K, M) floats), one after another */
    if (N <= 0 || M <= 0 || G <= 0) return;
    if (K <= 0) { empty_sum(y, NULL, NULL, (size_t)N * G * M, M, 0); return; }
    const int np = (M + NR - 1) / NR, ldx = G * K, ldy = G * M;
    const size_t pg = s2s_gemm_packed_floats(K, M);
#pragma omp parallel for schedule(static) if (G * np > 1 && (size_t)N * K * M * G >= 262144)
    for (int gp = 0; gp < G * np; gp++) {
        const int g = gp / np, c0 = gp % np * NR, nc = M - c0 < NR ? M - c0 : NR;
        panel(y + (size_t)g * M + c0, ldy, x + (size_t)g * K, ldx, pw + g * pg + (size_t)(c0 / NR) * K * NR, NULL,
              NULL, N, K, nc, 0);
    }
}
