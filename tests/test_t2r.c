/* test_t2r.c - T2R linear attention kernels (kernels_t2r.h).
 *
 * (a) the reference backward against central finite differences of the reference
 *     forward, causal and cross (with padding), every element of q, k, v, W, b; W and b
 *     random so that many relu pre-activations are negative (zero features, and queries
 *     whose denominator is clamped), rows re-drawn until no pre-activation lies within
 *     a margin of the relu kink;
 * (b) fast against reference, forward (out and the saved pq, pk, den) and backward from
 *     random prefilled gradients (the += rule), also with NULL gradients;
 * (c) the recurrent form against the parallel one: t2r_step T times from a zero state ==
 *     the causal forward at every position, cross_state + cross_query == the
 *     non-causal forward with kv_len padding;
 * (e) the same (a)-(c) for the fixed elu+1 feature map (W = b = NULL, kf = d);
 * (d) a tiny case by hand (d = 2, kf = 2, T = 3): outputs, saved denominators and the
 *     constant-size state. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels_t2r.h"

static uint64_t g_rng = 0x7251a7e5ull;

static float *randn(size_t n, float scale, float shift) {
    float *a = s2s_xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = shift + scale * s2s_rng_normal(&g_rng);
    return a;
}

static float *copyf(const float *x, size_t n) {
    float *a = s2s_xmalloc((n ? n : 1) * sizeof(float));
    memcpy(a, x, n * sizeof(float));
    return a;
}

typedef struct {
    int B, H, Tq, Tk, d, kf, causal;
    const int32_t *kv_len;
    float *q, *k, *v, *W, *b; /* inputs */
    float *R;                 /* [B, Tq, H*d] loss weights: L = sum(out * R) */
} t2r_case;

static size_t nq(const t2r_case *c) { return (size_t)c->B * c->Tq * c->H * c->d; }
static size_t nk(const t2r_case *c) { return (size_t)c->B * c->Tk * c->H * c->d; }
static size_t nw(const t2r_case *c) { return (size_t)c->H * c->kf * c->d; }
static size_t nb(const t2r_case *c) { return (size_t)c->H * c->kf; }

/* min |pre-activation| over the head slice x [d] of head h (scale s) */
static double min_pre(const t2r_case *c, const float *x, int h, double s) {
    double m = INFINITY;
    for (int f = 0; f < c->kf; f++) {
        double p = c->b[(size_t)h * c->kf + f];
        for (int e = 0; e < c->d; e++) p += (double)c->W[((size_t)h * c->kf + f) * c->d + e] * s * x[e];
        if (fabs(p) < m) m = fabs(p);
    }
    return m;
}

/* re-draw every (row, head) slice of x [B*T, H*d] with a pre-activation within margin */
static void avoid_kinks(const t2r_case *c, float *x, int T, double s, float scale, double margin) {
    for (size_t r = 0; r < (size_t)c->B * T; r++)
        for (int h = 0; h < c->H; h++) {
            float *xs = x + (r * c->H + h) * c->d;
            for (int tries = 0; min_pre(c, xs, h, s) < margin; tries++) {
                cr_assert(tries < 1000, "cannot avoid the relu kinks");
                for (int e = 0; e < c->d; e++) xs[e] = scale * s2s_rng_normal(&g_rng);
            }
        }
}

static void case_new(t2r_case *c, int B, int H, int Tq, int Tk, int d, int kf, int causal,
                     const int32_t *kv_len, double margin) {
    memset(c, 0, sizeof *c);
    c->B = B; c->H = H; c->Tq = Tq; c->Tk = Tk; c->d = d; c->kf = kf; c->causal = causal;
    c->kv_len = kv_len;
    c->W = randn(nw(c), 1.0f / sqrtf((float)d), 0.0f);
    c->b = randn(nb(c), 0.5f, 0.1f); /* some features mostly off, some mostly on */
    c->q = randn(nq(c), 1.5f, 0.0f);
    c->k = randn(nk(c), 1.0f, 0.0f);
    c->v = randn(nk(c), 1.0f, 0.0f);
    c->R = randn(nq(c), 1.0f, 0.0f);
    if (margin > 0) {
        avoid_kinks(c, c->q, Tq, 1.0 / sqrt((double)d), 1.5f, margin);
        avoid_kinks(c, c->k, Tk, 1.0, 1.0f, margin);
    }
}

/* switch a case to the fixed elu+1 map: W = b = NULL, kf = d */
static void case_elu(t2r_case *c) {
    free(c->W); free(c->b);
    c->W = c->b = NULL;
    c->kf = c->d;
}

static void case_free(t2r_case *c) {
    free(c->q); free(c->k); free(c->v); free(c->W); free(c->b); free(c->R);
}

typedef struct { float *out, *pq, *pk, *den; } t2r_saved;

static void saved_new(t2r_saved *s, const t2r_case *c) {
    s->out = s2s_xmalloc((nq(c) + 1) * sizeof(float));
    s->pq = s2s_xmalloc(((size_t)c->B * c->H * c->Tq * c->kf + 1) * sizeof(float));
    s->pk = s2s_xmalloc(((size_t)c->B * c->H * c->Tk * c->kf + 1) * sizeof(float));
    s->den = s2s_xmalloc(((size_t)c->B * c->H * c->Tq + 1) * sizeof(float));
}

static void saved_free(t2r_saved *s) { free(s->out); free(s->pq); free(s->pk); free(s->den); }

static void fwd(int fast, const t2r_case *c, t2r_saved *s) {
    (fast ? s2s_k_t2r_fwd : s2s_kref_t2r_fwd)(s->out, s->pq, s->pk, s->den, c->q, c->k, c->v, c->W, c->b,
                                              c->kv_len, c->causal, c->B, c->H, c->Tq, c->Tk, c->d, c->kf);
}

/* backward with dout = R, from the saved buffers s */
static void bwd(int fast, const t2r_case *c, const t2r_saved *s, float *dq, float *dk, float *dv, float *dW,
                float *db) {
    (fast ? s2s_k_t2r_bwd : s2s_kref_t2r_bwd)(dq, dk, dv, dW, db, c->R, s->out, s->pq, s->pk, s->den, c->q,
                                              c->k, c->v, c->W, c->kv_len, c->causal, c->B, c->H, c->Tq,
                                              c->Tk, c->d, c->kf);
}

/* L = sum(out * R) of the reference forward, in double */
static double loss(const t2r_case *c) {
    t2r_saved s;
    saved_new(&s, c);
    fwd(0, c, &s);
    double L = 0;
    for (size_t i = 0; i < nq(c); i++) L += (double)s.out[i] * c->R[i];
    saved_free(&s);
    return L;
}

/* |got - ref| <= atol + rtol |ref| everywhere; reports the worst element */
static void check_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                        double rtol) {
    size_t worst = 0;
    double wr = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs((double)ref[i]));
        if (!(r <= wr)) { wr = isnan(r) ? INFINITY : r; worst = i; }
    }
    cr_assert(wr <= 1.0, "%s: mismatch at [%zu] of %zu: got %.9g, want %.9g (%.2fx tol)", what, worst, n,
              got[worst], ref[worst], wr);
}

/* ------------------------------------------------------------------------------------
 * (a) finite differences
 * ---------------------------------------------------------------------------------- */

/* elu: the fixed elu+1 map (no W, b; kf = d), C1 so no kink to avoid */
static void fd_case_map(int causal, int Tq, int Tk, const int32_t *kv_len, int elu) {
    t2r_case c;
    case_new(&c, 2, 2, Tq, Tk, 3, 4, causal, kv_len, elu ? 0.0 : 0.03);
    if (elu) case_elu(&c);
    t2r_saved s;
    saved_new(&s, &c);
    fwd(0, &c, &s);
    size_t npq = (size_t)c.B * c.H * Tq * c.kf;
    if (!elu) { /* the case must exercise relu zeros and (ideally) a clamped denominator */
        size_t nzero = 0;
        for (size_t i = 0; i < npq; i++) nzero += s.pq[i] == 0.0f;
        cr_assert(nzero > 0 && nzero < npq, "relu zeros: %zu of %zu", nzero, npq);
    } else { /* both branches of elu+1: features below and above 1 */
        size_t nlow = 0;
        for (size_t i = 0; i < npq; i++) { cr_assert(s.pq[i] > 0.0f); nlow += s.pq[i] < 1.0f; }
        cr_assert(nlow > 0 && nlow < npq, "elu features below 1: %zu of %zu", nlow, npq);
    }
    int na = elu ? 3 : 5; /* elu: no W, b */
    float *g0[5] = {randn(nq(&c), 1, 0), randn(nk(&c), 1, 0), randn(nk(&c), 1, 0),
                    elu ? NULL : randn(nw(&c), 1, 0), elu ? NULL : randn(nb(&c), 1, 0)};
    size_t n[5] = {nq(&c), nk(&c), nk(&c), elu ? 0 : nw(&c), elu ? 0 : nb(&c)};
    float *g[5] = {NULL}, *x[5] = {c.q, c.k, c.v, c.W, c.b};
    const char *name[5] = {"q", "k", "v", "W", "b"};
    for (int a = 0; a < na; a++) g[a] = copyf(g0[a], n[a]);
    bwd(0, &c, &s, g[0], g[1], g[2], g[3], g[4]);
    const float eps = 1e-3f;
    for (int a = 0; a < na; a++)
        for (size_t i = 0; i < n[a]; i++) {
            float old = x[a][i];
            x[a][i] = old + eps;
            double lp = loss(&c);
            x[a][i] = old - eps;
            double lm = loss(&c);
            x[a][i] = old;
            double num = (lp - lm) / (2.0 * eps), ana = (double)g[a][i] - g0[a][i];
            cr_assert(fabs(num - ana) <= 2e-3 + 1e-2 * fabs(num), "%s Tq=%d Tk=%d d/d%s[%zu]: analytic %.6f, numeric %.6f",
                      causal ? "causal" : "cross", Tq, Tk, name[a], i, ana, num);
        }
    for (int a = 0; a < 5; a++) { free(g[a]); free(g0[a]); }
    saved_free(&s);
    case_free(&c);
}

static void fd_case(int causal, int Tq, int Tk, const int32_t *kv_len) { fd_case_map(causal, Tq, Tk, kv_len, 0); }

Test(t2r, elu_backward_matches_finite_differences) {
    static const int32_t len[2] = {5, 3};
    fd_case_map(1, 5, 5, NULL, 1);
    fd_case_map(1, 5, 5, len, 1);
    static const int32_t len2[2] = {6, 2};
    fd_case_map(0, 4, 6, len2, 1);
}

Test(t2r, causal_backward_matches_finite_differences) {
    fd_case(1, 5, 5, NULL);
    static const int32_t len[2] = {5, 3}; /* causal with padding too */
    fd_case(1, 5, 5, len);
}

Test(t2r, cross_backward_matches_finite_differences) {
    static const int32_t len[2] = {6, 3};
    fd_case(0, 4, 6, len);
    fd_case(0, 3, 4, NULL);
}

/* A denominator clamped at eps passes no gradient: one query whose features are all
 * zero (den = 0, out = 0) next to a normal one; FD agrees with the analytic zero. */
Test(t2r, clamped_denominator_has_no_gradient) {
    t2r_case c;
    case_new(&c, 1, 1, 2, 3, 2, 2, 0, NULL, 0.0);
    c.W[0] = 1; c.W[1] = 0; c.W[2] = 0; c.W[3] = 1; c.b[0] = 0; c.b[1] = 0;
    c.q[0] = -1; c.q[1] = -2; /* phi(q_0) = 0 */
    c.q[2] = 1; c.q[3] = 0.5f;
    for (int j = 0; j < 3; j++) { c.k[2 * j] = 0.5f + j; c.k[2 * j + 1] = 1.0f; }
    t2r_saved s;
    saved_new(&s, &c);
    fwd(0, &c, &s);
    cr_assert_eq(s.den[0], 0.0f);
    cr_assert_eq(s.out[0], 0.0f);
    cr_assert_eq(s.out[1], 0.0f);
    float dq[4] = {0}, dk[6] = {0}, dv[6] = {0};
    bwd(0, &c, &s, dq, dk, dv, NULL, NULL);
    cr_assert_eq(dq[0], 0.0f);
    cr_assert_eq(dq[1], 0.0f);
    cr_assert(fabsf(dq[2]) + fabsf(dq[3]) > 0.0f);
    float dq1[4] = {0};
    bwd(1, &c, &s, dq1, NULL, NULL, NULL, NULL);
    cr_assert_eq(dq1[0], 0.0f);
    cr_assert_eq(dq1[1], 0.0f);
    saved_free(&s);
    case_free(&c);
}

/* ------------------------------------------------------------------------------------
 * (b) fast vs reference
 * ---------------------------------------------------------------------------------- */

/* kf = 0: the elu+1 map (W = b = NULL, kf = d) */
static void fast_vs_ref(int B, int H, int Tq, int Tk, int d, int kf, int causal, const int32_t *kv_len) {
    t2r_case c;
    int elu = kf == 0;
    case_new(&c, B, H, Tq, Tk, d, elu ? d : kf, causal, kv_len, 0.0);
    if (elu) case_elu(&c);
    kf = c.kf;
    char what[128];
    snprintf(what, sizeof what, "B=%d H=%d Tq=%d Tk=%d d=%d kf=%d %s%s%s", B, H, Tq, Tk, d, kf,
             causal ? "causal" : "full", kv_len ? " padded" : "", elu ? " elu" : "");
    t2r_saved s[2];
    for (int f = 0; f < 2; f++) { saved_new(&s[f], &c); fwd(f, &c, &s[f]); }
    check_close(what, s[1].out, s[0].out, nq(&c), 1e-5, 1e-4);
    check_close(what, s[1].pq, s[0].pq, (size_t)B * H * Tq * kf, 1e-6, 1e-5);
    check_close(what, s[1].pk, s[0].pk, (size_t)B * H * Tk * kf, 1e-6, 1e-5);
    check_close(what, s[1].den, s[0].den, (size_t)B * H * Tq, 1e-6, 1e-4);
    size_t n[5] = {nq(&c), nk(&c), nk(&c), nw(&c), nb(&c)}; /* elu: dW, db unused (left as given) */
    const char *name[5] = {"dq", "dk", "dv", "dW", "db"};
    float *g0[5], *g[2][5];
    for (int a = 0; a < 5; a++) {
        g0[a] = randn(n[a], 1, 0);
        for (int f = 0; f < 2; f++) g[f][a] = copyf(g0[a], n[a]);
    }
    for (int f = 0; f < 2; f++) bwd(f, &c, &s[0], g[f][0], g[f][1], g[f][2], g[f][3], g[f][4]);
    for (int a = 0; a < 5; a++) {
        char w2[160];
        snprintf(w2, sizeof w2, "%s %s", what, name[a]);
        check_close(w2, g[1][a], g[0][a], n[a], 1e-4, 1e-3);
    }
    /* NULL gradients: two complementary subsets, both implementations */
    for (int f = 0; f < 2; f++)
        for (int sub = 0; sub < 2; sub++) {
            float *h[5];
            for (int a = 0; a < 5; a++) h[a] = (a % 2 == sub) ? copyf(g0[a], n[a]) : NULL;
            bwd(f, &c, &s[0], h[0], h[1], h[2], h[3], h[4]);
            for (int a = 0; a < 5; a++) {
                if (!h[a]) continue;
                char w2[160];
                snprintf(w2, sizeof w2, "%s %s %s (others NULL)", what, f ? "fast" : "ref", name[a]);
                check_close(w2, h[a], g[0][a], n[a], 1e-4, 1e-3);
                free(h[a]);
            }
        }
    for (int a = 0; a < 5; a++) { free(g0[a]); free(g[0][a]); free(g[1][a]); }
    saved_free(&s[0]); saved_free(&s[1]);
    case_free(&c);
}

Test(t2r, fast_matches_reference) {
    static const int32_t len3[3] = {7, 2, 0}; /* a row with no keys at all */
    static const int32_t len5[5] = {9, 4, 1, 9, 6};
    fast_vs_ref(1, 1, 1, 1, 1, 1, 1, NULL);
    fast_vs_ref(2, 2, 6, 6, 3, 5, 1, NULL);
    fast_vs_ref(3, 2, 7, 7, 5, 4, 1, len3);  /* causal with padding */
    fast_vs_ref(2, 3, 4, 7, 4, 6, 1, NULL);  /* causal, Tq < Tk (offset as attention_fwd) */
    fast_vs_ref(3, 2, 5, 7, 5, 4, 0, len3);  /* cross with padding */
    fast_vs_ref(5, 4, 11, 9, 16, 32, 0, len5);
    fast_vs_ref(4, 8, 33, 33, 16, 32, 1, NULL); /* the OpenMP paths */
}

Test(t2r, elu_fast_matches_reference) {
    static const int32_t len3[3] = {7, 2, 0};
    fast_vs_ref(1, 1, 1, 1, 1, 0, 1, NULL);
    fast_vs_ref(2, 2, 6, 6, 3, 0, 1, NULL);
    fast_vs_ref(3, 2, 7, 7, 5, 0, 1, len3);
    fast_vs_ref(3, 2, 5, 7, 5, 0, 0, len3);
    fast_vs_ref(4, 4, 33, 33, 64, 0, 1, NULL); /* d = 64, the OpenMP paths */
}

/* ------------------------------------------------------------------------------------
 * (c) the recurrent form == the parallel form
 * ---------------------------------------------------------------------------------- */

/* d = 64: the fast kernels' one-pass update and read (fast_add_read) */
static void step_vs_parallel(int fast_step, int elu, int d) {
    int B = 3, H = 2, T = 9, kf = elu ? d : 6;
    t2r_case c;
    case_new(&c, B, H, T, T, d, kf, 1, NULL, 0.0);
    if (elu) case_elu(&c);
    t2r_saved s;
    saved_new(&s, &c);
    fwd(0, &c, &s);
    size_t HD = (size_t)H * d;
    float *S = s2s_xcalloc((size_t)B * H * kf * d, sizeof(float)), *z = s2s_xcalloc((size_t)B * H * kf, sizeof(float));
    float *qt = s2s_xmalloc(B * HD * sizeof(float)), *kt = s2s_xmalloc(B * HD * sizeof(float));
    float *vt = s2s_xmalloc(B * HD * sizeof(float)), *ot = s2s_xmalloc(B * HD * sizeof(float));
    float *want = s2s_xmalloc(B * HD * sizeof(float));
    for (int t = 0; t < T; t++) {
        for (int b = 0; b < B; b++) {
            size_t src = ((size_t)b * T + t) * HD;
            memcpy(qt + b * HD, c.q + src, HD * sizeof(float));
            memcpy(kt + b * HD, c.k + src, HD * sizeof(float));
            memcpy(vt + b * HD, c.v + src, HD * sizeof(float));
            memcpy(want + b * HD, s.out + src, HD * sizeof(float));
        }
        (fast_step ? s2s_k_t2r_step : s2s_kref_t2r_step)(ot, S, z, qt, kt, vt, c.W, c.b, B, H, d, kf);
        char what[64];
        snprintf(what, sizeof what, "%s step t=%d", fast_step ? "fast" : "ref", t);
        check_close(what, ot, want, B * HD, 1e-6, 1e-5);
    }
    free(S); free(z); free(qt); free(kt); free(vt); free(ot); free(want);
    saved_free(&s);
    case_free(&c);
}

Test(t2r, recurrent_steps_equal_causal_parallel_form) {
    step_vs_parallel(0, 0, 8);
    step_vs_parallel(1, 0, 8);
    step_vs_parallel(1, 0, 64);
}

Test(t2r, elu_recurrent_steps_equal_causal_parallel_form) {
    step_vs_parallel(0, 1, 8);
    step_vs_parallel(1, 1, 8);
    step_vs_parallel(1, 1, 64);
}

static void cross_vs_parallel(int elu, int d) {
    static const int32_t len[3] = {7, 3, 0};
    int B = 3, H = 2, Tq = 5, Tk = 7, kf = elu ? d : 6;
    t2r_case c;
    case_new(&c, B, H, Tq, Tk, d, kf, 0, len, 0.0);
    if (elu) case_elu(&c);
    t2r_saved s;
    saved_new(&s, &c);
    fwd(0, &c, &s);
    float *S = s2s_xmalloc((size_t)B * H * kf * d * sizeof(float)), *z = s2s_xmalloc((size_t)B * H * kf * sizeof(float));
    float *o = s2s_xmalloc(nq(&c) * sizeof(float));
    for (int f = 0; f < 2; f++) {
        /* garbage in the state first: cross_state overwrites */
        for (size_t i = 0; i < (size_t)B * H * kf * d; i++) S[i] = 7.0f;
        for (size_t i = 0; i < (size_t)B * H * kf; i++) z[i] = 7.0f;
        (f ? s2s_k_t2r_cross_state : s2s_kref_t2r_cross_state)(S, z, c.k, c.v, c.W, c.b, len, B, H, Tk, d, kf);
        (f ? s2s_k_t2r_cross_query : s2s_kref_t2r_cross_query)(o, S, z, c.q, c.W, c.b, B, H, Tq, d, kf);
        check_close(f ? "fast cross" : "ref cross", o, s.out, nq(&c), 1e-6, 1e-5);
    }
    /* the row without keys attends to nothing */
    for (size_t i = 2 * (size_t)Tq * H * d; i < nq(&c); i++) cr_assert_eq(o[i], 0.0f);
    free(S); free(z); free(o);
    saved_free(&s);
    case_free(&c);
}

Test(t2r, cross_state_equals_parallel_form) { cross_vs_parallel(0, 8); cross_vs_parallel(0, 64); }
Test(t2r, elu_cross_state_equals_parallel_form) { cross_vs_parallel(1, 8); cross_vs_parallel(1, 64); }

/* The decoding kernels from features (t2r_phi, t2r_phi_act, t2r_step_feat,
 * t2r_cross_query_feat): fast against reference, d = 8 and 64 (the one-pass path);
 * phi_act of the dot products W_h x_h == phi. */
static void feat_vs_ref(int d) {
    int B = 3, H = 2, kf = 32;
    t2r_case c;
    case_new(&c, B, H, 1, 1, d, kf, 1, NULL, 0.0);
    size_t n = (size_t)B * H * kf, nS = n * d, HD = (size_t)H * d;
    float *pq[2], *pk[2], *S[2], *z[2], *o[2];
    for (int f = 0; f < 2; f++) {
        pq[f] = s2s_xmalloc(n * sizeof(float)); pk[f] = s2s_xmalloc(n * sizeof(float));
        S[f] = randn(nS, 1.0f, 0.0f); z[f] = randn(n, 1.0f, 3.0f); o[f] = s2s_xmalloc(B * HD * sizeof(float));
        if (f) { memcpy(S[1], S[0], nS * sizeof(float)); memcpy(z[1], z[0], n * sizeof(float)); }
        (f ? s2s_k_t2r_phi : s2s_kref_t2r_phi)(pq[f], c.q, c.W, c.b, 0.5f, B, H, d, kf);
        (f ? s2s_k_t2r_phi : s2s_kref_t2r_phi)(pk[f], c.k, c.W, c.b, 1.0f, B, H, d, kf);
    }
    check_close("phi", pq[1], pq[0], n, 1e-6, 1e-5);
    float *pre = s2s_xcalloc(n, sizeof(float)); /* W_h q_h, then phi_act */
    for (size_t i = 0; i < n; i++)
        for (int e = 0; e < d; e++) pre[i] += c.W[(i % ((size_t)H * kf)) * d + e] * c.q[(i / kf) * d + e];
    s2s_k_t2r_phi_act(pre, c.b, 0.5f, B, H, kf);
    check_close("phi_act", pre, pq[0], n, 1e-5, 1e-5);
    for (int f = 0; f < 2; f++)
        (f ? s2s_k_t2r_step_feat : s2s_kref_t2r_step_feat)(o[f], S[f], z[f], pq[0], pk[0], c.v, B, H, d, kf);
    check_close("step_feat out", o[1], o[0], B * HD, 1e-6, 1e-5);
    check_close("step_feat S", S[1], S[0], nS, 1e-6, 1e-6);
    check_close("step_feat z", z[1], z[0], n, 1e-6, 1e-6);
    for (int f = 0; f < 2; f++)
        (f ? s2s_k_t2r_cross_query_feat : s2s_kref_t2r_cross_query_feat)(o[f], S[0], z[0], pq[0], B, H, 1, d, kf);
    check_close("cross_query_feat", o[1], o[0], B * HD, 1e-6, 1e-5);
    for (int f = 0; f < 2; f++) { free(pq[f]); free(pk[f]); free(S[f]); free(z[f]); free(o[f]); }
    free(pre);
    case_free(&c);
}

Test(t2r, feature_kernels_fast_match_reference) { feat_vs_ref(8); feat_vs_ref(64); }

/* ------------------------------------------------------------------------------------
 * (d) by hand
 * ---------------------------------------------------------------------------------- */

/* d = kf = 2, W = I, b = 0: phi(k) = relu(k), phi(q) = relu(q / sqrt 2).
 *   k = (1,0), (0,2), (-1,1)  -> phi(k) = (1,0), (0,2), (0,1)   (relu zero at step 3)
 *   v = (1,2), (3,-1), (0,4)
 *   S_1 = [[1,2],[0,0]]  z_1 = (1,0)   q_1 = (1,1): out = (1,2),      den = 1/sqrt2
 *   S_2 = [[1,2],[6,-2]] z_2 = (1,2)   q_2 = (0,1): out = (6,-2)/2 = (3,-1),  den = 2/sqrt2
 *   S_3 = [[1,2],[6,2]]  z_3 = (1,3)   q_3 = (1,1): out = (7,4)/4 = (1.75,1), den = 4/sqrt2
 * The state stays [kf, d] + [kf] = 6 floats whatever T. */
Test(t2r, tiny_case_by_hand) {
    const float W[4] = {1, 0, 0, 1}, b[2] = {0, 0};
    const float q[6] = {1, 1, 0, 1, 1, 1}, k[6] = {1, 0, 0, 2, -1, 1}, v[6] = {1, 2, 3, -1, 0, 4};
    const float want[6] = {1, 2, 3, -1, 1.75f, 1};
    const float wantS[4] = {1, 2, 6, 2}, wantz[2] = {1, 3};
    const double r2 = sqrt(2.0), wantden[3] = {1 / r2, 2 / r2, 4 / r2};
    for (int f = 0; f < 2; f++) {
        float out[6], pq[6], pk[6], den[3];
        (f ? s2s_k_t2r_fwd : s2s_kref_t2r_fwd)(out, pq, pk, den, q, k, v, W, b, NULL, 1, 1, 1, 3, 3, 2, 2);
        for (int i = 0; i < 6; i++) cr_assert_float_eq(out[i], want[i], 1e-6, "fwd %d out[%d] = %g", f, i, out[i]);
        for (int i = 0; i < 3; i++) cr_assert_float_eq(den[i], wantden[i], 1e-6);
        cr_assert_eq(pk[4], 0.0f);
        float S[4] = {0}, z[2] = {0}, o[2];
        for (int t = 0; t < 3; t++) {
            (f ? s2s_k_t2r_step : s2s_kref_t2r_step)(o, S, z, q + 2 * t, k + 2 * t, v + 2 * t, W, b, 1, 1, 2, 2);
            cr_assert_float_eq(o[0], want[2 * t], 1e-6, "step %d t=%d", f, t);
            cr_assert_float_eq(o[1], want[2 * t + 1], 1e-6, "step %d t=%d", f, t);
        }
        for (int i = 0; i < 4; i++) cr_assert_float_eq(S[i], wantS[i], 1e-6);
        for (int i = 0; i < 2; i++) cr_assert_float_eq(z[i], wantz[i], 1e-6);
        /* a query with no active feature: den 0 -> clamped -> out 0 */
        const float qn[2] = {-1, -1};
        (f ? s2s_k_t2r_cross_query : s2s_kref_t2r_cross_query)(o, S, z, qn, W, b, 1, 1, 1, 2, 2);
        cr_assert(o[0] == 0.0f && o[1] == 0.0f);
    }
}
