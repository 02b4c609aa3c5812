/* kernels_small.c - linear layer with fp32 weights for a few input rows (2..24: beam
 * search at batch 1, small batches), where OpenBLAS's sgemm spends much of its time
 * packing the weight matrix it streams only once (measured: beam-4 decoding of the G2P
 * teacher in fp32, 1 thread, ran at 0.79x CTranslate2's speed through sgemm).
 * The structure of kernels_f16.c: 4 weight rows are dotted with 4 input rows at once so
 * each loaded weight chunk serves 4 inputs, fp32 accumulation, software prefetch two row
 * groups ahead. AVX-512 only; s2s_k_linear_fwd (kernels_cpu.c) calls it when
 * S2S_SMALL_ROWS_OK(N, K) holds and uses sgemm otherwise. Reference: s2s_kref_linear_fwd
 * (tests/test_kernels.c, linear_small). */
#include "kernels.h"

#if defined(__AVX512F__)
#include <immintrin.h>

/* out[i * ldo + j] = x_i . w_j for i < ni (1..4), j < 4; K % 16 == 0 */
static void dot_nx4(float *out, int ldo, const float *x, int ldx, int ni, const float *w, int K) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    const char *nx = (const char *)(w + 8 * (size_t)K); /* 4 rows, two groups ahead */
    for (int k = 0; k < K; k += 16) {
        __m512 wv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            _mm_prefetch(nx + 4 * ((size_t)j * K + k), _MM_HINT_T0); /* one line = 16 floats */
            wv[j] = _mm512_loadu_ps(w + (size_t)j * K + k);
        }
        for (int i = 0; i < ni; i++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < 4; j++) out[(size_t)i * ldo + j] = _mm512_reduce_add_ps(acc[i][j]);
}

void s2s_k_linear_small_fwd(float *y, const float *x, const float *w, const float *b, int N,
                            int K, int M) {
    /* y[N,M] = x[N,K] @ w[M,K]^T (+ b[M]); N small, K % 16 == 0 */
    const int M4 = M & ~3;
#pragma omp parallel for schedule(static) if ((size_t)M * K * (N < 4 ? N : 4) >= 262144)
    for (int m = 0; m < M4; m += 4) {
        const float *wm = w + (size_t)m * K;
        for (int n = 0; n < N; n += 4) {
            const int ni = N - n < 4 ? N - n : 4;
            float o[16];
            dot_nx4(o, 4, x + (size_t)n * K, K, ni, wm, K);
            for (int i = 0; i < ni; i++) {
                float *yr = y + (size_t)(n + i) * M + m;
                for (int j = 0; j < 4; j++) yr[j] = o[i * 4 + j] + (b ? b[m + j] : 0.0f);
            }
        }
    }
    for (int m = M4; m < M; m++) /* the last M % 4 rows */
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * K, *wr = w + (size_t)m * K;
            __m512 a = _mm512_setzero_ps();
            for (int k = 0; k < K; k += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(xr + k), _mm512_loadu_ps(wr + k), a);
            y[(size_t)n * M + m] = _mm512_reduce_add_ps(a) + (b ? b[m] : 0.0f);
        }
}
#endif
