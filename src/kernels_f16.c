/* kernels_f16.c - linear layer with fp16 weights and fp32 activations.
 *
 * Batch-1 decoding streams every weight once per step, so it is bound by memory
 * bandwidth: storing weights in fp16 halves the bytes (and keeps a small model
 * inside the L3 cache). The fast version converts 16 (AVX-512) or 8 (AVX2+F16C)
 * weights per instruction and accumulates in fp32; four weight rows are dotted
 * at once and each row group is reused for all N input rows while it is in L1.
 * Software prefetch two row groups ahead: one core's hardware prefetchers alone
 * reached about half the bandwidth (measured: greedy batch-1 decoding of a
 * D=256 6+6 8k-vocabulary model went from ~320 to ~690 tokens/s, 1 thread).
 * The reference version converts one value at a time (tests/test_kernels_f16.c). */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "safetensors.h"

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__F16C__) && defined(__FMA__))
#include <immintrin.h>
#endif

void s2s_kref_linear_f16_fwd(float *y, const float *x, const uint16_t *w, const float *b, int N,
                             int K, int M) {
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) {
            double acc = b ? b[m] : 0.0;
            for (int k = 0; k < K; k++)
                acc += (double)x[(size_t)n * K + k] * (double)s2s_f16_to_f32(w[(size_t)m * K + k]);
            y[(size_t)n * M + m] = (float)acc;
        }
}

/* dot products of x[K] with 4 consecutive fp16 rows; out[4] */
static void dot4(float *out, const float *x, const uint16_t *w, int K) {
    const uint16_t *w0 = w, *w1 = w + K, *w2 = w + 2 * (size_t)K, *w3 = w + 3 * (size_t)K;
    int k = 0;
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
#if defined(__AVX512F__)
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const char *nx = (const char *)(w + 8 * (size_t)K); /* 4 rows, two groups ahead */
    for (; k + 16 <= K; k += 16) {
        if ((k & 31) == 0) { /* one 64-byte line of each next row per 32 columns */
            _mm_prefetch(nx + 2 * (size_t)k, _MM_HINT_T0);
            _mm_prefetch(nx + 2 * ((size_t)K + k), _MM_HINT_T0);
            _mm_prefetch(nx + 2 * (2 * (size_t)K + k), _MM_HINT_T0);
            _mm_prefetch(nx + 2 * (3 * (size_t)K + k), _MM_HINT_T0);
        }
        __m512 xv = _mm512_loadu_ps(x + k);
        a0 = _mm512_fmadd_ps(xv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w0 + k))), a0);
        a1 = _mm512_fmadd_ps(xv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w1 + k))), a1);
        a2 = _mm512_fmadd_ps(xv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w2 + k))), a2);
        a3 = _mm512_fmadd_ps(xv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w3 + k))), a3);
    }
    s0 = _mm512_reduce_add_ps(a0); s1 = _mm512_reduce_add_ps(a1);
    s2 = _mm512_reduce_add_ps(a2); s3 = _mm512_reduce_add_ps(a3);
#elif defined(__AVX2__) && defined(__F16C__) && defined(__FMA__)
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (; k + 8 <= K; k += 8) {
        __m256 xv = _mm256_loadu_ps(x + k);
        a0 = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w0 + k))), a0);
        a1 = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w1 + k))), a1);
        a2 = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w2 + k))), a2);
        a3 = _mm256_fmadd_ps(xv, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w3 + k))), a3);
    }
    float t[8];
    _mm256_storeu_ps(t, a0); s0 = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    _mm256_storeu_ps(t, a1); s1 = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    _mm256_storeu_ps(t, a2); s2 = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
    _mm256_storeu_ps(t, a3); s3 = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
#endif
    for (; k < K; k++) {
        float xv = x[k];
        s0 += xv * s2s_f16_to_f32(w0[k]); s1 += xv * s2s_f16_to_f32(w1[k]);
        s2 += xv * s2s_f16_to_f32(w2[k]); s3 += xv * s2s_f16_to_f32(w3[k]);
    }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

#if defined(__AVX512F__)
/* 4 input rows x 4 weight rows: each converted weight chunk serves 4 inputs.
 * out[i * ldo + j] = x_i . w_j */
static void dot4x4(float *out, int ldo, const float *x, int ldx, const uint16_t *w, int K) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++)
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) acc[i][j] = _mm512_setzero_ps();
    int k = 0;
    const char *nx = (const char *)(w + 8 * (size_t)K); /* 4 rows, two groups ahead */
    for (; k + 16 <= K; k += 16) { /* fully unrolled: the 16 accumulators stay in registers */
        if ((k & 31) == 0)
            for (int j = 0; j < 4; j++) _mm_prefetch(nx + 2 * ((size_t)j * K + k), _MM_HINT_T0);
        __m512 wv[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            wv[j] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(w + (size_t)j * K + k)));
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) {
            __m512 xv = _mm512_loadu_ps(x + (size_t)i * ldx + k);
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) acc[i][j] = _mm512_fmadd_ps(xv, wv[j], acc[i][j]);
        }
    }
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) {
            float sum = _mm512_reduce_add_ps(acc[i][j]);
            for (int kk = k; kk < K; kk++) sum += x[(size_t)i * ldx + kk] * s2s_f16_to_f32(w[(size_t)j * K + kk]);
            out[(size_t)i * ldo + j] = sum;
        }
}
#endif

static float dot1(const float *x, const uint16_t *w, int K) {
    float s = 0;
    for (int k = 0; k < K; k++) s += x[k] * s2s_f16_to_f32(w[k]);
    return s;
}

void s2s_k_linear_f16_fwd(float *y, const float *x, const uint16_t *w, const float *b, int N,
                          int K, int M) {
    int M4 = M & ~3;
    /* parallel over groups of 4 output rows; each group serves all N inputs */
#pragma omp parallel for schedule(static) if ((size_t)M * K * (N < 4 ? N : 4) >= 262144)
    for (int m = 0; m < M4; m += 4) {
        const uint16_t *wm = w + (size_t)m * K;
        int n = 0;
#if defined(__AVX512F__)
        for (; n + 4 <= N; n += 4) {
            float o[16];
            dot4x4(o, 4, x + (size_t)n * K, K, wm, K);
            for (int i = 0; i < 4; i++) {
                float *yr = y + (size_t)(n + i) * M + m;
                for (int j = 0; j < 4; j++) yr[j] = o[i * 4 + j] + (b ? b[m + j] : 0.0f);
            }
        }
#endif
        for (; n < N; n++) {
            float o[4];
            dot4(o, x + (size_t)n * K, wm, K);
            float *yr = y + (size_t)n * M + m;
            for (int j = 0; j < 4; j++) yr[j] = o[j] + (b ? b[m + j] : 0.0f);
        }
    }
    for (int m = M4; m < M; m++)
        for (int n = 0; n < N; n++)
            y[(size_t)n * M + m] = dot1(x + (size_t)n * K, w + (size_t)m * K, K) + (b ? b[m] : 0.0f);
}
