/* test_util.c - helpers shared by the test files. */
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "common.h"
#include "decoder.h"
#include "decoder_deed.h"
#include "graph.h"
#include "tokenizer.h"

const int32_t TU_SRC[10] = {4, 5, 6, 7, 2, 8, 9, 2, 0, 0};
const int32_t TU_SLEN[2] = {5, 3};
const int32_t TU_TIN[8] = {1, 5, 6, 7, 1, 4, 0, 0};
const int32_t TU_TOUT[8] = {5, 6, 7, 2, 4, 2, 0, 0};

void tu_train_opts(s2s_train_opts *o, const char *dir, const char *out) {
    s2s_train_opts_default(o);
    o->train_src = tu_path(dir, "train.src");
    o->train_tgt = tu_path(dir, "train.tgt");
    o->dev_src = tu_path(dir, "dev.src");
    o->dev_tgt = tu_path(dir, "dev.tgt");
    o->out_dir = tu_path(dir, out);
    o->model.d_model = 32; o->model.n_heads = 2; o->model.d_ff = 64;
    o->model.enc_layers = 1; o->model.dec_layers = 1; o->model.max_len = 32;
    o->lr = 3e-3f; o->warmup = 50; o->dropout = 0.1f;
    o->tokens_per_batch = 600;
    o->quiet = getenv("S2S_TEST_VERBOSE") == NULL;
    o->threads = 1;
    o->metric = "wer";
    o->eval_max = 50;
}

void tu_train_opts_free(s2s_train_opts *o) {
    free((char *)o->train_src); free((char *)o->train_tgt); free((char *)o->dev_src);
    free((char *)o->dev_tgt); free((char *)o->out_dir); free((char *)o->init);
}

const char *tu_bin(void) {
    const char *b = getenv("S2S_BIN");
    return b ? b : "build/s2s";
}

double tu_max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

double tu_rel_err(const float *a, const float *b, size_t n, double atol, double rtol) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(d <= m)) m = d;
    }
    return m;
}

char *tu_tmpdir(void) {
    char tmpl[] = "/tmp/s2s-test-XXXXXX";
    char *d = mkdtemp(tmpl);
    return d ? strdup(d) : NULL;
}

void tu_rmrf(const char *dir) {
    if (!dir || strncmp(dir, "/tmp/s2s-test-", 14) != 0) return;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "warning: could not remove %s\n", dir);
}

char *tu_path(const char *dir, const char *file) {
    char *p;
    if (asprintf(&p, "%s/%s", dir, file) < 0) abort();
    return p;
}

void tu_write(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    fputs(text, f);
    fclose(f);
}

void tu_reverse_task(char ***src, char ***tgt, int n, uint64_t seed) {
    uint64_t rng = seed + 12345;
    *src = s2s_xmalloc((size_t)n * sizeof(char *));
    *tgt = s2s_xmalloc((size_t)n * sizeof(char *));
    for (int i = 0; i < n; i++) {
        int len = 3 + (int)(s2s_rng_next(&rng) % 6);
        char *s = s2s_xmalloc((size_t)len + 1), *t = s2s_xmalloc((size_t)2 * len);
        for (int j = 0; j < len; j++) s[j] = (char)('a' + s2s_rng_next(&rng) % 10);
        s[len] = '\0';
        for (int j = 0; j < len; j++) { t[2 * j] = s[len - 1 - j]; t[2 * j + 1] = j + 1 < len ? ' ' : '\0'; }
        (*src)[i] = s;
        (*tgt)[i] = t;
    }
}

void tu_write_reverse_task(const char *dir, const char *name, int n, uint64_t seed) {
    char **src, **tgt;
    tu_reverse_task(&src, &tgt, n, seed);
    char fn[64];
    for (int side = 0; side < 2; side++) {
        snprintf(fn, sizeof fn, "%s.%s", name, side ? "tgt" : "src");
        char *p = tu_path(dir, fn);
        FILE *f = fopen(p, "w");
        if (!f) abort();
        for (int i = 0; i < n; i++) fprintf(f, "%s\n", side ? tgt[i] : src[i]);
        fclose(f);
        free(p);
    }
    for (int i = 0; i < n; i++) { free(src[i]); free(tgt[i]); }
    free(src); free(tgt);
}

s2s_model *tu_model_for(s2s_config c, uint64_t seed) {
    char **src, **tgt;
    int n = 200;
    tu_reverse_task(&src, &tgt, n, seed);
    char err[256];
    s2s_tokenizer *st = s2s_tok_learn(S2S_TOK_CHAR, (const char *const *)src, (size_t)n, 0, 1, err, sizeof err);
    s2s_tokenizer *tt = s2s_tok_learn(S2S_TOK_SYMBOL, (const char *const *)tgt, (size_t)n, 0, 1, err, sizeof err);
    for (int i = 0; i < n; i++) { free(src[i]); free(tgt[i]); }
    free(src); free(tgt);
    if (!st || !tt) abort();
    c.src_vocab = s2s_tok_vocab_size(st);
    c.tgt_vocab = s2s_tok_vocab_size(tt);
    if (s2s_config_check(&c, err, sizeof err) != 0) { fprintf(stderr, "tu_model_for: %s\n", err); abort(); }
    return s2s_model_create(&c, st, tt, seed);
}

s2s_model *tu_tiny_model(int D, int H, int F, int Le, int Ld, uint64_t seed) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = Le; c.dec_layers = Ld;
    c.max_len = 64;
    return tu_model_for(c, seed);
}

void tu_perturb_vectors(s2s_model *m, uint64_t seed) {
    uint64_t rng = seed * 7 + 3;
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
        if (t->ndim == 1)
            for (size_t j = 0; j < t->n; j++) t->data[j] += 0.2f * s2s_rng_normal(&rng);
    }
}

double tu_select_reorder_diff(const s2s_model *m) {
    static const int32_t src[10] = {4, 5, 6, 7, 2, 8, 9, 2, 0, 0}, slen[2] = {5, 3};
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, slen, 2, 5, 0.0f);
    int V = m->cfg.tgt_vocab;
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    void *a = ops->start(m, enc->data, slen, 2, 5, 2, 8); /* rows 0,1 -> sentence 0; 2,3 -> 1 */
    float *la = malloc(sizeof(float) * 4 * V), *lb = malloc(sizeof(float) * 4 * V);
    int32_t t0[4] = {1, 1, 1, 1}, t1[4] = {4, 5, 6, 7};
    ops->step(a, la, t0, 4);
    ops->step(a, la, t1, 4);
    int32_t rows[3] = {1, 1, 3}; /* sentence 0 keeps row 1 twice; sentence 1 keeps row 3 */
    ops->select(a, rows, 3);
    int32_t t2[3] = {8, 9, 4};
    ops->step(a, la, t2, 3);
    /* reference: fresh state fed the same prefixes directly */
    void *b = ops->start(m, enc->data, slen, 2, 5, 2, 8);
    int32_t r1[4] = {5, 5, 7, 7};
    ops->step(b, lb, t0, 4);
    ops->step(b, lb, r1, 4);
    int32_t keep[3] = {0, 1, 2};
    ops->select(b, keep, 3); /* rows 0,1 -> sentence 0; row 2 -> sentence 1 */
    ops->step(b, lb, t2, 3);
    double d = tu_max_diff(la, lb, (size_t)3 * V);
    ops->free(a); ops->free(b);
    free(la); free(lb);
    s2s_graph_free(g);
    return d;
}

void tu_dec_layer_kv(const s2s_model *m, const int32_t *src, const int32_t *slen, int Ts, const int32_t *tin,
                     int B, int T, float **kk, float **vv) {
    int D = m->cfg.d_model, H = m->cfg.n_heads, t2r = s2s_config_is_t2r(&m->cfg);
    size_t n = (size_t)B * T * D;
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, slen, B, Ts, 0.0f);
    s2s_tensor *y = s2s_scale(g, s2s_embedding(g, m->tgt_emb, tin, 2, (int[]){B, T}), sqrtf((float)D));
    y = s2s_add(g, y, s2s_tensor_repeat(g, m->pe, B, 3, (int[]){B, T, D}));
    for (int l = 0; l < m->cfg.dec_layers; l++) {
        const s2s_dec_layer *L = &m->dec[l];
        s2s_tensor *h = s2s_layernorm(g, y, L->ln1.w, L->ln1.b);
        s2s_tensor *q = s2s_linear(g, h, L->sq.w, L->sq.b);
        s2s_tensor *k = s2s_linear(g, h, L->sk.w, L->sk.b), *v = s2s_linear(g, h, L->sv.w, L->sv.b);
        kk[l] = malloc(sizeof(float) * n);
        vv[l] = malloc(sizeof(float) * n);
        memcpy(kk[l], k->data, sizeof(float) * n);
        memcpy(vv[l], v->data, sizeof(float) * n);
        s2s_tensor *a = t2r ? s2s_t2r_attention(g, q, k, v, L->sphi.w, L->sphi.b, NULL, 1, H)
                            : s2s_attention(g, q, k, v, NULL, 1, H);
        y = s2s_add(g, y, s2s_linear(g, a, L->so.w, L->so.b));
        h = s2s_layernorm(g, y, L->ln2.w, L->ln2.b);
        q = s2s_linear(g, h, L->cq.w, L->cq.b);
        k = s2s_linear(g, enc, L->ck.w, L->ck.b);
        v = s2s_linear(g, enc, L->cv.w, L->cv.b);
        a = t2r ? s2s_t2r_attention(g, q, k, v, L->cphi.w, L->cphi.b, slen, 0, H) : s2s_attention(g, q, k, v, slen, 0, H);
        y = s2s_add(g, y, s2s_linear(g, a, L->co.w, L->co.b));
        h = s2s_layernorm(g, y, L->ln3.w, L->ln3.b);
        s2s_tensor *f = s2s_linear(g, h, L->fc1.w, L->fc1.b);
        f = m->cfg.activation == S2S_ACT_GELU ? s2s_gelu(g, f) : s2s_relu(g, f);
        y = s2s_add(g, y, s2s_linear(g, f, L->fc2.w, L->fc2.b));
    }
    s2s_graph_free(g);
}

/* forced tokens of tu_deed_forced_decode: [step][row] */
static const int32_t FORCED[7][4] = {{1, 1, 1, 1}, {5, 6, 4, 7}, {6, 6, 8, 9}, {7, 4, 9, 4},
                                     {8, 5, 5, 6}, {9, 7, 6, 8}, {4, 8, 7, 5}};

void *tu_deed_forced_decode(const s2s_model *m, const float *enc, float tau, int states, int32_t hist[4][8],
                            float *logits, int chunk) {
    s2s_exit_opts xo = {tau, S2S_EXIT_MAXPROB, states, NULL, chunk};
    void *st = s2s_deed_start(m, enc, TU_SLEN, 2, 5, 2, 8, &xo);
    int32_t h2[4][8];
    for (int t = 0; t < 7; t++) {
        int32_t tok[4];
        for (int r = 0; r < 4; r++) { tok[r] = FORCED[t][r]; hist[r][t] = tok[r]; }
        s2s_deed_decoder.step(st, logits + (size_t)t * 4 * m->cfg.tgt_vocab, tok, 4);
        if (t == 3) {
            int32_t rows[4] = {1, 1, 3, 2};
            s2s_deed_decoder.select(st, rows, 4);
            for (int r = 0; r < 4; r++) memcpy(h2[r], hist[rows[r]], sizeof h2[r]);
            memcpy(hist, h2, sizeof h2);
        }
    }
    return st;
}

float tu_deed_mixed_tau(const s2s_model *m, const float *enc, float *logits) {
    int Ld = m->cfg.dec_layers;
    for (float tau = 0.02f; tau < 1.0f; tau += 0.02f) {
        int32_t hist[4][8];
        void *st = tu_deed_forced_decode(m, enc, tau, S2S_EXIT_JIT, hist, logits, 0);
        const s2s_exit_stats *s = s2s_deed_stats(st);
        double below = 0;
        for (int l = 0; l < Ld - 1; l++) below += s->exits[l];
        int early = below > 0 && s->exits[Ld - 1] > 0;
        int jit = s->jit_items >= 4;
        s2s_deed_decoder.free(st);
        if (early && jit) return tau;
    }
    return 0;
}

int tu_run(const char *cmd, char **output) {
    char *full;
    if (asprintf(&full, "%s 2>&1", cmd) < 0) abort();
    FILE *p = popen(full, "r");
    free(full);
    if (!p) return -1;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, p)) > 0) {
        n += k;
        if (cap - n < 2) { cap *= 2; buf = realloc(buf, cap); }
    }
    buf[n] = '\0';
    int st = pclose(p);
    if (output) *output = buf; else free(buf);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

int tu_early_exit_cli(const char *model, int layers, char *why, size_t whylen) {
    const char *variants[] = {"--exit-threshold 0.3", "--exit-threshold 0.3 --beam 3 --exit-states copy",
                              "--exit-threshold 0.2 --exit-metric margin --batch 1", "--exit-threshold 2"};
    for (int i = 0; i < 4; i++) {
        char *cmd = NULL, *out = NULL;
        if (asprintf(&cmd, "printf 'abc\\nde\\nfghi\\n' | %s translate -m %s %s", tu_bin(), model, variants[i]) < 0)
            return snprintf(why, whylen, "asprintf"), -1;
        int st = tu_run(cmd, &out), bad = 0;
        const char *p = out ? strstr(out, "average exit layer ") : NULL;
        double avg = p ? atof(p + strlen("average exit layer ")) : -1.0;
        if (st != 0 || !p) bad = snprintf(why, whylen, "%s: exit %d: %s", cmd, st, out ? out : "");
        else if (avg < 1.0 || avg > layers || (i == 3 && avg != layers))
            bad = snprintf(why, whylen, "%s: average exit layer %g", variants[i], avg);
        free(cmd); free(out);
        if (bad) return -1;
    }
    return 0;
}

int tu_deed_full_depth_diff_step(const s2s_model *m, const float *enc) {
    const int V = m->cfg.tgt_vocab;
    float *a = malloc(sizeof(float) * 2 * V), *b = malloc(sizeof(float) * 2 * V);
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    void *sa = ops->start(m, enc, TU_SLEN, 2, 5, 1, 6), *sb = s2s_deed_decoder.start(m, enc, TU_SLEN, 2, 5, 1, 6);
    int32_t toks[3][2] = {{1, 1}, {5, 4}, {6, 8}};
    int diff = -1;
    for (int t = 0; t < 3 && diff < 0; t++) {
        ops->step(sa, a, toks[t], 2);
        s2s_deed_decoder.step(sb, b, toks[t], 2);
        if (tu_max_diff(a, b, (size_t)2 * V) != 0.0) diff = t;
    }
    ops->free(sa);
    s2s_deed_decoder.free(sb);
    free(a); free(b);
    return diff;
}
