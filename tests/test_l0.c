/* test_l0.c - structured L0 pruning (NASH: l0.h, kernels_l0.h, the graph ops and
 * the trainer's mask phase).
 *
 * (a) kernels: group scale fast == reference (forward, backward from prefilled
 *     gradients, NULL gradients) on awkward sizes; every reference backward
 *     (group scale, hard concrete, density, Lagrangian) against central finite
 *     differences of its forward; the hard-concrete gate on hand values;
 * (b) expected density of a tiny model against a hand count of its parameters; the
 *     graph op against s2s_l0_expected_density;
 * (c) the deterministic rule on hand cases (expected zeros, ties, clamping);
 * (d) the Lagrangian's signs: below the target, one ascent step lowers lambda1 and
 *     raises lambda2, and descending the log_alphas raises the expected sparsity;
 * (e) the masks inside the encoder: all gates open == no masks; a closed head ==
 *     that head's o-projection columns zeroed; gradients of the training loss with
 *     respect to the log_alphas (sampled masks, fixed uniforms) against finite
 *     differences;
 * (f) the trainer: a few CPU steps with --l0-target move the expected sparsity
 *     towards the target and write the log_alphas into best/last; an interrupted and
 *     resumed run ends with the same L0 state (log_alphas, lambdas, AdamW moments,
 *     step) as an uninterrupted one, bit for bit;
 * (g) CUDA kernels against the CPU reference (skipped without a GPU). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "graph.h"
#include "kernels_cuda.h"
#include "kernels_l0.h"
#include "l0.h"
#include "model.h"
#include "safetensors.h"
#include "test_util.h"
#include "train.h"

static uint64_t g_rng = 0x10b0a7e5ull;

static float *randn(size_t n, float scale) {
    float *a = s2s_xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = scale * s2s_rng_normal(&g_rng);
    return a;
}

static float *randu(size_t n) { /* uniforms in (0.02, 0.98) */
    float *a = s2s_xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = 0.02f + 0.96f * s2s_rng_uniform(&g_rng);
    return a;
}

static float *copyf(const float *x, size_t n) {
    float *a = s2s_xmalloc((n ? n : 1) * sizeof(float));
    memcpy(a, x, n * sizeof(float));
    return a;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------ (a) kernels */

static void group_scale_case(int N, int G, int S) {
    size_t n = (size_t)N * G * S;
    float *x = randn(n, 1.0f), *z = randn((size_t)G, 1.0f), *dy = randn(n, 1.0f);
    float *y1 = randn(n, 1.0f), *y2 = randn(n, 1.0f);
    s2s_kref_group_scale_fwd(y1, x, z, N, G, S);
    s2s_k_group_scale_fwd(y2, x, z, N, G, S);
    cr_assert(tu_max_diff(y1, y2, n) == 0.0, "group_scale fwd N=%d G=%d S=%d", N, G, S);
    for (int i = 0; i < N; i++)
        for (int g = 0; g < G; g++)
            for (int s = 0; s < S; s++) {
                size_t k = ((size_t)i * G + g) * S + s;
                cr_assert(y1[k] == x[k] * z[g]);
            }
    float *dx1 = randn(n, 1.0f), *dz1 = randn((size_t)G, 1.0f);
    float *dx2 = copyf(dx1, n), *dz2 = copyf(dz1, (size_t)G);
    s2s_kref_group_scale_bwd(dx1, dz1, dy, x, z, N, G, S);
    s2s_k_group_scale_bwd(dx2, dz2, dy, x, z, N, G, S);
    cr_assert(tu_rel_err(dx2, dx1, n, 1e-6, 1e-6) <= 1, "group_scale dx N=%d G=%d S=%d", N, G, S);
    cr_assert(tu_rel_err(dz2, dz1, (size_t)G, 1e-4, 1e-4) <= 1, "group_scale dz N=%d G=%d S=%d", N, G, S);
    s2s_k_group_scale_bwd(NULL, dz2, dy, x, z, N, G, S); /* NULL gradients are skipped */
    s2s_k_group_scale_bwd(dx2, NULL, dy, x, z, N, G, S);
    free(x); free(z); free(dy); free(y1); free(y2); free(dx1); free(dz1); free(dx2); free(dz2);
}

Test(l0_kernels, group_scale_fast_matches_reference) {
    group_scale_case(1, 1, 1);
    group_scale_case(7, 3, 5);
    group_scale_case(130, 37, 1);  /* FFN units: S = 1, more rows than one chunk */
    group_scale_case(300, 4, 64);  /* heads of Dh = 64, parallel path */
}

/* L = sum(y * R): reference backward vs central differences, every input element */
Test(l0_kernels, group_scale_grad_fd) {
    int N = 3, G = 4, S = 2;
    size_t n = (size_t)N * G * S;
    float *x = randn(n, 1.0f), *z = randn((size_t)G, 1.0f), *R = randn(n, 1.0f), *y = s2s_xmalloc(n * 4);
    float *dx = s2s_xcalloc(n, 4), *dz = s2s_xcalloc((size_t)G, 4);
    s2s_kref_group_scale_bwd(dx, dz, R, x, z, N, G, S);
    const double h = 1e-2;
    for (int which = 0; which < 2; which++) {
        float *p = which ? z : x, *d = which ? dz : dx;
        size_t m = which ? (size_t)G : n;
        for (size_t i = 0; i < m; i++) {
            float keep = p[i];
            p[i] = keep + (float)h; s2s_kref_group_scale_fwd(y, x, z, N, G, S); double lp = dot(y, R, n);
            p[i] = keep - (float)h; s2s_kref_group_scale_fwd(y, x, z, N, G, S); double lm = dot(y, R, n);
            p[i] = keep;
            double fd = (lp - lm) / (2 * h);
            cr_assert(fabs(fd - d[i]) < 1e-3 * (1 + fabs(fd)), "group_scale d%s[%zu]: fd %g vs %g", which ? "z" : "x", i, fd, d[i]);
        }
    }
    free(x); free(z); free(R); free(y); free(dx); free(dz);
}

Test(l0_kernels, hard_concrete_hand_values) {
    /* u = 0.5, log_alpha = 0: s = 0.5, z = 0.5 * 1.2 - 0.1 = 0.5 */
    float la[4] = {0.0f, 20.0f, -20.0f, 1.0f}, u[4] = {0.5f, 0.5f, 0.5f, 0.3f}, z[4];
    s2s_kref_hard_concrete_fwd(z, la, u, 4);
    cr_assert(fabsf(z[0] - 0.5f) < 1e-6f, "%g", z[0]);
    cr_assert(z[1] == 1.0f && z[2] == 0.0f, "clamped: %g %g", z[1], z[2]); /* exactly 1 and 0 */
    double s = 1.0 / (1.0 + exp(-(log(0.3) - log(0.7) + 1.0) / (2.0 / 3.0)));
    cr_assert(fabs(z[3] - (s * 1.2 - 0.1)) < 1e-6, "%g vs %g", z[3], s * 1.2 - 0.1);
    /* gradients: 0 where clamped */
    float dz[4] = {1, 1, 1, 1}, d[4] = {0, 0, 0, 0};
    s2s_kref_hard_concrete_bwd(d, dz, la, u, 4);
    cr_assert(d[1] == 0.0f && d[2] == 0.0f);
    cr_assert(fabsf(d[0] - 1.2f * 0.25f / (2.0f / 3.0f)) < 1e-6f, "%g", d[0]);
}

Test(l0_kernels, hard_concrete_grad_fd) {
    int n = 64;
    float *la = randn((size_t)n, 2.0f), *u = randu((size_t)n), *R = randn((size_t)n, 1.0f);
    float *z = s2s_xmalloc((size_t)n * 4), *d = s2s_xcalloc((size_t)n, 4);
    s2s_kref_hard_concrete_bwd(d, R, la, u, n);
    const double h = 1e-3;
    int inside = 0;
    for (int i = 0; i < n; i++) {
        float keep = la[i];
        la[i] = keep + (float)h; s2s_kref_hard_concrete_fwd(z, la, u, n); double lp = dot(z, R, (size_t)n);
        la[i] = keep - (float)h; s2s_kref_hard_concrete_fwd(z, la, u, n); double lm = dot(z, R, (size_t)n);
        la[i] = keep;
        s2s_kref_hard_concrete_fwd(z, la, u, n);
        if (z[i] < 1e-3f || z[i] > 1 - 1e-3f) { /* at/near the clamps the FD straddles the kink */
            if (z[i] == 0.0f || z[i] == 1.0f) cr_assert(d[i] == 0.0f || fabs(d[i]) < 1e-2);
            continue;
        }
        inside++;
        double fd = (lp - lm) / (2 * h);
        cr_assert(fabs(fd - d[i]) < 2e-3 * (1 + fabs(fd)), "dlog_alpha[%d]: fd %g vs %g (z %g)", i, fd, d[i], z[i]);
    }
    cr_assert(inside > 10, "too few unclamped gates (%d)", inside);
    free(la); free(u); free(R); free(z); free(d);
}

Test(l0_kernels, density_and_lagrangian_grad_fd) {
    int n = 23;
    float *la = randn((size_t)n, 2.0f), *cost = randu((size_t)n), d[1], dout[1] = {1.0f};
    float *dla = s2s_xcalloc((size_t)n, 4);
    double C = 0;
    for (int i = 0; i < n; i++) C += cost[i];
    float inv = (float)(1.0 / C);
    s2s_kref_l0_density_bwd(dla, dout, la, cost, inv, n);
    const double h = 1e-2;
    for (int i = 0; i < n; i++) {
        float keep = la[i];
        la[i] = keep + (float)h; s2s_kref_l0_density_fwd(d, la, cost, inv, n); double lp = d[0];
        la[i] = keep - (float)h; s2s_kref_l0_density_fwd(d, la, cost, inv, n); double lm = d[0];
        la[i] = keep;
        double fd = (lp - lm) / (2 * h);
        cr_assert(fabs(fd - dla[i]) < 1e-4 + 1e-2 * fabs(fd), "ddensity/dla[%d]: fd %g vs %g", i, fd, dla[i]);
    }
    /* Lagrangian: value and every gradient */
    float dens[1] = {0.7f}, lam[2] = {-0.4f, 1.3f}, out[1], t = 0.5f;
    s2s_kref_l0_lagrangian_fwd(out, dens, lam, t);
    double dd = 1.0 - 0.7 - 0.5; /* s - t = -0.2 */
    cr_assert(fabs(out[0] - (-0.4 * dd + 1.3 * dd * dd)) < 1e-6);
    float gd[1] = {0.5f}, gl[2] = {0.25f, -0.25f}; /* += rule */
    s2s_kref_l0_lagrangian_bwd(gd, gl, dout, dens, lam, t);
    float *vars[2] = {dens, lam};
    float want[3] = {gd[0] - 0.5f, gl[0] - 0.25f, gl[1] + 0.25f};
    int k = 0;
    for (int v = 0; v < 2; v++)
        for (int i = 0; i < (v ? 2 : 1); i++, k++) {
            float keep = vars[v][i];
            vars[v][i] = keep + 1e-2f; s2s_kref_l0_lagrangian_fwd(out, dens, lam, t); double lp = out[0];
            vars[v][i] = keep - 1e-2f; s2s_kref_l0_lagrangian_fwd(out, dens, lam, t); double lm = out[0];
            vars[v][i] = keep;
            double fd = (lp - lm) / 2e-2;
            cr_assert(fabs(fd - want[k]) < 1e-4, "Lagrangian grad %d: fd %g vs %g", k, fd, want[k]);
        }
    free(la); free(cost); free(dla);
}

/* ---------------------------------------------------- (b) density by hand */

static void set_all(s2s_l0 *l0, float heads, float ff) {
    s2s_tensor *la = s2s_l0_log_alpha(l0);
    for (int l = 0; l < 2; l++) {
        int off, n = s2s_l0_group(l0, l, 0, &off);
        for (int i = 0; i < n; i++) la->data[off + i] = heads;
        n = s2s_l0_group(l0, l, 1, &off);
        for (int i = 0; i < n; i++) la->data[off + i] = ff;
    }
    s2s_l0_touch(l0);
}

Test(l0, expected_density_hand_count) {
    s2s_model *m = tu_tiny_model(8, 2, 4, 2, 1, 5); /* Dh = 4: a head = 4*8*4 + 3*4 = 140, a unit = 2*8 + 1 = 17 */
    s2s_l0 *l0 = s2s_l0_new(m, 0.05f, 1);
    cr_assert_eq(s2s_l0_size(l0), 2 * (2 + 4));
    int off;
    cr_assert_eq(s2s_l0_group(l0, 1, 0, &off), 2); cr_assert_eq(off, 6);
    cr_assert_eq(s2s_l0_group(l0, 1, 1, &off), 4); cr_assert_eq(off, 8);
    /* init: log(0.95 / 0.05) = 2.944 +- 0.01 noise */
    for (int i = 0; i < 12; i++) cr_assert(fabsf(s2s_l0_log_alpha(l0)->data[i] - 2.9444f) < 0.05f);
    set_all(l0, 60.0f, -60.0f); /* every head kept for sure, every unit gone */
    double total = 2 * (2 * 140.0 + 4 * 17.0);
    cr_assert(fabs(s2s_l0_expected_density(l0, m) - 2 * 2 * 140.0 / total) < 1e-9);
    set_all(l0, -60.0f, 60.0f);
    cr_assert(fabs(s2s_l0_expected_density(l0, m) - 2 * 4 * 17.0 / total) < 1e-9);
    /* P(z > 0) = 1/2 for every gate: log_alpha = beta * log(-l/r) */
    set_all(l0, S2S_L0_SHIFT, S2S_L0_SHIFT);
    cr_assert(fabs(s2s_l0_expected_density(l0, m) - 0.5) < 1e-6);
    /* one head of layer 1 at P = 1/2, the rest kept */
    set_all(l0, 60.0f, 60.0f);
    s2s_l0_log_alpha(l0)->data[7] = S2S_L0_SHIFT;
    s2s_l0_touch(l0);
    double want = (total - 0.5 * 140.0) / total;
    cr_assert(fabs(s2s_l0_expected_density(l0, m) - want) < 1e-6);
    /* the graph op (through s2s_l0_loss with lambda = (-1, 0), t = 0: loss = 1 - s = density) */
    s2s_graph *g = s2s_graph_new();
    s2s_l0_lambdas(l0)->data[0] = -1.0f;
    s2s_tensor *loss = s2s_l0_loss(g, l0, 0.0f);
    cr_assert(fabs(loss->data[0] + (1.0 - want)) < 1e-6, "%g vs %g", loss->data[0], -(1.0 - want));
    s2s_graph_free(g);
    s2s_l0_free(l0);
    s2s_model_free(m);
}

/* ------------------------------------------------------ (c) deterministic */

Test(l0, deterministic_rule_hand_cases) {
    float z[5];
    /* P(z>0) = sigmoid(la + 1.5986) = {0.0002, 0.832, 0.990, 1.000}: expected zeros 1.18 -> 1,
     * the smallest log_alpha; la = 0 -> sigmoid(0) * 1.2 - 0.1 = 0.5; la = 3 -> 1.043 -> 1 */
    float a[4] = {-10.0f, 0.0f, 3.0f, 10.0f};
    s2s_l0_deterministic(z, a, 4);
    cr_assert(z[0] == 0.0f && fabsf(z[1] - 0.5f) < 1e-6f && z[2] == 1.0f && z[3] == 1.0f,
              "%g %g %g %g", z[0], z[1], z[2], z[3]);
    /* order does not matter: the smallest one is zeroed wherever it is */
    float b[4] = {3.0f, 10.0f, -10.0f, 0.0f};
    s2s_l0_deterministic(z, b, 4);
    cr_assert(z[2] == 0.0f && z[0] == 1.0f && z[1] == 1.0f && fabsf(z[3] - 0.5f) < 1e-6f);
    /* ties: 4 x (-1): P = sigmoid(0.5986) = 0.645, zeros 4 * 0.355 = 1.42 -> 1: index 0;
     * the others sigmoid(-1) * 1.2 - 0.1 = 0.2227 */
    float c[4] = {-1, -1, -1, -1};
    s2s_l0_deterministic(z, c, 4);
    cr_assert(z[0] == 0.0f, "%g", z[0]);
    for (int i = 1; i < 4; i++) cr_assert(fabsf(z[i] - 0.22274f) < 1e-4f, "%g", z[i]);
    /* all open (the init of d = 0.05 for a head group): no zeros, z = 1 */
    float d[4] = {2.94f, 2.95f, 2.93f, 2.94f};
    s2s_l0_deterministic(z, d, 4);
    for (int i = 0; i < 4; i++) cr_assert(z[i] == 1.0f);
    /* all closed: round(5 * ~1) = 5 zeros */
    float e[5] = {-9, -8, -7, -9, -8};
    s2s_l0_deterministic(z, e, 5);
    for (int i = 0; i < 5; i++) cr_assert(z[i] == 0.0f);
    /* below the clamp without being among the expected zeros: la = -3 -> 0.047 * 1.2 - 0.1 < 0 -> 0 */
    float f[3] = {-3.0f, 8.0f, 8.0f}; /* zeros = 0.80 + 0 + 0 -> 1 anyway */
    s2s_l0_deterministic(z, f, 3);
    cr_assert(z[0] == 0.0f && z[1] == 1.0f && z[2] == 1.0f);
}

/* ------------------------------------------------------ (d) Lagrangian signs */

Test(l0, lagrangian_ascent_signs) {
    s2s_model *m = tu_tiny_model(8, 2, 4, 2, 1, 6);
    s2s_l0 *l0 = s2s_l0_new(m, 0.05f, 2); /* expected sparsity ~0.01 */
    double s0 = 1.0 - s2s_l0_expected_density(l0, m), t = 0.5;
    cr_assert(s0 < 0.05, "%g", s0);
    s2s_graph *g = s2s_graph_new();
    /* lambdas start at 0: the first step changes only them */
    s2s_l0_zero_grad(l0);
    s2s_tensor *loss = s2s_l0_loss(g, l0, (float)t);
    s2s_graph_backward(g, loss);
    const float *lg = s2s_l0_lambdas(l0)->grad;
    cr_assert(lg[0] < 0 && lg[1] > 0, "dL/dlambda = %g %g (s - t < 0)", lg[0], lg[1]);
    cr_assert(fabs(lg[0] - (s0 - t)) < 1e-5 && fabs(lg[1] - (s0 - t) * (s0 - t)) < 1e-5);
    s2s_l0_step(l0, 0.1f);
    const float *lam = s2s_l0_lambdas(l0)->data;
    cr_assert(lam[0] < 0 && lam[1] > 0, "ascent: lambda1 %g should fall, lambda2 %g rise", lam[0], lam[1]);
    /* with these lambdas the term rewards sparsity: dL/dlog_alpha > 0, descent lowers the
     * log_alphas and the expected sparsity rises towards t */
    for (int it = 0; it < 50; it++) {
        s2s_graph_reset(g);
        s2s_l0_zero_grad(l0);
        s2s_graph_backward(g, s2s_l0_loss(g, l0, (float)t));
        if (it == 0)
            for (int i = 0; i < s2s_l0_size(l0); i++) cr_assert(s2s_l0_log_alpha(l0)->grad[i] > 0);
        s2s_l0_step(l0, 0.1f);
    }
    double s1 = 1.0 - s2s_l0_expected_density(l0, m);
    cr_assert(s1 > s0 + 0.1, "expected sparsity %g -> %g should move towards %g", s0, s1, t);
    /* above the target the signs flip: lambda1's gradient (s - t) is positive */
    s2s_graph_reset(g);
    s2s_l0_zero_grad(l0);
    s2s_graph_backward(g, s2s_l0_loss(g, l0, 0.0f));
    cr_assert(s2s_l0_lambdas(l0)->grad[0] > 0);
    cr_assert(fabsf(s2s_l0_target_at(0.6f, 100, 25) - 0.15f) < 1e-6f && s2s_l0_target_at(0.6f, 100, 300) == 0.6f &&
              s2s_l0_target_at(0.6f, 0, 1) == 0.6f);
    s2s_graph_free(g);
    s2s_l0_free(l0);
    s2s_model_free(m);
}

/* ------------------------------------------------------ (e) inside the encoder */

static const int32_t k_src[10] = {4, 5, 6, 7, 2, 8, 9, 2, 0, 0}, k_slen[2] = {5, 3};

static float *encode(const s2s_model *m, size_t *n) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *e = s2s_model_encode(g, m, k_src, k_slen, 2, 5, 0.0f);
    float *out = copyf(e->data, e->n);
    *n = e->n;
    s2s_graph_free(g);
    return out;
}

Test(l0, masks_in_the_encoder_eval) {
    s2s_model *m = tu_tiny_model(16, 4, 12, 2, 1, 7);
    tu_perturb_vectors(m, 3);
    size_t n;
    float *plain = encode(m, &n);
    s2s_l0 *l0 = s2s_l0_new(m, 0.05f, 3);
    set_all(l0, 10.0f, 10.0f); /* every gate open: z = 1 exactly */
    m->l0 = l0;
    float *open = encode(m, &n);
    cr_assert(tu_max_diff(open, plain, n) == 0.0, "all-open masks change the encoder");
    /* close head 2 of layer 1 and FFN unit 5 of layer 0 (one expected zero each) */
    int offh, offf;
    s2s_l0_group(l0, 1, 0, &offh);
    s2s_l0_group(l0, 0, 1, &offf);
    s2s_l0_log_alpha(l0)->data[offh + 2] = -10.0f;
    s2s_l0_log_alpha(l0)->data[offf + 5] = -10.0f;
    s2s_l0_touch(l0);
    float *masked = encode(m, &n);
    m->l0 = NULL;
    int Dh = 4, D = 16;
    s2s_tensor *o = s2s_model_param(m, "enc.1.attn.o.weight"); /* [D, 4*Dh] */
    for (int r = 0; r < D; r++)
        for (int c = 2 * Dh; c < 3 * Dh; c++) o->data[r * 16 + c] = 0.0f;
    s2s_tensor *fc2 = s2s_model_param(m, "enc.0.fc2.weight"); /* [D, 12] */
    for (int r = 0; r < D; r++) fc2->data[r * 12 + 5] = 0.0f;
    float *zeroed = encode(m, &n);
    cr_assert(tu_max_diff(masked, zeroed, n) < 1e-5, "masked %g", tu_max_diff(masked, zeroed, n));
    cr_assert(tu_max_diff(masked, plain, n) > 1e-3, "the closed gates changed nothing");
    free(plain); free(open); free(masked); free(zeroed);
    s2s_l0_free(l0);
    s2s_model_free(m);
}

/* Training loss (sampled masks) with a fixed RNG state: a smooth function of the
 * log_alphas (away from the clamps); its graph gradient against central differences. */
static double train_loss(s2s_model *m, s2s_graph *g, int backward) {
    static const int32_t tin[6] = {1, 5, 6, 1, 7, 0}, tout[6] = {5, 6, 2, 7, 2, 0};
    uint64_t rng = 12345;
    s2s_graph_reset(g);
    s2s_graph_set_training(g, 1, &rng);
    s2s_tensor *enc = s2s_model_encode(g, m, k_src, k_slen, 2, 5, 0.0f);
    s2s_tensor *logits = s2s_model_decode_train(g, m, enc, k_slen, tin, 2, 3, 0.0f);
    s2s_tensor *loss = s2s_xent(g, logits, tout, 0.0f, 0, NULL);
    double v = s2s_tensor_item(g, loss);
    if (backward) s2s_graph_backward(g, loss);
    return v;
}

Test(l0, encoder_mask_gradients_fd) {
    s2s_model *m = tu_tiny_model(16, 4, 12, 2, 1, 8);
    tu_perturb_vectors(m, 4);
    s2s_l0 *l0 = s2s_l0_new(m, 0.5f, 4); /* log_alpha ~ 0: most sampled gates strictly inside (0, 1) */
    m->l0 = l0;
    s2s_graph *g = s2s_graph_new();
    s2s_l0_zero_grad(l0);
    train_loss(m, g, 1);
    s2s_tensor *la = s2s_l0_log_alpha(l0);
    float *grad = copyf(la->grad, la->n);
    const float h = 2e-3f;
    int checked = 0, nonzero = 0;
    for (int i = 0; i < s2s_l0_size(l0); i++) {
        float keep = la->data[i];
        la->data[i] = keep + h; double lp = train_loss(m, g, 0);
        la->data[i] = keep - h; double lm = train_loss(m, g, 0);
        la->data[i] = keep;
        double fd = (lp - lm) / (2.0 * h);
        if (grad[i] == 0.0f && fabs(fd) < 1e-6) continue; /* clamped gate, both ways */
        checked++;
        nonzero += grad[i] != 0.0f;
        cr_assert(fabs(fd - grad[i]) < 2e-3 + 2e-2 * fabs(fd), "dloss/dlog_alpha[%d]: fd %g vs graph %g", i, fd, grad[i]);
    }
    cr_assert(checked > 10 && nonzero > 10, "checked %d gates, %d with a gradient", checked, nonzero);
    m->l0 = NULL;
    free(grad);
    s2s_graph_free(g);
    s2s_l0_free(l0);
    s2s_model_free(m);
}

/* ------------------------------------------------------------ (f) trainer */

static void l0_opts(s2s_train_opts *o, const char *dir, const char *out) {
    tu_train_opts(o, dir, out);
    o->model.enc_layers = 2;
    o->warmup = 20;
    o->tokens_per_batch = 300;
    o->eval_max = 20;
    o->l0_target = 0.5f; o->l0_warmup_steps = 10; o->l0_lr = 0.1f;
}


/* Expected sparsity of the log_alphas stored in path (fresh l0 of m, loaded). */
static double stored_sparsity(const char *path, const s2s_model *m, int with_state) {
    char err[512];
    s2s_st_file *f = s2s_st_open(path, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    s2s_l0 *l0 = s2s_l0_new(m, 0.05f, 1);
    int rc = s2s_l0_load(l0, f, with_state, err, sizeof err);
    cr_assert_eq(rc, 0, "%s: %s", path, rc < 0 ? err : "no L0 tensors");
    double s = 1.0 - s2s_l0_expected_density(l0, m);
    s2s_l0_free(l0);
    s2s_st_close(f);
    return s;
}

Test(l0_train, sparsity_moves_towards_target, .timeout = 240) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 300, 11);
    tu_write_reverse_task(dir, "dev", 20, 12);
    s2s_train_opts o;
    l0_opts(&o, dir, "run");
    o.max_steps = 40; o.eval_every = 40;
    char err[512];
    cr_assert_eq(s2s_train(&o, err, sizeof err), 0, "%s", err);
    char *last = tu_path(o.out_dir, "last.safetensors"), *best = tu_path(o.out_dir, "best.safetensors");
    s2s_model *m = s2s_model_load(best, 0, err, sizeof err); /* other commands read it as a plain model */
    cr_assert_not_null(m, "%s", err);
    cr_assert(m->l0 == NULL);
    s2s_l0 *fresh = s2s_l0_new(m, S2S_L0_DROPRATE_INIT, 1);
    double s0 = 1.0 - s2s_l0_expected_density(fresh, m);
    s2s_l0_free(fresh);
    double sb = stored_sparsity(best, m, 0), sl = stored_sparsity(last, m, 1);
    cr_log_info("expected sparsity: %.4f at init, %.4f after 40 steps (target 0.5)", s0, sl);
    cr_assert(sl == sb, "best and last of the final step hold the same log_alphas");
    cr_assert(sl > s0 + 0.1 && sl < 0.9, "expected sparsity %.4f -> %.4f should move towards 0.5", s0, sl);
    /* the log line reports it */
    char *logp = tu_path(o.out_dir, "train.log");
    FILE *f = fopen(logp, "r");
    cr_assert_not_null(f);
    char line[512];
    int seen = 0;
    while (fgets(line, sizeof line, f)) seen |= strstr(line, "l0 sparsity") != NULL && strstr(line, "lambda") != NULL;
    fclose(f);
    cr_assert(seen, "no 'l0 sparsity ... lambda' in the log");
    s2s_model_free(m);
    free(last); free(best); free(logp);
    tu_train_opts_free(&o);
    tu_rmrf(dir);
    free(dir);
}

static int same_l0_state(const char *a, const char *b) {
    char err[512];
    s2s_st_file *fa = s2s_st_open(a, err, sizeof err), *fb = s2s_st_open(b, err, sizeof err);
    cr_assert(fa && fb);
    const char *names[] = {"enc.0.l0.heads", "enc.0.l0.ff", "enc.1.l0.heads", "enc.1.l0.ff", "l0.lambda",
                           "l0.opt.m.log_alpha", "l0.opt.v.log_alpha", "l0.opt.m.lambda", "l0.opt.v.lambda",
                           "l0.opt.step", "enc.0.fc1.weight", "dec.0.fc2.weight"};
    int same = 1;
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        const s2s_st_tensor *x = s2s_st_find(fa, names[i]), *y = s2s_st_find(fb, names[i]);
        cr_assert(x && y, "%s missing", names[i]);
        float *u = s2s_xmalloc((size_t)x->numel * 4), *v = s2s_xmalloc((size_t)y->numel * 4);
        s2s_st_to_f32(u, x); s2s_st_to_f32(v, y);
        if (x->numel != y->numel || memcmp(u, v, (size_t)x->numel * 4) != 0) {
            cr_log_error("%s differs", names[i]);
            same = 0;
        }
        free(u); free(v);
    }
    s2s_st_close(fa); s2s_st_close(fb);
    return same;
}

Test(l0_train, resume_restores_l0_state_exactly, .timeout = 240) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 200, 13);
    tu_write_reverse_task(dir, "dev", 10, 14);
    char err[512];
    s2s_train_opts a, b;
    l0_opts(&a, dir, "a");
    a.max_steps = 24; a.eval_every = 8;
    cr_assert_eq(s2s_train(&a, err, sizeof err), 0, "%s", err);
    l0_opts(&b, dir, "b");
    b.max_steps = 13; b.eval_every = 8;
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    b.max_steps = 24;
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    char *la = tu_path(a.out_dir, "last.safetensors"), *lb = tu_path(b.out_dir, "last.safetensors");
    cr_assert(same_l0_state(la, lb), "the resumed run's L0 state differs from the uninterrupted one");
    free(la); free(lb);
    tu_train_opts_free(&a); tu_train_opts_free(&b);
    tu_rmrf(dir);
    free(dir);
}

/* ------------------------------------------------------------ (g) CUDA */

#ifndef S2S_CUDA
Test(l0_cuda, skipped_without_cuda) {
    cr_assert(s2s_cuda_available() == 0);
    cr_skip_test("built without CUDA (CUDA=0)");
}
#else

static float *up(const float *h, size_t n) {
    float *d = s2s_cuda_malloc((n ? n : 1) * sizeof(float));
    s2s_cuda_upload(d, h, n * sizeof(float));
    return d;
}
static float *down(const float *d, size_t n) {
    float *h = s2s_xmalloc((n ? n : 1) * sizeof(float));
    s2s_cuda_download(h, d, n * sizeof(float));
    return h;
}

static void cuda_group_scale_case(int N, int G, int S) {
    size_t n = (size_t)N * G * S;
    float *x = randn(n, 1.0f), *z = randn((size_t)G, 1.0f), *dy = randn(n, 1.0f), *y = randn(n, 1.0f);
    float *dx = randn(n, 1.0f), *dz = randn((size_t)G, 1.0f);
    float *dX = up(x, n), *dZ = up(z, (size_t)G), *dDY = up(dy, n), *dY = up(y, n), *dDX = up(dx, n),
          *dDZ = up(dz, (size_t)G);
    s2s_kref_group_scale_fwd(y, x, z, N, G, S);
    s2s_kcu_group_scale_fwd(dY, dX, dZ, N, G, S);
    float *gy = down(dY, n);
    cr_assert(tu_max_diff(gy, y, n) == 0.0, "cuda group_scale fwd N=%d G=%d S=%d", N, G, S);
    s2s_kref_group_scale_bwd(dx, dz, dy, x, z, N, G, S);
    s2s_kcu_group_scale_bwd(dDX, dDZ, dDY, dX, dZ, N, G, S);
    s2s_kcu_group_scale_bwd(NULL, NULL, dDY, dX, dZ, N, G, S);
    float *gdx = down(dDX, n), *gdz = down(dDZ, (size_t)G);
    cr_assert(tu_rel_err(gdx, dx, n, 1e-6, 1e-6) <= 1);
    cr_assert(tu_rel_err(gdz, dz, (size_t)G, 1e-4, 1e-4) <= 1, "cuda group_scale dz N=%d G=%d S=%d", N, G, S);
    s2s_cuda_free(dX); s2s_cuda_free(dZ); s2s_cuda_free(dDY); s2s_cuda_free(dY); s2s_cuda_free(dDX); s2s_cuda_free(dDZ);
    free(x); free(z); free(dy); free(y); free(dx); free(dz); free(gy); free(gdx); free(gdz);
}

Test(l0_cuda, kernels_match_cpu) {
    if (!s2s_cuda_available()) cr_skip_test("no CUDA device");
    cuda_group_scale_case(1, 1, 1);
    cuda_group_scale_case(7, 3, 5);
    cuda_group_scale_case(1000, 37, 1);
    cuda_group_scale_case(300, 4, 64);
    int n = 1029;
    float *la = randn((size_t)n, 3.0f), *u = randu((size_t)n), *dz = randn((size_t)n, 1.0f), *cost = randu((size_t)n);
    float *z = s2s_xmalloc((size_t)n * 4), *dla = randn((size_t)n, 1.0f);
    float *dLA = up(la, (size_t)n), *dU = up(u, (size_t)n), *dDZ = up(dz, (size_t)n), *dC = up(cost, (size_t)n);
    float *dZ = up(z, (size_t)n), *dDLA = up(dla, (size_t)n);
    s2s_kref_hard_concrete_fwd(z, la, u, n);
    s2s_kcu_hard_concrete_fwd(dZ, dLA, dU, n);
    float *gz = down(dZ, (size_t)n);
    cr_assert(tu_rel_err(gz, z, (size_t)n, 1e-6, 1e-5) <= 1, "cuda hard concrete fwd");
    s2s_kref_hard_concrete_bwd(dla, dz, la, u, n);
    s2s_kcu_hard_concrete_bwd(dDLA, dDZ, dLA, dU, n);
    float *gdla = down(dDLA, (size_t)n);
    cr_assert(tu_rel_err(gdla, dla, (size_t)n, 1e-6, 1e-5) <= 1, "cuda hard concrete bwd");
    /* density and Lagrangian */
    float out[1], dout[1] = {0.7f}, *dOUT = up(dout, 1), *dD = up(out, 1);
    float inv = 1.0f / 500.0f;
    s2s_kref_l0_density_fwd(out, la, cost, inv, n);
    s2s_kcu_l0_density_fwd(dD, dLA, dC, inv, n);
    float *gd = down(dD, 1);
    cr_assert(fabsf(gd[0] - out[0]) <= 1e-6f + 1e-5f * fabsf(out[0]), "density %g vs %g", gd[0], out[0]);
    float *dla2 = randn((size_t)n, 1.0f), *dDLA2 = up(dla2, (size_t)n);
    s2s_kref_l0_density_bwd(dla2, dout, la, cost, inv, n);
    s2s_kcu_l0_density_bwd(dDLA2, dOUT, dLA, dC, inv, n);
    float *g2 = down(dDLA2, (size_t)n);
    cr_assert(tu_rel_err(g2, dla2, (size_t)n, 1e-6, 1e-5) <= 1, "cuda density bwd");
    float lam[2] = {-0.3f, 0.8f}, lo[1], ddn[1] = {0.1f}, dl[2] = {0.2f, -0.2f};
    float *dLAM = up(lam, 2), *dLO = up(lo, 1), *dDDN = up(ddn, 1), *dDL = up(dl, 2);
    s2s_kref_l0_lagrangian_fwd(lo, out, lam, 0.4f);
    s2s_kcu_l0_lagrangian_fwd(dLO, dD, dLAM, 0.4f);
    float *glo = down(dLO, 1);
    cr_assert(fabsf(glo[0] - lo[0]) < 1e-5f);
    s2s_kref_l0_lagrangian_bwd(ddn, dl, dout, out, lam, 0.4f);
    s2s_kcu_l0_lagrangian_bwd(dDDN, dDL, dOUT, dD, dLAM, 0.4f);
    float *gddn = down(dDDN, 1), *gdl = down(dDL, 2);
    cr_assert(fabsf(gddn[0] - ddn[0]) < 1e-5f && fabsf(gdl[0] - dl[0]) < 1e-5f && fabsf(gdl[1] - dl[1]) < 1e-5f);
    float *all[] = {dLA, dU, dDZ, dC, dZ, dDLA, dOUT, dD, dDLA2, dLAM, dLO, dDDN, dDL};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) s2s_cuda_free(all[i]);
    free(la); free(u); free(dz); free(cost); free(z); free(dla); free(gz); free(gdla); free(gd); free(dla2); free(g2);
    free(glo); free(gddn); free(gdl);
}

/* The whole mask phase on the GPU: same gates, same sampled masks (host uniforms) and
 * the same Lagrangian as on the CPU: losses and L0 gradients agree. */
Test(l0_cuda, graph_on_gpu_matches_cpu) {
    if (!s2s_cuda_available()) cr_skip_test("no CUDA device");
    char err[256];
    s2s_model *m = tu_tiny_model(16, 4, 12, 2, 1, 9);
    tu_perturb_vectors(m, 5);
    s2s_l0 *l0 = s2s_l0_new(m, 0.5f, 5);
    s2s_l0_lambdas(l0)->data[0] = -0.5f; s2s_l0_lambdas(l0)->data[1] = 0.3f;
    m->l0 = l0;
    s2s_graph *g = s2s_graph_new();
    s2s_l0_zero_grad(l0);
    double lc = train_loss(m, g, 1);
    s2s_tensor *lagr = s2s_l0_loss(g, l0, 0.3f);
    float lag_cpu = lagr->data[0];
    s2s_tensor *la = s2s_l0_log_alpha(l0);
    float *gc = copyf(la->grad, la->n);
    /* eval masks on the CPU */
    size_t n;
    float *ec = encode(m, &n);
    cr_assert_eq(s2s_model_to_cuda(m, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_l0_to_cuda(l0, err, sizeof err), 0, "%s", err);
    s2s_graph *gg = s2s_graph_new_cuda(err, sizeof err);
    cr_assert_not_null(gg, "%s", err);
    s2s_l0_zero_grad(l0);
    double lgpu = train_loss(m, gg, 1);
    s2s_tensor *lagr2 = s2s_l0_loss(gg, l0, 0.3f);
    float lag_gpu = s2s_tensor_item(gg, lagr2);
    float *gg_la = down(la->dev_grad, la->n);
    cr_assert(fabs(lc - lgpu) < 1e-4 * (1 + fabs(lc)), "loss cpu %g gpu %g", lc, lgpu);
    cr_assert(fabsf(lag_cpu - lag_gpu) < 1e-5f, "Lagrangian cpu %g gpu %g", lag_cpu, lag_gpu);
    cr_assert(tu_rel_err(gg_la, gc, la->n, 1e-4, 1e-2) <= 1, "L0 gradients differ");
    /* eval masks on the GPU */
    s2s_graph_set_grad(gg, 0);
    s2s_graph_reset(gg);
    s2s_tensor *e = s2s_model_encode(gg, m, k_src, k_slen, 2, 5, 0.0f);
    float *eg = s2s_xmalloc(n * 4);
    s2s_tensor_read(gg, eg, e);
    cr_assert(tu_rel_err(eg, ec, n, 1e-4, 1e-3) <= 1, "eval encoder output differs");
    m->l0 = NULL;
    free(gc); free(ec); free(gg_la); free(eg);
    s2s_graph_free(g); s2s_graph_free(gg);
    s2s_l0_free(l0);
    s2s_model_free(m);
}
#endif
