/* test_cuda_t2r.c - the CUDA kernels of T2R linear attention (kernels_t2r_cuda.h) and
 * T2R training on the GPU, against the CPU.
 *
 *   - s2s_kcu_t2r_fwd / s2s_kcu_t2r_bwd against the CPU kernels (the double reference
 *     s2s_kref_* for small cases, the fast s2s_k_* for the realistic sizes where the
 *     reference is too slow): causal self-attention (Tq = Tk, and Tq < Tk), cross
 *     attention with padded source lengths (including a row without keys), k = 16, 32,
 *     64 at H = 4, Dh = 64 (the G2P model), T up to 256 (the Bible), a feature size
 *     whose state does not fit in shared memory (the global-memory path), awkward
 *     sizes (1, odd), the learned relu map (with biases that switch features off and
 *     clamp denominators) and the fixed elu+1 map. Every saved buffer (pq, pk, den) is
 *     compared; backward kernels start from random gradient buffers (the += rule) and
 *     run again with complementary NULL subsets. Tolerance |got - ref| <= tol (|ref| +
 *     max |ref|) with tol 1e-5 for the forward and 1e-4 for gradients summed over many
 *     rows in a different order (dW, db).
 *   - the graph op on a CUDA graph == on a CPU graph (s2s_t2r_attention, both maps);
 *   - a whole T2R model's loss and every gradient, CUDA vs CPU (relu and elu maps, with
 *     and without dropout);
 *   - s2s_train of a T2R model with cuda = 1 logs the CPU run's losses (dev decoding
 *     falls back to the CPU, from the current GPU weights): to 2e-3 with the elu map,
 *     3e-2 with the relu map (see train_and_compare);
 *   - every kernel call is deterministic: a second forward and backward on the GPU
 *     give the same bits.
 * Without a GPU every test skips; a build without CUDA compiles to skipping tests. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "graph.h"
#include "kernels_cuda.h"
#include "kernels_t2r.h"
#include "kernels_t2r_cuda.h"
#include "model.h"
#include "optim.h"
#include "test_util.h"
#include "train.h"

#define NEED_GPU() \
    do { if (!s2s_cuda_available()) cr_skip_test("no CUDA device"); } while (0)

#ifndef S2S_CUDA

Test(cuda_t2r, skipped_without_cuda) {
    cr_assert(s2s_cuda_available() == 0, "a build without CUDA reports a device");
    cr_skip_test("built without CUDA (CUDA=0)");
}

#else

static uint64_t g_rng = 0x7c0da7e5ull;

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

static float *up(const float *h, size_t n) {
    float *d = s2s_cuda_malloc((n ? n : 1) * sizeof(float));
    if (n) s2s_cuda_upload(d, h, n * sizeof(float));
    return d;
}

static float *down(const float *d, size_t n) {
    float *h = s2s_xmalloc((n ? n : 1) * sizeof(float));
    if (n) s2s_cuda_download(h, d, n * sizeof(float));
    return h;
}

/* |got - ref| <= tol (|ref| + max |ref|) everywhere; reports the worst element */
static void check_close(const char *what, const float *got, const float *ref, size_t n, double tol) {
    double mx = 0.0;
    for (size_t i = 0; i < n; i++) mx = fmax(mx, fabs((double)ref[i]));
    size_t worst = 0;
    double wr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == ref[i]) continue;
        double r = fabs((double)got[i] - ref[i]) / (tol * (fabs((double)ref[i]) + mx) + 1e-30);
        if (!(r <= wr)) { wr = isnan(r) ? INFINITY : r; worst = i; }
    }
    cr_assert(wr <= 1.0, "%s: GPU vs CPU mismatch at [%zu] of %zu: got %.9g want %.9g (max |ref| %.3g, %.2fx tol)",
              what, worst, n, got[worst], ref[worst], mx, wr);
}

static void check_dev(const char *what, const float *dev, const float *ref, size_t n, double tol) {
    float *got = down(dev, n);
    check_close(what, got, ref, n, tol);
    free(got);
}

/* ------------------------------------------------------------------------------------
 * kernels
 * ---------------------------------------------------------------------------------- */

/* kf = 0: the elu+1 map (W = b = NULL, kf = d). use_ref: compare with s2s_kref_*
 * (double sums) rather than s2s_k_* (fast). */
static void kernel_case(int B, int H, int Tq, int Tk, int d, int kf, int causal, const int32_t *kv_len,
                        int use_ref) {
    int elu = kf == 0;
    if (elu) kf = d;
    size_t nq = (size_t)B * Tq * H * d, nk = (size_t)B * Tk * H * d, nw = (size_t)H * kf * d, nb = (size_t)H * kf;
    size_t npq = (size_t)B * H * Tq * kf, npk = (size_t)B * H * Tk * kf, nden = (size_t)B * H * Tq;
    char what[160];
    snprintf(what, sizeof what, "B=%d H=%d Tq=%d Tk=%d d=%d kf=%d %s%s %s", B, H, Tq, Tk, d, kf,
             causal ? "causal" : "full", kv_len ? " padded" : "", elu ? "elu" : "relu");
    float *q = randn(nq, 1.5f, 0.0f), *k = randn(nk, 1.0f, 0.0f), *v = randn(nk, 1.0f, 0.0f);
    float *W = elu ? NULL : randn(nw, 1.0f / sqrtf((float)d), 0.0f);
    float *b = elu ? NULL : randn(nb, 0.5f, 0.1f); /* some features mostly off: zeros, clamps */
    float *dout = randn(nq, 1.0f, 0.0f);
    /* CPU */
    void (*cfwd)(float *, float *, float *, float *, const float *, const float *, const float *, const float *,
                 const float *, const int32_t *, int, int, int, int, int, int, int) =
        use_ref ? s2s_kref_t2r_fwd : s2s_k_t2r_fwd;
    void (*cbwd)(float *, float *, float *, float *, float *, const float *, const float *, const float *,
                 const float *, const float *, const float *, const float *, const float *, const float *,
                 const int32_t *, int, int, int, int, int, int, int) = use_ref ? s2s_kref_t2r_bwd : s2s_k_t2r_bwd;
    float *out = s2s_xmalloc((nq + 1) * sizeof(float)), *pq = s2s_xmalloc((npq + 1) * sizeof(float));
    float *pk = s2s_xmalloc((npk + 1) * sizeof(float)), *den = s2s_xmalloc((nden + 1) * sizeof(float));
    cfwd(out, pq, pk, den, q, k, v, W, b, kv_len, causal, B, H, Tq, Tk, d, kf);
    /* GPU (outputs prefilled with garbage: the forward must overwrite them) */
    float *gq = up(q, nq), *gk = up(k, nk), *gv = up(v, nk), *gW = W ? up(W, nw) : NULL, *gb = b ? up(b, nb) : NULL;
    float *junk = randn(npq > nq ? (npk > npq ? npk : npq) : (npk > nq ? npk : nq), 3.0f, 0.0f);
    float *gout = up(junk, nq), *gpq = up(junk, npq), *gpk = up(junk, npk), *gden = up(junk, nden);
    int32_t *glen = NULL;
    if (kv_len) {
        glen = s2s_cuda_malloc((size_t)B * sizeof(int32_t));
        s2s_cuda_upload(glen, kv_len, (size_t)B * sizeof(int32_t));
    }
    s2s_kcu_t2r_fwd(gout, gpq, gpk, gden, gq, gk, gv, gW, gb, glen, causal, B, H, Tq, Tk, d, kf);
    char w2[256];
    snprintf(w2, sizeof w2, "%s out", what);   check_dev(w2, gout, out, nq, 1e-5);
    snprintf(w2, sizeof w2, "%s pq", what);    check_dev(w2, gpq, pq, npq, 1e-5);
    snprintf(w2, sizeof w2, "%s pk", what);    check_dev(w2, gpk, pk, npk, 1e-5);
    snprintf(w2, sizeof w2, "%s den", what);   check_dev(w2, gden, den, nden, 1e-5);
    /* backward: both sides from the CPU's saved buffers, prefilled gradients (+=) */
    size_t n[5] = {nq, nk, nk, nw, nb};
    const char *name[5] = {"dq", "dk", "dv", "dW", "db"};
    float *g0[5], *cg[5];
    for (int a = 0; a < 5; a++) { g0[a] = randn(n[a], 1.0f, 0.0f); cg[a] = copyf(g0[a], n[a]); }
    cbwd(cg[0], cg[1], cg[2], elu ? NULL : cg[3], elu ? NULL : cg[4], dout, out, pq, pk, den, q, k, v, W, kv_len,
         causal, B, H, Tq, Tk, d, kf);
    float *gdout = up(dout, nq), *sout = up(out, nq), *spq = up(pq, npq), *spk = up(pk, npk), *sden = up(den, nden);
    for (int sub = -1; sub < 2; sub++) { /* -1: all gradients; 0, 1: complementary halves, the rest NULL */
        float *dg[5];
        for (int a = 0; a < 5; a++) dg[a] = sub < 0 || a % 2 == sub ? up(g0[a], n[a]) : NULL;
        s2s_kcu_t2r_bwd(dg[0], dg[1], dg[2], dg[3], dg[4], gdout, sout, spq, spk, sden, gq, gk, gv, gW, glen, causal,
                        B, H, Tq, Tk, d, kf);
        for (int a = 0; a < 5; a++) {
            if (!dg[a]) continue;
            snprintf(w2, sizeof w2, "%s %s%s", what, name[a], sub < 0 ? "" : " (others NULL)");
            /* elu: dW, db untouched (cg = g0 there) */
            check_dev(w2, dg[a], cg[a], n[a], a >= 3 ? 1e-4 : 2e-5);
            s2s_cuda_free(dg[a]);
        }
    }
    /* determinism (no races): the GPU forward and backward again, bit for bit */
    {
        float *o2 = up(junk, nq), *pq2 = up(junk, npq), *pk2 = up(junk, npk), *den2 = up(junk, nden);
        s2s_kcu_t2r_fwd(o2, pq2, pk2, den2, gq, gk, gv, gW, gb, glen, causal, B, H, Tq, Tk, d, kf);
        float *a1 = down(gout, nq), *a2 = down(o2, nq), *c1 = down(gden, nden), *c2 = down(den2, nden);
        cr_assert(memcmp(a1, a2, nq * sizeof(float)) == 0 && memcmp(c1, c2, nden * sizeof(float)) == 0,
                  "%s: the GPU forward is not deterministic", what);
        free(a1); free(a2); free(c1); free(c2);
        float *r1[5], *r2[5];
        for (int rep = 0; rep < 2; rep++) {
            float *dg[5];
            for (int a = 0; a < 5; a++) dg[a] = up(g0[a], n[a]);
            s2s_kcu_t2r_bwd(dg[0], dg[1], dg[2], dg[3], dg[4], gdout, sout, spq, spk, sden, gq, gk, gv, gW, glen,
                            causal, B, H, Tq, Tk, d, kf);
            for (int a = 0; a < 5; a++) { (rep ? r2 : r1)[a] = down(dg[a], n[a]); s2s_cuda_free(dg[a]); }
        }
        for (int a = 0; a < 5; a++) {
            cr_assert(memcmp(r1[a], r2[a], n[a] * sizeof(float)) == 0, "%s %s: the GPU backward is not deterministic",
                      what, name[a]);
            free(r1[a]); free(r2[a]);
        }
        s2s_cuda_free(o2); s2s_cuda_free(pq2); s2s_cuda_free(pk2); s2s_cuda_free(den2);
    }
    s2s_cuda_free(gdout); s2s_cuda_free(sout); s2s_cuda_free(spq); s2s_cuda_free(spk); s2s_cuda_free(sden);
    for (int a = 0; a < 5; a++) { free(g0[a]); free(cg[a]); }
    s2s_cuda_free(gq); s2s_cuda_free(gk); s2s_cuda_free(gv);
    if (gW) s2s_cuda_free(gW);
    if (gb) s2s_cuda_free(gb);
    s2s_cuda_free(gout); s2s_cuda_free(gpq); s2s_cuda_free(gpk); s2s_cuda_free(gden);
    if (glen) s2s_cuda_free(glen);
    free(q); free(k); free(v); free(W); free(b); free(dout); free(out); free(pq); free(pk); free(den); free(junk);
}

Test(cuda_t2r, small_cases_match_reference) {
    NEED_GPU();
    static const int32_t len3[3] = {7, 2, 0}; /* a row with no keys at all */
    static const int32_t len2[2] = {6, 3};
    for (int elu = 0; elu < 2; elu++) {
        kernel_case(1, 1, 1, 1, 1, elu ? 0 : 1, 1, NULL, 1);
        kernel_case(2, 2, 6, 6, 3, elu ? 0 : 5, 1, NULL, 1);
        kernel_case(3, 2, 7, 7, 5, elu ? 0 : 4, 1, len3, 1);  /* causal with padding */
        kernel_case(2, 3, 4, 7, 4, elu ? 0 : 6, 1, NULL, 1);  /* causal, Tq < Tk */
        kernel_case(3, 2, 5, 7, 5, elu ? 0 : 4, 0, len3, 1);  /* cross with padding */
        kernel_case(2, 2, 9, 6, 8, elu ? 0 : 3, 0, len2, 1);  /* cross, Tq > Tk */
        kernel_case(2, 4, 17, 17, 64, elu ? 0 : 16, 1, NULL, 1);
    }
}

/* The G2P model's sizes: H = 4, Dh = 64, k = 16, 32, 64, T up to 64, B*T ~ 2k tokens. */
Test(cuda_t2r, g2p_sizes_self_and_cross, .timeout = 300) {
    NEED_GPU();
    int32_t len[32];
    for (int i = 0; i < 32; i++) len[i] = 1 + (int)((i * 37) % 48); /* padded sources, Ts = 48 */
    static const int ks[3] = {16, 32, 64};
    for (int i = 0; i < 3; i++) {
        kernel_case(32, 4, 64, 64, 64, ks[i], 1, NULL, 0); /* decoder self-attention */
        kernel_case(32, 4, 64, 48, 64, ks[i], 0, len, 0);  /* cross-attention */
    }
    kernel_case(32, 4, 64, 64, 64, 0, 1, NULL, 0); /* elu: k = Dh = 64 */
    kernel_case(32, 4, 64, 48, 64, 0, 0, len, 0);
}

/* Bible-length targets (T = 256), and a feature size whose [kf, Dh+1] state exceeds
 * 48 KiB of shared memory (the global-memory state path). */
Test(cuda_t2r, long_sequences_and_global_state, .timeout = 300) {
    NEED_GPU();
    static const int32_t len4[4] = {256, 200, 17, 1};
    kernel_case(4, 4, 256, 256, 64, 32, 1, NULL, 0);
    kernel_case(4, 4, 256, 256, 64, 32, 0, len4, 0);
    kernel_case(3, 2, 40, 40, 64, 256, 1, NULL, 0); /* 256 * 65 floats = 66 KB */
    kernel_case(3, 2, 40, 40, 64, 256, 0, len4, 0);
}

/* ------------------------------------------------------------------------------------
 * graph op and whole model
 * ---------------------------------------------------------------------------------- */

/* a parameter holding host values h[n], plus device copies (value, zeroed gradient) */
static s2s_tensor *param(const float *h, int ndim, const int *shape) {
    s2s_tensor *t = s2s_param_new(ndim, shape);
    memcpy(t->data, h, t->n * sizeof(float));
    t->dev_data = up(h, t->n);
    t->dev_grad = s2s_cuda_malloc(t->n * sizeof(float));
    s2s_cuda_memset0(t->dev_grad, t->n * sizeof(float));
    return t;
}

static void param_free(s2s_tensor *t) {
    if (!t) return;
    s2s_cuda_free(t->dev_data);
    s2s_cuda_free(t->dev_grad);
    t->dev_data = t->dev_grad = NULL;
    s2s_param_free(t);
}

/* s2s_t2r_attention on a CUDA graph == on a CPU graph: output and every input gradient
 * of L = sum(y * r) */
static void graph_case(int elu, int causal) {
    int B = 3, T = 7, Tk = causal ? 7 : 5, H = 2, d = 8, kf = elu ? d : 6, D = H * d;
    static const int32_t len[3] = {5, 2, 4};
    float *hq = randn((size_t)B * T * D, 1, 0), *hk = randn((size_t)B * Tk * D, 1, 0), *hv = randn((size_t)B * Tk * D, 1, 0);
    float *hW = randn((size_t)H * kf * d, 0.4f, 0), *hb = randn((size_t)H * kf, 0.5f, 0.1f), *hr = randn((size_t)B * T * D, 1, 0);
    s2s_tensor *q = param(hq, 3, (int[]){B, T, D}), *k = param(hk, 3, (int[]){B, Tk, D}), *v = param(hv, 3, (int[]){B, Tk, D});
    s2s_tensor *W = elu ? NULL : param(hW, 2, (int[]){H * kf, d}), *b = elu ? NULL : param(hb, 1, (int[]){H * kf});
    s2s_tensor *ps[5] = {q, k, v, W, b};
    float *y_cpu = NULL;
    for (int dev = 0; dev < 2; dev++) {
        char err[256];
        s2s_graph *g = dev ? s2s_graph_new_cuda(err, sizeof err) : s2s_graph_new();
        cr_assert_not_null(g, "%s", err);
        s2s_tensor *r = s2s_tensor_from_host(g, hr, 3, (int[]){B, T, D});
        s2s_tensor *y = s2s_t2r_attention(g, q, k, v, W, b, causal ? NULL : len, causal, H);
        s2s_graph_backward(g, s2s_sum(g, s2s_mul(g, y, r)));
        float *yh = s2s_xmalloc(y->n * sizeof(float));
        s2s_tensor_read(g, yh, y);
        char w[96];
        snprintf(w, sizeof w, "graph %s %s", elu ? "elu" : "relu", causal ? "causal" : "cross");
        if (!dev) y_cpu = yh;
        else { check_close(w, yh, y_cpu, y->n, 1e-5); free(yh); }
        if (dev)
            for (int i = 0; i < 5; i++) {
                if (!ps[i]) continue;
                char w2[128];
                snprintf(w2, sizeof w2, "%s grad of input %d", w, i);
                check_dev(w2, ps[i]->dev_grad, ps[i]->grad, ps[i]->n, 2e-5);
            }
        s2s_graph_free(g);
    }
    free(y_cpu);
    for (int i = 0; i < 5; i++) param_free(ps[i]);
    free(hq); free(hk); free(hv); free(hW); free(hb); free(hr);
}

Test(cuda_t2r, graph_op_matches_cpu_graph) {
    NEED_GPU();
    for (int elu = 0; elu < 2; elu++)
        for (int causal = 0; causal < 2; causal++) graph_case(elu, causal);
}

/* A fixed batch of the reverse task (as test_cuda_train.c). */
typedef struct { int B, Ts, Tt; int32_t src[4 * 12], slen[4], tin[4 * 13], tout[4 * 13]; } mini_batch;

static void make_batch(mini_batch *b, const s2s_model *m) {
    static const int len[4] = {7, 3, 11, 5};
    b->B = 4; b->Ts = 12; b->Tt = 13;
    memset(b->src, 0, sizeof b->src); memset(b->tin, 0, sizeof b->tin); memset(b->tout, 0, sizeof b->tout);
    uint64_t rng = 5;
    for (int i = 0; i < 4; i++) {
        int L = len[i];
        for (int t = 0; t < L; t++) b->src[i * 12 + t] = 4 + (int)(s2s_rng_uniform(&rng) * (m->cfg.src_vocab - 4));
        b->src[i * 12 + L] = 2;
        b->slen[i] = L + 1;
        b->tin[i * 13] = 1;
        for (int t = 0; t < L; t++) {
            int y = 4 + (int)(s2s_rng_uniform(&rng) * (m->cfg.tgt_vocab - 4));
            b->tout[i * 13 + t] = y;
            b->tin[i * 13 + t + 1] = y;
        }
        b->tout[i * 13 + L] = 2;
    }
}

static float fwd_bwd(s2s_graph *g, s2s_model *m, const mini_batch *b, float p) {
    uint64_t rng = 77;
    s2s_graph_reset(g);
    s2s_graph_set_training(g, p > 0, &rng);
    s2s_zero_grad(m);
    s2s_tensor *enc = s2s_model_encode(g, m, b->src, b->slen, b->B, b->Ts, p);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, b->slen, b->tin, b->B, b->Tt, p);
    s2s_tensor *loss = s2s_xent(g, lg, b->tout, 0.1f, 0, NULL);
    s2s_graph_backward(g, loss);
    return s2s_tensor_item(g, loss);
}

/* a tiny T2R model: map relu (k features) or elu */
static s2s_model *t2r_tiny(int elu, int k) {
    s2s_model *soft = tu_tiny_model(16, 2, 24, 2, 2, 11);
    char err[256];
    s2s_model *m = s2s_model_to_t2r(soft, k, elu ? S2S_T2R_MAP_ELU : S2S_T2R_MAP_RELU, 4, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    s2s_model_free(soft);
    tu_perturb_vectors(m, 9); /* nonzero phi biases, LayerNorm parameters */
    return m;
}

static void check_model_grads(int elu) {
    s2s_model *m = t2r_tiny(elu, 6);
    mini_batch b;
    make_batch(&b, m);
    for (int drop = 0; drop < 2; drop++) {
        float p = drop ? 0.2f : 0.0f;
        s2s_graph *gc = s2s_graph_new();
        float lc = fwd_bwd(gc, m, &b, p);
        float **cg = s2s_xmalloc((size_t)m->n_params * sizeof *cg);
        for (int i = 0; i < m->n_params; i++) cg[i] = copyf(m->params[i].t->grad, m->params[i].t->n);
        char err[256];
        cr_assert_eq(s2s_model_to_cuda(m, err, sizeof err), 0, "%s", err);
        s2s_graph *gg = s2s_graph_new_cuda(err, sizeof err);
        cr_assert_not_null(gg, "%s", err);
        float lg = fwd_bwd(gg, m, &b, p);
        cr_assert(fabsf(lg - lc) <= 1e-5f * fabsf(lc) + 1e-6f, "%s p=%g: GPU loss %.7f vs CPU %.7f",
                  elu ? "elu" : "relu", p, lg, lc);
        int phi = 0;
        for (int i = 0; i < m->n_params; i++) {
            s2s_tensor *t = m->params[i].t;
            float *h = down(t->dev_grad, t->n);
            double e = tu_rel_err(h, cg[i], t->n, 1e-5, 1e-3);
            cr_assert(e <= 1.0, "%s p=%g: gradient of %s differs (rel err %.3g)", elu ? "elu" : "relu", p,
                      m->params[i].name, e);
            phi += strstr(m->params[i].name, ".phi.") != NULL;
            free(h);
            free(cg[i]);
        }
        cr_assert_eq(phi, elu ? 0 : 8);
        free(cg);
        s2s_model_free_cuda(m);
        s2s_graph_free(gc);
        s2s_graph_free(gg);
    }
    s2s_model_free(m);
}

Test(cuda_t2r, whole_model_gradients_match_cpu) {
    NEED_GPU();
    check_model_grads(0);
    check_model_grads(1);
}

/* ------------------------------------------------------------------------------------
 * training
 * ---------------------------------------------------------------------------------- */

static void opts(s2s_train_opts *o, const char *dir, const char *out, int cuda, int elu) {
    s2s_train_opts_default(o);
    o->train_src = tu_path(dir, "train.src");
    o->train_tgt = tu_path(dir, "train.tgt");
    o->dev_src = tu_path(dir, "dev.src");
    o->dev_tgt = tu_path(dir, "dev.tgt");
    o->out_dir = tu_path(dir, out);
    o->model.d_model = 32; o->model.n_heads = 2; o->model.d_ff = 64;
    o->model.enc_layers = 2; o->model.dec_layers = 2; o->model.max_len = 32;
    o->model.dec_attn = S2S_ATTN_T2R;
    o->model.t2r_map = elu ? S2S_T2R_MAP_ELU : S2S_T2R_MAP_RELU;
    o->model.t2r_k = elu ? 16 : 8;
    o->lr = 3e-3f; o->warmup = 20; o->dropout = 0.1f;
    o->tokens_per_batch = 400;
    o->max_steps = 40; o->eval_every = 20; o->log_every = 5;
    o->quiet = getenv("S2S_TEST_VERBOSE") == NULL;
    o->metric = "wer"; o->eval_max = 20; /* dev decoding of a GPU model: the CPU fallback */
    o->cuda = cuda;
}

static void free_opts(s2s_train_opts *o) {
    free((char *)o->train_src); free((char *)o->train_tgt); free((char *)o->dev_src);
    free((char *)o->dev_tgt); free((char *)o->out_dir);
}

static int read_losses(const char *dir, double *out, int cap) {
    char *p = tu_path(dir, "train.log");
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        char *q = strstr(line, "| loss ");
        if (q) out[n++] = atof(q + 7);
    }
    fclose(f);
    free(p);
    return n;
}

static void train_and_compare(int elu) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 400, 3);
    tu_write_reverse_task(dir, "dev", 20, 4);
    char err[512];
    s2s_train_opts a, b;
    opts(&a, dir, "cpu", 0, elu);
    opts(&b, dir, "gpu", 1, elu);
    cr_assert_eq(s2s_train(&a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    s2s_train_opts b2;
    opts(&b2, dir, "gpu2", 1, elu);
    cr_assert_eq(s2s_train(&b2, err, sizeof err), 0, "%s", err);
    double lb2[32];
    int nb2 = read_losses(b2.out_dir, lb2, 32);
    for (int i = 0; i < nb2; i++) cr_log_info("%s step %d: gpu run 2 %.4f", elu ? "elu" : "relu", 5 * (i + 1), lb2[i]);
    free_opts(&b2);
    double la[32], lb[32];
    int na = read_losses(a.out_dir, la, 32), nb = read_losses(b.out_dir, lb, 32);
    cr_assert_eq(na, 8);
    cr_assert_eq(nb, na);
    for (int i = 0; i < na; i++) cr_log_info("%s step %d: cpu %.4f gpu %.4f", elu ? "elu" : "relu", 5 * (i + 1), la[i], lb[i]);
    /* elu+1 (smooth): the runs agree as closely as test_cuda_train.c's softmax ones (measured
     * on an H200: equal to 1e-4 over 40 steps, and two GPU runs equal). The learned relu
     * map: the kernels are bit-for-bit deterministic (kernel_case), but the existing GPU
     * embedding backward sums with atomics, and the relu kinks in phi turn that 1-ulp
     * noise into visibly different trajectories: measured |CPU - GPU| up to 1.1e-2 and
     * GPU run 1 vs run 2 up to 1.1e-2 within 40 steps, hence the wider tolerance. */
    double tol = elu ? 2e-3 : 3e-2;
    for (int i = 0; i < na; i++) {
        cr_assert(fabs(la[i] - lb[i]) <= tol, "%s step %d: loss CPU %.4f vs GPU %.4f", elu ? "elu" : "relu",
                  5 * (i + 1), la[i], lb[i]);
    }
    char *best = tu_path(b.out_dir, "best.safetensors");
    s2s_model *m = s2s_model_load(best, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(m->cfg.dec_attn, S2S_ATTN_T2R);
    cr_assert_eq(m->cfg.t2r_map, elu ? S2S_T2R_MAP_ELU : S2S_T2R_MAP_RELU);
    s2s_model_free(m);
    free(best);
    free_opts(&a); free_opts(&b);
    tu_rmrf(dir);
    free(dir);
}

Test(cuda_t2r, training_losses_match_cpu, .timeout = 300) {
    NEED_GPU();
    train_and_compare(1);
    train_and_compare(0);
}

#endif
