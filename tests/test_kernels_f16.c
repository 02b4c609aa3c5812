/* test_kernels_f16.c - the fp16-weight linear kernel against its reference and
 * against the fp32 linear on the same (converted) weights; and fp16 decoding of
 * a whole model against fp32 decoding of the same weights. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "decoder.h"
#include "graph.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"
#include "test_util.h"

Test(kernels_f16, fast_matches_reference_and_fp32) {
    static const int sizes[][3] = {{1, 256, 1024}, {1, 17, 5}, {3, 64, 59}, {5, 256, 30}, {16, 40, 7}, {2, 1, 3},
                                   {6, 256, 36}, {7, 48, 13}, {11, 33, 8}};
    uint64_t rng = 5;
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++) {
        int N = sizes[c][0], K = sizes[c][1], M = sizes[c][2];
        float *x = malloc(sizeof(float) * N * K), *b = malloc(sizeof(float) * M);
        float *w32 = malloc(sizeof(float) * M * K);
        uint16_t *w16 = malloc(sizeof(uint16_t) * M * K);
        float *y = malloc(sizeof(float) * N * M), *yr = malloc(sizeof(float) * N * M), *y32 = malloc(sizeof(float) * N * M);
        for (int i = 0; i < N * K; i++) x[i] = s2s_rng_normal(&rng);
        for (int i = 0; i < M; i++) b[i] = s2s_rng_normal(&rng);
        for (int i = 0; i < M * K; i++) {
            w16[i] = s2s_f32_to_f16(0.1f * s2s_rng_normal(&rng));
            w32[i] = s2s_f16_to_f32(w16[i]);
        }
        s2s_k_linear_f16_fwd(y, x, w16, b, N, K, M);
        s2s_kref_linear_f16_fwd(yr, x, w16, b, N, K, M);
        s2s_kref_linear_fwd(y32, x, w32, b, N, K, M);
        double e1 = tu_rel_err(y, yr, (size_t)N * M, 1e-5, 1e-4);
        double e2 = tu_rel_err(y32, yr, (size_t)N * M, 1e-5, 1e-4);
        cr_assert(e1 <= 1.0, "N=%d K=%d M=%d: fast vs ref max diff %g", N, K, M, tu_max_diff(y, yr, (size_t)N * M));
        cr_assert(e2 <= 1.0, "N=%d K=%d M=%d: fp32 vs ref max diff %g", N, K, M, tu_max_diff(y32, yr, (size_t)N * M));
        s2s_k_linear_f16_fwd(y, x, w16, NULL, N, K, M); /* no bias */
        s2s_kref_linear_f16_fwd(yr, x, w16, NULL, N, K, M);
        cr_assert(tu_rel_err(y, yr, (size_t)N * M, 1e-5, 1e-4) <= 1.0);
        free(x); free(b); free(w32); free(w16); free(y); free(yr); free(y32);
    }
}

/* A row's result does not depend on how many rows share the call (4-row passes, the
 * 1-3 rows left in one pass, or alone): batching a sentence never changes its bits. */
Test(kernels_f16, row_bits_independent_of_row_count) {
    enum { K = 80, M = 14, NMAX = 7 };
    uint64_t rng = 11;
    float x[NMAX * K], b[M], y1[M], yn[NMAX * M];
    uint16_t w16[M * K];
    for (int i = 0; i < NMAX * K; i++) x[i] = s2s_rng_normal(&rng);
    for (int i = 0; i < M; i++) b[i] = s2s_rng_normal(&rng);
    for (int i = 0; i < M * K; i++) w16[i] = s2s_f32_to_f16(0.1f * s2s_rng_normal(&rng));
    for (int N = 1; N <= NMAX; N++) {
        s2s_k_linear_f16_fwd(yn, x, w16, b, N, K, M);
        for (int r = 0; r < N; r++) {
            s2s_k_linear_f16_fwd(y1, x + r * K, w16, b, 1, K, M);
            cr_assert(memcmp(y1, yn + r * M, sizeof y1) == 0, "row %d of %d differs from the row alone", r, N);
        }
    }
}

/* A model saved in fp16 decodes through the fp16 kernels (weights zero-copy from
 * the file) with the same logits as the fp32 path on the same weights. */
Test(kernels_f16, fp16_model_decoding_matches_fp32_path) {
    s2s_model *m = tu_tiny_model(32, 4, 48, 1, 2, 29);
    char *dir = tu_tmpdir(), *p = tu_path(dir, "m16.safetensors");
    char err[256];
    cr_assert_eq(s2s_model_save(m, p, NULL, 0, NULL, 0, 1, err, sizeof err), 0, "%s", err);
    s2s_model_free(m);
    s2s_model *h = s2s_model_load(p, 0, err, sizeof err);   /* fp16 path */
    s2s_model *f = s2s_model_load(p, 1, err, sizeof err);   /* trainable: fp32 only */
    cr_assert(h && f, "%s", err);
    cr_assert_not_null(h->dec[0].fc1.w->half, "fp16 weights should be kept");
    cr_assert_null(f->dec[0].fc1.w->half);
    static const int32_t src[4] = {4, 5, 6, 2};
    static const int32_t slen[1] = {4};
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, f, src, slen, 1, 4, 0.0f);
    int V = f->cfg.tgt_vocab;
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(f);
    void *a = ops->start(h, enc->data, slen, 1, 4, 1, 8), *b = ops->start(f, enc->data, slen, 1, 4, 1, 8);
    float *la = malloc(sizeof(float) * V), *lb = malloc(sizeof(float) * V);
    int32_t tok[5] = {1, 4, 5, 6, 7};
    for (int t = 0; t < 5; t++) {
        ops->step(a, la, tok + t, 1);
        ops->step(b, lb, tok + t, 1);
        double d = tu_max_diff(la, lb, (size_t)V);
        cr_assert(d < 1e-4, "step %d: fp16 path differs by %g", t, d);
    }
    ops->free(a); ops->free(b);
    free(la); free(lb);
    s2s_graph_free(g);
    s2s_model_free(h); s2s_model_free(f);
    tu_rmrf(dir);
    free(dir); free(p);
}
