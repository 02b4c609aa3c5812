/* test_golden.c - the C engine against PyTorch (tools/make_golden.py writes
 * tests/data/golden_*.safetensors with Debian's python3-torch): encoder output,
 * logits, loss, every gradient, and the losses of 10 AdamW training steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "common.h"
#include "graph.h"
#include "json.h"
#include "model.h"
#include "optim.h"
#include "safetensors.h"
#include "test_util.h"
#include "tokenizer.h"

typedef struct {
    s2s_st_file *f;
    s2s_model *m;
    int B, Ts, Tt;
    const int32_t *src, *slen, *tin, *tout;
} golden;

static const s2s_st_tensor *need(const s2s_st_file *f, const char *name) {
    const s2s_st_tensor *t = s2s_st_find(f, name);
    cr_assert_not_null(t, "golden file lacks %s", name);
    return t;
}

static void golden_open(golden *g, const char *path) {
    char err[512];
    g->f = s2s_st_open(path, err, sizeof err);
    cr_assert_not_null(g->f, "%s", err);
    const char *cj = s2s_st_meta(g->f, "s2s.config");
    cr_assert_not_null(cj);
    s2s_config c;
    cr_assert_eq(s2s_config_from_json(&c, cj, strlen(cj), err, sizeof err), 0, "%s", err);
    g->m = s2s_model_new_empty(&c, 1);
    for (int i = 0; i < g->m->n_params; i++) {
        const s2s_st_tensor *t = need(g->f, g->m->params[i].name);
        cr_assert_eq((size_t)t->numel, g->m->params[i].t->n, "%s size", g->m->params[i].name);
        s2s_st_to_f32(g->m->params[i].t->data, t);
    }
    const s2s_st_tensor *s = need(g->f, "golden.src"), *ti = need(g->f, "golden.tgt_in");
    g->B = (int)s->shape[0]; g->Ts = (int)s->shape[1]; g->Tt = (int)ti->shape[1];
    g->src = s->data;
    g->slen = need(g->f, "golden.src_len")->data;
    g->tin = ti->data;
    g->tout = need(g->f, "golden.tgt_out")->data;
}

static void golden_close(golden *g) {
    s2s_model_free(g->m);
    s2s_st_close(g->f);
}

static const float *f32(const s2s_st_tensor *t) {
    const float *p = s2s_st_f32_ptr(t);
    cr_assert_not_null(p);
    return p;
}

static s2s_tensor *loss_of(s2s_graph *gr, golden *g, float eps, s2s_tensor **enc, s2s_tensor **logits) {
    s2s_graph_reset(gr);
    s2s_tensor *e = s2s_model_encode(gr, g->m, g->src, g->slen, g->B, g->Ts, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(gr, g->m, e, g->slen, g->tin, g->B, g->Tt, 0.0f);
    if (enc) *enc = e;
    if (logits) *logits = lg;
    return s2s_xent(gr, lg, g->tout, eps, S2S_PAD, NULL);
}

static void check_forward_backward(const char *path) {
    golden g;
    golden_open(&g, path);
    s2s_graph *gr = s2s_graph_new();
    s2s_tensor *enc, *lg;
    s2s_tensor *loss = loss_of(gr, &g, 0.1f, &enc, &lg);
    double d;
    d = tu_max_diff(enc->data, f32(need(g.f, "golden.enc_out")), enc->n);
    cr_log_info("%s: enc_out max abs diff %.3g", path, d);
    cr_assert(d < 1e-4, "enc_out max abs diff %g", d);
    d = tu_max_diff(lg->data, f32(need(g.f, "golden.logits")), lg->n);
    cr_log_info("%s: logits max abs diff %.3g", path, d);
    cr_assert(d < 1e-4, "logits max abs diff %g", d);
    d = fabs(loss->data[0] - f32(need(g.f, "golden.loss"))[0]);
    cr_assert(d < 1e-5, "loss %g vs torch %g", loss->data[0], f32(need(g.f, "golden.loss"))[0]);
    s2s_graph_backward(gr, loss);
    double worst = 0;
    for (int i = 0; i < g.m->n_params; i++) {
        char nm[96];
        snprintf(nm, sizeof nm, "grad.%s", g.m->params[i].name);
        const s2s_st_tensor *t = need(g.f, nm);
        const s2s_tensor *p = g.m->params[i].t;
        double e = tu_rel_err(p->grad, f32(t), p->n, 1e-5, 1e-3);
        if (e > worst) worst = e;
        cr_assert(e <= 1.0, "%s: gradient differs from torch (max abs diff %g)", nm, tu_max_diff(p->grad, f32(t), p->n));
    }
    cr_log_info("%s: worst gradient error %.3g of tolerance (1e-5 abs + 1e-3 rel)", path, worst);
    s2s_graph_free(gr);
    golden_close(&g);
}

static void check_training(const char *path) {
    golden g;
    golden_open(&g, path);
    const char *hp = s2s_st_meta(g.f, "golden.hparams");
    cr_assert_not_null(hp);
    char err[256];
    s2s_json *j = s2s_json_parse(hp, strlen(hp), err, sizeof err);
    cr_assert_not_null(j, "%s", err);
    float lr = (float)s2s_json_num(s2s_json_get(j, "lr"));
    float warmup = (float)s2s_json_num(s2s_json_get(j, "warmup"));
    float wd = (float)s2s_json_num(s2s_json_get(j, "weight_decay"));
    float clip = (float)s2s_json_num(s2s_json_get(j, "clip"));
    float eps = (float)s2s_json_num(s2s_json_get(j, "label_smoothing"));
    int steps = (int)s2s_json_num(s2s_json_get(j, "steps"));
    s2s_json_free(j);
    const float *want = f32(need(g.f, "golden.train_losses"));
    s2s_adamw opt;
    s2s_adamw_init(&opt, g.m);
    s2s_graph *gr = s2s_graph_new();
    for (int s = 1; s <= steps; s++) {
        s2s_zero_grad(g.m);
        s2s_tensor *loss = loss_of(gr, &g, eps, NULL, NULL);
        s2s_graph_backward(gr, loss);
        cr_log_info("step %d: loss %.6f torch %.6f", s, loss->data[0], want[s - 1]);
        cr_assert(fabs(loss->data[0] - want[s - 1]) < 1e-4, "step %d: loss %.6f, torch %.6f", s, loss->data[0], want[s - 1]);
        s2s_clip_grad_norm(g.m, clip);
        s2s_adamw_step(&opt, g.m, s2s_lr_at(lr, warmup, s), wd, s);
    }
    const s2s_st_tensor *fe = need(g.f, "golden.final_tgt_emb");
    double d = tu_max_diff(g.m->tgt_emb->data, f32(fe), g.m->tgt_emb->n);
    cr_assert(d < 1e-4, "tgt_emb after %d steps: max abs diff %g", steps, d);
    s2s_adamw_free(&opt);
    s2s_graph_free(gr);
    golden_close(&g);
}

Test(golden, relu_forward_backward_match_torch) { check_forward_backward("tests/data/golden_tiny.safetensors"); }
Test(golden, gelu_shared_forward_backward_match_torch) {
    check_forward_backward("tests/data/golden_tiny_gelu_shared.safetensors");
}
Test(golden, relu_ten_adamw_steps_match_torch) { check_training("tests/data/golden_tiny.safetensors"); }
Test(golden, gelu_shared_ten_adamw_steps_match_torch) {
    check_training("tests/data/golden_tiny_gelu_shared.safetensors");
}
