/* test_cuda_decode.c - GPU decoding (decoder_cuda.cu, `s2s translate --device cuda`)
 * against the CPU decoders:
 *   - step logits of the GPU decoder equal the CPU decoder's (|diff| <= 1e-4 times the
 *     logits' scale) on tiny random models of every decoder kind, over several steps
 *     with select() reordering, duplicating and dropping rows in between (row counts
 *     that exercise every row tiling of the kernels: 12, 7, 3, 1, 2);
 *   - s2s_translate on the shipped g2p model gives identical strings on both devices
 *     (greedy at batch 32 and 1, beam 5) for ~200 generated words;
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
#include "test_util.h"
#include "tokenizer.h"

#define NEED_GPU() \
    do { if (!s2s_cuda_available()) cr_skip_test("no CUDA device"); } while (0)

#define G2P_MODEL "models/g2p-small.safetensors"

static const char *bin(void) {
    const char *b = getenv("S2S_BIN");
    return b ? b : "build/s2s";
}

/* Run "<bin> args < in" (stdout + stderr captured); returns the exit status. */
static int run_cli(const char *stdin_text, const char *args, char **out) {
    char *dir = tu_tmpdir(), *in = tu_path(dir, "stdin.txt"), *cmd;
    tu_write(in, stdin_text);
    cr_assert(asprintf(&cmd, "%s %s < %s", bin(), args, in) > 0);
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

/* ---- (a) step logits, GPU vs CPU ----------------------------------------------- */

/* Tiny random model of a decoder kind, with random biases and LayerNorm parameters too
 * (so every path carries signal). */
static s2s_model *tiny(const char *kind, int ffn, int gelu, int D, int H, int F, int Ld, uint64_t seed) {
    char **src, **tgt;
    int n = 200;
    tu_reverse_task(&src, &tgt, n, seed);
    char err[256];
    s2s_tokenizer *st = s2s_tok_learn(S2S_TOK_CHAR, (const char *const *)src, (size_t)n, 0, 1, err, sizeof err);
    s2s_tokenizer *tt = s2s_tok_learn(S2S_TOK_SYMBOL, (const char *const *)tgt, (size_t)n, 0, 1, err, sizeof err);
    for (int i = 0; i < n; i++) { free(src[i]); free(tgt[i]); }
    free(src); free(tgt);
    cr_assert(st && tt);
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = 2; c.dec_layers = Ld;
    c.src_vocab = s2s_tok_vocab_size(st);
    c.tgt_vocab = s2s_tok_vocab_size(tt);
    c.max_len = 64;
    c.activation = gelu ? S2S_ACT_GELU : S2S_ACT_RELU;
    snprintf(c.decoder, sizeof c.decoder, "%s", kind);
    c.dec_ffn = ffn;
    cr_assert_eq(s2s_config_check(&c, err, sizeof err), 0, "%s", err);
    s2s_model *m = s2s_model_create(&c, st, tt, seed);
    uint64_t rng = seed * 7 + 3;
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
        if (t->ndim == 1)
            for (size_t j = 0; j < t->n; j++) t->data[j] += 0.2f * s2s_rng_normal(&rng);
        else /* larger weights than the init: peaked attention, logits that differ visibly */
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

#define SB 3
#define STS 7
#define SR 4
#define SMAX 10

/* Step both decoders through the same schedule; compare the logits of every step. */
static void compare_steps(const char *kind, int ffn, int gelu, int D, int H, int F, int Ld, uint64_t seed) {
    s2s_model *m = tiny(kind, ffn, gelu, D, H, F, Ld, seed);
    const int V = m->cfg.tgt_vocab, Vs = m->cfg.src_vocab;
    /* source batch: lengths 7, 3, 5 (padded to 7) */
    static const int32_t slen[SB] = {7, 3, 5};
    int32_t src[SB * STS];
    uint64_t rng = seed + 11;
    for (int b = 0; b < SB; b++)
        for (int t = 0; t < STS; t++)
            src[b * STS + t] = t < slen[b] - 1 ? 4 + (int32_t)(s2s_rng_next(&rng) % (uint64_t)(Vs - 4))
                               : t == slen[b] - 1 ? S2S_EOS : S2S_PAD;
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, slen, SB, STS, 0.0f);
    char err[256];
    cr_assert_eq(s2s_model_to_cuda(m, err, sizeof err), 0, "%s", err);
    const s2s_decoder_ops *cpu = cpu_ops(kind), *gpu = s2s_decoder_ops_for(m);
    cr_assert(gpu != NULL && gpu != cpu, "%s: the registry must give the GPU ops for a model on the GPU", kind);
    cr_assert_str_eq(gpu->kind, cpu->kind);
    float *denc = s2s_cuda_malloc(enc->n * sizeof(float));
    s2s_cuda_upload(denc, enc->data, enc->n * sizeof(float));
    void *a = cpu->start(m, enc->data, slen, SB, STS, SR, SMAX);
    void *b = gpu->start(m, denc, slen, SB, STS, SR, SMAX);
    s2s_cuda_free(denc); /* the caller may free enc after start */
    /* select schedules: NULL = no select before this step */
    static const int32_t sel1[12] = {3, 0, 1, 2, 4, 4, 6, 5, 11, 8, 9, 11}; /* permute + duplicate */
    static const int32_t sel2[7] = {11, 0, 5, 5, 2, 8, 7};                  /* drop to 7 */
    static const int32_t sel3[3] = {6, 1, 1};                               /* drop to 3 */
    static const int32_t sel4[1] = {2};                                     /* one row */
    static const int32_t sel5[2] = {0, 0};                                  /* duplicate it */
    const struct { const int32_t *rows; int n; } plan[] = {
        {NULL, 12}, {sel1, 12}, {NULL, 12}, {sel2, 7}, {NULL, 7}, {sel3, 3}, {sel4, 1}, {sel5, 2},
    };
    const int nplan = (int)(sizeof plan / sizeof plan[0]);
    int32_t tok[12];
    float *la = s2s_xmalloc((size_t)12 * V * sizeof(float)), *lb = s2s_xmalloc((size_t)12 * V * sizeof(float));
    for (int s = 0; s < nplan; s++) {
        int N = plan[s].n;
        if (plan[s].rows) {
            cpu->select(a, plan[s].rows, N);
            gpu->select(b, plan[s].rows, N);
        }
        for (int r = 0; r < N; r++) tok[r] = s == 0 ? S2S_BOS : 4 + (int32_t)(s2s_rng_next(&rng) % (uint64_t)(V - 4));
        cpu->step(a, la, tok, N);
        memset(lb, 0, (size_t)N * V * sizeof(float));
        gpu->step(b, lb, tok, N);
        double scale = 0;
        for (size_t i = 0; i < (size_t)N * V; i++) if (fabs(la[i]) > scale) scale = fabs(la[i]);
        /* 1e-4 relative to the logits' scale (these models' logits reach ~15, and weight
         * noise of one ulp alone moves them by ~1e-4); a wrong row or key is O(1) */
        double d = tu_max_diff(la, lb, (size_t)N * V), tol = 1e-4 * (scale > 1 ? scale : 1);
        cr_assert(d <= tol, "%s ffn %d gelu %d D %d H %d: step %d (%d rows): max |GPU - CPU| logit = %.3g > %.3g",
                  kind, ffn, gelu, D, H, s, N, d, tol);
        cr_assert(scale > 1e-3, "%s: logits carry no signal", kind);
    }
    cpu->select(a, NULL, 0); /* all rows finished (greedy does this) */
    gpu->select(b, NULL, 0);
    cpu->free(a);
    gpu->free(b);
    /* memory accounting is sane: grows with rows and steps */
    cr_assert(gpu->start_bytes(m, 2, 5, 2, 10) > gpu->start_bytes(m, 1, 5, 2, 10));
    cr_assert(gpu->state_bytes(m, 5, 3) > 0);
    free(la); free(lb);
    s2s_graph_free(g);
    s2s_model_free(m);
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
    static const struct { int beam, batch, n; } runs[] = {{1, 32, NW}, {1, 1, 50}, {5, 16, NW}};
    enum { NR = 3 };
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
