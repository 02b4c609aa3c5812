/* kernels_t2r.c - T2R linear attention (kernels_t2r.h): reference (s2s_kref_*) and fast
 * (s2s_k_*) kernels, parallel form forward/backward, recurrent step, cross attention.
 *
 * Reference: plain loops, every sum in double, the parallel form literally as the
 * O(Tq Tk) double sum over visible (query, key) pairs, no OpenMP: the ground truth of
 * tests/test_t2r.c.
 *
 * Fast: OpenMP over (b, h), float accumulation. The visible keys of query i are a prefix
 * j < lim(i) with lim non-decreasing in i, so the forward keeps the running state
 * (S = sum phi(k_j) v_j^T [kf, d], z = sum phi(k_j) [kf]) and adds keys as lim grows:
 * O((Tq + Tk) kf d) per head, causal or not. The backward does the same twice:
 *   dN_i = dout_i / max(den_i, eps),  dD_i = -(dout_i . out_i) / den_i if den_i > eps else 0
 *   dphi(q_i) = S_i dN_i + dD_i z_i                       (forward scan over queries)
 *   dphi(k_j) = R_j v_j + r_j,  dv_j = R_j^T phi(k_j)      (backward scan over keys)
 * with R_j = sum_{i sees j} phi(q_i) dN_i^T [kf, d], r_j = sum_{i sees j} dD_i phi(q_i)
 * (the queries that see key j are a suffix of i). dq, dk, dv are disjoint per (b, h);
 * the feature-map gradients are kept in scratch and reduced into dW, db by a second
 * loop over (h, feature), so no two threads add to the same element. */
#include "kernels_t2r.h"

#include <math.h>
#include <string.h>

#include "common.h"

#ifdef _OPENMP
#define S2S_OMP(...) _Pragma(S2S_STR_(omp __VA_ARGS__))
#define S2S_STR_(...) #__VA_ARGS__
#else
#define S2S_OMP(...)
#endif

#define PAR_MIN 16384 /* floats of work under which the fast kernels stay serial */

/* head h's feature map: W [H,kf,d], b [H,kf]; W NULL = the fixed elu+1 map (b unused) */
#define HEAD_W(W, h, kf, d) ((W) ? (W) + (size_t)(h) * (kf) * (d) : NULL)
#define HEAD_B(b, h, kf) ((b) ? (b) + (size_t)(h) * (kf) : NULL)
/* d phi / d pre-activation from the feature value p: relu 1[p > 0]; elu+1: 1 for
 * u > 0 (p = u + 1 > 1), e^u = p for u <= 0 */
#define DPHI(p, elu) ((elu) ? ((p) > 1.0f ? 1.0f : (p)) : ((p) > 0.0f ? 1.0f : 0.0f))

/* the number of valid keys of row b */
static int keys_of(const int32_t *kv_len, int b, int Tk) {
    if (!kv_len) return Tk;
    int L = kv_len[b];
    return L < 0 ? 0 : L > Tk ? Tk : L;
}

/* query i sees keys j < lim(i) (non-decreasing in i) */
static int vis_lim(int i, int L, int causal, int Tq, int Tk) {
    int lim = L;
    if (causal && i + Tk - Tq + 1 < lim) lim = i + Tk - Tq + 1;
    return lim < 0 ? 0 : lim;
}

/* ------------------------------------------------------------------------------------
 * reference
 * ---------------------------------------------------------------------------------- */

/* dst[kf] = relu(Wh (scale x) + bh) in double; x [d], Wh [kf, d], bh [kf]; Wh NULL:
 * dst[d] = elu(scale x) + 1 (kf = d) */
static void ref_phi(float *dst, const float *x, double scale, const float *Wh, const float *bh,
                    int d, int kf) {
    if (!Wh) {
        for (int e = 0; e < d; e++) {
            double u = scale * x[e];
            dst[e] = (float)(u > 0.0 ? u + 1.0 : exp(u));
        }
        return;
    }
    for (int f = 0; f < kf; f++) {
        double s = bh[f];
        for (int e = 0; e < d; e++) s += (double)Wh[(size_t)f * d + e] * (scale * x[e]);
        dst[f] = s > 0.0 ? (float)s : 0.0f;
    }
}

static double ref_dot(const float *a, const float *b, int n) {
    double s = 0.0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

void s2s_kref_t2r_fwd(float *out, float *pq, float *pk, float *den, const float *q,
                      const float *k, const float *v, const float *W, const float *b,
                      const int32_t *kv_len, int causal, int B, int H, int Tq, int Tk, int d,
                      int kf) {
    size_t HD = (size_t)H * d;
    double sc = 1.0 / sqrt((double)d);
    double *num = s2s_xmalloc((size_t)d * sizeof(double));
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *Wh = HEAD_W(W, h, kf, d), *bh = HEAD_B(b, h, kf);
            float *pqh = pq + ((size_t)bb * H + h) * Tq * kf, *pkh = pk + ((size_t)bb * H + h) * Tk * kf;
            for (int t = 0; t < Tq; t++)
                ref_phi(pqh + (size_t)t * kf, q + ((size_t)bb * Tq + t) * HD + (size_t)h * d, sc, Wh, bh, d, kf);
            for (int t = 0; t < Tk; t++)
                ref_phi(pkh + (size_t)t * kf, k + ((size_t)bb * Tk + t) * HD + (size_t)h * d, 1.0, Wh, bh, d, kf);
            int L = keys_of(kv_len, bb, Tk);
            for (int i = 0; i < Tq; i++) {
                int lim = vis_lim(i, L, causal, Tq, Tk);
                double dn = 0.0;
                for (int e = 0; e < d; e++) num[e] = 0.0;
                for (int j = 0; j < lim; j++) {
                    double a = ref_dot(pqh + (size_t)i * kf, pkh + (size_t)j * kf, kf);
                    const float *vj = v + ((size_t)bb * Tk + j) * HD + (size_t)h * d;
                    dn += a;
                    for (int e = 0; e < d; e++) num[e] += a * vj[e];
                }
                double dc = dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS;
                float *o = out + ((size_t)bb * Tq + i) * HD + (size_t)h * d;
                for (int e = 0; e < d; e++) o[e] = (float)(num[e] / dc);
                den[((size_t)bb * H + h) * Tq + i] = (float)dn;
            }
        }
    free(num);
}

void s2s_kref_t2r_bwd(float *dq, float *dk, float *dv, float *dW, float *db,
                      const float *dout, const float *out, const float *pq, const float *pk,
                      const float *den, const float *q, const float *k, const float *v,
                      const float *W, const int32_t *kv_len, int causal, int B, int H, int Tq,
                      int Tk, int d, int kf) {
    size_t HD = (size_t)H * d;
    double sc = 1.0 / sqrt((double)d);
    double *gpq = s2s_xmalloc((size_t)Tq * kf * sizeof(double));
    double *gpk = s2s_xmalloc((size_t)Tk * kf * sizeof(double));
    double *gv = s2s_xmalloc((size_t)Tk * d * sizeof(double));
    double *dN = s2s_xmalloc((size_t)d * sizeof(double));
    double *gW = s2s_xcalloc((size_t)H * kf * d, sizeof(double));
    double *gb = s2s_xcalloc((size_t)H * kf, sizeof(double));
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *pqh = pq + ((size_t)bb * H + h) * Tq * kf, *pkh = pk + ((size_t)bb * H + h) * Tk * kf;
            memset(gpq, 0, (size_t)Tq * kf * sizeof(double));
            memset(gpk, 0, (size_t)Tk * kf * sizeof(double));
            memset(gv, 0, (size_t)Tk * d * sizeof(double));
            int L = keys_of(kv_len, bb, Tk);
            for (int i = 0; i < Tq; i++) {
                int lim = vis_lim(i, L, causal, Tq, Tk);
                double dn = den[((size_t)bb * H + h) * Tq + i];
                double dc = dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS;
                const float *go = dout + ((size_t)bb * Tq + i) * HD + (size_t)h * d;
                const float *o = out + ((size_t)bb * Tq + i) * HD + (size_t)h * d;
                for (int e = 0; e < d; e++) dN[e] = go[e] / dc;
                double dD = dn > S2S_T2R_EPS ? -ref_dot(go, o, d) / dc : 0.0;
                for (int j = 0; j < lim; j++) {
                    const float *vj = v + ((size_t)bb * Tk + j) * HD + (size_t)h * d;
                    double a = ref_dot(pqh + (size_t)i * kf, pkh + (size_t)j * kf, kf);
                    double da = dD;
                    for (int e = 0; e < d; e++) {
                        da += dN[e] * vj[e];
                        gv[(size_t)j * d + e] += a * dN[e];
                    }
                    for (int f = 0; f < kf; f++) {
                        gpq[(size_t)i * kf + f] += da * pkh[(size_t)j * kf + f];
                        gpk[(size_t)j * kf + f] += da * pqh[(size_t)i * kf + f];
                    }
                }
            }
            if (dv)
                for (int j = 0; j < Tk; j++)
                    for (int e = 0; e < d; e++)
                        dv[((size_t)bb * Tk + j) * HD + (size_t)h * d + e] += (float)gv[(size_t)j * d + e];
            /* through relu and the linear map: pre = W (scale x) + b */
            const float *Wh = HEAD_W(W, h, kf, d);
            for (int side = 0; side < 2; side++) {
                int T = side ? Tk : Tq;
                double s = side ? 1.0 : sc;
                const float *x = side ? k : q, *ph = side ? pkh : pqh;
                const double *g = side ? gpk : gpq;
                float *dx = side ? dk : dq;
                for (int t = 0; t < T; t++) {
                    const float *xt = x + ((size_t)bb * T + t) * HD + (size_t)h * d;
                    if (!Wh) { /* elu+1 on (s x): d/du = 1 (u > 0) or e^u */
                        for (int e = 0; e < d; e++) {
                            double u = s * xt[e], gp = g[(size_t)t * kf + e] * (u > 0.0 ? 1.0 : exp(u));
                            if (dx) dx[((size_t)bb * T + t) * HD + (size_t)h * d + e] += (float)(s * gp);
                        }
                        continue;
                    }
                    for (int e = 0; e < d; e++) {
                        double acc = 0.0;
                        for (int f = 0; f < kf; f++) {
                            double gp = ph[(size_t)t * kf + f] > 0.0f ? g[(size_t)t * kf + f] : 0.0;
                            acc += gp * Wh[(size_t)f * d + e];
                            if (e == 0) gb[(size_t)h * kf + f] += gp;
                            gW[((size_t)h * kf + f) * d + e] += gp * s * xt[e];
                        }
                        if (dx) dx[((size_t)bb * T + t) * HD + (size_t)h * d + e] += (float)(s * acc);
                    }
                }
            }
        }
    if (dW)
        for (size_t i = 0; i < (size_t)H * kf * d; i++) dW[i] += (float)gW[i];
    if (db)
        for (size_t i = 0; i < (size_t)H * kf; i++) db[i] += (float)gb[i];
    free(gpq); free(gpk); free(gv); free(dN); free(gW); free(gb);
}

/* out[d] = ph^T S / max(ph . z, eps) in double; ph [kf], S [kf, d], z [kf] */
static void ref_read(float *out, const float *ph, const float *S, const float *z, int d, int kf) {
    double dn = ref_dot(ph, z, kf), dc = dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS;
    for (int e = 0; e < d; e++) {
        double s = 0.0;
        for (int f = 0; f < kf; f++) s += (double)ph[f] * S[(size_t)f * d + e];
        out[e] = (float)(s / dc);
    }
}

/* S[kf, d] += ph v^T, z[kf] += ph, each sum in double */
static void ref_update(float *S, float *z, const float *ph, const float *v, int d, int kf) {
    for (int f = 0; f < kf; f++) {
        for (int e = 0; e < d; e++) S[(size_t)f * d + e] = (float)(S[(size_t)f * d + e] + (double)ph[f] * v[e]);
        z[f] = (float)((double)z[f] + ph[f]);
    }
}

void s2s_kref_t2r_step(float *out, float *S, float *z, const float *q, const float *k,
                       const float *v, const float *W, const float *b, int B, int H, int d,
                       int kf) {
    size_t HD = (size_t)H * d;
    float *pq = s2s_xmalloc((size_t)kf * sizeof(float)), *pk = s2s_xmalloc((size_t)kf * sizeof(float));
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *Wh = HEAD_W(W, h, kf, d), *bh = HEAD_B(b, h, kf);
            size_t o = (size_t)bb * HD + (size_t)h * d;
            float *Sh = S + ((size_t)bb * H + h) * kf * d, *zh = z + ((size_t)bb * H + h) * kf;
            ref_phi(pq, q + o, 1.0 / sqrt((double)d), Wh, bh, d, kf);
            ref_phi(pk, k + o, 1.0, Wh, bh, d, kf);
            ref_update(Sh, zh, pk, v + o, d, kf);
            ref_read(out + o, pq, Sh, zh, d, kf);
        }
    free(pq); free(pk);
}

void s2s_kref_t2r_phi(float *ph, const float *x, const float *W, const float *b, float scale,
                      int B, int H, int d, int kf) {
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++)
            ref_phi(ph + ((size_t)bb * H + h) * kf, x + ((size_t)bb * H + h) * d, scale, HEAD_W(W, h, kf, d),
                    HEAD_B(b, h, kf), d, kf);
}

void s2s_kref_t2r_phi_act(float *ph, const float *b, float scale, int B, int H, int kf) {
    size_t Hk = (size_t)H * kf;
    for (size_t i = 0; i < (size_t)B * Hk; i++) {
        double s = b[i % Hk] + (double)scale * ph[i];
        ph[i] = s > 0.0 ? (float)s : 0.0f;
    }
}

void s2s_kref_t2r_step_feat(float *out, float *S, float *z, const float *pq, const float *pk,
                            const float *v, int B, int H, int d, int kf) {
    for (size_t i = 0; i < (size_t)B * H; i++) { /* (row, head) */
        float *Sh = S + i * kf * d, *zh = z + i * kf;
        ref_update(Sh, zh, pk + i * kf, v + i * d, d, kf);
        ref_read(out + i * d, pq + i * kf, Sh, zh, d, kf);
    }
}

void s2s_kref_t2r_cross_state(float *S, float *z, const float *k, const float *v,
                              const float *W, const float *b, const int32_t *kv_len, int B,
                              int H, int Tk, int d, int kf) {
    size_t HD = (size_t)H * d;
    float *pk = s2s_xmalloc((size_t)Tk * kf * sizeof(float) + 1);
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *Wh = HEAD_W(W, h, kf, d), *bh = HEAD_B(b, h, kf);
            int L = keys_of(kv_len, bb, Tk);
            for (int j = 0; j < L; j++)
                ref_phi(pk + (size_t)j * kf, k + ((size_t)bb * Tk + j) * HD + (size_t)h * d, 1.0, Wh, bh, d, kf);
            float *Sh = S + ((size_t)bb * H + h) * kf * d, *zh = z + ((size_t)bb * H + h) * kf;
            for (int f = 0; f < kf; f++) {
                double zs = 0.0;
                for (int j = 0; j < L; j++) zs += pk[(size_t)j * kf + f];
                zh[f] = (float)zs;
                for (int e = 0; e < d; e++) {
                    double s = 0.0;
                    for (int j = 0; j < L; j++)
                        s += (double)pk[(size_t)j * kf + f] * v[((size_t)bb * Tk + j) * HD + (size_t)h * d + e];
                    Sh[(size_t)f * d + e] = (float)s;
                }
            }
        }
    free(pk);
}

void s2s_kref_t2r_cross_query(float *out, const float *S, const float *z, const float *q,
                              const float *W, const float *b, int B, int H, int Tq, int d,
                              int kf) {
    size_t HD = (size_t)H * d;
    float *pq = s2s_xmalloc((size_t)kf * sizeof(float));
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++)
            for (int t = 0; t < Tq; t++) {
                size_t o = ((size_t)bb * Tq + t) * HD + (size_t)h * d;
                ref_phi(pq, q + o, 1.0 / sqrt((double)d), HEAD_W(W, h, kf, d), HEAD_B(b, h, kf), d, kf);
                ref_read(out + o, pq, S + ((size_t)bb * H + h) * kf * d, z + ((size_t)bb * H + h) * kf, d, kf);
            }
    free(pq);
}

void s2s_kref_t2r_cross_query_feat(float *out, const float *S, const float *z, const float *pq,
                                   int B, int H, int Tq, int d, int kf) {
    for (int bb = 0; bb < B; bb++)
        for (int t = 0; t < Tq; t++)
            for (int h = 0; h < H; h++) {
                size_t i = ((size_t)bb * Tq + t) * H + h; /* (query, head) */
                ref_read(out + i * d, pq + i * kf, S + ((size_t)bb * H + h) * kf * d, z + ((size_t)bb * H + h) * kf,
                         d, kf);
            }
}

/* ------------------------------------------------------------------------------------
 * fast
 * ---------------------------------------------------------------------------------- */

/* relu(b + scale * s): a feature from its dot product s = Wh[f] . x */
static inline float phi_act(float s, float b, float scale) {
    s = b + scale * s;
    return s > 0.0f ? s : 0.0f;
}

/* dst[kf] = relu(scale * (Wh x) + bh); x [d], Wh [kf, d], bh [kf]; Wh NULL: dst[d] =
 * elu(scale x) + 1 (kf = d) */
static void fast_phi(float *dst, const float *x, float scale, const float *Wh, const float *bh,
                     int d, int kf) {
    if (!Wh) {
        for (int e = 0; e < d; e++) {
            float u = scale * x[e];
            dst[e] = u > 0.0f ? u + 1.0f : expf(u);
        }
        return;
    }
    for (int f = 0; f < kf; f++) {
        const float *w = Wh + (size_t)f * d;
        float s = 0.0f;
        S2S_OMP(simd reduction(+ : s))
        for (int e = 0; e < d; e++) s += w[e] * x[e];
        dst[f] = phi_act(s, bh[f], scale);
    }
}

/* S[kf, d] += ph v^T, z[kf] += ph */
static void fast_add(float *S, float *z, const float *ph, const float *v, int d, int kf) {
    for (int f = 0; f < kf; f++) {
        float p = ph[f];
        if (p == 0.0f) continue;
        float *Sf = S + (size_t)f * d;
        S2S_OMP(simd)
        for (int e = 0; e < d; e++) Sf[e] += p * v[e];
        z[f] += p;
    }
}

/* out[d] = ph^T S / max(ph . z, eps); returns the unclamped denominator */
static float fast_read(float *out, const float *ph, const float *S, const float *z, int d, int kf) {
    float dn = 0.0f;
    for (int e = 0; e < d; e++) out[e] = 0.0f;
    for (int f = 0; f < kf; f++) {
        float p = ph[f];
        if (p == 0.0f) continue;
        const float *Sf = S + (size_t)f * d;
        S2S_OMP(simd)
        for (int e = 0; e < d; e++) out[e] += p * Sf[e];
        dn += p * z[f];
    }
    float inv = 1.0f / (dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS);
    for (int e = 0; e < d; e++) out[e] *= inv;
    return dn;
}

#define LANES 64 /* columns of S per pass of fast_add_read: its sums stay in registers */

/* fast_add(S, z, pk, v) then fast_read(out, ph, S, z) (pk NULL: the read only; S is then
 * not written), the same values, in ONE pass over S [kf, d] when d % LANES == 0: per
 * block of LANES columns, each feature row is updated and read while in registers. */
static float fast_add_read(float *out, float *S, float *z, const float *ph, const float *pk,
                           const float *v, int d, int kf) {
    if (d % LANES != 0) {
        if (pk) fast_add(S, z, pk, v, d, kf);
        return fast_read(out, ph, S, z, d, kf);
    }
    float dn = 0.0f;
    for (int f = 0; f < kf; f++) {
        if (pk && pk[f] != 0.0f) z[f] += pk[f];
        if (ph[f] != 0.0f) dn += ph[f] * z[f];
    }
    float inv = 1.0f / (dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS);
    for (int e0 = 0; e0 < d; e0 += LANES) {
        float acc[LANES] = {0.0f};
        const float *ve = v ? v + e0 : NULL;
        for (int f = 0; f < kf; f++) {
            float *Sf = S + (size_t)f * d + e0, p = pk ? pk[f] : 0.0f, r = ph[f];
            if (p != 0.0f) {
                S2S_OMP(simd)
                for (int j = 0; j < LANES; j++) Sf[j] += p * ve[j];
            }
            if (r != 0.0f) {
                S2S_OMP(simd)
                for (int j = 0; j < LANES; j++) acc[j] += r * Sf[j];
            }
        }
        for (int j = 0; j < LANES; j++) out[e0 + j] = acc[j] * inv;
    }
    return dn;
}

void s2s_k_t2r_fwd(float *out, float *pq, float *pk, float *den, const float *q,
                   const float *k, const float *v, const float *W, const float *b,
                   const int32_t *kv_len, int causal, int B, int H, int Tq, int Tk, int d,
                   int kf) {
    size_t HD = (size_t)H * d;
    float sc = S2S_T2R_QSCALE(d);
    size_t work = (size_t)B * H * (Tq + Tk) * kf * d;
    S2S_OMP(parallel for collapse(2) schedule(dynamic) if (work > PAR_MIN))
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *Wh = HEAD_W(W, h, kf, d), *bh = HEAD_B(b, h, kf);
            float *pqh = pq + ((size_t)bb * H + h) * Tq * kf, *pkh = pk + ((size_t)bb * H + h) * Tk * kf;
            float *S = s2s_xcalloc((size_t)kf * d + (size_t)kf, sizeof(float)), *z = S + (size_t)kf * d;
            for (int t = 0; t < Tq; t++)
                fast_phi(pqh + (size_t)t * kf, q + ((size_t)bb * Tq + t) * HD + (size_t)h * d, sc, Wh, bh, d, kf);
            for (int t = 0; t < Tk; t++)
                fast_phi(pkh + (size_t)t * kf, k + ((size_t)bb * Tk + t) * HD + (size_t)h * d, 1.0f, Wh, bh, d, kf);
            int L = keys_of(kv_len, bb, Tk), pos = 0;
            for (int i = 0; i < Tq; i++) {
                for (int lim = vis_lim(i, L, causal, Tq, Tk); pos < lim; pos++)
                    fast_add(S, z, pkh + (size_t)pos * kf, v + ((size_t)bb * Tk + pos) * HD + (size_t)h * d, d, kf);
                den[((size_t)bb * H + h) * Tq + i] =
                    fast_read(out + ((size_t)bb * Tq + i) * HD + (size_t)h * d, pqh + (size_t)i * kf, S, z, d, kf);
            }
            free(S);
        }
}

void s2s_k_t2r_bwd(float *dq, float *dk, float *dv, float *dW, float *db,
                   const float *dout, const float *out, const float *pq, const float *pk,
                   const float *den, const float *q, const float *k, const float *v,
                   const float *W, const int32_t *kv_len, int causal, int B, int H, int Tq,
                   int Tk, int d, int kf) {
    if (!dq && !dk && !dv && !dW && !db) return;
    size_t HD = (size_t)H * d;
    float sc = S2S_T2R_QSCALE(d);
    int elu = W == NULL;
    size_t work = (size_t)B * H * (Tq + Tk) * kf * d;
    /* the gradients at the pre-activations (relu applied): gq [B,H,Tq,kf], gk [B,H,Tk,kf] */
    float *gq = s2s_xmalloc(((size_t)B * H * Tq * kf + 1) * sizeof(float));
    float *gk = s2s_xmalloc(((size_t)B * H * Tk * kf + 1) * sizeof(float));
    S2S_OMP(parallel for collapse(2) schedule(dynamic) if (work > PAR_MIN))
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            size_t bh = (size_t)bb * H + h;
            const float *pqh = pq + bh * Tq * kf, *pkh = pk + bh * Tk * kf;
            float *gqh = gq + bh * Tq * kf, *gkh = gk + bh * Tk * kf;
            /* scratch: S, R [kf, d]; z, r [kf]; dN [Tq, d]; dD [Tq] */
            size_t KD = (size_t)kf * d;
            float *S = s2s_xcalloc(2 * KD + 2 * (size_t)kf + (size_t)Tq * (d + 1) + 1, sizeof(float));
            float *R = S + KD, *z = R + KD, *r = z + kf, *dN = r + kf, *dD = dN + (size_t)Tq * d;
            int L = keys_of(kv_len, bb, Tk), pos = 0;
            /* forward scan over queries: dN, dD and dphi(q) = S_i dN_i + dD_i z_i */
            for (int i = 0; i < Tq; i++) {
                for (int lim = vis_lim(i, L, causal, Tq, Tk); pos < lim; pos++)
                    fast_add(S, z, pkh + (size_t)pos * kf, v + ((size_t)bb * Tk + pos) * HD + (size_t)h * d, d, kf);
                float dn = den[bh * Tq + i], dc = dn > S2S_T2R_EPS ? dn : S2S_T2R_EPS;
                const float *go = dout + ((size_t)bb * Tq + i) * HD + (size_t)h * d;
                const float *o = out + ((size_t)bb * Tq + i) * HD + (size_t)h * d;
                float *dNi = dN + (size_t)i * d, inv = 1.0f / dc, god = 0.0f;
                for (int e = 0; e < d; e++) { dNi[e] = go[e] * inv; god += go[e] * o[e]; }
                float dDi = dn > S2S_T2R_EPS ? -god * inv : 0.0f;
                dD[i] = dDi;
                for (int f = 0; f < kf; f++) {
                    const float *Sf = S + (size_t)f * d;
                    float s = dDi * z[f];
                    S2S_OMP(simd reduction(+ : s))
                    for (int e = 0; e < d; e++) s += Sf[e] * dNi[e];
                    gqh[(size_t)i * kf + f] = DPHI(pqh[(size_t)i * kf + f], elu) * s;
                }
            }
            /* backward scan over keys: the queries that see key j are i >= ip */
            int ip = Tq;
            for (int j = Tk - 1; j >= 0; j--) {
                while (ip > 0 && vis_lim(ip - 1, L, causal, Tq, Tk) > j) {
                    ip--;
                    const float *ph = pqh + (size_t)ip * kf, *dNi = dN + (size_t)ip * d;
                    for (int f = 0; f < kf; f++) {
                        float p = ph[f];
                        if (p == 0.0f) continue;
                        float *Rf = R + (size_t)f * d;
                        S2S_OMP(simd)
                        for (int e = 0; e < d; e++) Rf[e] += p * dNi[e];
                        r[f] += dD[ip] * p;
                    }
                }
                const float *vj = v + ((size_t)bb * Tk + j) * HD + (size_t)h * d, *pj = pkh + (size_t)j * kf;
                float *dvj = dv ? dv + ((size_t)bb * Tk + j) * HD + (size_t)h * d : NULL;
                for (int f = 0; f < kf; f++) {
                    const float *Rf = R + (size_t)f * d;
                    float s = r[f];
                    S2S_OMP(simd reduction(+ : s))
                    for (int e = 0; e < d; e++) s += Rf[e] * vj[e];
                    gkh[(size_t)j * kf + f] = DPHI(pj[f], elu) * s;
                    if (dvj && pj[f] != 0.0f) {
                        float p = pj[f];
                        S2S_OMP(simd)
                        for (int e = 0; e < d; e++) dvj[e] += p * Rf[e];
                    }
                }
            }
            /* dx += scale * Wh^T g (the rows of this head only) */
            const float *Wh = HEAD_W(W, h, kf, d);
            for (int side = 0; side < 2; side++) {
                float *dx = side ? dk : dq;
                if (!dx) continue;
                int T = side ? Tk : Tq;
                float s = side ? 1.0f : sc;
                const float *g = side ? gkh : gqh;
                for (int t = 0; t < T; t++) {
                    float *dxt = dx + ((size_t)bb * T + t) * HD + (size_t)h * d;
                    if (!Wh) { /* elu+1: the map is elementwise (kf = d) */
                        for (int e = 0; e < d; e++) dxt[e] += s * g[(size_t)t * kf + e];
                        continue;
                    }
                    for (int f = 0; f < kf; f++) {
                        float gs = s * g[(size_t)t * kf + f];
                        if (gs == 0.0f) continue;
                        const float *w = Wh + (size_t)f * d;
                        S2S_OMP(simd)
                        for (int e = 0; e < d; e++) dxt[e] += gs * w[e];
                    }
                }
            }
            free(S);
        }
    /* dW[h, f, :] += sum_{b,t} g[b,h,t,f] * scale x[b,t,h,:];  db[h, f] += sum g */
    if (W && (dW || db)) {
        S2S_OMP(parallel for collapse(2) schedule(static) if (work > PAR_MIN))
        for (int h = 0; h < H; h++)
            for (int f = 0; f < kf; f++) {
                float *dWf = dW ? dW + ((size_t)h * kf + f) * d : NULL;
                float gsum = 0.0f;
                for (int bb = 0; bb < B; bb++)
                    for (int side = 0; side < 2; side++) {
                        int T = side ? Tk : Tq;
                        float s = side ? 1.0f : sc;
                        const float *g = (side ? gk : gq) + ((size_t)bb * H + h) * T * kf;
                        const float *x = side ? k : q;
                        for (int t = 0; t < T; t++) {
                            float gt = g[(size_t)t * kf + f];
                            if (gt == 0.0f) continue;
                            gsum += gt;
                            if (!dWf) continue;
                            const float *xt = x + ((size_t)bb * T + t) * HD + (size_t)h * d;
                            float gs = s * gt;
                            S2S_OMP(simd)
                            for (int e = 0; e < d; e++) dWf[e] += gs * xt[e];
                        }
                    }
                if (db) db[(size_t)h * kf + f] += gsum;
            }
    }
    free(gq); free(gk);
}

void s2s_k_t2r_phi(float *ph, const float *x, const float *W, const float *b, float scale,
                   int B, int H, int d, int kf) {
    size_t work = (size_t)B * H * kf * d;
    S2S_OMP(parallel for collapse(2) schedule(static) if (work > PAR_MIN))
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++)
            fast_phi(ph + ((size_t)bb * H + h) * kf, x + ((size_t)bb * H + h) * d, scale, HEAD_W(W, h, kf, d),
                     HEAD_B(b, h, kf), d, kf);
}

void s2s_k_t2r_phi_act(float *ph, const float *b, float scale, int B, int H, int kf) {
    size_t Hk = (size_t)H * kf;
    for (size_t r = 0; r < (size_t)B; r++) {
        float *p = ph + r * Hk;
        S2S_OMP(simd)
        for (size_t i = 0; i < Hk; i++) p[i] = phi_act(p[i], b[i], scale);
    }
}

void s2s_k_t2r_step_feat(float *out, float *S, float *z, const float *pq, const float *pk,
                         const float *v, int B, int H, int d, int kf) {
    int n = B * H; /* (row, head) pairs: v, out [n, d], pq, pk [n, kf], S [n, kf, d] */
    S2S_OMP(parallel for schedule(static) if ((size_t)n * kf * d > PAR_MIN))
    for (int i = 0; i < n; i++) {
        float *Sh = S + (size_t)i * kf * d, *zh = z + (size_t)i * kf;
        fast_add_read(out + (size_t)i * d, Sh, zh, pq + (size_t)i * kf, pk + (size_t)i * kf, v + (size_t)i * d, d, kf);
    }
}

void s2s_k_t2r_step(float *out, float *S, float *z, const float *q, const float *k,
                    const float *v, const float *W, const float *b, int B, int H, int d,
                    int kf) {
    size_t n = (size_t)B * H * kf;
    float *pq = s2s_xmalloc(2 * (n ? n : 1) * sizeof(float)), *pk = pq + n;
    s2s_k_t2r_phi(pq, q, W, b, S2S_T2R_QSCALE(d), B, H, d, kf);
    s2s_k_t2r_phi(pk, k, W, b, 1.0f, B, H, d, kf);
    s2s_k_t2r_step_feat(out, S, z, pq, pk, v, B, H, d, kf);
    free(pq);
}

void s2s_k_t2r_cross_state(float *S, float *z, const float *k, const float *v,
                           const float *W, const float *b, const int32_t *kv_len, int B, int H,
                           int Tk, int d, int kf) {
    size_t HD = (size_t)H * d;
    size_t work = (size_t)B * H * Tk * kf * d;
    S2S_OMP(parallel for collapse(2) schedule(dynamic) if (work > PAR_MIN))
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *Wh = HEAD_W(W, h, kf, d), *bh = HEAD_B(b, h, kf);
            float *Sh = S + ((size_t)bb * H + h) * kf * d, *zh = z + ((size_t)bb * H + h) * kf;
            memset(Sh, 0, (size_t)kf * d * sizeof(float));
            memset(zh, 0, (size_t)kf * sizeof(float));
            float *pk = s2s_xmalloc((size_t)kf * sizeof(float));
            int L = keys_of(kv_len, bb, Tk);
            for (int j = 0; j < L; j++) {
                size_t o = ((size_t)bb * Tk + j) * HD + (size_t)h * d;
                fast_phi(pk, k + o, 1.0f, Wh, bh, d, kf);
                fast_add(Sh, zh, pk, v + o, d, kf);
            }
            free(pk);
        }
}

void s2s_k_t2r_cross_query_feat(float *out, const float *S, const float *z, const float *pq,
                                int B, int H, int Tq, int d, int kf) {
    size_t work = (size_t)B * H * Tq * kf * d;
    S2S_OMP(parallel for collapse(2) schedule(static) if (work > PAR_MIN))
    for (int bb = 0; bb < B; bb++)
        for (int h = 0; h < H; h++) {
            const float *Sh = S + ((size_t)bb * H + h) * kf * d, *zh = z + ((size_t)bb * H + h) * kf;
            for (int t = 0; t < Tq; t++) {
                size_t i = ((size_t)bb * Tq + t) * H + h; /* (query, head) */
                fast_add_read(out + i * d, (float *)Sh, (float *)zh, pq + i * kf, NULL, NULL, d, kf); /* read only */
            }
        }
}

void s2s_k_t2r_cross_query(float *out, const float *S, const float *z, const float *q,
                           const float *W, const float *b, int B, int H, int Tq, int d,
                           int kf) {
    size_t n = (size_t)B * Tq * H * kf;
    float *pq = s2s_xmalloc((n ? n : 1) * sizeof(float));
    s2s_k_t2r_phi(pq, q, W, b, S2S_T2R_QSCALE(d), B * Tq, H, d, kf);
    s2s_k_t2r_cross_query_feat(out, S, z, pq, B, H, Tq, d, kf);
    free(pq);
}
