/* test_graph.c - every op of the autodiff graph (graph.h) against central finite
 * differences of its own forward pass: loss = sum(op(inputs) * R) for a fixed
 * random R, gradients from s2s_graph_backward. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "graph.h"

typedef s2s_tensor *(*op_fn)(s2s_graph *g, s2s_tensor **in);

static s2s_graph *G;
static int copy_inputs; /* eval_loss hands the op copies of its inputs (intermediates, not parameters) */
static const int32_t IDS[6] = {3, 0, 2, 3, 1, 3};   /* embedding ids (repeats) */
static const int32_t TGT[6] = {1, 4, 0, 2, 0, 3};   /* xent targets (0 ignored) */
static const int32_t KVLEN[2] = {3, 2};
static uint64_t drop_seed;

static s2s_tensor *op_linear(s2s_graph *g, s2s_tensor **in) { return s2s_linear(g, in[0], in[1], in[2]); }
static s2s_tensor *op_matmul(s2s_graph *g, s2s_tensor **in) { return s2s_matmul(g, in[0], in[1]); }
static s2s_tensor *op_add(s2s_graph *g, s2s_tensor **in) { return s2s_add(g, in[0], in[1]); }
static s2s_tensor *op_mul(s2s_graph *g, s2s_tensor **in) { return s2s_mul(g, in[0], in[1]); }
static s2s_tensor *op_scale(s2s_graph *g, s2s_tensor **in) { return s2s_scale(g, in[0], -1.7f); }
static s2s_tensor *op_embedding(s2s_graph *g, s2s_tensor **in) {
    return s2s_embedding(g, in[0], IDS, 2, (int[]){2, 3});
}
static s2s_tensor *op_layernorm(s2s_graph *g, s2s_tensor **in) { return s2s_layernorm(g, in[0], in[1], in[2]); }
static s2s_tensor *op_softmax(s2s_graph *g, s2s_tensor **in) { return s2s_softmax(g, in[0]); }
static s2s_tensor *op_logsoftmax(s2s_graph *g, s2s_tensor **in) { return s2s_logsoftmax(g, in[0]); }
static s2s_tensor *op_relu(s2s_graph *g, s2s_tensor **in) { return s2s_relu(g, in[0]); }
static s2s_tensor *op_gelu(s2s_graph *g, s2s_tensor **in) { return s2s_gelu(g, in[0]); }
static s2s_tensor *op_dropout(s2s_graph *g, s2s_tensor **in) {
    uint64_t rng = drop_seed; /* the same mask on every evaluation */
    s2s_graph_set_training(g, 1, &rng);
    s2s_tensor *y = s2s_dropout(g, in[0], 0.3f);
    s2s_graph_set_training(g, 0, NULL);
    return y;
}
static s2s_tensor *op_attention(s2s_graph *g, s2s_tensor **in) {
    return s2s_attention(g, in[0], in[1], in[2], KVLEN, 0, 2);
}
static s2s_tensor *op_attention_causal(s2s_graph *g, s2s_tensor **in) {
    return s2s_attention(g, in[0], in[1], in[2], NULL, 1, 2);
}
static s2s_tensor *op_xent(s2s_graph *g, s2s_tensor **in) { return s2s_xent(g, in[0], TGT, 0.1f, 0, NULL); }
static s2s_tensor *op_sum(s2s_graph *g, s2s_tensor **in) { return s2s_sum(g, in[0]); }
static s2s_tensor *op_mean(s2s_graph *g, s2s_tensor **in) { return s2s_mean(g, in[0]); }

/* Fill the start of the (reset) arena with NaN: a gradient element that the backward
 * reads before any op wrote it shows up (graph.c hands out unzeroed buffers). */
static void poison_arena(void) {
    s2s_graph_reset(G);
    memset(s2s_graph_alloc(G, 4u << 20), 0xff, 4u << 20);
    s2s_graph_reset(G);
}

/* loss = sum(op(in) * R) */
static double eval_loss(op_fn f, s2s_tensor **in, const float *R, int grad) {
    if (grad) poison_arena();
    s2s_graph_reset(G);
    s2s_graph_set_grad(G, grad);
    s2s_tensor *x[3] = {0};
    for (int i = 0; i < 3; i++) x[i] = in[i] && copy_inputs ? s2s_reshape(G, in[i], in[i]->ndim, in[i]->shape) : in[i];
    s2s_tensor *y = f(G, x);
    s2s_tensor *r = s2s_tensor_wrap(G, (float *)R, y->ndim, y->shape);
    s2s_tensor *loss = s2s_sum(G, s2s_mul(G, y, r));
    if (grad) s2s_graph_backward(G, loss);
    return loss->data[0];
}

/* inputs given as shapes; every input is a parameter (so it gets a gradient) */
static void check(const char *name, op_fn f, int nin, const int shapes[][3]) {
    s2s_tensor *in[3] = {0};
    uint64_t rng = 1234;
    drop_seed = 99;
    for (int i = 0; i < nin; i++) {
        int nd = shapes[i][2] ? 3 : shapes[i][1] ? 2 : 1;
        in[i] = s2s_param_new(nd, shapes[i]);
        for (size_t j = 0; j < in[i]->n; j++) in[i]->data[j] = s2s_rng_normal(&rng);
    }
    /* output size, for R */
    s2s_graph_reset(G);
    s2s_tensor *y0 = f(G, in);
    size_t ny = y0->n;
    float *R = malloc(ny * sizeof(float));
    for (size_t j = 0; j < ny; j++) R[j] = s2s_rng_normal(&rng);
    for (int i = 0; i < nin; i++) memset(in[i]->grad, 0, in[i]->n * sizeof(float));
    eval_loss(f, in, R, 1);
    int checked = 0;
    for (int i = 0; i < nin; i++) {
        for (size_t j = 0; j < in[i]->n; j++) {
            float old = in[i]->data[j], h = 1e-2f;
            in[i]->data[j] = old + h;
            double lp = eval_loss(f, in, R, 0);
            in[i]->data[j] = old - h;
            double lm = eval_loss(f, in, R, 0);
            in[i]->data[j] = old;
            double fd = (lp - lm) / (2.0 * h), an = in[i]->grad[j];
            cr_assert(fabs(fd - an) <= 3e-3 + 2e-2 * fabs(fd), "%s: input %d [%zu]: analytic %.6f, numeric %.6f",
                      name, i, j, an, fd);
            checked++;
        }
    }
    cr_assert(checked > 0);
    free(R);
    for (int i = 0; i < nin; i++) s2s_param_free(in[i]);
}

static void setup(void) { G = s2s_graph_new(); }
static void teardown(void) { s2s_graph_free(G); }
TestSuite(graph, .init = setup, .fini = teardown);

Test(graph, linear) { check("linear", op_linear, 3, (const int[][3]){{2, 3, 4}, {5, 4, 0}, {5, 0, 0}}); }
Test(graph, matmul) { check("matmul", op_matmul, 2, (const int[][3]){{3, 4, 0}, {4, 5, 0}}); }
Test(graph, add) { check("add", op_add, 2, (const int[][3]){{3, 4, 0}, {3, 4, 0}}); }
Test(graph, mul) { check("mul", op_mul, 2, (const int[][3]){{3, 4, 0}, {3, 4, 0}}); }
Test(graph, scale) { check("scale", op_scale, 1, (const int[][3]){{7, 0, 0}}); }
Test(graph, embedding) { check("embedding", op_embedding, 1, (const int[][3]){{4, 5, 0}}); }
Test(graph, layernorm) { check("layernorm", op_layernorm, 3, (const int[][3]){{3, 6, 0}, {6, 0, 0}, {6, 0, 0}}); }
Test(graph, softmax) { check("softmax", op_softmax, 1, (const int[][3]){{3, 5, 0}}); }
Test(graph, logsoftmax) { check("logsoftmax", op_logsoftmax, 1, (const int[][3]){{3, 5, 0}}); }
Test(graph, relu) { check("relu", op_relu, 1, (const int[][3]){{4, 5, 0}}); }
Test(graph, gelu) { check("gelu", op_gelu, 1, (const int[][3]){{4, 5, 0}}); }
Test(graph, dropout) { check("dropout", op_dropout, 1, (const int[][3]){{4, 5, 0}}); }
Test(graph, attention_padding) {
    check("attention", op_attention, 3, (const int[][3]){{2, 3, 4}, {2, 4, 4}, {2, 4, 4}});
}
Test(graph, attention_causal) {
    check("attention_causal", op_attention_causal, 3, (const int[][3]){{2, 3, 4}, {2, 3, 4}, {2, 3, 4}});
}
Test(graph, xent_label_smoothing) { check("xent", op_xent, 1, (const int[][3]){{6, 5, 0}}); }
Test(graph, sum) { check("sum", op_sum, 1, (const int[][3]){{3, 4, 0}}); }
Test(graph, mean) { check("mean", op_mean, 1, (const int[][3]){{3, 4, 0}}); }

/* the tape is reusable: reset + the same computation gives the same gradients */
Test(graph, reset_reuses_the_arena) {
    int sh[2] = {8, 8};
    s2s_tensor *w = s2s_param_new(2, sh);
    uint64_t rng = 5;
    for (size_t j = 0; j < w->n; j++) w->data[j] = s2s_rng_normal(&rng);
    float first[64];
    for (int rep = 0; rep < 3; rep++) {
        memset(w->grad, 0, sizeof first);
        s2s_graph_reset(G);
        s2s_tensor *y = s2s_gelu(G, s2s_matmul(G, w, w));
        s2s_graph_backward(G, s2s_mean(G, y));
        if (rep == 0) memcpy(first, w->grad, sizeof first);
        else cr_assert(memcmp(first, w->grad, sizeof first) == 0);
    }
    s2s_param_free(w);
}

/* The op profile counts each op's forward calls and times forward and backward. */
Test(graph, profile) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_profile(g, 1);
    s2s_tensor *w = s2s_param_new(2, (const int[]){5, 4}), *x = s2s_param_new(2, (const int[]){6, 4});
    for (int i = 0; i < 20; i++) w->data[i] = 0.1f * (float)(i % 7) - 0.3f;
    for (int i = 0; i < 24; i++) x->data[i] = 0.05f * (float)(i % 5);
    for (int step = 0; step < 3; step++) {
        s2s_graph_reset(g);
        s2s_tensor *h = s2s_relu(g, s2s_linear(g, x, w, NULL));
        s2s_graph_backward(g, s2s_xent(g, h, TGT, 0.0f, 0, NULL));
    }
    long calls;
    cr_assert_eq((s2s_graph_profile_seconds(g, "linear", 0, &calls) >= 0.0), 1);
    cr_assert_eq(calls, 3, "linear forward calls: %ld", calls);
    s2s_graph_profile_seconds(g, "xent", 0, &calls);
    cr_assert_eq(calls, 3);
    cr_assert(s2s_graph_profile_seconds(g, "relu", 1, &calls) >= 0.0 && calls == 3);
    s2s_graph_profile_seconds(g, "attention", 0, &calls);
    cr_assert_eq(calls, 0);
    s2s_graph_profile_seconds(g, "no such op", 0, &calls);
    cr_assert_eq(calls, 0);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    s2s_graph_profile_print(g, f);
    fclose(f);
    cr_assert(strstr(buf, "linear") && strstr(buf, "backward ms"), "%s", buf);
    free(buf);
    s2s_graph_set_profile(g, 0);
    s2s_graph_free(g);
    s2s_param_free(w);
    s2s_param_free(x);
}

/* ------------------------------------------------ first writes (graph.c: gbuf_first) */

/* Every op again with its inputs copies of the parameters: the op's backward is then the
 * first writer of its inputs' gradients and overwrites unzeroed buffers (the parameters'
 * gradients, above, always accumulate). */
Test(graph, first_write_every_op) {
    static const struct {
        const char *name;
        op_fn f;
        int nin;
        int shapes[3][3];
    } ops[] = {
        {"linear", op_linear, 3, {{2, 3, 4}, {5, 4, 0}, {5, 0, 0}}},
        {"matmul", op_matmul, 2, {{3, 4, 0}, {4, 5, 0}}},
        {"add", op_add, 2, {{3, 4, 0}, {3, 4, 0}}},
        {"mul", op_mul, 2, {{3, 4, 0}, {3, 4, 0}}},
        {"scale", op_scale, 1, {{7, 0, 0}}},
        {"embedding", op_embedding, 1, {{4, 5, 0}}},
        {"layernorm", op_layernorm, 3, {{3, 6, 0}, {6, 0, 0}, {6, 0, 0}}},
        {"softmax", op_softmax, 1, {{3, 5, 0}}},
        {"logsoftmax", op_logsoftmax, 1, {{3, 5, 0}}},
        {"relu", op_relu, 1, {{4, 5, 0}}},
        {"gelu", op_gelu, 1, {{4, 5, 0}}},
        {"dropout", op_dropout, 1, {{4, 5, 0}}},
        {"attention", op_attention, 3, {{2, 3, 4}, {2, 4, 4}, {2, 4, 4}}},
        {"attention_causal", op_attention_causal, 3, {{2, 3, 4}, {2, 3, 4}, {2, 3, 4}}},
        {"xent", op_xent, 1, {{6, 5, 0}}},
        {"sum", op_sum, 1, {{3, 4, 0}}},
        {"mean", op_mean, 1, {{3, 4, 0}}},
    };
    copy_inputs = 1;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) check(ops[i].name, ops[i].f, ops[i].nin, ops[i].shapes);
    copy_inputs = 0;
}

/* Fan-out within one op: x + x, x * x, matmul(x, x), attention(a, a, a); x also feeds a
 * linear layer and the sums. The repeated inputs must add (no first-write overwrite). */
static s2s_tensor *op_shared(s2s_graph *g, s2s_tensor **in) {
    s2s_tensor *x = in[0]; /* [4, 4] */
    s2s_tensor *s = s2s_add(g, x, x), *m = s2s_mul(g, x, x);
    s2s_tensor *a = s2s_reshape(g, s2s_scale(g, s2s_matmul(g, x, x), 0.5f), 3, (int[]){2, 2, 4});
    s2s_tensor *at = s2s_reshape(g, s2s_attention(g, a, a, a, NULL, 1, 2), 2, (int[]){4, 4});
    s2s_tensor *y = s2s_add(g, s2s_add(g, s, m), at);
    return s2s_add(g, y, s2s_linear(g, x, in[1], NULL));
}

/* A residual stream, two layers: h feeds a sublayer and then the sum after it, where h's
 * gradient takes over the sum's buffer and the sublayer's backward adds into it. */
static s2s_tensor *op_residual(s2s_graph *g, s2s_tensor **in) {
    s2s_tensor *h = in[0]; /* [2, 3, 4]; in[1] w [4, 4], in[2] [4] as LN weight, LN bias and bias */
    for (int l = 0; l < 2; l++)
        h = s2s_add(g, h, s2s_gelu(g, s2s_linear(g, s2s_layernorm(g, h, in[2], in[2]), in[1], in[2])));
    return h;
}

Test(graph, fan_out) {
    for (copy_inputs = 0; copy_inputs < 2; copy_inputs++) {
        check("shared", op_shared, 2, (const int[][3]){{4, 4, 0}, {4, 4, 0}});
        check("residual", op_residual, 3, (const int[][3]){{2, 3, 4}, {4, 4, 0}, {4, 0, 0}});
    }
    copy_inputs = 0;
}

/* A small Transformer-like step (every op kind of the model, fan-out, dropout, masks).
 * With force, each intermediate also feeds a zero-weighted term added to the loss after
 * everything else: that term's backward runs first and writes zeros, so every real op
 * adds to an existing gradient, as before first writes overwrote. The parameters'
 * gradients must agree bit for bit. */
static s2s_tensor *keep(s2s_tensor **t, int *nt, s2s_tensor *e) { return t[(*nt)++] = e; }

static void step_grads(s2s_tensor **P, int np, int force, float *out) {
    enum { B = 2, T = 5, D = 8, V = 11, H = 2 };
    static const int32_t ids[B * T] = {1, 4, 2, 9, 3, 5, 5, 0, 7, 10}, tgt[B * T] = {4, 2, 9, 3, 0, 5, 0, 7, 10, 0};
    static const int32_t len[B] = {5, 3};
    static float pe[B * T * D];
    for (int i = 0; i < B * T * D; i++) pe[i] = 0.1f * (float)(i % 7) - 0.3f;
    s2s_tensor *t[64];
    int nt = 0;
#define KEEP(e) keep(t, &nt, (e))
    uint64_t rng = 77;
    poison_arena();
    s2s_graph_set_grad(G, 1);
    s2s_graph_set_training(G, 1, &rng);
    for (int i = 0; i < np; i++) memset(P[i]->grad, 0, P[i]->n * sizeof(float));
    s2s_tensor *emb = P[0], *w = P[1], *w2 = P[2], *g = P[3], *bias = P[4];
    s2s_tensor *x = KEEP(s2s_scale(G, KEEP(s2s_embedding(G, emb, ids, 2, (int[]){B, T})), 2.0f));
    x = KEEP(s2s_dropout(G, KEEP(s2s_add(G, x, s2s_tensor_wrap(G, pe, 3, (int[]){B, T, D}))), 0.2f));
    s2s_tensor *h = KEEP(s2s_layernorm(G, x, g, bias));
    s2s_tensor *q = KEEP(s2s_linear(G, h, w, bias)), *k = KEEP(s2s_linear(G, h, w2, NULL));
    s2s_tensor *v = KEEP(s2s_linear(G, h, w, NULL));
    s2s_tensor *a = KEEP(s2s_attention(G, q, k, v, len, 1, H));
    x = KEEP(s2s_add(G, x, KEEP(s2s_dropout(G, KEEP(s2s_linear(G, a, w2, bias)), 0.2f))));
    h = KEEP(s2s_gelu(G, KEEP(s2s_linear(G, KEEP(s2s_layernorm(G, x, g, bias)), w, bias))));
    h = KEEP(s2s_mul(G, h, KEEP(s2s_softmax(G, h))));
    x = KEEP(s2s_add(G, x, KEEP(s2s_relu(G, KEEP(s2s_linear(G, h, w2, NULL))))));
    s2s_tensor *x2 = KEEP(s2s_reshape(G, x, 2, (int[]){B * T, D}));
    s2s_tensor *mm = KEEP(s2s_matmul(G, x2, w)); /* [B*T, D] @ [D, D] */
    x2 = KEEP(s2s_add(G, x2, KEEP(s2s_logsoftmax(G, mm))));
    s2s_tensor *logits = KEEP(s2s_linear(G, KEEP(s2s_layernorm(G, x2, g, bias)), emb, NULL)); /* tied */
    s2s_tensor *loss = KEEP(s2s_add(G, KEEP(s2s_xent(G, logits, tgt, 0.1f, 0, NULL)), KEEP(s2s_mean(G, x2))));
#undef KEEP
    if (force)
        for (int i = 0; i < nt; i++) loss = s2s_add(G, loss, s2s_sum(G, s2s_scale(G, t[i], 0.0f)));
    s2s_graph_backward(G, loss);
    s2s_graph_set_training(G, 0, NULL);
    for (int i = 0; i < np; i++) {
        memcpy(out, P[i]->grad, P[i]->n * sizeof(float));
        out += P[i]->n;
    }
}

Test(graph, first_write_matches_accumulation) {
    enum { D = 8, V = 11 };
    s2s_tensor *P[5] = {s2s_param_new(2, (int[]){V, D}), s2s_param_new(2, (int[]){D, D}),
                        s2s_param_new(2, (int[]){D, D}), s2s_param_new(1, (int[]){D}), s2s_param_new(1, (int[]){D})};
    uint64_t rng = 31;
    size_t n = 0;
    for (int i = 0; i < 5; i++) {
        for (size_t j = 0; j < P[i]->n; j++) P[i]->data[j] = (i == 3 ? 1.0f : 0.0f) + 0.5f * s2s_rng_normal(&rng);
        n += P[i]->n;
    }
    float *first = malloc(n * sizeof(float)), *acc = malloc(n * sizeof(float));
    step_grads(P, 5, 1, acc);
    step_grads(P, 5, 0, first);
    int nonzero = 0;
    for (size_t j = 0; j < n; j++) {
        cr_assert(first[j] == acc[j], "parameter gradient [%zu]: first writes %.9g, accumulated %.9g", j, first[j],
                  acc[j]);
        nonzero += first[j] != 0.0f;
    }
    cr_assert(nonzero > (int)n / 2, "only %d of %zu gradients are nonzero", nonzero, n);
    free(first);
    free(acc);
    for (int i = 0; i < 5; i++) s2s_param_free(P[i]);
}
