/* kernels_rnn.c - the recurrent cells (SSRU, GRU, LSTM) of kernels_rnn.h: reference
 * (s2s_kref_*) and fast (s2s_k_*) scans, forward and backward.
 *
 * Reference: plain loops, dot products and transcendental functions in double, one
 * time step after the other, no BLAS and no OpenMP: the ground truth of
 * tests/test_rnn.c.
 *
 * Fast: what must be sequential is only the small part. The input projections of all
 * steps come precomputed (one linear layer over B*T rows, graph.c); per step the fast
 * GRU/LSTM do ONE sgemm of the whole batch against the recurrent matrix (sgemv at
 * B = 1, the decoding case), written straight into the step's slot of the saved gates,
 * then the gates elementwise (`omp simd` loops; sigmoid and tanh through the
 * branch-free exp of kernels_cpu.c), OpenMP over (row, block of 64 columns) when the
 * batch is large enough. The backward recurs only on dh (one sgemm per step); the recurrent
 * weight gradient of all steps is ONE sgemm at the end (dHP^T @ Hprev over B*T rows).
 * The SSRU has no recurrent matrix: every (row, column) is an independent scan, run in
 * parallel blocks. BLAS is never called inside a parallel region. */
#include "kernels_rnn.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"
#include "kernels_simd.h"

#ifdef _OPENMP
#include <omp.h>
#endif
#ifdef S2S_HAVE_BLAS
#include <cblas.h>
#endif

#ifdef _OPENMP
#define S2S_OMP(...) _Pragma(S2S_STR_(omp __VA_ARGS__))
#define S2S_STR_(...) #__VA_ARGS__
#else
#define S2S_OMP(...)
#endif

#define COLS 64            /* column block of the elementwise loops */
#define PAR_MIN_STEP 16384 /* B*D of one step above which the gates go parallel */
#define PAR_MIN_SCAN 32768 /* B*T*D of a whole SSRU scan above which it goes parallel */

/* ------------------------------------------------------------------------------------
 * reference
 * ---------------------------------------------------------------------------------- */

static double sigd(double x) { return 1.0 / (1.0 + exp(-x)); }

/* sum_k w[k] * x[k] in double */
static double dotd(const float *w, const float *x, int n) {
    double s = 0.0;
    for (int k = 0; k < n; k++) s += (double)w[k] * x[k];
    return s;
}

/* the state of row b before step t: step t-1 of s [B,T,D], or s0 [B,D], or NULL (zeros) */
static const float *prev_row(const float *s, const float *s0, int b, int t, int T, int D) {
    if (t > 0) return s + ((size_t)b * T + t - 1) * D;
    return s0 ? s0 + (size_t)b * D : NULL;
}

void s2s_kref_ssru_fwd(float *h, float *c, const float *xp, const float *c0, int B, int T,
                       int D) {
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *x = xp + ((size_t)b * T + t) * 2 * D;
            const float *cp = prev_row(c, c0, b, t, T, D);
            float *cc = c + ((size_t)b * T + t) * D, *hh = h + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) {
                double f = sigd(x[d]);
                double v = f * (cp ? cp[d] : 0.0) + (1.0 - f) * x[D + d];
                cc[d] = (float)v;
                hh[d] = v > 0.0 ? (float)v : 0.0f;
            }
        }
}

void s2s_kref_ssru_bwd(float *dxp, const float *dh, const float *xp, const float *c,
                       const float *c0, int B, int T, int D) {
    if (!dxp) return;
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            double carry = 0.0; /* dL/dc_t through c_{t+1} */
            for (int t = T - 1; t >= 0; t--) {
                size_t i = ((size_t)b * T + t) * D + d;
                const float *x = xp + ((size_t)b * T + t) * 2 * D;
                const float *cp = prev_row(c, c0, b, t, T, D);
                double f = sigd(x[d]), prev = cp ? cp[d] : 0.0;
                double dc = carry + (c[i] > 0.0f ? dh[i] : 0.0);
                dxp[((size_t)b * T + t) * 2 * D + d] += (float)(dc * (prev - x[D + d]) * f * (1.0 - f));
                dxp[((size_t)b * T + t) * 2 * D + D + d] += (float)(dc * (1.0 - f));
                carry = dc * f;
            }
        }
}

void s2s_kref_gru_fwd(float *h, float *gates, const float *xp, const float *wh,
                      const float *bh, const float *h0, int B, int T, int D) {
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const float *hp = prev_row(h, h0, b, t, T, D);
            const float *x = xp + ((size_t)b * T + t) * 3 * D;
            float *g = gates + ((size_t)b * T + t) * 4 * D, *hh = h + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) {
                double pr[3];
                for (int k = 0; k < 3; k++) {
                    int j = k * D + d;
                    pr[k] = (bh ? bh[j] : 0.0) + (hp ? dotd(wh + (size_t)j * D, hp, D) : 0.0);
                }
                double r = sigd(x[d] + pr[0]), z = sigd(x[D + d] + pr[1]);
                double n = tanh(x[2 * D + d] + r * pr[2]);
                hh[d] = (float)((1.0 - z) * n + z * (hp ? hp[d] : 0.0));
                g[d] = (float)r; g[D + d] = (float)z; g[2 * D + d] = (float)n; g[3 * D + d] = (float)pr[2];
            }
        }
}

/* dwh[G*D, D] += dhp[B, G*D]^T @ hprev (rows b); dbh += colsum(dhp) (reference) */
static void ref_wgrad(float *dwh, float *dbh, const float *dhp, const float *h, const float *h0,
                      int t, int B, int T, int D, int G) {
    int GD = G * D;
    for (int j = 0; j < GD; j++) {
        if (dbh) {
            double s = 0.0;
            for (int b = 0; b < B; b++) s += dhp[(size_t)b * GD + j];
            dbh[j] += (float)s;
        }
        if (!dwh) continue;
        for (int k = 0; k < D; k++) {
            double s = 0.0;
            for (int b = 0; b < B; b++) {
                const float *hp = prev_row(h, h0, b, t, T, D);
                if (hp) s += (double)dhp[(size_t)b * GD + j] * hp[k];
            }
            dwh[(size_t)j * D + k] += (float)s;
        }
    }
}

/* carry[B, D] (+)= dhp[B, G*D] @ wh[G*D, D] (reference); add: keep carry's value */
static void ref_hgrad(float *carry, const float *dhp, const float *wh, int B, int D, int G, int add) {
    int GD = G * D;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < D; k++) {
            double s = add ? carry[(size_t)b * D + k] : 0.0;
            for (int j = 0; j < GD; j++) s += (double)dhp[(size_t)b * GD + j] * wh[(size_t)j * D + k];
            carry[(size_t)b * D + k] = (float)s;
        }
}

void s2s_kref_gru_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,
                      const float *h, const float *gates, const float *wh, const float *h0,
                      int B, int T, int D) {
    float *carry = ws, *dhp = ws + (size_t)B * D; /* [B, D], [B, 3D] */
    memset(carry, 0, (size_t)B * D * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        for (int b = 0; b < B; b++) {
            const float *hp = prev_row(h, h0, b, t, T, D);
            const float *g = gates + ((size_t)b * T + t) * 4 * D;
            float *dp = dhp + (size_t)b * 3 * D;
            for (int d = 0; d < D; d++) {
                double r = g[d], z = g[D + d], n = g[2 * D + d], hn = g[3 * D + d];
                double gg = (double)dh[((size_t)b * T + t) * D + d] + carry[(size_t)b * D + d];
                double dn = gg * (1.0 - z) * (1.0 - n * n);
                double dz = gg * ((hp ? hp[d] : 0.0) - n) * z * (1.0 - z);
                double dr = dn * hn * r * (1.0 - r);
                if (dxp) {
                    float *dx = dxp + ((size_t)b * T + t) * 3 * D;
                    dx[d] += (float)dr; dx[D + d] += (float)dz; dx[2 * D + d] += (float)dn;
                }
                dp[d] = (float)dr; dp[D + d] = (float)dz; dp[2 * D + d] = (float)(dn * r);
                carry[(size_t)b * D + d] = (float)(gg * z);
            }
        }
        ref_wgrad(dwh, dbh, dhp, h, h0, t, B, T, D, 3);
        ref_hgrad(carry, dhp, wh, B, D, 3, 1);
    }
}

void s2s_kref_lstm_fwd(float *h, float *c, float *gates, const float *xp, const float *wh,
                       const float *bh, const float *h0, const float *c0, int B, int T,
                       int D) {
    for (int t = 0; t < T; t++)
        for (int b = 0; b < B; b++) {
            const float *hp = prev_row(h, h0, b, t, T, D), *cp = prev_row(c, c0, b, t, T, D);
            const float *x = xp + ((size_t)b * T + t) * 4 * D;
            float *g = gates + ((size_t)b * T + t) * 4 * D;
            float *hh = h + ((size_t)b * T + t) * D, *cc = c + ((size_t)b * T + t) * D;
            for (int d = 0; d < D; d++) {
                double a[4];
                for (int k = 0; k < 4; k++) {
                    int j = k * D + d;
                    a[k] = (double)x[j] + (bh ? bh[j] : 0.0) + (hp ? dotd(wh + (size_t)j * D, hp, D) : 0.0);
                }
                double i = sigd(a[0]), f = sigd(a[1]), gg = tanh(a[2]), o = sigd(a[3]);
                double v = f * (cp ? cp[d] : 0.0) + i * gg;
                cc[d] = (float)v;
                hh[d] = (float)(o * tanh(v));
                g[d] = (float)i; g[D + d] = (float)f; g[2 * D + d] = (float)gg; g[3 * D + d] = (float)o;
            }
        }
}

void s2s_kref_lstm_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,
                       const float *h, const float *c, const float *gates, const float *wh,
                       const float *h0, const float *c0, int B, int T, int D) {
    /* carry_h [B, D], carry_c [B, D], dhp [B, 4D] */
    float *ch = ws, *cc = ws + (size_t)B * D, *dhp = ws + 2 * (size_t)B * D;
    memset(ws, 0, 2 * (size_t)B * D * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        for (int b = 0; b < B; b++) {
            const float *cp = prev_row(c, c0, b, t, T, D);
            const float *g = gates + ((size_t)b * T + t) * 4 * D;
            float *dp = dhp + (size_t)b * 4 * D;
            for (int d = 0; d < D; d++) {
                size_t e = ((size_t)b * T + t) * D + d;
                double i = g[d], f = g[D + d], gg = g[2 * D + d], o = g[3 * D + d];
                double tc = tanh((double)c[e]);
                double dhh = (double)dh[e] + ch[(size_t)b * D + d];
                double dc = cc[(size_t)b * D + d] + dhh * o * (1.0 - tc * tc);
                double a[4] = {dc * gg * i * (1.0 - i), dc * (cp ? cp[d] : 0.0) * f * (1.0 - f),
                               dc * i * (1.0 - gg * gg), dhh * tc * o * (1.0 - o)};
                for (int k = 0; k < 4; k++) {
                    if (dxp) dxp[((size_t)b * T + t) * 4 * D + k * D + d] += (float)a[k];
                    dp[k * D + d] = (float)a[k];
                }
                cc[(size_t)b * D + d] = (float)(dc * f);
            }
        }
        ref_wgrad(dwh, dbh, dhp, h, h0, t, B, T, D, 4);
        ref_hgrad(ch, dhp, wh, B, D, 4, 0);
    }
}

/* ------------------------------------------------------------------------------------
 * fast
 * ---------------------------------------------------------------------------------- */


/* sigmoid; arguments below -80 are clamped so 1/(1 + e^-x) stays a normal number */
static inline float sigf(float x) { return 1.0f / (1.0f + fexp(-fsel(x < -80.0f, -80.0f, x))); }
/* tanh(x) = 1 - 2 / (1 + e^2x): -1 and 1 in the tails, abs. error ~1e-7 near 0 */
static inline float tanhf_(float x) { return 1.0f - 2.0f / (1.0f + fexp(2.0f * x)); }

/* zeros standing in for a missing previous state inside a column block */
static const float ZEROS[COLS];

/* C[M,N] (leading dim ldc) = op(A)[M,K] @ op(Bm)[K,N] + beta * C. ta: A stored [K,M];
 * tb: Bm stored [N,K]. beta is 0 or 1. */
static void gemm(int ta, int tb, int M, int N, int K, const float *A, int lda, const float *Bm,
                 int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        if (beta == 0.0f) for (int i = 0; i < M; i++) memset(C + (size_t)i * ldc, 0, (size_t)N * sizeof(float));
        return;
    }
#ifdef S2S_HAVE_BLAS
    if (M == 1 && !ta) { /* one row: matrix-vector */
        if (tb) cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, Bm, ldb, A, 1, beta, C, 1);
        else cblas_sgemv(CblasRowMajor, CblasTrans, K, N, 1.0f, Bm, ldb, A, 1, beta, C, 1);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N,
                K, 1.0f, A, lda, Bm, ldb, beta, C, ldc);
#else
    S2S_OMP(parallel for schedule(static) if ((double)M * N * K >= 262144.0))
    for (int i = 0; i < M; i++) {
        float *ci = C + (size_t)i * ldc;
        if (beta == 0.0f) memset(ci, 0, (size_t)N * sizeof(float));
        for (int p = 0; p < K; p++) {
            float a = ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p];
            if (tb) for (int j = 0; j < N; j++) ci[j] += a * Bm[(size_t)j * ldb + p];
            else for (int j = 0; j < N; j++) ci[j] += a * Bm[(size_t)p * ldb + j];
        }
    }
#endif
}

/* Hp[(b*T + t), :] = h_{t-1} of row b, for the one weight-gradient sgemm */
static void fill_hprev(float *hprev, const float *h, const float *h0, int B, int T, int D) {
    S2S_OMP(parallel for schedule(static) if ((size_t)B * T * D >= PAR_MIN_SCAN))
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            const float *p = prev_row(h, h0, b, t, T, D);
            float *o = hprev + ((size_t)b * T + t) * D;
            if (p) memcpy(o, p, (size_t)D * sizeof(float));
            else memset(o, 0, (size_t)D * sizeof(float));
        }
}

/* out[M] += column sums of a[N, M], OpenMP over column blocks */
static void colsum(float *out, const float *a, size_t N, int M) {
    const int nblk = (M + COLS - 1) / COLS;
    S2S_OMP(parallel for schedule(static) if (N * (size_t)M >= PAR_MIN_SCAN && nblk > 1))
    for (int cb = 0; cb < nblk; cb++) {
        const int c0 = cb * COLS, nc = M - c0 < COLS ? M - c0 : COLS;
        float acc[COLS] = {0};
        for (size_t n = 0; n < N; n++) {
            const float *r = a + n * M + c0;
            for (int c = 0; c < nc; c++) acc[c] += r[c];
        }
        for (int c = 0; c < nc; c++) out[c0 + c] += acc[c];
    }
}

/* The recurrent projection of step t into the step's gate slots: g[b] = bh + hprev[b] Wh^T,
 * g = gates + t*4D with row stride T*4D (GD = 3D or 4D of each 4D slot). */
static void step_proj(float *gates, const float *h, const float *h0, const float *wh,
                      const float *bh, int t, int B, int T, int D, int GD) {
    float *g = gates + (size_t)t * 4 * D;
    size_t ldg = (size_t)T * 4 * D;
    const float *hp = t > 0 ? h + (size_t)(t - 1) * D : h0;
    int ldh = t > 0 ? T * D : D;
    for (int b = 0; b < B; b++) {
        if (bh) memcpy(g + b * ldg, bh, (size_t)GD * sizeof(float));
        else if (!hp) memset(g + b * ldg, 0, (size_t)GD * sizeof(float));
    }
    if (hp) gemm(0, 1, B, GD, D, hp, ldh, wh, D, bh ? 1.0f : 0.0f, g, (int)ldg);
}

void s2s_k_ssru_fwd(float *h, float *c, const float *xp, const float *c0, int B, int T, int D) {
    const int nch = (D + COLS - 1) / COLS;
    S2S_OMP(parallel for schedule(static) if ((size_t)B * T * D >= PAR_MIN_SCAN))
    for (int bc = 0; bc < B * nch; bc++) {
        const int b = bc / nch, d0 = (bc % nch) * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
        for (int t = 0; t < T; t++) {
            const float *x = xp + ((size_t)b * T + t) * 2 * D + d0, *xw = x + D;
            const float *cp = prev_row(c, c0, b, t, T, D);
            cp = cp ? cp + d0 : ZEROS;
            float *cc = c + ((size_t)b * T + t) * D + d0, *hh = h + ((size_t)b * T + t) * D + d0;
            S2S_OMP(simd)
            for (int k = 0; k < d1 - d0; k++) {
                float f = sigf(x[k]);
                float v = f * cp[k] + (1.0f - f) * xw[k];
                cc[k] = v;
                hh[k] = fsel(v > 0.0f, v, 0.0f);
            }
        }
    }
}

void s2s_k_ssru_bwd(float *dxp, const float *dh, const float *xp, const float *c,
                    const float *c0, int B, int T, int D) {
    if (!dxp) return;
    const int nch = (D + COLS - 1) / COLS;
    S2S_OMP(parallel for schedule(static) if ((size_t)B * T * D >= PAR_MIN_SCAN))
    for (int bc = 0; bc < B * nch; bc++) {
        const int b = bc / nch, d0 = (bc % nch) * COLS, nd = (d0 + COLS < D ? d0 + COLS : D) - d0;
        float carry[COLS] = {0};
        for (int t = T - 1; t >= 0; t--) {
            const float *x = xp + ((size_t)b * T + t) * 2 * D + d0, *xw = x + D;
            const float *cp = prev_row(c, c0, b, t, T, D);
            cp = cp ? cp + d0 : ZEROS;
            const float *cc = c + ((size_t)b * T + t) * D + d0, *g = dh + ((size_t)b * T + t) * D + d0;
            float *dx = dxp + ((size_t)b * T + t) * 2 * D + d0, *dw = dx + D;
            S2S_OMP(simd)
            for (int k = 0; k < nd; k++) {
                float f = sigf(x[k]);
                float dc = carry[k] + fsel(cc[k] > 0.0f, g[k], 0.0f);
                dx[k] += dc * (cp[k] - xw[k]) * f * (1.0f - f);
                dw[k] += dc * (1.0f - f);
                carry[k] = dc * f;
            }
        }
    }
}

void s2s_k_gru_fwd(float *h, float *gates, const float *xp, const float *wh, const float *bh,
                   const float *h0, int B, int T, int D) {
    const int nch = (D + COLS - 1) / COLS;
    for (int t = 0; t < T; t++) {
        step_proj(gates, h, h0, wh, bh, t, B, T, D, 3 * D);
        S2S_OMP(parallel for schedule(static) if ((size_t)B * D >= PAR_MIN_STEP))
        for (int bc = 0; bc < B * nch; bc++) {
            const int b = bc / nch, d0 = (bc % nch) * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
            const float *hp = prev_row(h, h0, b, t, T, D);
            hp = hp ? hp + d0 : ZEROS;
            const float *x = xp + ((size_t)b * T + t) * 3 * D + d0;
            float *g = gates + ((size_t)b * T + t) * 4 * D + d0, *hh = h + ((size_t)b * T + t) * D + d0;
            S2S_OMP(simd)
            for (int k = 0; k < d1 - d0; k++) {
                float hn = g[2 * D + k];
                float r = sigf(x[k] + g[k]), z = sigf(x[D + k] + g[D + k]);
                float n = tanhf_(x[2 * D + k] + r * hn);
                hh[k] = (1.0f - z) * n + z * hp[k];
                g[k] = r; g[D + k] = z; g[2 * D + k] = n; g[3 * D + k] = hn;
            }
        }
    }
}

void s2s_k_gru_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,
                   const float *h, const float *gates, const float *wh, const float *h0, int B,
                   int T, int D) {
    const int nch = (D + COLS - 1) / COLS, GD = 3 * D;
    /* dHP [B, T, 3D] (gradient of each step's recurrent projection), Hprev [B, T, D], carry [B, D] */
    float *dhp = ws, *hprev = ws + (size_t)B * T * GD, *carry = hprev + (size_t)B * T * D;
    memset(carry, 0, (size_t)B * D * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        S2S_OMP(parallel for schedule(static) if ((size_t)B * D >= PAR_MIN_STEP))
        for (int bc = 0; bc < B * nch; bc++) {
            const int b = bc / nch, d0 = (bc % nch) * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
            const float *hp = prev_row(h, h0, b, t, T, D);
            hp = hp ? hp + d0 : ZEROS;
            const float *g = gates + ((size_t)b * T + t) * 4 * D + d0, *gy = dh + ((size_t)b * T + t) * D + d0;
            float *dp = dhp + ((size_t)b * T + t) * GD + d0, *cr = carry + (size_t)b * D + d0;
            S2S_OMP(simd)
            for (int k = 0; k < d1 - d0; k++) {
                float r = g[k], z = g[D + k], n = g[2 * D + k], hn = g[3 * D + k];
                float gg = gy[k] + cr[k];
                float dn = gg * (1.0f - z) * (1.0f - n * n);
                float dz = gg * (hp[k] - n) * z * (1.0f - z);
                dp[k] = dn * hn * r * (1.0f - r); dp[D + k] = dz; dp[2 * D + k] = dn;
                cr[k] = gg * z;
            }
            if (dxp) { /* dxp = (dr, dz, dn); the recurrent side gets (dr, dz, dn * r) */
                float *dx = dxp + ((size_t)b * T + t) * GD + d0;
                for (int q = 0; q < 3; q++) {
                    float *dxq = dx + q * D;
                    const float *dpq = dp + q * D;
                    S2S_OMP(simd)
                    for (int k = 0; k < d1 - d0; k++) dxq[k] += dpq[k];
                }
            }
            S2S_OMP(simd)
            for (int k = 0; k < d1 - d0; k++) dp[2 * D + k] *= g[k]; /* dn * r */
        }
        if (t > 0) gemm(0, 0, B, D, GD, dhp + (size_t)t * GD, T * GD, wh, D, 1.0f, carry, D);
    }
    if (dwh) {
        fill_hprev(hprev, h, h0, B, T, D);
        gemm(1, 0, GD, D, B * T, dhp, GD, hprev, D, 1.0f, dwh, D);
    }
    if (dbh) colsum(dbh, dhp, (size_t)B * T, GD);
}

void s2s_k_lstm_fwd(float *h, float *c, float *gates, const float *xp, const float *wh,
                    const float *bh, const float *h0, const float *c0, int B, int T, int D) {
    const int nch = (D + COLS - 1) / COLS;
    for (int t = 0; t < T; t++) {
        step_proj(gates, h, h0, wh, bh, t, B, T, D, 4 * D);
        S2S_OMP(parallel for schedule(static) if ((size_t)B * D >= PAR_MIN_STEP))
        for (int bc = 0; bc < B * nch; bc++) {
            const int b = bc / nch, d0 = (bc % nch) * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
            const float *cp = prev_row(c, c0, b, t, T, D);
            cp = cp ? cp + d0 : ZEROS;
            const float *x = xp + ((size_t)b * T + t) * 4 * D + d0;
            float *g = gates + ((size_t)b * T + t) * 4 * D + d0;
            float *hh = h + ((size_t)b * T + t) * D + d0, *cc = c + ((size_t)b * T + t) * D + d0;
            S2S_OMP(simd)
            for (int k = 0; k < d1 - d0; k++) {
                float i = sigf(x[k] + g[k]), f = sigf(x[D + k] + g[D + k]);
                float gg = tanhf_(x[2 * D + k] + g[2 * D + k]), o = sigf(x[3 * D + k] + g[3 * D + k]);
                float v = f * cp[k] + i * gg;
                cc[k] = v;
                hh[k] = o * tanhf_(v);
                g[k] = i; g[D + k] = f; g[2 * D + k] = gg; g[3 * D + k] = o;
            }
        }
    }
}

void s2s_k_lstm_bwd(float *dxp, float *dwh, float *dbh, float *ws, const float *dh,
                    const float *h, const float *c, const float *gates, const float *wh,
                    const float *h0, const float *c0, int B, int T, int D) {
    const int nch = (D + COLS - 1) / COLS, GD = 4 * D;
    /* dHP [B, T, 4D], Hprev [B, T, D], carry_h [B, D], carry_c [B, D] */
    float *dhp = ws, *hprev = ws + (size_t)B * T * GD;
    float *ch = hprev + (size_t)B * T * D, *ccar = ch + (size_t)B * D;
    memset(ch, 0, 2 * (size_t)B * D * sizeof(float));
    for (int t = T - 1; t >= 0; t--) {
        S2S_OMP(parallel for schedule(static) if ((size_t)B * D >= PAR_MIN_STEP))
        for (int bc = 0; bc < B * nch; bc++) {
            const int b = bc / nch, d0 = (bc % nch) * COLS, d1 = d0 + COLS < D ? d0 + COLS : D;
            const float *cp = prev_row(c, c0, b, t, T, D);
            cp = cp ? cp + d0 : ZEROS;
            const float *g = gates + ((size_t)b * T + t) * 4 * D + d0;
            const float *gy = dh + ((size_t)b * T + t) * D + d0, *cv = c + ((size_t)b * T + t) * D + d0;
            float *dp = dhp + ((size_t)b * T + t) * GD + d0;
            float *chb = ch + (size_t)b * D + d0, *ccb = ccar + (size_t)b * D + d0;
            S2S_OMP(simd)
            for (int k = 0; k < d1 - d0; k++) {
                float i = g[k], f = g[D + k], gg = g[2 * D + k], o = g[3 * D + k];
                float tc = tanhf_(cv[k]);
                float dhh = gy[k] + chb[k];
                float dc = ccb[k] + dhh * o * (1.0f - tc * tc);
                dp[k] = dc * gg * i * (1.0f - i);
                dp[D + k] = dc * cp[k] * f * (1.0f - f);
                dp[2 * D + k] = dc * i * (1.0f - gg * gg);
                dp[3 * D + k] = dhh * tc * o * (1.0f - o);
                ccb[k] = dc * f;
            }
            if (dxp) { /* the input projections get the same gradient as the recurrent one */
                float *dx = dxp + ((size_t)b * T + t) * GD + d0;
                for (int q = 0; q < 4; q++) {
                    float *dxq = dx + q * D;
                    const float *dpq = dp + q * D;
                    S2S_OMP(simd)
                    for (int k = 0; k < d1 - d0; k++) dxq[k] += dpq[k];
                }
            }
        }
        if (t > 0) gemm(0, 0, B, D, GD, dhp + (size_t)t * GD, T * GD, wh, D, 0.0f, ch, D);
    }
    if (dwh) {
        fill_hprev(hprev, h, h0, B, T, D);
        gemm(1, 0, GD, D, B * T, dhp, GD, hprev, D, 1.0f, dwh, D);
    }
    if (dbh) colsum(dbh, dhp, (size_t)B * T, GD);
}
