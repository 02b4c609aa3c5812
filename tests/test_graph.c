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

/* loss = sum(op(in) * R) */
static double eval_loss(op_fn f, s2s_tensor **in, const float *R, int grad) {
    s2s_graph_reset(G);
    s2s_graph_set_grad(G, grad);
    s2s_tensor *y = f(G, in);
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
