/* kernels_l0.c - CPU kernels of structured L0 pruning (kernels_l0.h): the plain
 * reference (s2s_kref_*, sums in double) and the fast versions (s2s_k_*). */
#include "kernels_l0.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* ------------------------------------------------------------ reference */

void s2s_kref_group_scale_fwd(float *y, const float *x, const float *z, int N, int G, int S) {
    for (int n = 0; n < N; n++)
        for (int g = 0; g < G; g++)
            for (int s = 0; s < S; s++) {
                size_t i = ((size_t)n * G + g) * S + s;
                y[i] = x[i] * z[g];
            }
}

void s2s_kref_group_scale_bwd(float *dx, float *dz, const float *dy, const float *x, const float *z, int N,
                              int G, int S) {
    for (int g = 0; g < G; g++) {
        double acc = 0;
        for (int n = 0; n < N; n++)
            for (int s = 0; s < S; s++) {
                size_t i = ((size_t)n * G + g) * S + s;
                if (dx) dx[i] += dy[i] * z[g];
                acc += (double)dy[i] * x[i];
            }
        if (dz) dz[g] += (float)acc;
    }
}

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

void s2s_kref_hard_concrete_fwd(float *z, const float *log_alpha, const float *u, int n) {
    const double l = S2S_L0_LIMIT_L, r = S2S_L0_LIMIT_R, beta = S2S_L0_BETA;
    for (int i = 0; i < n; i++) {
        double s = sigm((log(u[i]) - log(1.0 - u[i]) + log_alpha[i]) / beta);
        double v = s * (r - l) + l;
        z[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
}

void s2s_kref_hard_concrete_bwd(float *dla, const float *dz, const float *log_alpha, const float *u, int n) {
    const double l = S2S_L0_LIMIT_L, r = S2S_L0_LIMIT_R, beta = S2S_L0_BETA;
    if (!dla) return;
    for (int i = 0; i < n; i++) {
        double s = sigm((log(u[i]) - log(1.0 - u[i]) + log_alpha[i]) / beta);
        double v = s * (r - l) + l;
        if (v > 0 && v < 1) dla[i] += (float)(dz[i] * (r - l) * s * (1.0 - s) / beta);
    }
}

void s2s_kref_l0_density_fwd(float *out, const float *log_alpha, const float *cost, float inv_total, int n) {
    double acc = 0;
    for (int i = 0; i < n; i++) acc += cost[i] * sigm((double)log_alpha[i] - S2S_L0_SHIFT);
    out[0] = (float)(acc * inv_total);
}

void s2s_kref_l0_density_bwd(float *dla, const float *dout, const float *log_alpha, const float *cost,
                             float inv_total, int n) {
    if (!dla) return;
    for (int i = 0; i < n; i++) {
        double p = sigm((double)log_alpha[i] - S2S_L0_SHIFT);
        dla[i] += (float)((double)dout[0] * inv_total * cost[i] * p * (1.0 - p));
    }
}

void s2s_kref_l0_lagrangian_fwd(float *out, const float *density, const float *lambda, float t) {
    double d = 1.0 - (double)density[0] - t;
    out[0] = (float)(lambda[0] * d + lambda[1] * d * d);
}

void s2s_kref_l0_lagrangian_bwd(float *ddensity, float *dlambda, const float *dout, const float *density,
                                const float *lambda, float t) {
    double d = 1.0 - (double)density[0] - t;
    if (ddensity) ddensity[0] += (float)(-(double)dout[0] * (lambda[0] + 2.0 * lambda[1] * d));
    if (dlambda) {
        dlambda[0] += (float)(dout[0] * d);
        dlambda[1] += (float)(dout[0] * d * d);
    }
}

/* ----------------------------------------------------------------- fast */

#define GS_CHUNK 64 /* rows per partial sum of dz (fixed: independent of threads) */

void s2s_k_group_scale_fwd(float *y, const float *x, const float *z, int N, int G, int S) {
#pragma omp parallel for schedule(static) if ((size_t)N * G * S > 32768)
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * G * S;
        float *yr = y + (size_t)n * G * S;
        for (int g = 0; g < G; g++) {
            float zg = z[g];
            for (int s = 0; s < S; s++) yr[g * S + s] = xr[g * S + s] * zg;
        }
    }
}

void s2s_k_group_scale_bwd(float *dx, float *dz, const float *dy, const float *x, const float *z, int N, int G,
                           int S) {
    if (dx) {
#pragma omp parallel for schedule(static) if ((size_t)N * G * S > 32768)
        for (int n = 0; n < N; n++) {
            const float *dyr = dy + (size_t)n * G * S;
            float *dxr = dx + (size_t)n * G * S;
            for (int g = 0; g < G; g++) {
                float zg = z[g];
                for (int s = 0; s < S; s++) dxr[g * S + s] += dyr[g * S + s] * zg;
            }
        }
    }
    if (!dz || N <= 0) return;
    int nc = (N + GS_CHUNK - 1) / GS_CHUNK;
    double *part = s2s_xcalloc((size_t)nc * G, sizeof(double));
#pragma omp parallel for schedule(static) if ((size_t)N * G * S > 32768)
    for (int c = 0; c < nc; c++) {
        double *pc = part + (size_t)c * G;
        int n1 = (c + 1) * GS_CHUNK < N ? (c + 1) * GS_CHUNK : N;
        for (int n = c * GS_CHUNK; n < n1; n++) {
            const float *dyr = dy + (size_t)n * G * S, *xr = x + (size_t)n * G * S;
            for (int g = 0; g < G; g++) {
                float acc = 0.0f;
                for (int s = 0; s < S; s++) acc += dyr[g * S + s] * xr[g * S + s];
                pc[g] += acc;
            }
        }
    }
    for (int g = 0; g < G; g++) {
        double acc = 0;
        for (int c = 0; c < nc; c++) acc += part[(size_t)c * G + g];
        dz[g] += (float)acc;
    }
    free(part);
}

/* One value per head / FFN unit: the reference loops are the fast ones. */
void s2s_k_hard_concrete_fwd(float *z, const float *log_alpha, const float *u, int n) {
    s2s_kref_hard_concrete_fwd(z, log_alpha, u, n);
}
void s2s_k_hard_concrete_bwd(float *dla, const float *dz, const float *log_alpha, const float *u, int n) {
    s2s_kref_hard_concrete_bwd(dla, dz, log_alpha, u, n);
}
void s2s_k_l0_density_fwd(float *out, const float *log_alpha, const float *cost, float inv_total, int n) {
    s2s_kref_l0_density_fwd(out, log_alpha, cost, inv_total, n);
}
void s2s_k_l0_density_bwd(float *dla, const float *dout, const float *log_alpha, const float *cost,
                          float inv_total, int n) {
    s2s_kref_l0_density_bwd(dla, dout, log_alpha, cost, inv_total, n);
}
void s2s_k_l0_lagrangian_fwd(float *out, const float *density, const float *lambda, float t) {
    s2s_kref_l0_lagrangian_fwd(out, density, lambda, t);
}
void s2s_k_l0_lagrangian_bwd(float *ddensity, float *dlambda, const float *dout, const float *density,
                             const float *lambda, float t) {
    s2s_kref_l0_lagrangian_bwd(ddensity, dlambda, dout, density, lambda, t);
}
