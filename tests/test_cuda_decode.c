/* test_cuda_decode.c - GPU decoding (decoder_cuda.cu, `s2s translate --device cuda`)
 * against the CPU decoders:
 *   - step logits of the GPU decoder equal the CPU decoder's (|diff| <= 1e-4 times the
 *     logits' scale) on tiny random models of every decoder kind, over several steps
 *     with select() reordering, duplicating and dropping rows in between (row counts
 *     that exercise every row tiling of the kernels: 12, 7, 3, 1, 2), on both paths of
 *     the projections (our kernels below S2S_GPU_GEMM_ROWS rows, cuBLAS GEMMs from
 *     there; the variable forces either or a switch mid-search), and at 40 rows (a batch
 *     of 40; beam 5 x 8 sentences) that shrink, grow back and shrink again;
 *   - in the same schedules, s2s_dec_cuda_step_top (the device-side argmax / top-k
 *     search.c uses for models on the GPU) against the logits of a state stepped alongside;
 *   - greedy s2s_search on the GPU with the device argmax equals the one on the full
 *     logits (asked for by the score), large path included;
 *   - s2s_translate on the shipped g2p model gives identical strings on both devices
 *     (greedy at batch 100, 32 and 1, beam 5 at batch 16 and 2) for ~200 generated words;
 *   - the CLI: `--device cuda` gives the CPU's output, `--device bogus` fails in one line.
 * Tests needing a GPU skip cleanly without one (the file compiles to skipping tests in
 * a build without CUDA); the CLI's error cases also run without a GPU. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "decoder.h"
#include "graph.h"
#include "kernels_cuda.h"
#include "model.h"
#include "s2s.h"
#include "search.h"
#include "test_util.h"
#include "tokenizer.h"

#define NEED_GPU() \
    do { if (!s2s_cuda_available()) cr_skip_test("no CUDA device"); } while (0)

#define G2P_MODEL "models/g2p-small.safetensors"

/* Run "<bin> args < in" (stdout + stderr captured); returns the exit status. */
static int run_cli(const char *stdin_text, const char *args, char **out) {
    char *dir = tu_tmpdir(), *in = tu_path(dir, "stdin.txt"), *cmd;
    tu_write(in, stdin_text);
    cr_assert(asprintf(&cmd, "%s %s < %s", tu_bin(), args, in) > 0);
    int st = tu_run(cmd, out);
    free(cmd);
    tu_rmrf(dir);
    free(in);
    free(dir);
    return st;
}

static void expect_one_line_failure(const char *args, const char *needle) {
    char *out = NULL;
    int st = run_cli("hello\n", args, &out);
    cr_assert(st != 0 && st < 128, "'%s' should fail cleanly, got status %d: %s", args, st, out);
    cr_assert(strstr(out, needle) != NULL, "'%s': output '%s' should mention '%s'", args, out, needle);
    char *nl = strchr(out, '\n');
    cr_assert(nl == NULL || nl[1] == '\0', "'%s': error must be one line: '%s'", args, out);
    free(out);
}

/* Runs with or without a GPU: a bad --device value (and, without a GPU, --device cuda)
 * is a one-line error and a non-zero exit. */
Test(cuda_decode, cli_device_errors) {
    expect_one_line_failure("translate -m " G2P_MODEL " --device bogus", "--device");
    expect_one_line_failure("translate -m " G2P_MODEL " --device", "--device");
    if (!s2s_cuda_available()) expect_one_line_failure("translate -m " G2P_MODEL " --device cuda", "CUDA");
}

#ifdef S2S_CUDA

/* decoder_cuda.cu (search.c declares it the same way) */
int s2s_dec_cuda_step_top(void *st, const int32_t *tokens, int N, int k, int32_t *tok, float *val);

/* ---- (a) step logits, GPU vs CPU ----------------------------------------------- */

/* Tiny random model of a decoder kind, with random biases and LayerNorm parameters too
 * (so every path carries signal). */
static s2s_model *tiny(const char *kind, int ffn, int gelu, int D, int H, int F, int Ld, uint64_t seed) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = 2; c.dec_layers = Ld;
    c.max_len = 64;
    c.activation = gelu ? S2S_ACT_GELU : S2S_ACT_RELU;
    snprintf(c.decoder, sizeof c.decoder, "%s", kind);
    c.dec_ffn = ffn;
    s2s_model *m = tu_model_for(c, seed);
    tu_perturb_vectors(m, seed);
    for (int i = 0; i < m->n_params; i++) { /* larger weights than the init: peaked attention, */
        s2s_tensor *t = m->params[i].t;      /* logits that differ visibly */
        if (t->ndim == 2)
            for (size_t j = 0; j < t->n; j++) t->data[j] *= 4.0f;
    }
    return m;
}

static const s2s_decoder_ops *cpu_ops(const char *kind) {
    if (!strcmp(kind, "transformer")) return &s2s_transformer_decoder;
    if (!strcmp(kind, "ssru")) return &s2s_ssru_decoder;
    if (!strcmp(kind, "gru")) return &s2s_gru_decoder;
    return &s2s_lstm_decoder;
}

#define STS 7
#define SMAX_ROWS 40

/* S2S_GPU_GEMM_ROWS for the GPU states started next (NULL: the default) */
static void gemm_rows(const char *v) {
    if (v) setenv("S2S_GPU_GEMM_ROWS", v, 1);
    else unsetenv("S2S_GPU_GEMM_ROWS");
}

/* The device-side selection of one step (state c: top k = 2R, state d: argmax) against
 * the logits lb [N, V] of a GPU state stepped alongside (same path, same rows: the same
 * logits on the device). The argmax is exact; the top-k tokens are distinct, increasing,
 * among the k best by the host's log-softmax of lb (up to rounding), with its values. */
static void check_top(const char *kind, int s, int N, int V, int k, const float *lb, const int32_t *ttok,
                      const float *tval, int kk, const int32_t *amax) {
    cr_assert_eq(kk, k < V ? k : V, "%s step %d: step_top returned %d candidates per row", kind, s, kk);
    double *lp = s2s_xmalloc((size_t)V * sizeof(double)), *srt = s2s_xmalloc((size_t)V * sizeof(double));
    for (int r = 0; r < N; r++) {
        const float *l = lb + (size_t)r * V;
        int best = 0;
        for (int v = 1; v < V; v++) if (l[v] > l[best]) best = v;
        cr_assert_eq(amax[r], best, "%s step %d row %d: device argmax %d, host %d", kind, s, r, amax[r], best);
        double mx = l[best], z = 0;
        for (int v = 0; v < V; v++) z += exp((double)l[v] - mx);
        for (int v = 0; v < V; v++) srt[v] = lp[v] = (double)l[v] - mx - log(z);
        for (int i = 1; i < V; i++) /* descending (V is small) */
            for (int j = i; j > 0 && srt[j] > srt[j - 1]; j--) { double t = srt[j]; srt[j] = srt[j - 1]; srt[j - 1] = t; }
        const double thr = srt[kk - 1];
        for (int i = 0; i < kk; i++) {
            const int32_t t = ttok[(size_t)r * kk + i];
            const float v = tval[(size_t)r * kk + i];
            cr_assert(t >= 0 && t < V, "%s step %d row %d: token %d", kind, s, r, t);
            if (i > 0) cr_assert(t > ttok[(size_t)r * kk + i - 1], "%s step %d row %d: tokens not increasing", kind, s, r);
            cr_assert(lp[t] >= thr - 1e-5 * (1 + fabs(thr)), "%s step %d row %d: token %d (%.7g) is not among the %d best (%.7g)",
                      kind, s, r, t, lp[t], kk, thr);
            cr_assert(fabs(v - lp[t]) <= 1e-5 * (1 + fabs(lp[t])), "%s step %d row %d: token %d log-prob %.7g, host %.7g",
                      kind, s, r, t, v, lp[t]);
        }
    }
    free(lp); free(srt);
}

/* one step of a schedule: select(rows, n) first (rows NULL: no select), then step n rows */
typedef struct { const int32_t *rows; int n; } sched;

/* The schedule of N0 = B*R rows (into rows[], at least 3 * SMAX_ROWS ints): shrink to
 * 3/5, grow back to N0 (duplicating), shrink to N0/2 - 3, 3, 1, 2. */
static int make_sched(int N0, sched *pl, int32_t *rows) {
    int np = 0, n3 = N0 * 3 / 5, n6 = N0 / 2 - 3;
    int32_t *r1 = rows, *r3 = r1 + N0, *r5 = r3 + n3, *r6 = r5 + N0, *r7 = r6 + n6, *r8 = r7 + 3, *r9 = r8 + 1;
    for (int i = 0; i < N0; i++) r1[i] = i % 5 == 4 ? r1[i - 1] : (i * 7 + 3) % N0; /* permute + duplicate */
    for (int i = 0; i < n3; i++) r3[i] = (i * 3 + 1) % N0;
    for (int i = 0; i < N0; i++) r5[i] = (i * 5) % n3;
    for (int i = 0; i < n6; i++) r6[i] = (N0 - 1 - 2 * i + 2 * N0) % N0;
    r7[0] = n6 - 1; r7[1] = 0; r7[2] = n6 / 2;
    r8[0] = 2;
    r9[0] = 0; r9[1] = 0;
    pl[np++] = (sched){NULL, N0};
    pl[np++] = (sched){r1, N0};
    pl[np++] = (sched){NULL, N0};
    pl[np++] = (sched){r3, n3};
    pl[np++] = (sched){NULL, n3};
    pl[np++] = (sched){r5, N0};
    pl[np++] = (sched){r6, n6};
    pl[np++] = (sched){r7, 3};
    pl[np++] = (sched){r8, 1};
    pl[np++] = (sched){r9, 2};
    return np;
}

/* Step both decoders through the same schedule; compare the logits of every step. B
 * sentences of R rows (B = 3, R = 4: the hand-written schedule below; else make_sched);
 * gr: S2S_GPU_GEMM_ROWS for the GPU states (NULL: the default). Two more GPU states
 * step alongside through s2s_dec_cuda_step_top (top 2R, argmax), checked by check_top. */
static void compare_steps_shape(const char *kind, int ffn, int gelu, int D, int H, int F, int Ld, uint64_t seed,
                                int B, int R, const char *gr) {
    s2s_model *m = tiny(kind, ffn, gelu, D, H, F, Ld, seed);
    const int V = m->cfg.tgt_vocab, Vs = m->cfg.src_vocab, N0 = B * R;
    cr_assert(N0 <= SMAX_ROWS);
    /* source batch: lengths 7, 3, 5 (padded to 7), then pseudo-random ones in 1..7 */
    int32_t slen[SMAX_ROWS], src[SMAX_ROWS * STS];
    uint64_t rng = seed + 11;
    for (int b = 0; b < B; b++) slen[b] = b < 3 ? (int32_t[]){7, 3, 5}[b] : 1 + (int32_t)(s2s_rng_next(&rng) % STS);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < STS; t++)
            src[b * STS + t] = t < slen[b] - 1 ? 4 + (int32_t)(s2s_rng_next(&rng) % (uint64_t)(Vs - 4))
                               : t == slen[b] - 1 ? S2S_EOS : S2S_PAD;
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, slen, B, STS, 0.0f);
    char err[256];
    cr_assert_eq(s2s_model_to_cuda(m, err, sizeof err), 0, "%s", err);
    const s2s_decoder_ops *cpu = cpu_ops(kind), *gpu = s2s_decoder_ops_for(m);
    cr_assert(gpu != NULL && gpu != cpu, "%s: the registry must give the GPU ops for a model on the GPU", kind);
    cr_assert_str_eq(gpu->kind, cpu->kind);
    float *denc = s2s_cuda_malloc(enc->n * sizeof(float));
    s2s_cuda_upload(denc, enc->data, enc->n * sizeof(float));
    /* select schedules: NULL = no select before this step */
    static const int32_t sel1[12] = {3, 0, 1, 2, 4, 4, 6, 5, 11, 8, 9, 11}; /* permute + duplicate */
    static const int32_t sel2[7] = {11, 0, 5, 5, 2, 8, 7};                  /* drop to 7 */
    static const int32_t sel3[3] = {6, 1, 1};                               /* drop to 3 */
    static const int32_t sel4[1] = {2};                                     /* one row */
    static const int32_t sel5[2] = {0, 0};                                  /* duplicate it */
    sched plan[16];
    int32_t rows[3 * SMAX_ROWS + 8];
    int nplan;
    if (B == 3 && R == 4) {
        const sched p[] = {{NULL, 12}, {sel1, 12}, {NULL, 12}, {sel2, 7}, {NULL, 7}, {sel3, 3}, {sel4, 1}, {sel5, 2}};
        nplan = (int)(sizeof p / sizeof p[0]);
        memcpy(plan, p, sizeof p);
    } else {
        nplan = make_sched(N0, plan, rows);
    }
    void *a = cpu->start(m, enc->data, slen, B, STS, R, nplan);
    gemm_rows(gr);
    void *b = gpu->start(m, denc, slen, B, STS, R, nplan);
    void *c = gpu->start(m, denc, slen, B, STS, R, nplan); /* step_top: top 2R */
    void *d = gpu->start(m, denc, slen, B, STS, R, nplan); /* step_top: argmax */
    gemm_rows(NULL);
    s2s_cuda_free(denc); /* the caller may free enc after start */
    int32_t tok[SMAX_ROWS], amax[SMAX_ROWS], ttok[SMAX_ROWS * 2 * 5];
    float tval[SMAX_ROWS * 2 * 5];
    cr_assert(2 * R <= 10);
    float *la = s2s_xmalloc((size_t)N0 * V * sizeof(float)), *lb = s2s_xmalloc((size_t)N0 * V * sizeof(float));
    for (int s = 0; s < nplan; s++) {
        int N = plan[s].n;
        if (plan[s].rows) {
            cpu->select(a, plan[s].rows, N);
            gpu->select(b, plan[s].rows, N);
            gpu->select(c, plan[s].rows, N);
            gpu->select(d, plan[s].rows, N);
        }
        for (int r = 0; r < N; r++) tok[r] = s == 0 ? S2S_BOS : 4 + (int32_t)(s2s_rng_next(&rng) % (uint64_t)(V - 4));
        cpu->step(a, la, tok, N);
        memset(lb, 0, (size_t)N * V * sizeof(float));
        gpu->step(b, lb, tok, N);
        double scale = 0;
        for (size_t i = 0; i < (size_t)N * V; i++) if (fabs(la[i]) > scale) scale = fabs(la[i]);
        /* 1e-4 relative to the logits' scale (these models' logits reach ~15, and weight
         * noise of one ulp alone moves them by ~1e-4); a wrong row or key is O(1) */
        double dm = tu_max_diff(la, lb, (size_t)N * V), tol = 1e-4 * (scale > 1 ? scale : 1);
        cr_assert(dm <= tol, "%s ffn %d gelu %d D %d H %d B %d R %d gemm_rows %s: step %d (%d rows): "
                  "max |GPU - CPU| logit = %.3g > %.3g", kind, ffn, gelu, D, H, B, R, gr ? gr : "default", s, N, dm, tol);
        cr_assert(scale > 1e-3, "%s: logits carry no signal", kind);
        const int kk = s2s_dec_cuda_step_top(c, tok, N, 2 * R, ttok, tval);
        cr_assert_eq(s2s_dec_cuda_step_top(d, tok, N, 0, amax, NULL), 1);
        check_top(kind, s, N, V, 2 * R, lb, ttok, tval, kk, amax);
    }
    cpu->select(a, NULL, 0); /* all rows finished (greedy does this) */
    gpu->select(b, NULL, 0);
    cpu->free(a);
    gpu->free(b);
    gpu->free(c);
    gpu->free(d);
    /* memory accounting is sane: grows with rows and steps */
    cr_assert(gpu->start_bytes(m, 2, 5, 2, 10) > gpu->start_bytes(m, 1, 5, 2, 10));
    cr_assert(gpu->state_bytes(m, 5, 3) > 0);
    free(la); free(lb);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* the 12-row schedule on both paths: our kernels (default threshold) and GEMMs (1) */
static void compare_steps(const char *kind, int ffn, int gelu, int D, int H, int F, int Ld, uint64_t seed) {
    compare_steps_shape(kind, ffn, gelu, D, H, F, Ld, seed, 3, 4, NULL);
    compare_steps_shape(kind, ffn, gelu, D, H, F, Ld, seed, 3, 4, "1");
}

/* 40 rows (a batch of 40, and beam 5 x 8 sentences): our kernels (default), GEMMs
 * throughout (1), and GEMMs from 20 rows (switches path mid-schedule: 40, 24 rows on
 * GEMMs, then 17, 3, 1, 2 on our kernels) */
static void compare_steps_big(const char *kind, int ffn, int gelu, int D, int H, int F, int Ld, uint64_t seed) {
    static const char *grs[3] = {NULL, "1", "20"};
    for (int i = 0; i < 3; i++) {
        compare_steps_shape(kind, ffn, gelu, D, H, F, Ld, seed, 40, 1, grs[i]);
        compare_steps_shape(kind, ffn, gelu, D, H, F, Ld, seed + 1, 8, 5, grs[i]);
    }
}

Test(cuda_decode, transformer_step_logits_match_cpu) {
    NEED_GPU();
    compare_steps("transformer", 1, 0, 32, 4, 48, 2, 1);
    compare_steps("transformer", 1, 1, 64, 2, 96, 3, 2); /* GELU, Dh 32 */
    compare_steps("transformer", 1, 0, 20, 4, 36, 1, 3); /* sizes that are no multiple of 4/32 */
}

Test(cuda_decode, recurrent_step_logits_match_cpu) {
    NEED_GPU();
    static const char *kinds[3] = {"ssru", "gru", "lstm"};
    for (int k = 0; k < 3; k++) {
        compare_steps(kinds[k], 1, 0, 32, 4, 48, 2, 10 + k);
        compare_steps(kinds[k], 0, 0, 20, 4, 36, 3, 20 + k);
        compare_steps(kinds[k], 1, 1, 64, 2, 96, 1, 30 + k);
    }
}

Test(cuda_decode, transformer_step_logits_match_cpu_40_rows) {
    NEED_GPU();
    compare_steps_big("transformer", 1, 0, 32, 4, 48, 2, 41);
    compare_steps_big("transformer", 1, 1, 20, 4, 36, 1, 43); /* GELU, sizes no multiple of 4/32 */
}

Test(cuda_decode, recurrent_step_logits_match_cpu_40_rows) {
    NEED_GPU();
    static const char *kinds[3] = {"ssru", "gru", "lstm"};
    for (int k = 0; k < 3; k++) {
        compare_steps_big(kinds[k], 1, 0, 32, 4, 48, 2, 50 + k); /* with the FFN */
        compare_steps_big(kinds[k], 0, 1, 20, 4, 36, 2, 60 + k); /* without */
    }
}

/* Greedy s2s_search on the GPU: the device argmax (no score) gives exactly the outputs of
 * the full logits (a score asks for them), for 40 sentences on both paths. */
static void greedy_dev_equals_host(const char *kind, int ffn, uint64_t seed, const char *gr) {
    enum { B = 40 };
    s2s_model *m = tiny(kind, ffn, 0, 32, 4, 48, 2, seed);
    const int Vs = m->cfg.src_vocab;
    int32_t slen[B], src[B * STS];
    uint64_t rng = seed + 5;
    for (int b = 0; b < B; b++) slen[b] = 2 + (int32_t)(s2s_rng_next(&rng) % (STS - 1));
    for (int b = 0; b < B; b++)
        for (int t = 0; t < STS; t++)
            src[b * STS + t] = t < slen[b] - 1 ? 4 + (int32_t)(s2s_rng_next(&rng) % (uint64_t)(Vs - 4))
                               : t == slen[b] - 1 ? S2S_EOS : S2S_PAD;
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, slen, B, STS, 0.0f);
    char err[256];
    cr_assert_eq(s2s_model_to_cuda(m, err, sizeof err), 0, "%s", err);
    float *denc = s2s_cuda_malloc(enc->n * sizeof(float));
    s2s_cuda_upload(denc, enc->data, enc->n * sizeof(float));
    s2s_search_opts o;
    s2s_search_opts_default(&o);
    o.max_len = 12;
    int32_t *out1[B], *out2[B];
    int len1[B], len2[B];
    float sc[B];
    gemm_rows(gr);
    s2s_search(m, denc, slen, B, STS, &o, out1, len1, NULL); /* device argmax */
    s2s_search(m, denc, slen, B, STS, &o, out2, len2, sc);   /* full logits */
    gemm_rows(NULL);
    int total = 0;
    for (int b = 0; b < B; b++) {
        cr_assert_eq(len1[b], len2[b], "%s gemm_rows %s: sentence %d: length %d vs %d", kind, gr ? gr : "default", b,
                     len1[b], len2[b]);
        for (int i = 0; i < len1[b]; i++)
            cr_assert_eq(out1[b][i], out2[b][i], "%s gemm_rows %s: sentence %d token %d", kind, gr ? gr : "default",
                         b, i);
        total += len1[b];
        free(out1[b]); free(out2[b]);
    }
    cr_assert(total > 0, "%s: nothing decoded", kind);
    s2s_cuda_free(denc);
    s2s_graph_free(g);
    s2s_model_free(m);
}

Test(cuda_decode, greedy_device_argmax_equals_full_logits) {
    NEED_GPU();
    static const char *kinds[4] = {"transformer", "ssru", "gru", "lstm"};
    for (int k = 0; k < 4; k++) {
        greedy_dev_equals_host(kinds[k], 1, 70 + k, NULL);
        greedy_dev_equals_host(kinds[k], 1, 70 + k, "1");
    }
}

/* ---- (b) s2s_translate on the shipped model, CPU vs GPU ------------------------ */

#define NW 200

/* NW deterministic word-like strings (syllables of English-ish letters, 1..4 each). */
static char **make_words(void) {
    static const char *on[] = {"", "b", "c", "ch", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p",
                               "ph", "qu", "r", "s", "sh", "st", "t", "th", "tr", "v", "w", "wh", "y", "z"};
    static const char *nu[] = {"a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y", "ie"};
    static const char *co[] = {"", "", "", "n", "r", "s", "t", "ck", "ng", "ll", "x", "rd", "nt", "'s"};
    char **w = s2s_xmalloc(NW * sizeof *w);
    uint64_t rng = 2024;
    for (int i = 0; i < NW; i++) {
        char buf[128] = "";
        int syl = 1 + (int)(s2s_rng_next(&rng) % 4);
        for (int k = 0; k < syl; k++) {
            strcat(buf, on[s2s_rng_next(&rng) % (sizeof on / sizeof on[0])]);
            strcat(buf, nu[s2s_rng_next(&rng) % (sizeof nu / sizeof nu[0])]);
            if (k == syl - 1 || s2s_rng_next(&rng) % 3 == 0) strcat(buf, co[s2s_rng_next(&rng) % (sizeof co / sizeof co[0])]);
        }
        w[i] = s2s_xstrdup(buf);
    }
    return w;
}

static char **translate_all(s2s_model *m, char **words, int n, int beam, int batch) {
    s2s_translate_opts o;
    s2s_translate_opts_default(&o);
    o.beam = beam;
    o.batch = batch;
    char **out = s2s_xcalloc((size_t)n, sizeof *out);
    char err[256];
    cr_assert_eq(s2s_translate(m, (const char *const *)words, n, &o, out, NULL, err, sizeof err), 0, "%s", err);
    return out;
}

Test(cuda_decode, g2p_translate_gpu_equals_cpu, .timeout = 600) {
    NEED_GPU();
    char err[256];
    s2s_model *m = s2s_load(G2P_MODEL, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    char **w = make_words();
    /* greedy at batch 100 and beam 5 at batch 16 (80 rows) run the large path; all of
     * them the device-side argmax / top-k */
    static const struct { int beam, batch, n; } runs[] = {{1, 32, NW}, {1, 1, 50}, {5, 16, NW}, {1, 100, NW}, {5, 2, 40}};
    enum { NR = 5 };
    char **cpu[NR], **gpu[NR];
    for (int r = 0; r < NR; r++) cpu[r] = translate_all(m, w, runs[r].n, runs[r].beam, runs[r].batch);
    cr_assert_eq(s2s_use_cuda(m, err, sizeof err), 0, "%s", err);
    for (int r = 0; r < NR; r++) gpu[r] = translate_all(m, w, runs[r].n, runs[r].beam, runs[r].batch);
    for (int r = 0; r < NR; r++) {
        int nonempty = 0;
        for (int i = 0; i < runs[r].n; i++) {
            cr_assert_str_eq(gpu[r][i], cpu[r][i], "beam %d batch %d, word %d '%s': GPU '%s' vs CPU '%s'",
                             runs[r].beam, runs[r].batch, i, w[i], gpu[r][i], cpu[r][i]);
            nonempty += cpu[r][i][0] != '\0';
        }
        cr_assert(nonempty > runs[r].n / 2, "the model should produce phonemes");
        for (int i = 0; i < runs[r].n; i++) { free(cpu[r][i]); free(gpu[r][i]); }
        free(cpu[r]); free(gpu[r]);
    }
    for (int i = 0; i < NW; i++) free(w[i]);
    free(w);
    s2s_free(m);
}

/* ---- (c) the CLI ----------------------------------------------------------------- */

Test(cuda_decode, cli_device_cuda_matches_cpu) {
    NEED_GPU();
    const char *in = "hello\nworld\n\ntranslate\nquixotic\n";
    char *cpu = NULL, *gpu = NULL, *beam = NULL, *beam_cpu = NULL;
    cr_assert_eq(run_cli(in, "translate -q -m " G2P_MODEL " --device cpu", &cpu), 0, "%s", cpu);
    cr_assert_eq(run_cli(in, "translate -q -m " G2P_MODEL " --device cuda", &gpu), 0, "%s", gpu);
    cr_assert_str_eq(gpu, cpu);
    cr_assert_eq(run_cli(in, "translate -q -m " G2P_MODEL " --beam 5", &beam_cpu), 0, "%s", beam_cpu);
    cr_assert_eq(run_cli(in, "translate -q -m " G2P_MODEL " --device cuda --beam 5", &beam), 0, "%s", beam);
    cr_assert_str_eq(beam, beam_cpu);
    int lines = 0;
    for (const char *p = gpu; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 5, "one output line per input line: '%s'", gpu);
    free(cpu); free(gpu); free(beam); free(beam_cpu);
    char *stats = NULL; /* the timing line names the device */
    cr_assert_eq(run_cli(in, "translate -m " G2P_MODEL " --device cuda", &stats), 0, "%s", stats);
    cr_assert(strstr(stats, "cuda)") != NULL, "%s", stats);
    free(stats);
}

#else /* !S2S_CUDA */

Test(cuda_decode, built_without_cuda) { cr_skip_test("built without CUDA (make CUDA=1)"); }

#endif
