/* test_cuda.c - tests of the CUDA backend (src/kernels_cuda.h).
 *
 * Every s2s_kcu_* kernel against its reference s2s_kref_* (or a host loop for the
 * extra elementwise/reduction/AdamW kernels) on the same random host inputs: upload,
 * run on the GPU, download, compare. Awkward sizes (odd, 1, rows longer than a block,
 * both attention batching plans, padding and causal masks with fully masked rows,
 * ignored cross-entropy rows, RNN cells with and without initial state and bias).
 * Backward kernels start from random gradient buffers (the "+=" rule) and are also
 * run with NULL gradients. Tolerance |got - ref| <= atol + rtol |ref|, atol scaled
 * with sqrt(K) where a length-K fp32 sum meets the reference's double one; masks,
 * dropout and copies must match exactly. TF32 mode is checked to stay within 1e-2.
 *
 * Without a GPU (s2s_cuda_available() == 0) every test skips; a build without CUDA
 * (no S2S_CUDA) compiles this file to a single skipping test. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"
#include "kernels_cuda.h"
#include "kernels_rnn.h"

#ifndef S2S_CUDA

Test(cuda_kernels, skipped_without_cuda) {
    cr_assert(s2s_cuda_available() == 0, "a build without CUDA reports a device");
    cr_skip_test("built without CUDA (CUDA=0)");
}

#else

/* ------------------------------------------------------------------------------------
 * helpers
 * ---------------------------------------------------------------------------------- */

#define NEED_GPU()                                                                        \
    do {                                                                                  \
        if (!s2s_cuda_available()) cr_skip_test("no CUDA device");                        \
    } while (0)

static uint64_t g_rng = 0xc0dac0de5eedULL;

/* n values ~ N(0, scale^2) */
static float *randn(size_t n, float scale) {
    float *a = s2s_xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = scale * s2s_rng_normal(&g_rng);
    return a;
}

static float *dup(const float *a, size_t n) {
    float *b = s2s_xmalloc((n ? n : 1) * sizeof(float));
    memcpy(b, a, n * sizeof(float));
    return b;
}

static float *zeros(size_t n) { return s2s_xcalloc(n ? n : 1, sizeof(float)); }

/* device copy of n host floats / int32s */
static float *up(const float *h, size_t n) {
    float *d = s2s_cuda_malloc(n * sizeof(float));
    s2s_cuda_upload(d, h, n * sizeof(float));
    return d;
}

static int32_t *up_i32(const int32_t *h, size_t n) {
    int32_t *d = s2s_cuda_malloc(n * sizeof(int32_t));
    s2s_cuda_upload(d, h, n * sizeof(int32_t));
    return d;
}

/* device buffer of n floats holding garbage (outputs must overwrite it) */
static float *garbage(size_t n) {
    float *h = randn(n, 3.0f), *d = up(h, n);
    free(h);
    return d;
}

/* malloc'd host copy of n device floats */
static float *down(const float *d, size_t n) {
    float *h = s2s_xmalloc((n ? n : 1) * sizeof(float));
    s2s_cuda_download(h, d, n * sizeof(float));
    return h;
}

/* got vs ref: |got - ref| <= atol + rtol |ref| everywhere (equal values, infinities
 * included, pass; NaN fails); reports the worst element. */
static void check_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                        double rtol) {
    size_t worst = 0;
    double wr = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (got[i] == ref[i]) continue;
        double r = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs((double)ref[i]));
        if (!(r <= wr)) { /* NaN lands here and stays */
            wr = isnan(r) ? INFINITY : r;
            worst = i;
        }
    }
    cr_assert(wr <= 1.0, "%s: GPU vs ref mismatch at [%zu] of %zu: got %.9g ref %.9g (|diff| %.3g, %.2fx tol)",
              what, worst, n, got[worst], ref[worst], fabs((double)got[worst] - ref[worst]), wr);
}

/* the device buffer dev[n] against host ref[n] */
static void check_dev(const char *what, const float *dev, const float *ref, size_t n, double atol,
                      double rtol) {
    float *got = down(dev, n);
    check_close(what, got, ref, n, atol, rtol);
    free(got);
}

/* absolute tolerance of a length-K fp32 sum (GPU) against a double one (reference) */
static double ktol(int K) { return 1e-5 * sqrt((double)(K > 1 ? K : 1)); }

#define RT 1e-4 /* relative tolerance where the summation order differs */

/* ------------------------------------------------------------------------------------
 * memory
 * ---------------------------------------------------------------------------------- */

Test(cuda_kernels, memory_helpers) {
    NEED_GPU();
    const char *name = s2s_cuda_device_name();
    cr_assert(name && *name && strcmp(name, "none") != 0, "device name '%s'", name ? name : "(null)");
    const size_t n = 1001;
    float *h = randn(n, 1);
    float *d = up(h, n), *d2 = s2s_cuda_malloc(n * sizeof(float));
    s2s_cuda_copy(d2, d, n * sizeof(float));
    float *back = down(d2, n);
    cr_assert(memcmp(back, h, n * sizeof(float)) == 0, "upload/copy/download round trip differs");
    free(back);
    s2s_cuda_memset0(d2, 500 * sizeof(float));
    back = down(d2, n);
    for (size_t i = 0; i < n; i++)
        cr_assert(back[i] == (i < 500 ? 0.0f : h[i]), "memset0: [%zu] = %g", i, back[i]);
    s2s_cuda_sync();
    s2s_cuda_free(NULL); /* no-op */
    void *z = s2s_cuda_malloc(0);
    s2s_cuda_free(z);
    s2s_cuda_free(d), s2s_cuda_free(d2), free(back), free(h);
}

/* ------------------------------------------------------------------------------------
 * linear, matmul
 * ---------------------------------------------------------------------------------- */

Test(cuda_kernels, linear) {
    NEED_GPU();
    const int sizes[][3] = {{1, 1, 1}, {7, 13, 5}, {1, 37, 53}, {33, 65, 129}, {64, 300, 257}, {130, 33, 300}, {5, 1, 9}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], K = sizes[s][1], M = sizes[s][2];
        const size_t nx = (size_t)N * K, nw = (size_t)M * K, ny = (size_t)N * M;
        char what[96];
        float *x = randn(nx, 1), *w = randn(nw, 0.5f), *b = randn(M, 1), *yr = zeros(ny);
        float *dx_ = up(x, nx), *dw_ = up(w, nw), *db_ = up(b, M), *dy_out = garbage(ny);
        for (int use_b = 0; use_b < 2; use_b++) {
            s2s_kcu_linear_fwd(dy_out, dx_, dw_, use_b ? db_ : NULL, N, K, M);
            s2s_kref_linear_fwd(yr, x, w, use_b ? b : NULL, N, K, M);
            snprintf(what, sizeof what, "linear_fwd%s N=%d K=%d M=%d", use_b ? "" : " (no bias)", N, K, M);
            check_dev(what, dy_out, yr, ny, ktol(K), RT);
        }
        /* backward: gradients start random (+=) */
        float *gy = randn(ny, 1), *gx = randn(nx, 1), *gw = randn(nw, 1), *gb = randn(M, 1);
        float *d_gy = up(gy, ny), *d_gx = up(gx, nx), *d_gw = up(gw, nw), *d_gb = up(gb, M);
        s2s_kcu_linear_bwd(d_gx, d_gw, d_gb, d_gy, dx_, dw_, N, K, M, 0);
        s2s_kref_linear_bwd(gx, gw, gb, gy, x, w, N, K, M, 0);
        snprintf(what, sizeof what, "linear_bwd dx N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gx, gx, nx, ktol(M), RT);
        snprintf(what, sizeof what, "linear_bwd dw N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gw, gw, nw, ktol(N), RT);
        snprintf(what, sizeof what, "linear_bwd db N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gb, gb, M, ktol(N), RT);
        /* NULL gradients are skipped: dw only, then dx and db only */
        s2s_kcu_linear_bwd(NULL, d_gw, NULL, d_gy, dx_, dw_, N, K, M, 0);
        s2s_kref_linear_bwd(NULL, gw, NULL, gy, x, w, N, K, M, 0);
        s2s_kcu_linear_bwd(d_gx, NULL, d_gb, d_gy, dx_, dw_, N, K, M, 0);
        s2s_kref_linear_bwd(gx, NULL, gb, gy, x, w, N, K, M, 0);
        snprintf(what, sizeof what, "linear_bwd (NULLs) dx N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gx, gx, nx, 2 * ktol(M), RT);
        snprintf(what, sizeof what, "linear_bwd (NULLs) dw N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gw, gw, nw, 2 * ktol(N), RT);
        snprintf(what, sizeof what, "linear_bwd (NULLs) db N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gb, gb, M, 2 * ktol(N), RT);
        free(x), free(w), free(b), free(yr), free(gy), free(gx), free(gw), free(gb);
        s2s_cuda_free(dx_), s2s_cuda_free(dw_), s2s_cuda_free(db_), s2s_cuda_free(dy_out);
        s2s_cuda_free(d_gy), s2s_cuda_free(d_gx), s2s_cuda_free(d_gw), s2s_cuda_free(d_gb);
    }
}

Test(cuda_kernels, matmul) {
    NEED_GPU();
    const int sizes[][3] = {{1, 1, 1}, {9, 5, 11}, {7, 13, 5}, {1, 17, 64}, {70, 33, 129}, {3, 200, 1}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int M = sizes[s][0], K = sizes[s][1], N = sizes[s][2];
        const size_t na = (size_t)M * K, nb = (size_t)K * N, nc = (size_t)M * N;
        char what[96];
        float *a = randn(na, 1), *b = randn(nb, 1), *cr = zeros(nc);
        float *d_a = up(a, na), *d_b = up(b, nb), *d_c = garbage(nc);
        s2s_kcu_matmul_fwd(d_c, d_a, d_b, M, K, N);
        s2s_kref_matmul_fwd(cr, a, b, M, K, N);
        snprintf(what, sizeof what, "matmul_fwd M=%d K=%d N=%d", M, K, N);
        check_dev(what, d_c, cr, nc, ktol(K), RT);
        float *gc = randn(nc, 1), *ga = randn(na, 1), *gb = randn(nb, 1);
        float *d_gc = up(gc, nc), *d_ga = up(ga, na), *d_gb = up(gb, nb);
        s2s_kcu_matmul_bwd(d_ga, d_gb, d_gc, d_a, d_b, M, K, N, 0);
        s2s_kref_matmul_bwd(ga, gb, gc, a, b, M, K, N, 0);
        snprintf(what, sizeof what, "matmul_bwd da M=%d K=%d N=%d", M, K, N);
        check_dev(what, d_ga, ga, na, ktol(N), RT);
        snprintf(what, sizeof what, "matmul_bwd db M=%d K=%d N=%d", M, K, N);
        check_dev(what, d_gb, gb, nb, ktol(M), RT);
        s2s_kcu_matmul_bwd(NULL, d_gb, d_gc, d_a, d_b, M, K, N, 0);
        s2s_kref_matmul_bwd(NULL, gb, gc, a, b, M, K, N, 0);
        s2s_kcu_matmul_bwd(d_ga, NULL, d_gc, d_a, d_b, M, K, N, 0);
        s2s_kref_matmul_bwd(ga, NULL, gc, a, b, M, K, N, 0);
        snprintf(what, sizeof what, "matmul_bwd (NULLs) da M=%d K=%d N=%d", M, K, N);
        check_dev(what, d_ga, ga, na, 2 * ktol(N), RT);
        snprintf(what, sizeof what, "matmul_bwd (NULLs) db M=%d K=%d N=%d", M, K, N);
        check_dev(what, d_gb, gb, nb, 2 * ktol(M), RT);
        free(a), free(b), free(cr), free(gc), free(ga), free(gb);
        s2s_cuda_free(d_a), s2s_cuda_free(d_b), s2s_cuda_free(d_c);
        s2s_cuda_free(d_gc), s2s_cuda_free(d_ga), s2s_cuda_free(d_gb);
    }
}

/* ------------------------------------------------------------------------------------
 * layernorm, softmax, activations, embedding
 * ---------------------------------------------------------------------------------- */

Test(cuda_kernels, layernorm) {
    NEED_GPU();
    /* {2500, 64}: many row chunks in the dg/db reduction; {3, 9000}: 1024-thread rows */
    const int sizes[][2] = {{1, 1}, {5, 7}, {1, 512}, {67, 513}, {300, 129}, {2500, 64}, {3, 9000}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], D = sizes[s][1];
        const size_t n = (size_t)N * D;
        char what[96];
        float *x = randn(n, 2), *g = randn(D, 1), *b = randn(D, 1);
        for (size_t i = 0; i < n; i++) x[i] += 3.0f; /* an offset, as real activations have */
        float *yr = zeros(n), *mr = zeros(N), *rr = zeros(N);
        float *d_x = up(x, n), *d_g = up(g, D), *d_b = up(b, D);
        float *d_y = garbage(n), *d_m = garbage(N), *d_r = garbage(N);
        s2s_kcu_layernorm_fwd(d_y, d_m, d_r, d_x, d_g, d_b, N, D);
        s2s_kref_layernorm_fwd(yr, mr, rr, x, g, b, N, D);
        snprintf(what, sizeof what, "layernorm_fwd y N=%d D=%d", N, D);
        check_dev(what, d_y, yr, n, 1e-5, RT);
        snprintf(what, sizeof what, "layernorm_fwd mean N=%d D=%d", N, D);
        check_dev(what, d_m, mr, N, 1e-5, 1e-5);
        snprintf(what, sizeof what, "layernorm_fwd rstd N=%d D=%d", N, D);
        check_dev(what, d_r, rr, N, 1e-5, RT);
        /* backward from the reference statistics */
        s2s_cuda_upload(d_m, mr, N * sizeof(float));
        s2s_cuda_upload(d_r, rr, N * sizeof(float));
        float *gy = randn(n, 1), *gx = randn(n, 1), *gg = randn(D, 1), *gb = randn(D, 1);
        float *d_gy = up(gy, n), *d_gx = up(gx, n), *d_gg = up(gg, D), *d_gb = up(gb, D);
        s2s_kcu_layernorm_bwd(d_gx, d_gg, d_gb, d_gy, d_x, d_m, d_r, d_g, N, D, 0);
        s2s_kref_layernorm_bwd(gx, gg, gb, gy, x, mr, rr, g, N, D, 0);
        snprintf(what, sizeof what, "layernorm_bwd dx N=%d D=%d", N, D);
        check_dev(what, d_gx, gx, n, 3e-5, RT);
        snprintf(what, sizeof what, "layernorm_bwd dg N=%d D=%d", N, D);
        check_dev(what, d_gg, gg, D, ktol(N), RT);
        snprintf(what, sizeof what, "layernorm_bwd db N=%d D=%d", N, D);
        check_dev(what, d_gb, gb, D, ktol(N), RT);
        /* NULL gradients: dg only, then db only, then dx only */
        s2s_kcu_layernorm_bwd(NULL, d_gg, NULL, d_gy, d_x, d_m, d_r, d_g, N, D, 0);
        s2s_kref_layernorm_bwd(NULL, gg, NULL, gy, x, mr, rr, g, N, D, 0);
        s2s_kcu_layernorm_bwd(NULL, NULL, d_gb, d_gy, d_x, d_m, d_r, d_g, N, D, 0);
        s2s_kref_layernorm_bwd(NULL, NULL, gb, gy, x, mr, rr, g, N, D, 0);
        s2s_kcu_layernorm_bwd(d_gx, NULL, NULL, d_gy, d_x, d_m, d_r, d_g, N, D, 0);
        s2s_kref_layernorm_bwd(gx, NULL, NULL, gy, x, mr, rr, g, N, D, 0);
        snprintf(what, sizeof what, "layernorm_bwd (NULLs) dx N=%d D=%d", N, D);
        check_dev(what, d_gx, gx, n, 6e-5, RT);
        snprintf(what, sizeof what, "layernorm_bwd (NULLs) dg N=%d D=%d", N, D);
        check_dev(what, d_gg, gg, D, 2 * ktol(N), RT);
        snprintf(what, sizeof what, "layernorm_bwd (NULLs) db N=%d D=%d", N, D);
        check_dev(what, d_gb, gb, D, 2 * ktol(N), RT);
        free(x), free(g), free(b), free(yr), free(mr), free(rr), free(gy), free(gx), free(gg), free(gb);
        s2s_cuda_free(d_x), s2s_cuda_free(d_g), s2s_cuda_free(d_b), s2s_cuda_free(d_y);
        s2s_cuda_free(d_m), s2s_cuda_free(d_r), s2s_cuda_free(d_gy), s2s_cuda_free(d_gx);
        s2s_cuda_free(d_gg), s2s_cuda_free(d_gb);
    }
}

Test(cuda_kernels, softmax) {
    NEED_GPU();
    const int sizes[][2] = {{1, 1}, {3, 5}, {1, 1000}, {67, 1001}, {3, 9000}};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], D = sizes[s][1];
        const size_t n = (size_t)N * D;
        char what[96];
        float *x = randn(n, 4);
        x[0] += 30.0f; /* a dominant logit, a large offset row and a -inf entry */
        if (N > 1) for (int d = 0; d < D; d++) x[D + d] += 100.0f;
        if (D > 3) x[2] = -INFINITY;
        float *yr = zeros(n), *d_x = up(x, n), *d_y = garbage(n);
        s2s_kcu_softmax_fwd(d_y, d_x, N, D);
        s2s_kref_softmax_fwd(yr, x, N, D);
        snprintf(what, sizeof what, "softmax_fwd N=%d D=%d", N, D);
        check_dev(what, d_y, yr, n, 1e-7, 1e-5);
        s2s_kcu_logsoftmax_fwd(d_y, d_x, N, D);
        s2s_kref_logsoftmax_fwd(yr, x, N, D);
        snprintf(what, sizeof what, "logsoftmax_fwd N=%d D=%d", N, D);
        check_dev(what, d_y, yr, n, 1e-5, 1e-5);
        /* backward from the reference outputs; gradients start random */
        float *dy = randn(n, 1), *dx = randn(n, 1), *d_dy = up(dy, n), *d_dx = up(dx, n);
        s2s_cuda_upload(d_y, yr, n * sizeof(float)); /* log-softmax output */
        s2s_kcu_logsoftmax_bwd(d_dx, d_dy, d_y, N, D, 0);
        s2s_kref_logsoftmax_bwd(dx, dy, yr, N, D, 0);
        snprintf(what, sizeof what, "logsoftmax_bwd N=%d D=%d", N, D);
        check_dev(what, d_dx, dx, n, ktol(D), RT);
        s2s_kref_softmax_fwd(yr, x, N, D);
        s2s_cuda_upload(d_y, yr, n * sizeof(float));
        s2s_kcu_softmax_bwd(d_dx, d_dy, d_y, N, D, 0);
        s2s_kref_softmax_bwd(dx, dy, yr, N, D, 0);
        snprintf(what, sizeof what, "softmax_bwd N=%d D=%d", N, D);
        check_dev(what, d_dx, dx, n, 2 * ktol(D), RT);
        free(x), free(yr), free(dy), free(dx);
        s2s_cuda_free(d_x), s2s_cuda_free(d_y), s2s_cuda_free(d_dy), s2s_cuda_free(d_dx);
    }
}

Test(cuda_kernels, activations) {
    NEED_GPU();
    const size_t sizes[] = {1, 17, 140001};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        char what[64];
        float *x = randn(n, 3);
        const float special[] = {0.0f, -0.0f, 1e-8f, -1e-8f, 6.0f, -6.0f, 10.0f, -10.0f, 40.0f, -40.0f, 3.0f, -3.0f};
        for (size_t i = 0; i < n && i < sizeof special / sizeof special[0]; i++) x[i] = special[i];
        float *yr = zeros(n), *d_x = up(x, n), *d_y = garbage(n);
        s2s_kcu_relu_fwd(d_y, d_x, n);
        s2s_kref_relu_fwd(yr, x, n);
        snprintf(what, sizeof what, "relu_fwd n=%zu", n);
        check_dev(what, d_y, yr, n, 0.0, 0.0);
        s2s_kcu_gelu_fwd(d_y, d_x, n);
        s2s_kref_gelu_fwd(yr, x, n);
        snprintf(what, sizeof what, "gelu_fwd n=%zu", n);
        check_dev(what, d_y, yr, n, 1e-7, 1e-5);
        float *dy = randn(n, 1), *dx = randn(n, 1), *d_dy = up(dy, n), *d_dx = up(dx, n);
        s2s_kcu_relu_bwd(d_dx, d_dy, d_x, n, 0);
        s2s_kref_relu_bwd(dx, dy, x, n, 0);
        snprintf(what, sizeof what, "relu_bwd n=%zu", n);
        check_dev(what, d_dx, dx, n, 0.0, 0.0);
        s2s_kcu_gelu_bwd(d_dx, d_dy, d_x, n, 0);
        s2s_kref_gelu_bwd(dx, dy, x, n, 0);
        snprintf(what, sizeof what, "gelu_bwd n=%zu", n);
        check_dev(what, d_dx, dx, n, 1e-6, 1e-5);
        free(x), free(yr), free(dy), free(dx);
        s2s_cuda_free(d_x), s2s_cuda_free(d_y), s2s_cuda_free(d_dy), s2s_cuda_free(d_dx);
    }
}

Test(cuda_kernels, embedding) {
    NEED_GPU();
    const int sizes[][3] = {{11, 7, 23}, {1, 1, 1}, {50, 300, 500}, {3, 33, 64}}; /* V, D, N */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int V = sizes[s][0], D = sizes[s][1], N = sizes[s][2];
        const size_t nt = (size_t)V * D, no = (size_t)N * D;
        char what[64];
        float *table = randn(nt, 1), *outr = zeros(no);
        int32_t *ids = s2s_xmalloc((size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++) ids[i] = (int32_t)(s2s_rng_next(&g_rng) % (uint64_t)V);
        ids[N - 1] = ids[0]; /* at least one repeat */
        float *d_t = up(table, nt), *d_o = garbage(no);
        int32_t *d_ids = up_i32(ids, N);
        s2s_kcu_embedding_fwd(d_o, d_t, d_ids, N, D);
        s2s_kref_embedding_fwd(outr, table, ids, N, D);
        snprintf(what, sizeof what, "embedding_fwd V=%d D=%d N=%d", V, D, N);
        check_dev(what, d_o, outr, no, 0.0, 0.0);
        float *gout = randn(no, 1), *gt = randn(nt, 1);
        float *d_gout = up(gout, no), *d_gt = up(gt, nt);
        s2s_kcu_embedding_bwd(d_gt, d_gout, d_ids, N, D);
        s2s_kref_embedding_bwd(gt, gout, ids, N, D);
        snprintf(what, sizeof what, "embedding_bwd V=%d D=%d N=%d", V, D, N);
        check_dev(what, d_gt, gt, nt, 1e-6, 1e-5); /* atomics: any order */
        s2s_kcu_embedding_bwd(NULL, d_gout, d_ids, N, D); /* NULL: nothing */
        free(table), free(outr), free(ids), free(gout), free(gt);
        s2s_cuda_free(d_t), s2s_cuda_free(d_o), s2s_cuda_free(d_ids), s2s_cuda_free(d_gout), s2s_cuda_free(d_gt);
    }
}

/* ------------------------------------------------------------------------------------
 * attention
 * ---------------------------------------------------------------------------------- */

/* B, H, Tq, Tk, Dh, causal, kv_len (kvl[0] = -1: NULL) */
typedef struct {
    int B, H, Tq, Tk, Dh, causal, kvl[5];
} attn_case;

static const attn_case attn_cases[] = {
    {2, 3, 5, 5, 8, 1, {-1}},             /* causal, Tq == Tk; H > B (per-batch-row plan) */
    {3, 2, 3, 7, 5, 1, {7, 4, 0}},        /* causal Tq < Tk, padding, all-masked batch row; H < B */
    {2, 2, 1, 200, 64, 0, {200, 150}},    /* decoding, cross-attention with padding */
    {1, 8, 1, 37, 64, 1, {-1}},           /* decoding, self-attention */
    {2, 3, 37, 41, 64, 0, {41, 30}},      /* training-sized */
    {2, 4, 33, 33, 64, 1, {33, 20}},      /* causal + padding */
    {2, 2, 6, 4, 3, 1, {-1}},             /* Tq > Tk causal: first rows see nothing */
    {1, 1, 1, 1, 1, 0, {-1}},
    {5, 2, 7, 9, 4, 1, {9, 3, 0, 12, 1}}, /* kv_len > Tk, 0 and 1; H < B */
    {4, 4, 13, 13, 16, 0, {13, 1, 7, 13}},/* H == B */
};

/* is key j visible to query i of batch row b? (kernels.h's rule) */
static int attn_visible(const attn_case *c, int b, int i, int j) {
    if (c->kvl[0] >= 0 && j >= c->kvl[b]) return 0;
    if (c->causal && j > i + (c->Tk - c->Tq)) return 0;
    return 1;
}

Test(cuda_kernels, attention) {
    NEED_GPU();
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof attn_cases[0]; ci++) {
        const attn_case *c = &attn_cases[ci];
        const int B = c->B, H = c->H, Tq = c->Tq, Tk = c->Tk, Dh = c->Dh;
        const size_t nq = (size_t)B * Tq * H * Dh, nk = (size_t)B * Tk * H * Dh, np = (size_t)B * H * Tq * Tk;
        const int32_t *kvl = c->kvl[0] < 0 ? NULL : c->kvl;
        char what[96];
        float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *outr = zeros(nq), *pr = zeros(np);
        float *d_q = up(q, nq), *d_k = up(k, nk), *d_v = up(v, nk), *d_out = garbage(nq), *d_p = garbage(np);
        int32_t *d_kvl = kvl ? up_i32(kvl, B) : NULL;
        s2s_kcu_attention_fwd(d_out, d_p, d_q, d_k, d_v, d_kvl, c->causal, B, H, Tq, Tk, Dh);
        s2s_kref_attention_fwd(outr, pr, q, k, v, kvl, c->causal, B, H, Tq, Tk, Dh);
        snprintf(what, sizeof what, "attention_fwd p (case %zu)", ci);
        check_dev(what, d_p, pr, np, 1e-6, RT);
        snprintf(what, sizeof what, "attention_fwd out (case %zu)", ci);
        check_dev(what, d_out, outr, nq, 1e-5, RT);
        /* masks exactly: masked p == 0, fully masked query rows give out == 0 */
        float *p = down(d_p, np), *out = down(d_out, nq);
        for (int b = 0; b < B; b++)
            for (int h = 0; h < H; h++)
                for (int i = 0; i < Tq; i++) {
                    int any = 0;
                    for (int j = 0; j < Tk; j++) {
                        const float pij = p[(((size_t)b * H + h) * Tq + i) * Tk + j];
                        if (attn_visible(c, b, i, j)) any = 1;
                        else cr_assert(pij == 0.0f, "case %zu: masked p[%d,%d,%d,%d] = %g", ci, b, h, i, j, pij);
                    }
                    if (!any)
                        for (int d = 0; d < Dh; d++) {
                            const float o = out[((size_t)b * Tq + i) * H * Dh + (size_t)h * Dh + d];
                            cr_assert(o == 0.0f, "case %zu: fully masked out[%d,%d,h%d,%d] = %g", ci, b, i, h, d, o);
                        }
                }
        free(p), free(out);
        /* backward from the reference probabilities; gradients start random */
        s2s_cuda_upload(d_p, pr, np * sizeof(float));
        float *gout = randn(nq, 1), *gq = randn(nq, 1), *gk = randn(nk, 1), *gv = randn(nk, 1);
        float *d_gout = up(gout, nq), *d_gq = up(gq, nq), *d_gk = up(gk, nk), *d_gv = up(gv, nk);
        const int kmax = Tk > Dh ? (Tk > Tq ? Tk : Tq) : (Dh > Tq ? Dh : Tq);
        const double ta = ktol(kmax); /* sums over Tk (dq), Tq (dk, dv) or Dh (dP) */
        s2s_kcu_attention_bwd(d_gq, d_gk, d_gv, d_gout, d_p, d_q, d_k, d_v, B, H, Tq, Tk, Dh, 0);
        s2s_kref_attention_bwd(gq, gk, gv, gout, pr, q, k, v, B, H, Tq, Tk, Dh, 0);
        snprintf(what, sizeof what, "attention_bwd dq (case %zu)", ci);
        check_dev(what, d_gq, gq, nq, ta, RT);
        snprintf(what, sizeof what, "attention_bwd dk (case %zu)", ci);
        check_dev(what, d_gk, gk, nk, ta, RT);
        snprintf(what, sizeof what, "attention_bwd dv (case %zu)", ci);
        check_dev(what, d_gv, gv, nk, ta, RT);
        /* only some gradients wanted */
        s2s_kcu_attention_bwd(NULL, d_gk, NULL, d_gout, d_p, d_q, d_k, d_v, B, H, Tq, Tk, Dh, 0);
        s2s_kref_attention_bwd(NULL, gk, NULL, gout, pr, q, k, v, B, H, Tq, Tk, Dh, 0);
        s2s_kcu_attention_bwd(d_gq, NULL, NULL, d_gout, d_p, d_q, d_k, d_v, B, H, Tq, Tk, Dh, 0);
        s2s_kref_attention_bwd(gq, NULL, NULL, gout, pr, q, k, v, B, H, Tq, Tk, Dh, 0);
        s2s_kcu_attention_bwd(NULL, NULL, d_gv, d_gout, d_p, d_q, d_k, d_v, B, H, Tq, Tk, Dh, 0);
        s2s_kref_attention_bwd(NULL, NULL, gv, gout, pr, q, k, v, B, H, Tq, Tk, Dh, 0);
        snprintf(what, sizeof what, "attention_bwd (NULLs) dq (case %zu)", ci);
        check_dev(what, d_gq, gq, nq, 2 * ta, RT);
        snprintf(what, sizeof what, "attention_bwd (NULLs) dk (case %zu)", ci);
        check_dev(what, d_gk, gk, nk, 2 * ta, RT);
        snprintf(what, sizeof what, "attention_bwd (NULLs) dv (case %zu)", ci);
        check_dev(what, d_gv, gv, nk, 2 * ta, RT);
        free(q), free(k), free(v), free(outr), free(pr), free(gout), free(gq), free(gk), free(gv);
        s2s_cuda_free(d_q), s2s_cuda_free(d_k), s2s_cuda_free(d_v), s2s_cuda_free(d_out), s2s_cuda_free(d_p);
        s2s_cuda_free(d_kvl), s2s_cuda_free(d_gout), s2s_cuda_free(d_gq), s2s_cuda_free(d_gk), s2s_cuda_free(d_gv);
    }
}

/* ------------------------------------------------------------------------------------
 * cross-entropy
 * ---------------------------------------------------------------------------------- */

Test(cuda_kernels, xent_anchor) {
    NEED_GPU();
    /* torch: F.cross_entropy([[1,2,3]], [0], label_smoothing=0.1) = 2.3076059 */
    const float lg[6] = {1, 2, 3, 0, 0, 0};
    const int32_t t[2] = {0, -100};
    float *d_lg = up(lg, 6), *d_lp = garbage(6), *d_loss = garbage(2);
    int32_t *d_t = up_i32(t, 2);
    int ret = s2s_kcu_xent_fwd(d_loss, d_lp, d_lg, d_t, 0.1f, -100, 2, 3);
    cr_assert(ret == -1, "s2s_kcu_xent_fwd returned %d, the header says -1", ret);
    float loss[2], lp[6];
    s2s_cuda_download(loss, d_loss, sizeof loss);
    s2s_cuda_download(lp, d_lp, sizeof lp);
    cr_assert(fabsf(loss[0] - 2.3076059f) < 1e-5f && loss[1] == 0.0f, "xent %g %g", loss[0], loss[1]);
    cr_assert(fabsf(lp[3] + 1.0986123f) < 1e-6f, "xent logp of a zero row %g", lp[3]);
    s2s_cuda_free(d_lg), s2s_cuda_free(d_lp), s2s_cuda_free(d_loss), s2s_cuda_free(d_t);
}

Test(cuda_kernels, xent) {
    NEED_GPU();
    const struct {
        int N, V, ignore;
        float eps;
    } cases[] = {{9, 13, -100, 0.1f}, {1, 1, -100, 0.1f}, {40, 2001, 0, 0.0f}, {40, 2001, 0, 0.1f},
                 {5, 3, 2, 0.3f},     {7, 5, -1, 0.1f},   {4, 40000, 1, 0.1f}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const int N = cases[s].N, V = cases[s].V, ig = cases[s].ignore;
        const float eps = cases[s].eps;
        const size_t n = (size_t)N * V;
        char what[96];
        float *lg = randn(n, 3);
        for (int i = 0; i < V; i++) lg[i] += 20.0f; /* an offset row */
        int32_t *t = s2s_xmalloc((size_t)N * sizeof(int32_t));
        for (int i = 0; i < N; i++) {
            t[i] = (int32_t)(s2s_rng_next(&g_rng) % (uint64_t)V);
            if (i % 3 == 2) t[i] = ig; /* ignored rows */
            if (ig >= 0 && ig < V && i % 3 != 2 && t[i] == ig) t[i] = (ig + 1) % V;
        }
        if (V == 1) t[0] = 0;
        float *lossr = zeros(N), *lpr = zeros(n);
        float *d_lg = up(lg, n), *d_loss = garbage(N), *d_lp = garbage(n);
        int32_t *d_t = up_i32(t, N);
        int ret = s2s_kcu_xent_fwd(d_loss, d_lp, d_lg, d_t, eps, ig, N, V);
        cr_assert(ret == -1, "s2s_kcu_xent_fwd returned %d", ret);
        s2s_kref_xent_fwd(lossr, lpr, lg, t, eps, ig, N, V);
        snprintf(what, sizeof what, "xent_fwd loss N=%d V=%d eps=%g", N, V, eps);
        check_dev(what, d_loss, lossr, N, 1e-5, RT);
        snprintf(what, sizeof what, "xent_fwd logp N=%d V=%d eps=%g", N, V, eps);
        check_dev(what, d_lp, lpr, n, 1e-5, 1e-5);
        float *loss = down(d_loss, N);
        for (int i = 0; i < N; i++)
            if (t[i] == ig) cr_assert(loss[i] == 0.0f, "xent: ignored row %d has loss %g", i, loss[i]);
        free(loss);
        /* backward from the reference logp; dlogits starts random */
        s2s_cuda_upload(d_lp, lpr, n * sizeof(float));
        float *dloss = randn(N, 1), *gl = randn(n, 1), *gl0 = dup(gl, n);
        float *d_dloss = up(dloss, N), *d_gl = up(gl, n);
        s2s_kcu_xent_bwd(d_gl, d_dloss, d_lp, d_t, eps, ig, N, V, 0);
        s2s_kref_xent_bwd(gl, dloss, lpr, t, eps, ig, N, V, 0);
        snprintf(what, sizeof what, "xent_bwd N=%d V=%d eps=%g", N, V, eps);
        check_dev(what, d_gl, gl, n, 1e-6, 1e-5);
        float *got = down(d_gl, n);
        for (int i = 0; i < N; i++)
            if (t[i] == ig)
                cr_assert(memcmp(got + (size_t)i * V, gl0 + (size_t)i * V, (size_t)V * sizeof(float)) == 0,
                          "xent_bwd: ignored row %d was changed", i);
        free(got);
        free(lg), free(t), free(lossr), free(lpr), free(dloss), free(gl), free(gl0);
        s2s_cuda_free(d_lg), s2s_cuda_free(d_loss), s2s_cuda_free(d_lp), s2s_cuda_free(d_t);
        s2s_cuda_free(d_dloss), s2s_cuda_free(d_gl);
    }
}

/* ------------------------------------------------------------------------------------
 * recurrent cells
 * ---------------------------------------------------------------------------------- */

enum { SSRU = 2, GRU = 3, LSTM = 4 }; /* = gates per cell */
static const char *cell_name(int G) { return G == SSRU ? "ssru" : G == GRU ? "gru" : "lstm"; }

/* One cell at one size: forward against the reference, backward (from the reference
 * forward's outputs) against the reference with random starting gradients, then the
 * same with NULL gradients. */
static void rnn_case(int G, int B, int T, int D, int with_state, int with_bias) {
    const size_t n = (size_t)B * T * D, nx = n * G, nw = (size_t)G * D * D, nb = (size_t)G * D;
    const size_t nbd = (size_t)B * D, nws = S2S_RNN_BWD_WS(G, B, T, D);
    char what[128];
    snprintf(what, sizeof what, "%s B=%d T=%d D=%d%s%s", cell_name(G), B, T, D, with_state ? " state" : "",
             with_bias ? "" : " no-bias");
    float *xp = randn(nx, 1), *wh = randn(nw, 1.0f / sqrtf((float)D)), *bh = randn(nb, 0.5f);
    float *h0 = randn(nbd, 0.7f), *c0 = randn(nbd, 0.7f), *dh = randn(n, 1);
    float *hr = zeros(n), *cr = zeros(n), *gr = zeros(4 * n);
    float *d_xp = up(xp, nx), *d_wh = up(wh, nw), *d_bh0 = up(bh, nb), *d_h00 = up(h0, nbd), *d_c00 = up(c0, nbd);
    float *d_bh = with_bias ? d_bh0 : NULL, *d_h0 = with_state ? d_h00 : NULL, *d_c0 = with_state ? d_c00 : NULL;
    const float *r_bh = with_bias ? bh : NULL, *r_h0 = with_state ? h0 : NULL, *r_c0 = with_state ? c0 : NULL;
    float *d_h = garbage(n), *d_c = garbage(n), *d_g = garbage(4 * n), *d_dh = up(dh, n);
    /* forward */
    if (G == SSRU) {
        s2s_kcu_ssru_fwd(d_h, d_c, d_xp, d_c0, B, T, D);
        s2s_kref_ssru_fwd(hr, cr, xp, r_c0, B, T, D);
    } else if (G == GRU) {
        s2s_kcu_gru_fwd(d_h, d_g, d_xp, d_wh, d_bh, d_h0, B, T, D);
        s2s_kref_gru_fwd(hr, gr, xp, wh, r_bh, r_h0, B, T, D);
    } else {
        s2s_kcu_lstm_fwd(d_h, d_c, d_g, d_xp, d_wh, d_bh, d_h0, d_c0, B, T, D);
        s2s_kref_lstm_fwd(hr, cr, gr, xp, wh, r_bh, r_h0, r_c0, B, T, D);
    }
    /* fp32 rounding compounds through the recurrence: atol grows with sqrt(T / 5) */
    const double tf = T > 5 ? sqrt(T / 5.0) : 1.0;
    char msg[160];
    snprintf(msg, sizeof msg, "%s fwd h", what);
    check_dev(msg, d_h, hr, n, 1e-5 * tf, RT);
    if (G != GRU) {
        snprintf(msg, sizeof msg, "%s fwd c", what);
        check_dev(msg, d_c, cr, n, 1e-5 * tf, RT);
    }
    if (G != SSRU) {
        snprintf(msg, sizeof msg, "%s fwd gates", what);
        check_dev(msg, d_g, gr, 4 * n, 1e-5 * tf, RT);
    }
    /* backward from the reference forward; gradients start random, ws holds garbage */
    s2s_cuda_upload(d_h, hr, n * sizeof(float));
    s2s_cuda_upload(d_c, cr, n * sizeof(float));
    s2s_cuda_upload(d_g, gr, 4 * n * sizeof(float));
    float *gx = randn(nx, 1), *gw = randn(nw, 1), *gb = randn(nb, 1);
    float *d_gx = up(gx, nx), *d_gw = up(gw, nw), *d_gb = up(gb, nb), *d_ws = garbage(nws);
    float *ws = s2s_xmalloc(nws * sizeof(float));
    for (int pass = 0; pass < 3; pass++) {
        /* pass 0: every gradient; 1: dxp only; 2: dwh and dbh only */
        float *px = pass == 2 ? NULL : d_gx, *pw = pass == 1 ? NULL : d_gw, *pb = pass == 1 ? NULL : d_gb;
        float *rx = pass == 2 ? NULL : gx, *rw = pass == 1 ? NULL : gw, *rb = pass == 1 ? NULL : gb;
        if (G == SSRU) {
            s2s_kcu_ssru_bwd(px, d_dh, d_xp, d_c, d_c0, B, T, D);
            s2s_kref_ssru_bwd(rx, dh, xp, cr, r_c0, B, T, D);
        } else if (G == GRU) {
            s2s_kcu_gru_bwd(px, pw, pb, d_ws, d_dh, d_h, d_g, d_wh, d_h0, B, T, D);
            s2s_kref_gru_bwd(rx, rw, rb, ws, dh, hr, gr, wh, r_h0, B, T, D);
        } else {
            s2s_kcu_lstm_bwd(px, pw, pb, d_ws, d_dh, d_h, d_c, d_g, d_wh, d_h0, d_c0, B, T, D);
            s2s_kref_lstm_bwd(rx, rw, rb, ws, dh, hr, cr, gr, wh, r_h0, r_c0, B, T, D);
        }
        const double sc = (pass + 1.0) * tf; /* the buffers accumulate over the passes */
        snprintf(msg, sizeof msg, "%s bwd dxp (pass %d)", what, pass);
        check_dev(msg, d_gx, gx, nx, 1e-4 * sc, RT);
        if (G != SSRU) {
            snprintf(msg, sizeof msg, "%s bwd dwh (pass %d)", what, pass);
            check_dev(msg, d_gw, gw, nw, 1e-4 * sc, RT);
            snprintf(msg, sizeof msg, "%s bwd dbh (pass %d)", what, pass);
            check_dev(msg, d_gb, gb, nb, 1e-4 * sc, RT);
        }
    }
    free(xp), free(wh), free(bh), free(h0), free(c0), free(dh), free(hr), free(cr), free(gr);
    free(gx), free(gw), free(gb), free(ws);
    s2s_cuda_free(d_xp), s2s_cuda_free(d_wh), s2s_cuda_free(d_bh0), s2s_cuda_free(d_h00), s2s_cuda_free(d_c00);
    s2s_cuda_free(d_h), s2s_cuda_free(d_c), s2s_cuda_free(d_g), s2s_cuda_free(d_dh);
    s2s_cuda_free(d_gx), s2s_cuda_free(d_gw), s2s_cuda_free(d_gb), s2s_cuda_free(d_ws);
}

static void rnn_all(int G) {
    rnn_case(G, 1, 1, 3, 0, 1); /* one decoding step */
    rnn_case(G, 1, 1, 3, 1, 1);
    rnn_case(G, 3, 5, 4, 1, 1);
    rnn_case(G, 3, 5, 4, 0, 0); /* no state, no bias */
    rnn_case(G, 3, 5, 4, 1, 0);
    rnn_case(G, 2, 7, 70, 1, 1);
    rnn_case(G, 3, 30, 17, 1, 1); /* a longer recurrence */
    rnn_case(G, 66, 2, 250, 1, 1);
}

Test(cuda_kernels, ssru) { NEED_GPU(); rnn_all(SSRU); }
Test(cuda_kernels, gru) { NEED_GPU(); rnn_all(GRU); }
Test(cuda_kernels, lstm) { NEED_GPU(); rnn_all(LSTM); }

/* ------------------------------------------------------------------------------------
 * elementwise, reductions, dropout, AdamW
 * ---------------------------------------------------------------------------------- */

Test(cuda_kernels, elementwise) {
    NEED_GPU();
    const size_t sizes[] = {1, 1000, 300001};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        char what[64];
        float *a = randn(n, 1), *b = randn(n, 2), *y = randn(n, 1), *ref = zeros(n);
        float *d_a = up(a, n), *d_b = up(b, n), *d_y = garbage(n);
        const float sc = -0.37f;
        /* overwriting ops: exact */
        s2s_kcu_add(d_y, d_a, d_b, n);
        for (size_t i = 0; i < n; i++) ref[i] = a[i] + b[i];
        snprintf(what, sizeof what, "add n=%zu", n);
        check_dev(what, d_y, ref, n, 0.0, 0.0);
        s2s_kcu_mul(d_y, d_a, d_b, n);
        for (size_t i = 0; i < n; i++) ref[i] = a[i] * b[i];
        snprintf(what, sizeof what, "mul n=%zu", n);
        check_dev(what, d_y, ref, n, 0.0, 0.0);
        s2s_kcu_scale(d_y, d_a, sc, n);
        for (size_t i = 0; i < n; i++) ref[i] = sc * a[i];
        snprintf(what, sizeof what, "scale n=%zu", n);
        check_dev(what, d_y, ref, n, 0.0, 0.0);
        s2s_kcu_scale(d_y, d_y, 2.0f, n); /* in place, as the gradient clipping does */
        for (size_t i = 0; i < n; i++) ref[i] = 2.0f * ref[i];
        snprintf(what, sizeof what, "scale in place n=%zu", n);
        check_dev(what, d_y, ref, n, 0.0, 0.0);
        /* accumulating ops (the GPU may fuse the multiply-add: one rounding apart per op,
         * and the running sums cancel down to ~1e-3, so the tolerance is absolute) */
        s2s_cuda_upload(d_y, y, n * sizeof(float));
        memcpy(ref, y, n * sizeof(float));
        s2s_kcu_axpy(d_y, sc, d_a, n);
        for (size_t i = 0; i < n; i++) ref[i] += sc * a[i];
        snprintf(what, sizeof what, "axpy n=%zu", n);
        check_dev(what, d_y, ref, n, 1e-6, 1e-6);
        s2s_kcu_mul_acc(d_y, d_a, d_b, n);
        for (size_t i = 0; i < n; i++) ref[i] += a[i] * b[i];
        snprintf(what, sizeof what, "mul_acc n=%zu", n);
        check_dev(what, d_y, ref, n, 1e-6, 1e-6);
        float dy1 = 1.75f, *d_dy1 = up(&dy1, 1);
        s2s_kcu_bcast_acc(d_y, d_dy1, sc, n);
        for (size_t i = 0; i < n; i++) ref[i] += sc * dy1;
        snprintf(what, sizeof what, "bcast_acc n=%zu", n);
        check_dev(what, d_y, ref, n, 1e-6, 1e-6);
        free(a), free(b), free(y), free(ref);
        s2s_cuda_free(d_a), s2s_cuda_free(d_b), s2s_cuda_free(d_y), s2s_cuda_free(d_dy1);
    }
}

Test(cuda_kernels, dropout_matches_cpu_formula) {
    NEED_GPU();
    const struct {
        size_t n;
        float p;
        uint64_t seed;
    } cases[] = {{1, 0.5f, 1}, {100003, 0.1f, 0x1234567890abcdefULL}, {100003, 0.5f, 42}, {4097, 0.9f, ~0ULL}};
    for (size_t s = 0; s < sizeof cases / sizeof cases[0]; s++) {
        const size_t n = cases[s].n;
        const float p = cases[s].p;
        const uint64_t seed = cases[s].seed;
        float *x = randn(n, 1), *mask = zeros(n), *y = zeros(n);
        /* the counter-based mask of graph.c */
        const float keep = 1.0f / (1.0f - p);
        size_t kept = 0;
        for (size_t i = 0; i < n; i++) {
            uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            float u = (float)(z >> 40) / 16777216.0f;
            mask[i] = u >= p ? keep : 0.0f;
            y[i] = x[i] * mask[i];
            kept += mask[i] != 0.0f;
        }
        if (n > 1000) /* sanity of the formula itself */
            cr_assert(fabs((double)kept / n - (1.0 - p)) < 0.02, "kept %zu of %zu at p = %g", kept, n, p);
        float *d_x = up(x, n), *d_m = garbage(n), *d_y = garbage(n);
        s2s_kcu_dropout_fwd(d_y, d_m, d_x, p, seed, n);
        char what[64];
        snprintf(what, sizeof what, "dropout mask n=%zu p=%g", n, p);
        check_dev(what, d_m, mask, n, 0.0, 0.0);
        snprintf(what, sizeof what, "dropout y n=%zu p=%g", n, p);
        check_dev(what, d_y, y, n, 0.0, 0.0);
        free(x), free(mask), free(y);
        s2s_cuda_free(d_x), s2s_cuda_free(d_m), s2s_cuda_free(d_y);
    }
}

Test(cuda_kernels, sum_and_sqnorm) {
    NEED_GPU();
    const size_t sizes[] = {0, 1, 1000, 1000003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        float *x = randn(n, 1);
        for (size_t i = 0; i < n; i++) x[i] += 0.25f; /* a nonzero mean */
        double sum = 0.0, sq = 0.0;
        for (size_t i = 0; i < n; i++) { sum += x[i]; sq += (double)x[i] * x[i]; }
        const float sc = n ? 1.0f / (float)n : 1.0f;
        float *d_x = up(x, n), *d_out = garbage(1), out;
        s2s_kcu_sum(d_out, d_x, sc, n);
        s2s_cuda_download(&out, d_out, sizeof out);
        const float want = (float)((double)sc * sum);
        cr_assert(fabsf(out - want) <= 1e-7f + 1e-6f * fabsf(want), "sum n=%zu: got %.9g want %.9g", n, out, want);
        /* out[0] += sum(x^2), twice, from 1.5 */
        double acc = 1.5, *d_acc = s2s_cuda_malloc(sizeof(double));
        s2s_cuda_upload(d_acc, &acc, sizeof acc);
        s2s_kcu_sqnorm_acc(d_acc, d_x, n);
        s2s_kcu_sqnorm_acc(d_acc, d_x, n);
        s2s_cuda_download(&acc, d_acc, sizeof acc);
        const double wantd = 1.5 + 2.0 * sq;
        cr_assert(fabs(acc - wantd) <= 1e-10 * wantd, "sqnorm_acc n=%zu: got %.17g want %.17g", n, acc, wantd);
        free(x);
        s2s_cuda_free(d_x), s2s_cuda_free(d_out), s2s_cuda_free(d_acc);
    }
}

Test(cuda_kernels, adamw) {
    NEED_GPU();
    const size_t sizes[] = {1, 5003};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const size_t n = sizes[s];
        float *p = randn(n, 1), *m = randn(n, 0.1f), *v = randn(n, 0.1f);
        for (size_t i = 0; i < n; i++) v[i] = v[i] * v[i]; /* second moments >= 0 */
        float *d_p = up(p, n), *d_m = up(m, n), *d_v = up(v, n);
        const float lr = 1e-3f, wd = 0.01f, b1 = 0.9f, b2 = 0.98f, eps = 1e-8f, gscale = 0.5f;
        for (long step = 1; step <= 3; step++) {
            float *g = randn(n, 1), *d_g = up(g, n);
            const float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
            const float bc2s = sqrtf(bc2), stepsize = lr / bc1, decay = 1.0f - lr * wd;
            s2s_kcu_adamw(d_p, d_m, d_v, d_g, gscale, decay, b1, b2, stepsize, bc2s, eps, n);
            for (size_t i = 0; i < n; i++) { /* optim.c's update, gradient scaled first */
                float gi = g[i] * gscale;
                p[i] *= decay;
                m[i] = b1 * m[i] + (1.0f - b1) * gi;
                v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
                p[i] -= stepsize * m[i] / (sqrtf(v[i]) / bc2s + eps);
            }
            free(g), s2s_cuda_free(d_g);
        }
        check_dev("adamw p", d_p, p, n, 1e-6, 1e-5);
        check_dev("adamw m", d_m, m, n, 1e-7, 1e-5);
        check_dev("adamw v", d_v, v, n, 1e-8, 1e-5);
        free(p), free(m), free(v);
        s2s_cuda_free(d_p), s2s_cuda_free(d_m), s2s_cuda_free(d_v);
    }
}

/* ------------------------------------------------------------------------------------
 * TF32 mode
 * ---------------------------------------------------------------------------------- */

/* max |got - ref| / max |ref| (normwise relative error) of the device buffer */
static double normwise_err(const float *dev, const float *ref, size_t n) {
    float *got = down(dev, n);
    double md = 0.0, mr = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - ref[i]);
        if (!(d <= md)) md = isnan(d) ? INFINITY : d;
        if (fabs((double)ref[i]) > mr) mr = fabs((double)ref[i]);
    }
    free(got);
    return mr > 0.0 ? md / mr : md;
}

Test(cuda_kernels, tf32_mode) {
    NEED_GPU();
    const int N = 64, K = 300, M = 257;
    const size_t nx = (size_t)N * K, nw = (size_t)M * K, ny = (size_t)N * M;
    float *x = randn(nx, 1), *w = randn(nw, 0.5f), *b = randn(M, 1), *yr = zeros(ny);
    float *d_x = up(x, nx), *d_w = up(w, nw), *d_b = up(b, M), *d_y = garbage(ny);
    s2s_kref_linear_fwd(yr, x, w, b, N, K, M);
    s2s_cuda_set_tf32(1); /* before or after the cuBLAS handle exists: both must work */
    s2s_kcu_linear_fwd(d_y, d_x, d_w, d_b, N, K, M);
    double e = normwise_err(d_y, yr, ny);
    cr_assert(e <= 1e-2, "TF32 linear: normwise error %g", e);
    s2s_cuda_set_tf32(0);
    s2s_kcu_linear_fwd(d_y, d_x, d_w, d_b, N, K, M);
    check_dev("linear_fwd back in fp32 mode", d_y, yr, ny, ktol(K), RT);
    s2s_cuda_set_tf32(1);
    s2s_kcu_linear_fwd(d_y, d_x, d_w, d_b, N, K, M);
    e = normwise_err(d_y, yr, ny);
    cr_assert(e <= 1e-2, "TF32 linear (mode set on a live handle): normwise error %g", e);
    /* attention and the linear backward under TF32 */
    const attn_case *c = &attn_cases[4];
    const size_t nq = (size_t)c->B * c->Tq * c->H * c->Dh, nk = (size_t)c->B * c->Tk * c->H * c->Dh;
    const size_t np = (size_t)c->B * c->H * c->Tq * c->Tk;
    float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *outr = zeros(nq), *pr = zeros(np);
    float *d_q = up(q, nq), *d_k = up(k, nk), *d_v = up(v, nk), *d_out = garbage(nq), *d_p = garbage(np);
    int32_t *d_kvl = up_i32(c->kvl, c->B);
    s2s_kcu_attention_fwd(d_out, d_p, d_q, d_k, d_v, d_kvl, c->causal, c->B, c->H, c->Tq, c->Tk, c->Dh);
    s2s_kref_attention_fwd(outr, pr, q, k, v, c->kvl, c->causal, c->B, c->H, c->Tq, c->Tk, c->Dh);
    e = normwise_err(d_out, outr, nq);
    cr_assert(e <= 1e-2, "TF32 attention out: normwise error %g", e);
    e = normwise_err(d_p, pr, np);
    cr_assert(e <= 1e-2, "TF32 attention p: normwise error %g", e);
    float *gy = randn(ny, 1), *gw = zeros(nw), *d_gy = up(gy, ny), *d_gw = up(gw, nw);
    s2s_kcu_linear_bwd(NULL, d_gw, NULL, d_gy, d_x, d_w, N, K, M, 0);
    s2s_kref_linear_bwd(NULL, gw, NULL, gy, x, w, N, K, M, 0);
    e = normwise_err(d_gw, gw, nw);
    cr_assert(e <= 1e-2, "TF32 linear dw: normwise error %g", e);
    s2s_cuda_set_tf32(0);
    free(x), free(w), free(b), free(yr), free(q), free(k), free(v), free(outr), free(pr), free(gy), free(gw);
    s2s_cuda_free(d_x), s2s_cuda_free(d_w), s2s_cuda_free(d_b), s2s_cuda_free(d_y);
    s2s_cuda_free(d_q), s2s_cuda_free(d_k), s2s_cuda_free(d_v), s2s_cuda_free(d_out), s2s_cuda_free(d_p);
    s2s_cuda_free(d_kvl), s2s_cuda_free(d_gy), s2s_cuda_free(d_gw);
}

/* ------------------------------------------------------------------------------------
 * assign bits (kernels.h): an output whose bit is set starts as NaN on the device and
 * must be overwritten everywhere (masked attention rows, ignored xent rows, an empty
 * sum included), matching the reference accumulated into zeros
 * ---------------------------------------------------------------------------------- */

static float *nans_dev(size_t n) {
    float *h = s2s_xmalloc((n ? n : 1) * sizeof(float)), *d;
    for (size_t i = 0; i < (n ? n : 1); i++) h[i] = NAN;
    d = up(h, n ? n : 1);
    free(h);
    return d;
}

Test(cuda_kernels, backward_assign) {
    NEED_GPU();
    char what[96];
    const int sizes[][3] = {{33, 65, 129}, {7, 13, 5}, {3, 4, 0}}; /* M = 0: dx = an empty sum = 0 */
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        const int N = sizes[s][0], K = sizes[s][1], M = sizes[s][2];
        const size_t nx = (size_t)N * K, nw = (size_t)M * K + 1, ny = (size_t)N * M + 1;
        float *x = randn(nx, 1), *w = randn(nw, 0.5f), *gy = randn(ny, 1), *gx = zeros(nx);
        float *d_x = up(x, nx), *d_w = up(w, nw), *d_gy = up(gy, ny), *d_gx = nans_dev(nx);
        s2s_kcu_linear_bwd(d_gx, NULL, NULL, d_gy, d_x, d_w, N, K, M, S2S_ASSIGN(0));
        s2s_kref_linear_bwd(gx, NULL, NULL, gy, x, w, N, K, M, 0);
        snprintf(what, sizeof what, "linear_bwd dx (assign) N=%d K=%d M=%d", N, K, M);
        check_dev(what, d_gx, gx, nx, ktol(M), RT);
        if (M > 0) { /* matmul x[N,K] @ b[K,M]: da, db, both */
            const size_t nb = (size_t)K * M;
            float *b = randn(nb, 1), *ga = zeros(nx), *gb = zeros(nb), *d_b = up(b, nb);
            s2s_kref_matmul_bwd(ga, gb, gy, x, b, N, K, M, 0);
            for (int asg = 1; asg <= 3; asg++) {
                float *z = zeros(nx > nb ? nx : nb);
                float *d_ga = asg & 1 ? nans_dev(nx) : up(z, nx), *d_gb = asg & 2 ? nans_dev(nb) : up(z, nb);
                s2s_kcu_matmul_bwd(d_ga, d_gb, d_gy, d_x, d_b, N, K, M, asg);
                snprintf(what, sizeof what, "matmul_bwd da (assign %d) M=%d K=%d N=%d", asg, N, K, M);
                check_dev(what, d_ga, ga, nx, ktol(M), RT);
                snprintf(what, sizeof what, "matmul_bwd db (assign %d) M=%d K=%d N=%d", asg, N, K, M);
                check_dev(what, d_gb, gb, nb, ktol(N), RT);
                free(z);
                s2s_cuda_free(d_ga), s2s_cuda_free(d_gb);
            }
            free(b), free(ga), free(gb);
            s2s_cuda_free(d_b);
        }
        free(x), free(w), free(gy), free(gx);
        s2s_cuda_free(d_x), s2s_cuda_free(d_w), s2s_cuda_free(d_gy), s2s_cuda_free(d_gx);
    }
    { /* layernorm dx, softmax, log-softmax, relu, gelu */
        const int N = 67, D = 513;
        const size_t n = (size_t)N * D;
        float *x = randn(n, 2), *g = randn(D, 1), *gy = randn(n, 1), *y = zeros(n), *mr = zeros(N), *rr = zeros(N);
        s2s_kref_layernorm_fwd(y, mr, rr, x, g, g, N, D);
        float *d_x = up(x, n), *d_g = up(g, D), *d_gy = up(gy, n), *d_m = up(mr, N), *d_r = up(rr, N);
        float *gx = zeros(n), *d_gx = nans_dev(n), *d_y = garbage(n);
        s2s_kcu_layernorm_bwd(d_gx, NULL, NULL, d_gy, d_x, d_m, d_r, d_g, N, D, S2S_ASSIGN(0));
        s2s_kref_layernorm_bwd(gx, NULL, NULL, gy, x, mr, rr, g, N, D, 0);
        check_dev("layernorm_bwd dx (assign)", d_gx, gx, n, 3e-5, RT);
        for (int kind = 0; kind < 4; kind++) {
            static const char *const names[] = {"softmax_bwd (assign)", "logsoftmax_bwd (assign)", "relu_bwd (assign)",
                                                "gelu_bwd (assign)"};
            memset(gx, 0, n * sizeof(float));
            s2s_cuda_free(d_gx);
            d_gx = nans_dev(n);
            if (kind < 2) {
                (kind ? s2s_kref_logsoftmax_fwd : s2s_kref_softmax_fwd)(y, x, N, D);
                s2s_cuda_upload(d_y, y, n * sizeof(float));
            }
            switch (kind) {
            case 0:
                s2s_kcu_softmax_bwd(d_gx, d_gy, d_y, N, D, S2S_ASSIGN(0));
                s2s_kref_softmax_bwd(gx, gy, y, N, D, 0);
                break;
            case 1:
                s2s_kcu_logsoftmax_bwd(d_gx, d_gy, d_y, N, D, S2S_ASSIGN(0));
                s2s_kref_logsoftmax_bwd(gx, gy, y, N, D, 0);
                break;
            case 2:
                s2s_kcu_relu_bwd(d_gx, d_gy, d_x, n, S2S_ASSIGN(0));
                s2s_kref_relu_bwd(gx, gy, x, n, 0);
                break;
            default:
                s2s_kcu_gelu_bwd(d_gx, d_gy, d_x, n, S2S_ASSIGN(0));
                s2s_kref_gelu_bwd(gx, gy, x, n, 0);
                break;
            }
            check_dev(names[kind], d_gx, gx, n, 2 * ktol(D), RT);
        }
        free(x), free(g), free(gy), free(y), free(mr), free(rr), free(gx);
        s2s_cuda_free(d_x), s2s_cuda_free(d_g), s2s_cuda_free(d_gy), s2s_cuda_free(d_m), s2s_cuda_free(d_r);
        s2s_cuda_free(d_gx), s2s_cuda_free(d_y);
    }
    for (size_t ci = 0; ci < sizeof attn_cases / sizeof attn_cases[0]; ci++) { /* attention: dq; dk + dv; all */
        const attn_case *c = &attn_cases[ci];
        const int B = c->B, H = c->H, Tq = c->Tq, Tk = c->Tk, Dh = c->Dh;
        const size_t nq = (size_t)B * Tq * H * Dh, nk = (size_t)B * Tk * H * Dh, np = (size_t)B * H * Tq * Tk;
        const int32_t *kvl = c->kvl[0] < 0 ? NULL : c->kvl;
        float *q = randn(nq, 1), *k = randn(nk, 1), *v = randn(nk, 1), *out = zeros(nq), *p = zeros(np);
        float *gout = randn(nq, 1), *g[3] = {zeros(nq), zeros(nk), zeros(nk)};
        s2s_kref_attention_fwd(out, p, q, k, v, kvl, c->causal, B, H, Tq, Tk, Dh);
        s2s_kref_attention_bwd(g[0], g[1], g[2], gout, p, q, k, v, B, H, Tq, Tk, Dh, 0);
        float *d_q = up(q, nq), *d_k = up(k, nk), *d_v = up(v, nk), *d_p = up(p, np), *d_gout = up(gout, nq);
        const int kmax = Tk > Dh ? (Tk > Tq ? Tk : Tq) : (Dh > Tq ? Dh : Tq);
        for (int asg = 1; asg <= 7; asg += 3) {
            float *d_g[3];
            for (int i = 0; i < 3; i++) {
                float *z = zeros(i ? nk : nq);
                d_g[i] = asg & S2S_ASSIGN(i) ? nans_dev(i ? nk : nq) : up(z, i ? nk : nq);
                free(z);
            }
            s2s_kcu_attention_bwd(d_g[0], d_g[1], d_g[2], d_gout, d_p, d_q, d_k, d_v, B, H, Tq, Tk, Dh, asg);
            for (int i = 0; i < 3; i++) {
                snprintf(what, sizeof what, "attention_bwd d%c (case %zu, assign %d)", "qkv"[i], ci, asg);
                check_dev(what, d_g[i], g[i], i ? nk : nq, ktol(kmax), RT);
                s2s_cuda_free(d_g[i]);
            }
        }
        free(q), free(k), free(v), free(out), free(p), free(gout), free(g[0]), free(g[1]), free(g[2]);
        s2s_cuda_free(d_q), s2s_cuda_free(d_k), s2s_cuda_free(d_v), s2s_cuda_free(d_p), s2s_cuda_free(d_gout);
    }
    { /* cross-entropy: ignored rows get zeros */
        const int N = 40, V = 2001, ig = 0;
        const size_t n = (size_t)N * V;
        float *lg = randn(n, 3), *lp = zeros(n), *loss = zeros(N), *dloss = randn(N, 1), *gl = zeros(n);
        int32_t t[40];
        for (int i = 0; i < N; i++) t[i] = i % 3 == 2 ? ig : 1 + (int32_t)(s2s_rng_next(&g_rng) % (uint64_t)(V - 1));
        s2s_kref_xent_fwd(loss, lp, lg, t, 0.1f, ig, N, V);
        s2s_kref_xent_bwd(gl, dloss, lp, t, 0.1f, ig, N, V, 0);
        float *d_lp = up(lp, n), *d_dloss = up(dloss, N), *d_gl = nans_dev(n);
        int32_t *d_t = up_i32(t, N);
        s2s_kcu_xent_bwd(d_gl, d_dloss, d_lp, d_t, 0.1f, ig, N, V, S2S_ASSIGN(0));
        check_dev("xent_bwd (assign)", d_gl, gl, n, 1e-6, 1e-5);
        free(lg), free(lp), free(loss), free(dloss), free(gl);
        s2s_cuda_free(d_lp), s2s_cuda_free(d_dloss), s2s_cuda_free(d_gl), s2s_cuda_free(d_t);
    }
}

#endif /* S2S_CUDA */
