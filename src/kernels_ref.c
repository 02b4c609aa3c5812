/* kernels_ref.c - reference implementations (s2s_kref_*) of every kernel in kernels.h.
 *
 * Plain loops over contiguous row-major fp32 tensors: no BLAS, no OpenMP, no
 * intrinsics. This file is the ground truth the fast kernels (kernels_cpu.c) and the
 * CUDA kernels are tested against (tests/test_kernels.c), so it favours being
 * obviously right over being fast: reductions (dot products, sums, means) accumulate
 * in double and transcendental functions are evaluated in double, then rounded to
 * float once. Backward kernels ACCUMULATE (+=) into gradient buffers and skip NULL
 * ones, as the header says; an output whose assign bit is set is zeroed first, the
 * plainest reading of "overwrite". */
#include "kernels.h"

#include <math.h>
#include <string.h>

#include "common.h"

#define LN_EPS 1e-5                  /* layernorm epsilon, as torch.nn.LayerNorm */
#define SQRT1_2 0.70710678118654752  /* 1/sqrt(2) */

/* Gradient output i of n floats, when assign overwrites it: zeroed, so += then assigns. */
static void zero_assigned(float *grad, size_t n, int assign, int i) {
    if (grad && (assign & S2S_ASSIGN(i))) memset(grad, 0, n * sizeof(float));
}

/* ------------------------------------------------------------------------------------
 * linear and matmul
 * ---------------------------------------------------------------------------------- */

void s2s_kref_linear_fwd(float *y, const float *x, const float *w, const float *b, int N,
                         int K, int M) {
    /* y[N,M], x[N,K], w[M,K], b[M] or NULL */
    for (int n = 0; n < N; n++) {
        for (int m = 0; m < M; m++) {
            double s = b ? b[m] : 0.0;
            for (int k = 0; k < K; k++) s += (double)x[(size_t)n * K + k] * w[(size_t)m * K + k];
            y[(size_t)n * M + m] = (float)s;
        }
    }
}

void s2s_kref_linear_bwd(float *dx, float *dw, float *db, const float *dy, const float *x,
                         const float *w, int N, int K, int M, int assign) {
    /* dx[N,K], dw[M,K], db[M], dy[N,M], x[N,K], w[M,K] */
    zero_assigned(dx, (size_t)N * K, assign, 0);
    if (dx) {
        for (int n = 0; n < N; n++) {
            for (int k = 0; k < K; k++) {
                double s = 0.0;
                for (int m = 0; m < M; m++) s += (double)dy[(size_t)n * M + m] * w[(size_t)m * K + k];
                dx[(size_t)n * K + k] += (float)s;
            }
        }
    }
    if (dw) {
        for (int m = 0; m < M; m++) {
            for (int k = 0; k < K; k++) {
                double s = 0.0;
                for (int n = 0; n < N; n++) s += (double)dy[(size_t)n * M + m] * x[(size_t)n * K + k];
                dw[(size_t)m * K + k] += (float)s;
            }
        }
    }
    if (db) {
        for (int m = 0; m < M; m++) {
            double s = 0.0;
            for (int n = 0; n < N; n++) s += dy[(size_t)n * M + m];
            db[m] += (float)s;
        }
    }
}

void s2s_kref_matmul_fwd(float *c, const float *a, const float *b, int M, int K, int N) {
    /* c[M,N] = a[M,K] @ b[K,N] */
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double s = 0.0;
            for (int p = 0; p < K; p++) s += (double)a[(size_t)i * K + p] * b[(size_t)p * N + j];
            c[(size_t)i * N + j] = (float)s;
        }
    }
}

void s2s_kref_matmul_bwd(float *da, float *db, const float *dc, const float *a,
                         const float *b, int M, int K, int N, int assign) {
    /* da[M,K] += dc[M,N] @ b[K,N]^T;  db[K,N] += a[M,K]^T @ dc[M,N] */
    zero_assigned(da, (size_t)M * K, assign, 0);
    zero_assigned(db, (size_t)K * N, assign, 1);
    if (da) {
        for (int i = 0; i < M; i++) {
            for (int p = 0; p < K; p++) {
                double s = 0.0;
                for (int j = 0; j < N; j++) s += (double)dc[(size_t)i * N + j] * b[(size_t)p * N + j];
                da[(size_t)i * K + p] += (float)s;
            }
        }
    }
    if (db) {
        for (int p = 0; p < K; p++) {
            for (int j = 0; j < N; j++) {
                double s = 0.0;
                for (int i = 0; i < M; i++) s += (double)a[(size_t)i * K + p] * dc[(size_t)i * N + j];
                db[(size_t)p * N + j] += (float)s;
            }
        }
    }
}

/* ------------------------------------------------------------------------------------
 * layernorm
 * ---------------------------------------------------------------------------------- */

void s2s_kref_layernorm_fwd(float *y, float *mean, float *rstd, const float *x,
                            const float *g, const float *b, int N, int D) {
    /* y[N,D], mean[N], rstd[N], x[N,D], g[D], b[D]; biased variance as torch */
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        double m = 0.0;
        for (int d = 0; d < D; d++) m += xr[d];
        m /= D;
        double v = 0.0;
        for (int d = 0; d < D; d++) v += (xr[d] - m) * (xr[d] - m);
        v /= D;
        double rs = 1.0 / sqrt(v + LN_EPS);
        for (int d = 0; d < D; d++) y[(size_t)n * D + d] = (float)((xr[d] - m) * rs * g[d] + b[d]);
        mean[n] = (float)m;
        rstd[n] = (float)rs;
    }
}

void s2s_kref_layernorm_bwd(float *dx, float *dg, float *db, const float *dy,
                            const float *x, const float *mean, const float *rstd,
                            const float *g, int N, int D, int assign) {
    /* dx[N,D], dg[D], db[D], dy[N,D], x[N,D], mean[N], rstd[N], g[D]
     * with xhat = (x-mean)*rstd and dxhat = dy*g:
     *   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)) */
    zero_assigned(dx, (size_t)N * D, assign, 0);
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D, *dyr = dy + (size_t)n * D;
        double m = mean[n], rs = rstd[n];
        double s1 = 0.0, s2 = 0.0; /* sum dxhat, sum dxhat*xhat */
        for (int d = 0; d < D; d++) {
            double xh = (xr[d] - m) * rs, dxh = (double)dyr[d] * g[d];
            s1 += dxh;
            s2 += dxh * xh;
        }
        if (dx) {
            for (int d = 0; d < D; d++) {
                double xh = (xr[d] - m) * rs, dxh = (double)dyr[d] * g[d];
                dx[(size_t)n * D + d] += (float)(rs * (dxh - s1 / D - xh * (s2 / D)));
            }
        }
    }
    /* dg[d] += sum_n dy * xhat;  db[d] += sum_n dy */
    for (int d = 0; d < D; d++) {
        double sg = 0.0, sb = 0.0;
        for (int n = 0; n < N; n++) {
            double dyv = dy[(size_t)n * D + d];
            sg += dyv * ((x[(size_t)n * D + d] - (double)mean[n]) * rstd[n]);
            sb += dyv;
        }
        if (dg) dg[d] += (float)sg;
        if (db) db[d] += (float)sb;
    }
}

/* ------------------------------------------------------------------------------------
 * softmax, log-softmax
 * ---------------------------------------------------------------------------------- */

void s2s_kref_softmax_fwd(float *y, const float *x, int N, int D) {
    /* y[N,D], x[N,D] */
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float mx = -INFINITY;
        for (int d = 0; d < D; d++) mx = xr[d] > mx ? xr[d] : mx;
        double s = 0.0;
        for (int d = 0; d < D; d++) s += exp((double)xr[d] - mx);
        for (int d = 0; d < D; d++) y[(size_t)n * D + d] = (float)(exp((double)xr[d] - mx) / s);
    }
}

void s2s_kref_softmax_bwd(float *dx, const float *dy, const float *y, int N, int D, int assign) {
    /* dx[N,D] += y * (dy - sum(dy*y)) */
    zero_assigned(dx, (size_t)N * D, assign, 0);
    for (int n = 0; n < N; n++) {
        const float *yr = y + (size_t)n * D, *dyr = dy + (size_t)n * D;
        double s = 0.0;
        for (int d = 0; d < D; d++) s += (double)dyr[d] * yr[d];
        for (int d = 0; d < D; d++) dx[(size_t)n * D + d] += (float)(yr[d] * (dyr[d] - s));
    }
}

void s2s_kref_logsoftmax_fwd(float *y, const float *x, int N, int D) {
    /* y[N,D] = x - max - log(sum exp(x - max)) */
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * D;
        float mx = -INFINITY;
        for (int d = 0; d < D; d++) mx = xr[d] > mx ? xr[d] : mx;
        double s = 0.0;
        for (int d = 0; d < D; d++) s += exp((double)xr[d] - mx);
        double lse = log(s);
        for (int d = 0; d < D; d++) y[(size_t)n * D + d] = (float)((double)xr[d] - mx - lse);
    }
}

void s2s_kref_logsoftmax_bwd(float *dx, const float *dy, const float *y, int N, int D, int assign) {
    /* dx[N,D] += dy - exp(y) * sum(dy) */
    zero_assigned(dx, (size_t)N * D, assign, 0);
    for (int n = 0; n < N; n++) {
        const float *yr = y + (size_t)n * D, *dyr = dy + (size_t)n * D;
        double s = 0.0;
        for (int d = 0; d < D; d++) s += dyr[d];
        for (int d = 0; d < D; d++) dx[(size_t)n * D + d] += (float)(dyr[d] - exp((double)yr[d]) * s);
    }
}

/* ------------------------------------------------------------------------------------
 * activations
 * ---------------------------------------------------------------------------------- */

void s2s_kref_relu_fwd(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void s2s_kref_relu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    zero_assigned(dx, n, assign, 0);
    for (size_t i = 0; i < n; i++) dx[i] += x[i] > 0.0f ? dy[i] : 0.0f;
}

/* GELU(x) = x * Phi(x), Phi the standard normal CDF = 0.5 * (1 + erf(x / sqrt 2)). */
void s2s_kref_gelu_fwd(float *y, const float *x, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        y[i] = (float)(0.5 * v * (1.0 + erf(v * SQRT1_2)));
    }
}

/* d GELU / dx = Phi(x) + x * phi(x), phi(x) = exp(-x^2/2) / sqrt(2 pi). */
void s2s_kref_gelu_bwd(float *dx, const float *dy, const float *x, size_t n, int assign) {
    const double inv_sqrt_2pi = 0.3989422804014327;
    zero_assigned(dx, n, assign, 0);
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        double cdf = 0.5 * (1.0 + erf(v * SQRT1_2));
        double pdf = inv_sqrt_2pi * exp(-0.5 * v * v);
        dx[i] += (float)(dy[i] * (cdf + v * pdf));
    }
}

/* ------------------------------------------------------------------------------------
 * embedding
 * ---------------------------------------------------------------------------------- */

void s2s_kref_embedding_fwd(float *out, const float *table, const int32_t *ids, int N,
                            int D) {
    /* out[N,D] = table[ids[n], :] */
    for (int n = 0; n < N; n++) {
        S2S_ASSERT(ids[n] >= 0);
        memcpy(out + (size_t)n * D, table + (size_t)ids[n] * D, (size_t)D * sizeof(float));
    }
}

void s2s_kref_embedding_bwd(float *dtable, const float *dout, const int32_t *ids, int N,
                            int D) {
    /* dtable[V,D] += scatter of dout[N,D] (repeated ids add up) */
    for (int n = 0; n < N; n++) {
        S2S_ASSERT(ids[n] >= 0);
        for (int d = 0; d < D; d++) dtable[(size_t)ids[n] * D + d] += dout[(size_t)n * D + d];
    }
}

/* ------------------------------------------------------------------------------------
 * attention
 * ---------------------------------------------------------------------------------- */

/* Is key j visible to query i of batch row b? */
static int ref_visible(const int32_t *kv_len, int causal, int b, int i, int j, int Tq, int Tk) {
    if (kv_len && j >= kv_len[b]) return 0;
    if (causal && j > i + (Tk - Tq)) return 0;
    return 1;
}

void s2s_kref_attention_fwd(float *out, float *p, const float *q, const float *k,
                            const float *v, const int32_t *kv_len, int causal, int B,
                            int H, int Tq, int Tk, int Dh) {
    /* out[B,Tq,H*Dh], p[B,H,Tq,Tk], q[B,Tq,H*Dh], k[B,Tk,H*Dh], v[B,Tk,H*Dh] */
    const int HD = H * Dh;
    const double scale = 1.0 / sqrt((double)Dh);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + ((size_t)b * Tq + i) * HD + (size_t)h * Dh;
                float *pi = p + (((size_t)b * H + h) * Tq + i) * Tk;
                float *oi = out + ((size_t)b * Tq + i) * HD + (size_t)h * Dh;
                /* scores of the visible keys, and their max */
                double mx = -INFINITY;
                int any = 0;
                for (int j = 0; j < Tk; j++) {
                    pi[j] = 0.0f;
                    if (!ref_visible(kv_len, causal, b, i, j, Tq, Tk)) continue;
                    const float *kj = k + ((size_t)b * Tk + j) * HD + (size_t)h * Dh;
                    double s = 0.0;
                    for (int d = 0; d < Dh; d++) s += (double)qi[d] * kj[d];
                    pi[j] = (float)(s * scale);
                    mx = pi[j] > mx ? pi[j] : mx;
                    any = 1;
                }
                /* softmax over the visible keys; a fully masked row keeps p = 0 */
                double sum = 0.0;
                for (int j = 0; j < Tk; j++)
                    if (ref_visible(kv_len, causal, b, i, j, Tq, Tk)) sum += exp(pi[j] - mx);
                for (int j = 0; j < Tk; j++)
                    if (ref_visible(kv_len, causal, b, i, j, Tq, Tk))
                        pi[j] = (float)(exp(pi[j] - mx) / sum);
                /* out = p @ v */
                for (int d = 0; d < Dh; d++) {
                    double s = 0.0;
                    if (any) {
                        for (int j = 0; j < Tk; j++)
                            s += (double)pi[j] * v[((size_t)b * Tk + j) * HD + (size_t)h * Dh + d];
                    }
                    oi[d] = (float)s;
                }
            }
        }
    }
}

void s2s_kref_attention_bwd(float *dq, float *dk, float *dv, const float *dout,
                            const float *p, const float *q, const float *k,
                            const float *v, int B, int H, int Tq, int Tk, int Dh, int assign) {
    /* dq[B,Tq,H*Dh], dk,dv[B,Tk,H*Dh], dout[B,Tq,H*Dh], p[B,H,Tq,Tk]
     * with S = scale * q k^T, P = softmax(S) (masked entries P = 0), out = P v:
     *   dv += P^T dout;  dP = dout v^T;  dS = P * (dP - rowsum(P * dP));
     *   dq += scale * dS k;  dk += scale * dS^T q.
     * Masked entries have P = 0, hence dS = 0: no mask is needed here. */
    const int HD = H * Dh;
    const double scale = 1.0 / sqrt((double)Dh);
    zero_assigned(dq, (size_t)B * Tq * HD, assign, 0);
    zero_assigned(dk, (size_t)B * Tk * HD, assign, 1);
    zero_assigned(dv, (size_t)B * Tk * HD, assign, 2);
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            for (int i = 0; i < Tq; i++) {
                const float *pi = p + (((size_t)b * H + h) * Tq + i) * Tk;
                const float *qi = q + ((size_t)b * Tq + i) * HD + (size_t)h * Dh;
                const float *doi = dout + ((size_t)b * Tq + i) * HD + (size_t)h * Dh;
                /* rowsum(P * dP) */
                double r = 0.0;
                for (int j = 0; j < Tk; j++) {
                    const float *vj = v + ((size_t)b * Tk + j) * HD + (size_t)h * Dh;
                    double dp = 0.0;
                    for (int d = 0; d < Dh; d++) dp += (double)doi[d] * vj[d];
                    r += pi[j] * dp;
                }
                for (int j = 0; j < Tk; j++) {
                    size_t kvo = ((size_t)b * Tk + j) * HD + (size_t)h * Dh;
                    double dp = 0.0;
                    for (int d = 0; d < Dh; d++) dp += (double)doi[d] * v[kvo + d];
                    double ds = pi[j] * (dp - r) * scale;
                    for (int d = 0; d < Dh; d++) {
                        if (dq) dq[((size_t)b * Tq + i) * HD + (size_t)h * Dh + d] += (float)(ds * k[kvo + d]);
                        if (dk) dk[kvo + d] += (float)(ds * qi[d]);
                        if (dv) dv[kvo + d] += (float)((double)pi[j] * doi[d]);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------------------------------
 * cross-entropy with label smoothing
 * ---------------------------------------------------------------------------------- */

int s2s_kref_xent_fwd(float *loss, float *logp, const float *logits, const int32_t *tgt,
                      float eps, int ignore, int N, int V) {
    /* loss[N], logp[N,V], logits[N,V], tgt[N] */
    s2s_kref_logsoftmax_fwd(logp, logits, N, V);
    int count = 0;
    for (int n = 0; n < N; n++) {
        if (tgt[n] == ignore) {
            loss[n] = 0.0f;
            continue;
        }
        S2S_ASSERT(tgt[n] >= 0 && tgt[n] < V);
        const float *lp = logp + (size_t)n * V;
        double smooth = 0.0;
        for (int v = 0; v < V; v++) smooth -= lp[v];
        smooth /= V;
        loss[n] = (float)((1.0 - eps) * -(double)lp[tgt[n]] + eps * smooth);
        count++;
    }
    return count;
}

void s2s_kref_xent_bwd(float *dlogits, const float *dloss, const float *logp,
                       const int32_t *tgt, float eps, int ignore, int N, int V, int assign) {
    /* dlogits[N,V] += dloss[n] * (softmax - (1-eps) * onehot(t) - eps / V) */
    zero_assigned(dlogits, (size_t)N * V, assign, 0);
    for (int n = 0; n < N; n++) {
        if (tgt[n] == ignore) continue;
        const float *lp = logp + (size_t)n * V;
        for (int v = 0; v < V; v++) {
            double g = exp((double)lp[v]) - (double)eps / V - (v == tgt[n] ? 1.0 - eps : 0.0);
            dlogits[(size_t)n * V + v] += (float)(dloss[n] * g);
        }
    }
}
