/* test_kernels.c - tests of the numeric kernels (src/kernels.h).
 *
 * Three layers, per kernel:
 *   1. anchors: the reference (s2s_kref_*) against values worked out by hand or taken
 *      from torch, so the ground truth itself is pinned down;
 *   2. fast vs reference: s2s_k_* against s2s_kref_* on random inputs with awkward
 *      sizes (odd, N = 1, padding and causal masks, fully masked rows, sizes large
 *      enough to take the OpenMP paths), tolerance |a - b| <= 1e-5 + 1e-4 * |ref|;
 *      gradient buffers start from the same random values, so "+=" is checked too;
 *   3. gradients: every reference backward against central finite differences of its
 *      forward, L = sum(out * R) for a random R, evaluated in double, h = 1e-3, with
 *      gradient buffers starting from random values (the backward must accumulate).
 * Every check reports the worst element (index, values) when it fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"

/* ------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------- */

static uint64_t g_rng = 0x5eed1234abcdULL;

/* n values ~ N(0, scale^2) */
static float *randn(size_t n, float scale) {
    float *a = s2s_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = scale * s2s_rng_normal(&g_rng);
    return a;
}

static float *dup(const float *a, size_t n) {
    float *b = s2s_xmalloc(n * sizeof(float));
    memcpy(b, a, n * sizeof(float));
    return b;
}

static float *zeros(size_t n) { return s2s_xcalloc(n, sizeof(float)); }

/* got vs ref: |got - ref| <= 1e-5 + 1e-4 |ref| everywhere (NaN fails). */
static void check_close(const char *what, const float *got, const float *ref, size_t n) {
    size_t worst = 0;
    double worst_ratio = 0.0;
    for (size_t i = 0; i < n; i++) {
        double diff = fabs((double)got[i] - ref[i]);
        double tol = 1e-5 + 1e-4 * fabs((double)ref[i]);
        double ratio = diff / tol;
        if (!(ratio <= worst_ratio)) { /* NaN lands here and stays */
            worst_ratio = isnan(ratio) ? INFINITY : ratio;
            worst = i;
        }
    }
    cr_assert(worst_ratio <= 1.0,
              "%s: fast vs ref mismatch at [%zu] of %zu: got %.9g ref %.9g (|diff| %.3g, %.2fx tol)",
              what, worst, n, got[worst], ref[worst], fabs((double)got[worst] - ref[worst]),
              worst_ratio);
}

/* sum(a * r) in double: the scalar loss whose gradient wrt a is r */
static double dotd(const float *a, const float *r, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * r[i];
    return s;
}

/* Finite-difference check of d loss / d x against ana[n] = (grad buffer after the
 * backward) - (its random initial value). loss() runs the reference forward. */
static void fd_check(const char *what, float *x, size_t n, const float *after,
                     const float *before, double (*loss)(void *), void *ctx) {
    const float h = 1e-3f;
    size_t worst = 0;
    double worst_ratio = 0.0, worst_num = 0.0, worst_ana = 0.0;
    for (size_t i = 0; i < n; i++) {
        const float x0 = x[i], xp = x0 + h, xm = x0 - h;
        x[i] = xp;
        double lp = loss(ctx);
        x[i] = xm;
        double lm = loss(ctx);
        x[i] = x0;
        double num = (lp - lm) / ((double)xp - (double)xm);
        double ana = (double)after[i] - (double)before[i];
        double ratio = fabs(num - ana) / (1e-3 + 1e-2 * fabs(num));
        if (!(ratio <= worst_ratio)) {
            worst_ratio = isnan(ratio) ? INFINITY : ratio;
            worst = i, worst_num = num, worst_ana = ana;
        }
    }
    cr_assert(worst_ratio <= 1.0,
              "%s: finite-difference mismatch at [%zu] of %zu: numeric %.6g analytic %.6g "
              "(|diff| %.3g)",
              what, worst, n, worst_num, worst_ana, fabs(worst_num - worst_ana));
}

/* ------------------------------------------------------------------------------------
 * anchors: the reference against known values
 * ---------------------------------------------------------------------------------- */

Test(kernels, ref_anchors) {
    /* linear: [1 2] @ [[1 0] [3 -1] [0.5 0.5]]^T + [0 1 -1] = [1 2 0.5] */
    {
        float x[2] = {1, 2}, w[6] = {1, 0, 3, -1, 0.5f, 0.5f}, b[3] = {0, 1, -1}, y[3];
        s2s_kref_linear_fwd(y, x, w, b, 1, 2, 3);
        cr_assert(y[0] == 1.0f && y[1] == 2.0f && y[2] == 0.5f, "linear: %g %g %g", y[0], y[1], y[2]);
    }
    /* layernorm of [1 2 3 4]: mean 2.5, var 1.25, y = (x-2.5)/sqrt(1.25+1e-5) */
    {
        float x[4] = {1, 2, 3, 4}, g[4] = {1, 1, 1, 1}, b[4] = {0, 0, 0, 0}, y[4], m, r;
        s2s_kref_layernorm_fwd(y, &m, &r, x, g, b, 1, 4);
        cr_assert(fabsf(m - 2.5f) < 1e-7f && fabsf(r - 0.894423613f) < 1e-6f, "layernorm stats %g %g", m, r);
        cr_assert(fabsf(y[0] + 1.341635421f) < 1e-6f, "layernorm y0 %g", y[0]);
    }
    /* gelu(1) = Phi(1) = 0.841344746, gelu(-1) = -0.158655254, gelu'(+-1) = Phi(+-1) +- phi(1) with phi(1) = 0.241970725 */
    {
        float x[2] = {1, -1}, y[2], dy[2] = {1, 1}, dx[2] = {0, 0};
        s2s_kref_gelu_fwd(y, x, 2);
        s2s_kref_gelu_bwd(dx, dy, x, 2, 0);
        cr_assert(fabsf(y[0] - 0.841344746f) < 1e-6f && fabsf(y[1] + 0.158655254f) < 1e-6f,
                  "gelu %g %g", y[0], y[1]);
        cr_assert(fabsf(dx[0] - 1.0833155f) < 1e-6f && fabsf(dx[1] + 0.0833155f) < 1e-6f,
                  "gelu' %g %g", dx[0], dx[1]);
    }
    /* torch: F.cross_entropy([[1,2,3]], [0], label_smoothing=0.1) = 2.3076059 */
    {
        float lg[6] = {1, 2, 3, 0, 0, 0}, lp[6], loss[2];
        int32_t t[2] = {0, -100};
        int cnt = s2s_kref_xent_fwd(loss, lp, lg, t, 0.1f, -100, 2, 3);
        cr_assert(cnt == 1, "xent count %d", cnt);
        cr_assert(fabsf(loss[0] - 2.3076059f) < 1e-5f && loss[1] == 0.0f, "xent %g %g", loss[0], loss[1]);
        cr_assert(fabsf(lp[3] + 1.0986123f) < 1e-6f, "xent logp of a zero row %g", lp[3]);
        /* eps = 0: plain NLL */
        cnt = s2s_kref_xent_fwd(loss, lp, lg, t, 0.0f, -100, 1, 3);
        cr_assert(fabsf(loss[0] - 2.4076059f) < 1e-5f, "xent eps=0 %g", loss[0]);
    }
    /* attention, one head, Dh = 1, q = 0: uniform p over visible keys */
    {
        float q[2] = {0, 0}, k[3] = {1, 2, 3}, v[3] = {1, 2, 6}, out[2], p[6];
        int32_t kvl[1] = {3};
        s2s_kref_attention_fwd(out, p, q, k, v, kvl, 1, 1, 1, 2, 3, 1);
        /* query 0 sees keys 0,1 (offset Tk-Tq = 1), query 1 sees all three */
        cr_assert(p[0] == 0.5f && p[1] == 0.5f && p[2] == 0.0f, "attn p row0 %g %g %g", p[0], p[1], p[2]);
        cr_assert(fabsf(out[0] - 1.5f) < 1e-6f && fabsf(out[1] - 3.0f) < 1e-6f, "attn out %g %g", out[0], out[1]);
        kvl[0] = 0; /* everything masked */
        s2s_kref_attention_fwd(out, p, q, k, v, kvl, 0, 1, 1, 2, 3, 1);
        for (int i = 0; i < 6; i++) cr_assert(p[i] == 0.0f, "masked p[%d] = %g", i, p[i]);
        cr_assert(out[0] == 0.0f && out[1] == 0.0f, "masked out %g %g", out[0], out[1]);
    }
}

/* ------------------------------------------------------------------------------------
 * fast vs reference
 * ---------------------------------------------------------------------------------- */

Test(kernels, linear_fast) {
    /* the middle rows take the few-row path of kernels_small.c (2..24 rows, K % 16 == 0) */
    const int sizes[][3] = {{1, 1, 1}, {1, 37, 53}, {7, 13, 5}, {33, 65, 129}, {64, 300, 257}, {130, 33, 300}, {5, 1, 9},
                            {2, 16, 5}, {4, 256, 1027}, {5, 64, 7}, {24, 32, 9}, {17, 48, 64}, {25, 64, 8}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], K = sizes[s][1], M = sizes[s][2];
        float *x = randn((size_t)N * K, 1), *w = randn((size_t)M * K, 0.5f), *b = randn(M, 1);
        float *y = zeros((size_t)N * M), *yr = zeros((size_t)N * M);
        for (int use_b = 0; use_b < 2; use_b++) {
            s2s_k_linear_fwd(y, x, w, use_b ? b : NULL, N, K, M);
            s2s_kref_linear_fwd(yr, x, w, use_b ? b : NULL, N, K, M);
            check_close(use_b ? "linear_fwd" : "linear_fwd (no bias)", y, yr, (size_t)N * M);
        }
        float *dy = randn((size_t)N * M, 1);
        float *dx = randn((size_t)N * K, 1), *dw = randn((size_t)M * K, 1), *db = randn(M, 1);
        float *dxr = dup(dx, (size_t)N * K), *dwr = dup(dw, (size_t)M * K), *dbr = dup(db, M);
        s2s_k_linear_bwd(dx, dw, db, dy, x, w, N, K, M, 0);
        s2s_kref_linear_bwd(dxr, dwr, dbr, dy, x, w, N, K, M, 0);
        check_close("linear_bwd dx", dx, dxr, (size_t)N * K);
        check_close("linear_bwd dw", dw, dwr, (size_t)M * K);
        check_close("linear_bwd db", db, dbr, M);
        /* NULL gradients are skipped */
        s2s_k_linear_bwd(NULL, dw, NULL, dy, x, w, N, K, M, 0);
        s2s_kref_linear_bwd(NULL, dwr, NULL, dy, x, w, N, K, M, 0);
        check_close("linear_bwd dw only", dw, dwr, (size_t)M * K);
        free(x), free(w), free(b), free(y), free(yr), free(dy);
        free(dx), free(dw), free(db), free(dxr), free(dwr), free(dbr);
    }
}

Test(kernels, linear_packed) {
    /* weights packed once (kernels_gemm.c): row blocks of 1..12 rows, a partial last panel
     * of 32 features, K of any size; every row's result independent of N */
    const int sizes[][3] = {{1, 1, 1}, {2, 16, 5}, {3, 7, 31}, {5, 33, 32}, {12, 64, 33}, {13, 256, 59},
                            {25, 100, 64}, {32, 256, 256}, {37, 1024, 70}, {130, 33, 300}, {24, 48, 1027}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], K = sizes[s][1], M = sizes[s][2];
        /* weights ~ N(0, 1/K): outputs of order 1 for every K (fp32 sums of K terms) */
        float *x = randn((size_t)N * K, 1), *w = randn((size_t)M * K, 1.0f / sqrtf((float)K)), *b = randn(M, 1);
        float *y = zeros((size_t)N * M), *yr = zeros((size_t)N * M), *y1 = zeros(M);
        const size_t np = s2s_gemm_packed_floats(K, M);
        cr_assert_eq(np, (size_t)((M + S2S_GEMM_NR - 1) / S2S_GEMM_NR) * S2S_GEMM_NR * K);
        float *pw = aligned_alloc(64, (np * sizeof(float) + 63) & ~(size_t)63);
        s2s_gemm_pack(pw, w, K, M);
        for (int use_b = 0; use_b < 2; use_b++) {
            s2s_k_linear_packed_fwd(y, x, pw, use_b ? b : NULL, N, K, M);
            s2s_kref_linear_fwd(yr, x, w, use_b ? b : NULL, N, K, M);
            check_close(use_b ? "linear_packed_fwd" : "linear_packed_fwd (no bias)", y, yr, (size_t)N * M);
        }
        /* fused epilogues: ReLU, then a residual (in place, res == y) */
        float *yx = dup(yr, (size_t)N * M), *res = randn((size_t)N * M, 1), *ye = dup(res, (size_t)N * M);
        s2s_k_linear_packed_ex_fwd(yx, x, pw, b, N, K, M, NULL, 1);
        s2s_kref_relu_fwd(yr, yr, (size_t)N * M);
        check_close("linear_packed_ex_fwd relu", yx, yr, (size_t)N * M);
        s2s_k_linear_packed_ex_fwd(ye, x, pw, b, N, K, M, ye, 0);
        s2s_kref_linear_fwd(yr, x, w, b, N, K, M);
        for (size_t i = 0; i < (size_t)N * M; i++) yr[i] += res[i];
        check_close("linear_packed_ex_fwd residual", ye, yr, (size_t)N * M);
        free(yx), free(res), free(ye);
        for (int n = 0; n < N; n += N / 3 + 1) { /* one row alone: bit-identical */
            s2s_k_linear_packed_fwd(y1, x + (size_t)n * K, pw, b, 1, K, M);
            cr_assert(memcmp(y1, y + (size_t)n * M, (size_t)M * sizeof(float)) == 0,
                      "N=%d K=%d M=%d: row %d alone differs from the batch", N, K, M, n);
        }
        free(x), free(w), free(b), free(y), free(yr), free(y1), free(pw);
    }
    /* the threads test's sizes, 1 and 2 threads: the same bits */
    const int N = 64, K = 200, M = 300, n0 = s2s_get_threads();
    float *x = randn((size_t)N * K, 1), *w = randn((size_t)M * K, 1);
    float *pw = aligned_alloc(64, (s2s_gemm_packed_floats(K, M) * sizeof(float) + 63) & ~(size_t)63);
    float *y1 = zeros((size_t)N * M), *y2 = zeros((size_t)N * M);
    s2s_gemm_pack(pw, w, K, M);
    s2s_set_threads(1);
    s2s_k_linear_packed_fwd(y1, x, pw, NULL, N, K, M);
    s2s_set_threads(2);
    s2s_k_linear_packed_fwd(y2, x, pw, NULL, N, K, M);
    s2s_set_threads(n0);
    cr_assert(memcmp(y1, y2, (size_t)N * M * sizeof(float)) == 0, "1 vs 2 threads differ");
    free(x), free(w), free(pw), free(y1), free(y2);
}

Test(kernels, linear_packed_groups) {
    /* block-diagonal: group g of y = group g of x @ w_g^T, bit for bit the packed linear
     * of that group alone; a partial last panel when M % 32 != 0 */
    const int sizes[][4] = {{1, 4, 64, 64}, {32, 4, 64, 64}, {13, 3, 8, 32}, {5, 2, 17, 40}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], G = sizes[s][1], K = sizes[s][2], M = sizes[s][3];
        const size_t pg = s2s_gemm_packed_floats(K, M);
        float *x = randn((size_t)N * G * K, 1), *w = randn((size_t)G * M * K, 1.0f / sqrtf((float)K));
        float *pw = aligned_alloc(64, (G * pg * sizeof(float) + 63) & ~(size_t)63);
        float *y = zeros((size_t)N * G * M), *xg = zeros((size_t)N * K), *yg = zeros((size_t)N * M);
        for (int g = 0; g < G; g++) s2s_gemm_pack(pw + g * pg, w + (size_t)g * M * K, K, M);
        s2s_k_linear_packed_groups_fwd(y, x, pw, N, G, K, M);
        for (int g = 0; g < G; g++) {
            for (int n = 0; n < N; n++) memcpy(xg + (size_t)n * K, x + ((size_t)n * G + g) * K, K * sizeof(float));
            s2s_k_linear_packed_fwd(yg, xg, pw + g * pg, NULL, N, K, M);
            for (int n = 0; n < N; n++)
                cr_assert(memcmp(yg + (size_t)n * M, y + ((size_t)n * G + g) * M, M * sizeof(float)) == 0,
                          "N=%d G=%d K=%d M=%d: group %d row %d differs", N, G, K, M, g, n);
        }
        free(x), free(w), free(pw), free(y), free(xg), free(yg);
    }
}

Test(kernels, matmul_fast) {
    const int sizes[][3] = {{1, 1, 1}, {1, 17, 64}, {9, 5, 11}, {70, 33, 129}, {3, 200, 1}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int M = sizes[s][0], K = sizes[s][1], N = sizes[s][2];
        float *a = randn((size_t)M * K, 1), *b = randn((size_t)K * N, 1);
        float *c = randn((size_t)M * N, 1), *cr = zeros((size_t)M * N); /* c garbage: overwritten */
        s2s_k_matmul_fwd(c, a, b, M, K, N);
        s2s_kref_matmul_fwd(cr, a, b, M, K, N);
        check_close("matmul_fwd", c, cr, (size_t)M * N);
        float *dc = randn((size_t)M * N, 1);
        float *da = randn((size_t)M * K, 1), *db = randn((size_t)K * N, 1);
        float *dar = dup(da, (size_t)M * K), *dbr = dup(db, (size_t)K * N);
        s2s_k_matmul_bwd(da, db, dc, a, b, M, K, N, 0);
        s2s_kref_matmul_bwd(dar, dbr, dc, a, b, M, K, N, 0);
        check_close("matmul_bwd da", da, dar, (size_t)M * K);
        check_close("matmul_bwd db", db, dbr, (size_t)K * N);
        s2s_k_matmul_bwd(NULL, db, dc, a, b, M, K, N, 0);
        s2s_kref_matmul_bwd(NULL, dbr, dc, a, b, M, K, N, 0);
        check_close("matmul_bwd db only", db, dbr, (size_t)K * N);
        free(a), free(b), free(c), free(cr), free(dc), free(da), free(db), free(dar), free(dbr);
    }
}

Test(kernels, layernorm_fast) {
    const int sizes[][2] = {{1, 1}, {1, 512}, {5, 7}, {67, 513}, {300, 129}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], D = sizes[s][1];
        float *x = randn((size_t)N * D, 2), *g = randn(D, 1), *b = randn(D, 1);
        for (int i = 0; i < N * D; i++) x[i] += 3.0f; /* an offset, as real activations have */
        float *y = zeros((size_t)N * D), *yr = zeros((size_t)N * D);
        float *m = zeros(N), *mr = zeros(N), *r = zeros(N), *rr = zeros(N);
        s2s_k_layernorm_fwd(y, m, r, x, g, b, N, D);
        s2s_kref_layernorm_fwd(yr, mr, rr, x, g, b, N, D);
        check_close("layernorm_fwd y", y, yr, (size_t)N * D);
        check_close("layernorm_fwd mean", m, mr, N);
        check_close("layernorm_fwd rstd", r, rr, N);
        float *dy = randn((size_t)N * D, 1);
        float *dx = randn((size_t)N * D, 1), *dg = randn(D, 1), *db = randn(D, 1);
        float *dxr = dup(dx, (size_t)N * D), *dgr = dup(dg, D), *dbr = dup(db, D);
        s2s_k_layernorm_bwd(dx, dg, db, dy, x, mr, rr, g, N, D, 0);
        s2s_kref_layernorm_bwd(dxr, dgr, dbr, dy, x, mr, rr, g, N, D, 0);
        check_close("layernorm_bwd dx", dx, dxr, (size_t)N * D);
        check_close("layernorm_bwd dg", dg, dgr, D);
        check_close("layernorm_bwd db", db, dbr, D);
        s2s_k_layernorm_bwd(NULL, dg, NULL, dy, x, mr, rr, g, N, D, 0);
        s2s_kref_layernorm_bwd(NULL, dgr, NULL, dy, x, mr, rr, g, N, D, 0);
        check_close("layernorm_bwd dg only", dg, dgr, D);
        free(x), free(g), free(b), free(y), free(yr), free(m), free(mr), free(r), free(rr);
        free(dy), free(dx), free(dg), free(db), free(dxr), free(dgr), free(dbr);
    }
}

Test(kernels, softmax_fast) {
    const int sizes[][2] = {{1, 1}, {1, 1000}, {3, 5}, {67, 1001}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], D = sizes[s][1];
        const size_t n = (size_t)N * D;
        float *x = randn(n, 4);
        x[0] += 30.0f; /* a dominant logit and a large offset row */
        if (N > 1) for (int d = 0; d < D; d++) x[D + d] += 100.0f;
        float *y = zeros(n), *yr = zeros(n);
        s2s_k_softmax_fwd(y, x, N, D);
        s2s_kref_softmax_fwd(yr, x, N, D);
        check_close("softmax_fwd", y, yr, n);
        s2s_k_logsoftmax_fwd(y, x, N, D);
        s2s_kref_logsoftmax_fwd(yr, x, N, D);
        check_close("logsoftmax_fwd", y, yr, n);
        float *dy = randn(n, 1), *dx = randn(n, 1), *dxr = dup(dx, n);
        s2s_k_logsoftmax_bwd(dx, dy, yr, N, D, 0);
        s2s_kref_logsoftmax_bwd(dxr, dy, yr, N, D, 0);
        check_close("logsoftmax_bwd", dx, dxr, n);
        s2s_kref_softmax_fwd(yr, x, N, D);
        s2s_k_softmax_bwd(dx, dy, yr, N, D, 0);
        s2s_kref_softmax_bwd(dxr, dy, yr, N, D, 0);
        check_close("softmax_bwd", dx, dxr, n);
        free(x), free(y), free(yr), free(dy), free(dx), free(dxr);
    }
}

Test(kernels, activations_fast) {
    const size_t sizes[] = {1, 17, 140001}; /* the last takes the OpenMP paths */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        float *x = randn(n, 3);
        /* tails and special points */
        const float special[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 6.0f, -6.0f, 10.0f, -10.0f, 40.0f, -40.0f, 3.0f, -3.0f};
        for (size_t i = 0; i < n && i < sizeof special / sizeof special[0]; i++) x[i] = special[i];
        float *y = zeros(n), *yr = zeros(n);
        s2s_k_relu_fwd(y, x, n);
        s2s_kref_relu_fwd(yr, x, n);
        check_close("relu_fwd", y, yr, n);
        s2s_k_gelu_fwd(y, x, n);
        s2s_kref_gelu_fwd(yr, x, n);
        check_close("gelu_fwd", y, yr, n);
        float *dy = randn(n, 1), *dx = randn(n, 1), *dxr = dup(dx, n);
        s2s_k_relu_bwd(dx, dy, x, n, 0);
        s2s_kref_relu_bwd(dxr, dy, x, n, 0);
        check_close("relu_bwd", dx, dxr, n);
        s2s_k_gelu_bwd(dx, dy, x, n, 0);
        s2s_kref_gelu_bwd(dxr, dy, x, n, 0);
        check_close("gelu_bwd", dx, dxr, n);
        free(x), free(y), free(yr), free(dy), free(dx), free(dxr);
    }
}

Test(kernels, embedding_fast) {
    const int sizes[][3] = {{11, 7, 23}, {1, 1, 1}, {50, 300, 500}}; /* V, D, N */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int V = sizes[s][0], D = sizes[s][1], N = sizes[s][2];
        float *table = randn((size_t)V * D, 1);
        int32_t *ids = s2s_xmalloc((size_t)N * sizeof(int32_t));
        for (int n = 0; n < N; n++) ids[n] = (int32_t)(s2s_rng_next(&g_rng) % (uint64_t)V);
        ids[N - 1] = ids[0]; /* at least one repeat */
        float *out = zeros((size_t)N * D), *outr = zeros((size_t)N * D);
        s2s_k_embedding_fwd(out, table, ids, N, D);
        s2s_kref_embedding_fwd(outr, table, ids, N, D);
        check_close("embedding_fwd", out, outr, (size_t)N * D);
        float *dout = randn((size_t)N * D, 1), *dt = randn((size_t)V * D, 1), *dtr = dup(dt, (size_t)V * D);
        s2s_k_embedding_bwd(dt, dout, ids, N, D);
        s2s_kref_embedding_bwd(dtr, dout, ids, N, D);
        check_close("embedding_bwd", dt, dtr, (size_t)V * D);
        free(table), free(ids), free(out), free(outr), free(dout), free(dt), free(dtr);
    }
}

/* attention cases: B, H, Tq, Tk, Dh, causal, kv_len (-1: NULL) for b = 0..2 */
typedef struct {
    int B, H, Tq, Tk, Dh, causal, kvl[3];
} attn_case;

static const attn_case attn_cases[] = {
    {2, 3, 5, 5, 8, 1, {-1}},           /* causal, Tq == Tk */
    {3, 2, 3, 7, 5, 1, {7, 4, 0}},      /* causal Tq < Tk, padding, all-masked batch row */
    {2, 2, 1, 200, 64, 0, {200, 150}},  /* decoding, cross-attention with padding */
    {1, 8, 1, 37, 64, 1, {-1}},         /* decoding, self-attention */
    {2, 3, 37, 41, 64, 0, {41, 30}},    /* training-sized: parallel path */
    {2, 4, 33, 33, 64, 1, {33, 20}},    /* causal + padding, parallel path */
    {2, 2, 6, 4, 3, 1, {-1}},           /* Tq > Tk causal: first rows see nothing */
    {1, 1, 1, 1, 1, 0, {-1}},
};

static void attn_sizes(const attn_case *c, size_t *nq, size_t *nk, size_t *np) {
    *nq = (size_t)c->B * c->Tq * c->H * c->Dh;
    *nk = (size_t)c->B * c->Tk * c->H * c->Dh;
    *np = (size_t)c->B * c->H * c->Tq * c->Tk;
}

Test(kernels, attention_fast) {
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof attn_cases[0]; ci++) {
        const attn_case *c = &attn_cases[ci];
        size_t nq, nk, np;
        attn_sizes(c, &nq, &nk, &np);
        const int32_t *kvl = c->kvl[0] < 0 ? NULL : c->kvl;
        float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1);
        float *out = randn(nq, 1), *p = randn(np, 1); /* garbage in: must be overwritten */
        float *outr = zeros(nq), *pr = zeros(np);
        s2s_k_attention_fwd(out, p, q, k, v, kvl, c->causal, c->B, c->H, c->Tq, c->Tk, c->Dh);
        s2s_kref_attention_fwd(outr, pr, q, k, v, kvl, c->causal, c->B, c->H, c->Tq, c->Tk, c->Dh);
        char what[96];
        snprintf(what, sizeof what, "attention_fwd out (case %zu)", ci);
        check_close(what, out, outr, nq);
        snprintf(what, sizeof what, "attention_fwd p (case %zu)", ci);
        check_close(what, p, pr, np);
        float *dout = randn(nq, 1);
        float *dq = randn(nq, 1), *dk = randn(nk, 1), *dv = randn(nk, 1);
        float *dqr = dup(dq, nq), *dkr = dup(dk, nk), *dvr = dup(dv, nk);
        s2s_k_attention_bwd(dq, dk, dv, dout, pr, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, 0);
        s2s_kref_attention_bwd(dqr, dkr, dvr, dout, pr, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, 0);
        snprintf(what, sizeof what, "attention_bwd dq (case %zu)", ci);
        check_close(what, dq, dqr, nq);
        snprintf(what, sizeof what, "attention_bwd dk (case %zu)", ci);
        check_close(what, dk, dkr, nk);
        snprintf(what, sizeof what, "attention_bwd dv (case %zu)", ci);
        check_close(what, dv, dvr, nk);
        /* only some gradients wanted */
        s2s_k_attention_bwd(NULL, dk, NULL, dout, pr, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, 0);
        s2s_kref_attention_bwd(NULL, dkr, NULL, dout, pr, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, 0);
        snprintf(what, sizeof what, "attention_bwd dk only (case %zu)", ci);
        check_close(what, dk, dkr, nk);
        free(q), free(k), free(v), free(out), free(p), free(outr), free(pr);
        free(dout), free(dq), free(dk), free(dv), free(dqr), free(dkr), free(dvr);
    }
}

Test(kernels, attention_masks) {
    /* structural checks of the masks on the reference and the fast kernel alike */
    const attn_case *c = &attn_cases[1]; /* B=3, H=2, Tq=3, Tk=7, causal, kv_len {7,4,0} */
    size_t nq, nk, np;
    attn_sizes(c, &nq, &nk, &np);
    float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1);
    float *out = zeros(nq), *p = zeros(np);
    for (int impl = 0; impl < 2; impl++) {
        (impl ? s2s_k_attention_fwd : s2s_kref_attention_fwd)(out, p, q, k, v, c->kvl, 1, c->B, c->H,
                                                              c->Tq, c->Tk, c->Dh);
        for (int b = 0; b < c->B; b++)
            for (int h = 0; h < c->H; h++)
                for (int i = 0; i < c->Tq; i++) {
                    const float *pi = p + (((size_t)b * c->H + h) * c->Tq + i) * c->Tk;
                    double sum = 0.0;
                    for (int j = 0; j < c->Tk; j++) {
                        int visible = j < c->kvl[b] && j <= i + (c->Tk - c->Tq);
                        if (!visible) cr_assert(pi[j] == 0.0f, "impl %d: masked p[%d,%d,%d,%d] = %g", impl, b, h, i, j, pi[j]);
                        else cr_assert(pi[j] > 0.0f, "impl %d: visible p[%d,%d,%d,%d] = 0", impl, b, h, i, j);
                        sum += pi[j];
                    }
                    double want = c->kvl[b] > 0 ? 1.0 : 0.0;
                    cr_assert(fabs(sum - want) < 1e-5, "impl %d: p row (%d,%d,%d) sums to %g", impl, b, h, i, sum);
                }
        for (size_t i = 2 * (size_t)c->Tq * c->H * c->Dh; i < nq; i++) /* batch row 2: all masked */
            cr_assert(out[i] == 0.0f, "impl %d: fully masked out[%zu] = %g", impl, i, out[i]);
    }
    free(q), free(k), free(v), free(out), free(p);
}

Test(kernels, xent_fast) {
    const struct {
        int N, V, ignore;
        float eps;
    } cases[] = {{9, 13, -100, 0.1f}, {1, 1, -100, 0.1f}, {40, 2001, 0, 0.0f}, {40, 2001, 0, 0.1f}, {5, 3, 2, 0.3f}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int N = cases[s].N, V = cases[s].V, ig = cases[s].ignore;
        const float eps = cases[s].eps;
        const size_t n = (size_t)N * V;
        float *lg = randn(n, 3);
        for (size_t i = 0; i < (size_t)V; i++) lg[i] += 20.0f; /* an offset row */
        int32_t *t = s2s_xmalloc((size_t)N * sizeof(int32_t));
        int want = 0;
        for (int i = 0; i < N; i++) {
            t[i] = (int32_t)(s2s_rng_next(&g_rng) % (uint64_t)V);
            if (i % 3 == 2) t[i] = ig; /* ignored rows */
            if (ig >= 0 && ig < V && i % 3 != 2 && t[i] == ig) t[i] = (ig + 1) % V;
            want += t[i] != ig;
        }
        float *loss = zeros(N), *lossr = zeros(N), *lp = zeros(n), *lpr = zeros(n);
        int cnt = s2s_k_xent_fwd(loss, lp, lg, t, eps, ig, N, V);
        int cntr = s2s_kref_xent_fwd(lossr, lpr, lg, t, eps, ig, N, V);
        cr_assert(cnt == want && cntr == want, "xent count: fast %d ref %d want %d", cnt, cntr, want);
        check_close("xent_fwd loss", loss, lossr, N);
        check_close("xent_fwd logp", lp, lpr, n);
        for (int i = 0; i < N; i++)
            if (t[i] == ig) cr_assert(loss[i] == 0.0f, "xent: ignored row %d has loss %g", i, loss[i]);
        float *dloss = randn(N, 1), *dl = randn(n, 1), *dlr = dup(dl, n);
        s2s_k_xent_bwd(dl, dloss, lpr, t, eps, ig, N, V, 0);
        s2s_kref_xent_bwd(dlr, dloss, lpr, t, eps, ig, N, V, 0);
        check_close("xent_bwd", dl, dlr, n);
        free(lg), free(t), free(loss), free(lossr), free(lp), free(lpr), free(dloss), free(dl), free(dlr);
    }
}

Test(kernels, threads) {
    int n0 = s2s_get_threads();
    cr_assert(n0 >= 1, "s2s_get_threads() = %d", n0);
    s2s_set_threads(1);
    cr_assert(s2s_get_threads() == 1, "after set_threads(1): %d", s2s_get_threads());
    /* results must not depend on the thread count (beyond rounding) */
    const int N = 64, K = 200, M = 300;
    float *x = randn((size_t)N * K, 1), *w = randn((size_t)M * K, 1);
    float *y1 = zeros((size_t)N * M), *y2 = zeros((size_t)N * M), *yr = zeros((size_t)N * M);
    s2s_k_linear_fwd(y1, x, w, NULL, N, K, M);
    s2s_k_gelu_fwd(y1, y1, (size_t)N * M);
    s2s_set_threads(2);
#ifdef _OPENMP
    cr_assert(s2s_get_threads() == 2, "after set_threads(2): %d", s2s_get_threads());
#endif
    s2s_k_linear_fwd(y2, x, w, NULL, N, K, M);
    s2s_k_gelu_fwd(y2, y2, (size_t)N * M); /* in place is fine for elementwise kernels */
    s2s_kref_linear_fwd(yr, x, w, NULL, N, K, M);
    s2s_kref_gelu_fwd(yr, yr, (size_t)N * M);
    check_close("1 thread", y1, yr, (size_t)N * M);
    check_close("2 threads", y2, yr, (size_t)N * M);
    s2s_set_threads(n0);
    free(x), free(w), free(y1), free(y2), free(yr);
}

/* ------------------------------------------------------------------------------------
 * finite-difference gradient checks of the reference backward kernels
 * ---------------------------------------------------------------------------------- */

typedef struct {
    float *x, *w, *b, *y, *R;
    int N, K, M;
} lin_ctx;

static double lin_loss(void *p) {
    lin_ctx *c = p;
    s2s_kref_linear_fwd(c->y, c->x, c->w, c->b, c->N, c->K, c->M);
    return dotd(c->y, c->R, (size_t)c->N * c->M);
}

Test(kernels, linear_grad) {
    lin_ctx c = {.N = 3, .K = 5, .M = 4};
    size_t nx = (size_t)c.N * c.K, nw = (size_t)c.M * c.K, ny = (size_t)c.N * c.M;
    c.x = randn(nx, 1), c.w = randn(nw, 1), c.b = randn(c.M, 1), c.y = zeros(ny), c.R = randn(ny, 1);
    float *dx = randn(nx, 1), *dw = randn(nw, 1), *db = randn(c.M, 1);
    float *dx0 = dup(dx, nx), *dw0 = dup(dw, nw), *db0 = dup(db, c.M);
    s2s_kref_linear_bwd(dx, dw, db, c.R, c.x, c.w, c.N, c.K, c.M, 0);
    fd_check("linear dx", c.x, nx, dx, dx0, lin_loss, &c);
    fd_check("linear dw", c.w, nw, dw, dw0, lin_loss, &c);
    fd_check("linear db", c.b, c.M, db, db0, lin_loss, &c);
    free(c.x), free(c.w), free(c.b), free(c.y), free(c.R), free(dx), free(dw), free(db), free(dx0), free(dw0), free(db0);
}

typedef struct {
    float *a, *b, *c, *R;
    int M, K, N;
} mm_ctx;

static double mm_loss(void *p) {
    mm_ctx *c = p;
    s2s_kref_matmul_fwd(c->c, c->a, c->b, c->M, c->K, c->N);
    return dotd(c->c, c->R, (size_t)c->M * c->N);
}

Test(kernels, matmul_grad) {
    mm_ctx c = {.M = 4, .K = 3, .N = 5};
    size_t na = (size_t)c.M * c.K, nb = (size_t)c.K * c.N, nc = (size_t)c.M * c.N;
    c.a = randn(na, 1), c.b = randn(nb, 1), c.c = zeros(nc), c.R = randn(nc, 1);
    float *da = randn(na, 1), *db = randn(nb, 1), *da0 = dup(da, na), *db0 = dup(db, nb);
    s2s_kref_matmul_bwd(da, db, c.R, c.a, c.b, c.M, c.K, c.N, 0);
    fd_check("matmul da", c.a, na, da, da0, mm_loss, &c);
    fd_check("matmul db", c.b, nb, db, db0, mm_loss, &c);
    free(c.a), free(c.b), free(c.c), free(c.R), free(da), free(db), free(da0), free(db0);
}

typedef struct {
    float *x, *g, *b, *y, *m, *r, *R;
    int N, D;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    s2s_kref_layernorm_fwd(c->y, c->m, c->r, c->x, c->g, c->b, c->N, c->D);
    return dotd(c->y, c->R, (size_t)c->N * c->D);
}

Test(kernels, layernorm_grad) {
    const int sizes[][2] = {{3, 7}, {2, 1}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        ln_ctx c = {.N = sizes[s][0], .D = sizes[s][1]};
        size_t n = (size_t)c.N * c.D;
        c.x = randn(n, 1), c.g = randn(c.D, 1), c.b = randn(c.D, 1), c.y = zeros(n);
        c.m = zeros(c.N), c.r = zeros(c.N), c.R = randn(n, 1);
        ln_loss(&c); /* saves mean, rstd for the backward */
        float *mean = dup(c.m, c.N), *rstd = dup(c.r, c.N);
        float *dx = randn(n, 1), *dg = randn(c.D, 1), *db = randn(c.D, 1);
        float *dx0 = dup(dx, n), *dg0 = dup(dg, c.D), *db0 = dup(db, c.D);
        s2s_kref_layernorm_bwd(dx, dg, db, c.R, c.x, mean, rstd, c.g, c.N, c.D, 0);
        fd_check("layernorm dx", c.x, n, dx, dx0, ln_loss, &c);
        fd_check("layernorm dg", c.g, c.D, dg, dg0, ln_loss, &c);
        fd_check("layernorm db", c.b, c.D, db, db0, ln_loss, &c);
        free(c.x), free(c.g), free(c.b), free(c.y), free(c.m), free(c.r), free(c.R);
        free(mean), free(rstd), free(dx), free(dg), free(db), free(dx0), free(dg0), free(db0);
    }
}

typedef struct {
    float *x, *y, *R;
    int N, D;
    size_t n;
    int which; /* 0 softmax, 1 logsoftmax, 2 relu, 3 gelu */
} row_ctx;

static double row_loss(void *p) {
    row_ctx *c = p;
    switch (c->which) {
    case 0: s2s_kref_softmax_fwd(c->y, c->x, c->N, c->D); break;
    case 1: s2s_kref_logsoftmax_fwd(c->y, c->x, c->N, c->D); break;
    case 2: s2s_kref_relu_fwd(c->y, c->x, c->n); break;
    default: s2s_kref_gelu_fwd(c->y, c->x, c->n); break;
    }
    return dotd(c->y, c->R, c->n);
}

Test(kernels, softmax_activation_grad) {
    const char *names[] = {"softmax dx", "logsoftmax dx", "relu dx", "gelu dx"};
    for (int which = 0; which < 4; which++) {
        row_ctx c = {.N = 3, .D = 6, .n = 18, .which = which};
        c.x = randn(c.n, 2), c.y = zeros(c.n), c.R = randn(c.n, 1);
        if (which == 2) /* keep relu inputs away from the kink */
            for (size_t i = 0; i < c.n; i++) c.x[i] += c.x[i] >= 0 ? 0.1f : -0.1f;
        if (which == 3) c.x[0] = 0.0f, c.x[1] = -4.0f, c.x[2] = 5.0f;
        row_loss(&c);
        float *y = dup(c.y, c.n), *dx = randn(c.n, 1), *dx0 = dup(dx, c.n);
        switch (which) {
        case 0: s2s_kref_softmax_bwd(dx, c.R, y, c.N, c.D, 0); break;
        case 1: s2s_kref_logsoftmax_bwd(dx, c.R, y, c.N, c.D, 0); break;
        case 2: s2s_kref_relu_bwd(dx, c.R, c.x, c.n, 0); break;
        default: s2s_kref_gelu_bwd(dx, c.R, c.x, c.n, 0); break;
        }
        fd_check(names[which], c.x, c.n, dx, dx0, row_loss, &c);
        free(c.x), free(c.y), free(c.R), free(y), free(dx), free(dx0);
    }
}

typedef struct {
    float *table, *out, *R;
    const int32_t *ids;
    int N, D;
} emb_ctx;

static double emb_loss(void *p) {
    emb_ctx *c = p;
    s2s_kref_embedding_fwd(c->out, c->table, c->ids, c->N, c->D);
    return dotd(c->out, c->R, (size_t)c->N * c->D);
}

Test(kernels, embedding_grad) {
    const int32_t ids[] = {3, 0, 3, 5, 3, 0}; /* repeats; rows 1, 2, 4 unused */
    const int V = 6;
    emb_ctx c = {.ids = ids, .N = 6, .D = 4};
    size_t nt = (size_t)V * c.D, no = (size_t)c.N * c.D;
    c.table = randn(nt, 1), c.out = zeros(no), c.R = randn(no, 1);
    float *dt = randn(nt, 1), *dt0 = dup(dt, nt);
    s2s_kref_embedding_bwd(dt, c.R, ids, c.N, c.D);
    fd_check("embedding dtable", c.table, nt, dt, dt0, emb_loss, &c);
    free(c.table), free(c.out), free(c.R), free(dt), free(dt0);
}

typedef struct {
    float *q, *k, *v, *out, *p, *R;
    const int32_t *kvl;
    int causal, B, H, Tq, Tk, Dh;
} att_ctx;

static double att_loss(void *p) {
    att_ctx *c = p;
    s2s_kref_attention_fwd(c->out, c->p, c->q, c->k, c->v, c->kvl, c->causal, c->B, c->H, c->Tq, c->Tk, c->Dh);
    return dotd(c->out, c->R, (size_t)c->B * c->Tq * c->H * c->Dh);
}

Test(kernels, attention_grad) {
    const attn_case cases[] = {
        {2, 2, 3, 5, 4, 1, {5, 3}},  /* causal Tq < Tk with padding */
        {2, 2, 4, 4, 3, 0, {2, 0}},  /* padding, a fully masked batch row */
        {1, 2, 4, 4, 3, 1, {-1}},    /* causal Tq == Tk */
        {1, 1, 3, 2, 2, 1, {-1}},    /* Tq > Tk: a fully masked query row */
    };
    for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++) {
        const attn_case *ac = &cases[ci];
        att_ctx c = {.kvl = ac->kvl[0] < 0 ? NULL : ac->kvl, .causal = ac->causal, .B = ac->B,
                     .H = ac->H, .Tq = ac->Tq, .Tk = ac->Tk, .Dh = ac->Dh};
        size_t nq, nk, np;
        attn_sizes(ac, &nq, &nk, &np);
        c.q = randn(nq, 1), c.k = randn(nk, 1), c.v = randn(nk, 1);
        c.out = zeros(nq), c.p = zeros(np), c.R = randn(nq, 1);
        att_loss(&c);
        float *p = dup(c.p, np);
        float *dq = randn(nq, 1), *dk = randn(nk, 1), *dv = randn(nk, 1);
        float *dq0 = dup(dq, nq), *dk0 = dup(dk, nk), *dv0 = dup(dv, nk);
        s2s_kref_attention_bwd(dq, dk, dv, c.R, p, c.q, c.k, c.v, c.B, c.H, c.Tq, c.Tk, c.Dh, 0);
        char what[64];
        snprintf(what, sizeof what, "attention dq (case %zu)", ci);
        fd_check(what, c.q, nq, dq, dq0, att_loss, &c);
        snprintf(what, sizeof what, "attention dk (case %zu)", ci);
        fd_check(what, c.k, nk, dk, dk0, att_loss, &c);
        snprintf(what, sizeof what, "attention dv (case %zu)", ci);
        fd_check(what, c.v, nk, dv, dv0, att_loss, &c);
        free(c.q), free(c.k), free(c.v), free(c.out), free(c.p), free(c.R), free(p);
        free(dq), free(dk), free(dv), free(dq0), free(dk0), free(dv0);
    }
}

typedef struct {
    float *logits, *logp, *loss, *R;
    const int32_t *t;
    float eps;
    int ignore, N, V;
} xent_ctx;

static double xent_loss(void *p) {
    xent_ctx *c = p;
    s2s_kref_xent_fwd(c->loss, c->logp, c->logits, c->t, c->eps, c->ignore, c->N, c->V);
    return dotd(c->loss, c->R, c->N);
}

Test(kernels, xent_grad) {
    const int32_t t[] = {2, -100, 0, 6, -100};
    const float epss[] = {0.1f, 0.0f};
    for (int e = 0; e < 2; e++) {
        xent_ctx c = {.t = t, .eps = epss[e], .ignore = -100, .N = 5, .V = 7};
        size_t n = (size_t)c.N * c.V;
        c.logits = randn(n, 2), c.logp = zeros(n), c.loss = zeros(c.N), c.R = randn(c.N, 1);
        xent_loss(&c);
        float *logp = dup(c.logp, n), *dl = randn(n, 1), *dl0 = dup(dl, n);
        s2s_kref_xent_bwd(dl, c.R, logp, t, c.eps, c.ignore, c.N, c.V, 0);
        fd_check(e == 0 ? "xent dlogits (eps 0.1)" : "xent dlogits (eps 0)", c.logits, n, dl, dl0, xent_loss, &c);
        free(c.logits), free(c.logp), free(c.loss), free(c.R), free(logp), free(dl), free(dl0);
    }
}

/* ------------------------------------------------------------------------------------
 * assign bits (kernels.h): an overwritten gradient output equals accumulating into
 * zeros, bit for bit (-0 == +0), in the fast and the reference kernels. It starts as
 * NaN, so any read of the old contents (or an element left unwritten) shows; outputs
 * without their bit still accumulate.
 * ---------------------------------------------------------------------------------- */

static float *nans(size_t n) {
    float *a = s2s_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = NAN;
    return a;
}

static void check_same(const char *what, const float *got, const float *want, size_t n) {
    for (size_t i = 0; i < n; i++)
        cr_assert(got[i] == want[i], "%s: [%zu] of %zu: assigned %.9g, += from 0 %.9g", what, i, n, got[i], want[i]);
}

Test(kernels, backward_assign) {
    const int sizes[][3] = {{33, 65, 129}, {7, 13, 5}, {3, 4, 0}}; /* M = 0: an empty sum, dx = 0 */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], K = sizes[s][1], M = sizes[s][2];
        const size_t nx = (size_t)N * K, nw = (size_t)M * K;
        float *x = randn(nx, 1), *w = randn(nw + 1, 0.5f), *dy = randn((size_t)N * M + 1, 1);
        float *dx0 = zeros(nx), *dx1 = nans(nx), *dxr = nans(nx), *dw0 = randn(nw + 1, 1), *dw1 = dup(dw0, nw + 1);
        s2s_k_linear_bwd(dx0, dw0, NULL, dy, x, w, N, K, M, 0);
        s2s_k_linear_bwd(dx1, dw1, NULL, dy, x, w, N, K, M, S2S_ASSIGN(0));
        s2s_kref_linear_bwd(dxr, NULL, NULL, dy, x, w, N, K, M, S2S_ASSIGN(0));
        check_same("linear_bwd dx", dx1, dx0, nx);
        check_same("linear_bwd dw (+=)", dw1, dw0, nw);
        check_close("linear_bwd dx (ref, assigned)", dx1, dxr, nx);
        /* matmul a[N,K] @ b[K,M]: each bit alone and both */
        if (M > 0) {
            const size_t nb = (size_t)K * M;
            float *b = randn(nb, 1), *da0 = zeros(nx), *db0 = zeros(nb);
            s2s_k_matmul_bwd(da0, db0, dy, x, b, N, K, M, 0);
            for (int asg = 1; asg <= 3; asg++) {
                float *da = asg & 1 ? nans(nx) : zeros(nx), *db = asg & 2 ? nans(nb) : zeros(nb);
                float *dar = asg & 1 ? nans(nx) : zeros(nx), *dbr = asg & 2 ? nans(nb) : zeros(nb);
                s2s_k_matmul_bwd(da, db, dy, x, b, N, K, M, asg);
                s2s_kref_matmul_bwd(dar, dbr, dy, x, b, N, K, M, asg);
                check_same("matmul_bwd da", da, da0, nx);
                check_same("matmul_bwd db", db, db0, nb);
                check_close("matmul_bwd da (ref)", da, dar, nx);
                check_close("matmul_bwd db (ref)", db, dbr, nb);
                free(da), free(db), free(dar), free(dbr);
            }
            free(b), free(da0), free(db0);
        }
        free(x), free(w), free(dy), free(dx0), free(dx1), free(dxr), free(dw0), free(dw1);
    }
    { /* row kernels and activations on [N, D] */
        const int N = 9, D = 33;
        const size_t n = (size_t)N * D;
        float *x = randn(n, 1), *g = randn(D, 1), *dy = randn(n, 1), *y = zeros(n), *mean = zeros(N), *rstd = zeros(N);
        s2s_kref_layernorm_fwd(y, mean, rstd, x, g, g, N, D);
        float *d0 = zeros(n), *d1 = nans(n), *dr = nans(n), *dg0 = randn(D, 1), *dg1 = dup(dg0, D);
        s2s_k_layernorm_bwd(d0, dg0, NULL, dy, x, mean, rstd, g, N, D, 0);
        s2s_k_layernorm_bwd(d1, dg1, NULL, dy, x, mean, rstd, g, N, D, S2S_ASSIGN(0));
        s2s_kref_layernorm_bwd(dr, NULL, NULL, dy, x, mean, rstd, g, N, D, S2S_ASSIGN(0));
        check_same("layernorm_bwd dx", d1, d0, n);
        check_same("layernorm_bwd dg (+=)", dg1, dg0, D);
        check_close("layernorm_bwd dx (ref)", d1, dr, n);
        for (int kind = 0; kind < 4; kind++) {
            static const char *const names[] = {"softmax_bwd", "logsoftmax_bwd", "relu_bwd", "gelu_bwd"};
            float *e0 = zeros(n), *e1 = nans(n), *er = nans(n);
            if (kind < 2) (kind ? s2s_kref_logsoftmax_fwd : s2s_kref_softmax_fwd)(y, x, N, D);
            for (int impl = 0; impl < 3; impl++) {
                float *o = impl == 0 ? e0 : impl == 1 ? e1 : er;
                const int asg = impl ? S2S_ASSIGN(0) : 0;
                switch (kind) {
                case 0: (impl == 2 ? s2s_kref_softmax_bwd : s2s_k_softmax_bwd)(o, dy, y, N, D, asg); break;
                case 1: (impl == 2 ? s2s_kref_logsoftmax_bwd : s2s_k_logsoftmax_bwd)(o, dy, y, N, D, asg); break;
                case 2: (impl == 2 ? s2s_kref_relu_bwd : s2s_k_relu_bwd)(o, dy, x, n, asg); break;
                default: (impl == 2 ? s2s_kref_gelu_bwd : s2s_k_gelu_bwd)(o, dy, x, n, asg); break;
                }
            }
            check_same(names[kind], e1, e0, n);
            check_close(names[kind], e1, er, n);
            free(e0), free(e1), free(er);
        }
        free(x), free(g), free(dy), free(y), free(mean), free(rstd), free(d0), free(d1), free(dr), free(dg0), free(dg1);
    }
    /* attention: masked rows and keys are skipped by the accumulation, still written */
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof attn_cases[0]; ci++) {
        const attn_case *c = &attn_cases[ci];
        size_t nq, nk, np;
        attn_sizes(c, &nq, &nk, &np);
        const int32_t *kvl = c->kvl[0] < 0 ? NULL : c->kvl;
        float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *out = zeros(nq), *p = zeros(np);
        float *dout = randn(nq, 1);
        s2s_kref_attention_fwd(out, p, q, k, v, kvl, c->causal, c->B, c->H, c->Tq, c->Tk, c->Dh);
        float *g0[3] = {zeros(nq), zeros(nk), zeros(nk)};
        s2s_k_attention_bwd(g0[0], g0[1], g0[2], dout, p, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, 0);
        for (int asg = 1; asg <= 7; asg += 3) { /* dq; dk + dv; dq + dk + dv (the rest +=, from 0) */
            float *g1[3], *gr[3];
            for (int i = 0; i < 3; i++) {
                const size_t m = i ? nk : nq;
                g1[i] = asg & S2S_ASSIGN(i) ? nans(m) : zeros(m);
                gr[i] = asg & S2S_ASSIGN(i) ? nans(m) : zeros(m);
            }
            s2s_k_attention_bwd(g1[0], g1[1], g1[2], dout, p, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, asg);
            s2s_kref_attention_bwd(gr[0], gr[1], gr[2], dout, p, q, k, v, c->B, c->H, c->Tq, c->Tk, c->Dh, asg);
            for (int i = 0; i < 3; i++) {
                char what[64];
                snprintf(what, sizeof what, "attention_bwd d%c (case %zu, assign %d)", "qkv"[i], ci, asg);
                check_same(what, g1[i], g0[i], i ? nk : nq);
                check_close(what, g1[i], gr[i], i ? nk : nq);
                free(g1[i]), free(gr[i]);
            }
        }
        for (int i = 0; i < 3; i++) free(g0[i]);
        free(q), free(k), free(v), free(out), free(p), free(dout);
    }
    { /* cross-entropy: ignored rows get zeros */
        const int N = 40, V = 2001, ig = 0;
        const size_t n = (size_t)N * V;
        float *lg = randn(n, 3), *lp = zeros(n), *loss = zeros(N), *dloss = randn(N, 1);
        int32_t t[40];
        for (int i = 0; i < N; i++) t[i] = i % 3 == 2 ? ig : 1 + (int32_t)(s2s_rng_next(&g_rng) % (uint64_t)(V - 1));
        s2s_kref_xent_fwd(loss, lp, lg, t, 0.1f, ig, N, V);
        float *d0 = zeros(n), *d1 = nans(n), *dr = nans(n);
        s2s_k_xent_bwd(d0, dloss, lp, t, 0.1f, ig, N, V, 0);
        s2s_k_xent_bwd(d1, dloss, lp, t, 0.1f, ig, N, V, S2S_ASSIGN(0));
        s2s_kref_xent_bwd(dr, dloss, lp, t, 0.1f, ig, N, V, S2S_ASSIGN(0));
        check_same("xent_bwd", d1, d0, n);
        check_close("xent_bwd (ref)", d1, dr, n);
        free(lg), free(lp), free(loss), free(dloss), free(d0), free(d1), free(dr);
    }
}
