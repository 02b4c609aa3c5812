/* test_prune.c - NASH structured pruning, engineer A's part (prune.h, kd.h, per-layer
 * encoder widths in config/model/checkpoint, `s2s prune`): uniform decoder layer
 * selection, per-layer-width config JSON and checkpoint round trips (0 heads and 0
 * FFN units included), the pruned dense encoder == the L0-masked full encoder in
 * eval mode (mask values folded into the weights), finite-difference gradients of
 * the distillation loss and KD weight 0 == plain CE, `s2s prune` end to end on a
 * tiny model (then `s2s translate` and `s2s info` on its result), and bad flags.
 * Uses the binary in $S2S_BIN for the CLI cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "graph.h"
#include "kd.h"
#include "l0.h"
#include "model.h"
#include "optim.h"
#include "prune.h"
#include "test_util.h"
#include "tokenizer.h"

static s2s_config cfg_of(int D, int H, int F, int Le, int Ld) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = Le; c.dec_layers = Ld;
    c.max_len = 64;
    return c;
}

/* Encoder output [2, 5, D] of the fixed batch (eval mode), malloc'd. */
static float *encode(const s2s_model *m) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *e = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    float *out = s2s_xmalloc(e->n * sizeof(float));
    memcpy(out, e->data, e->n * sizeof(float));
    /* padding rows mean nothing (an inference model leaves them 0): compare real rows only */
    const size_t D = e->n / 10;
    for (int b = 0; b < 2; b++) memset(out + ((size_t)b * 5 + TU_SLEN[b]) * D, 0, (5 - TU_SLEN[b]) * D * sizeof(float));
    s2s_graph_free(g);
    return out;
}

/* Teacher-forced logits [2, 4, Vt] of the fixed batch (eval mode), malloc'd. */
static float *logits_of(const s2s_model *m) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *e = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(g, m, e, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    float *out = s2s_xmalloc(lg->n * sizeof(float));
    memcpy(out, lg->data, lg->n * sizeof(float));
    s2s_graph_free(g);
    return out;
}

/* ------------------------------------------------------ layer selection */

Test(prune, uniform_layer_selection) {
    int k[8];
    cr_assert_eq(s2s_prune_select_layers(k, 2, 6), 0);
    cr_assert(k[0] == 0 && k[1] == 5);
    cr_assert_eq(s2s_prune_select_layers(k, 3, 6), 0);
    cr_assert(k[0] == 0 && k[1] == 2 && k[2] == 5, "%d %d %d", k[0], k[1], k[2]);
    cr_assert_eq(s2s_prune_select_layers(k, 1, 6), 0);
    cr_assert_eq(k[0], 0);
    cr_assert_eq(s2s_prune_select_layers(k, 4, 6), 0); /* floor(5/3 d): 0 1 3 5 */
    cr_assert(k[0] == 0 && k[1] == 1 && k[2] == 3 && k[3] == 5, "%d %d %d %d", k[0], k[1], k[2], k[3]);
    cr_assert_eq(s2s_prune_select_layers(k, 6, 6), 0);
    for (int d = 0; d < 6; d++) cr_assert_eq(k[d], d);
    cr_assert_eq(s2s_prune_select_layers(k, 3, 12), 0); /* floor(11/2 d): 0 5 11 */
    cr_assert(k[0] == 0 && k[1] == 5 && k[2] == 11);
    cr_assert_eq(s2s_prune_select_layers(k, 0, 6), -1);
    cr_assert_eq(s2s_prune_select_layers(k, 7, 6), -1);
}

Test(prune, decoder_keeps_the_selected_layers) {
    s2s_model *t = tu_model_for(cfg_of(16, 2, 24, 1, 6), 3);
    tu_perturb_vectors(t, 3);
    s2s_model *ref = tu_model_for(cfg_of(16, 2, 24, 1, 6), 3); /* same weights */
    tu_perturb_vectors(ref, 3);
    int keep[3];
    s2s_prune_select_layers(keep, 3, 6);
    char err[256];
    struct s2s_tokenizer *tok = t->src_tok;
    s2s_model *p = s2s_prune_decoder(t, keep, 3, err, sizeof err);
    cr_assert_not_null(p, "%s", err);
    cr_assert_eq(p->src_tok, tok);
    cr_assert_null(t->src_tok);
    cr_assert_eq(p->cfg.dec_layers, 3);
    for (int i = 0; i < p->n_params; i++) {
        const char *nm = p->params[i].name;
        char src_nm[96];
        int d;
        if (sscanf(nm, "dec.%d.", &d) == 1) snprintf(src_nm, sizeof src_nm, "dec.%d%s", keep[d], strchr(nm + 4, '.'));
        else snprintf(src_nm, sizeof src_nm, "%s", nm);
        const s2s_tensor *a = p->params[i].t, *b = s2s_model_param(ref, src_nm);
        cr_assert_not_null(b, "%s", src_nm);
        cr_assert_eq(a->n, b->n);
        cr_assert_eq(memcmp(a->data, b->data, a->n * sizeof(float)), 0, "%s != %s", nm, src_nm);
    }
    int bad[2] = {2, 1};
    cr_assert_null(s2s_prune_decoder(t, bad, 2, err, sizeof err));
    cr_assert(strstr(err, "increasing"), "%s", err);
    s2s_model_free(p); s2s_model_free(t); s2s_model_free(ref);
}

/* ------------------------------------------------------ per-layer widths */

static s2s_config uneven_cfg(void) {
    s2s_config c = cfg_of(16, 4, 24, 3, 2);
    c.enc_widths = 1;
    int h[3] = {0, 3, 4}, f[3] = {7, 0, 24};
    memcpy(c.enc_heads, h, sizeof h);
    memcpy(c.enc_ff, f, sizeof f);
    return c;
}

Test(prune, config_json_round_trip_and_errors) {
    s2s_config c = uneven_cfg(), r;
    c.src_vocab = 20; c.tgt_vocab = 30;
    char err[256];
    cr_assert_eq(s2s_config_check(&c, err, sizeof err), 0, "%s", err);
    char *j = s2s_config_to_json(&c);
    cr_assert(strstr(j, "\"enc_heads\":[0,3,4]") && strstr(j, "\"enc_ff\":[7,0,24]"), "%s", j);
    cr_assert_eq(s2s_config_from_json(&r, j, strlen(j), err, sizeof err), 0, "%s", err);
    free(j);
    cr_assert_eq(r.enc_widths, 1);
    for (int l = 0; l < 3; l++) {
        cr_assert_eq(s2s_config_enc_heads(&r, l), s2s_config_enc_heads(&c, l));
        cr_assert_eq(s2s_config_enc_ff(&r, l), s2s_config_enc_ff(&c, l));
    }
    /* uniform configs do not write the arrays and read back uniform */
    s2s_config u = cfg_of(16, 4, 24, 3, 2);
    u.src_vocab = 20; u.tgt_vocab = 30;
    j = s2s_config_to_json(&u);
    cr_assert_null(strstr(j, "enc_heads"), "%s", j);
    cr_assert_eq(s2s_config_from_json(&r, j, strlen(j), err, sizeof err), 0, "%s", err);
    free(j);
    cr_assert_eq(r.enc_widths, 0);
    cr_assert_eq(s2s_config_enc_heads(&r, 2), 4);
    cr_assert_eq(s2s_config_enc_ff(&r, 2), 24);
    /* one array alone: the other dimension stays uniform */
    const char *one = "{\"d_model\":16,\"n_heads\":4,\"d_ff\":24,\"enc_layers\":2,\"dec_layers\":1,\"src_vocab\":20,"
                      "\"tgt_vocab\":30,\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\",\"enc_heads\":[2,1]}";
    cr_assert_eq(s2s_config_from_json(&r, one, strlen(one), err, sizeof err), 0, "%s", err);
    cr_assert(r.enc_widths && s2s_config_enc_heads(&r, 1) == 1 && s2s_config_enc_ff(&r, 1) == 24);
    static const struct { const char *tail, *msg; } bad[] = {
        {"\"enc_heads\":[2]}", "enc_layers = 2 entries"},
        {"\"enc_heads\":[2,5]}", "enc_heads[1] = 5 is out of range"},
        {"\"enc_ff\":[-1,3]}", "enc_ff[0] = -1 is out of range"},
        {"\"enc_ff\":[25,3]}", "enc_ff[0] = 25 is out of range"},
        {"\"enc_ff\":[1.5,3]}", "enc_ff[0] must be an integer"},
        {"\"enc_ff\":3}", "enc_ff must be an array"},
        {"\"enc_widths\":1}", "unknown key 'enc_widths'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char js[512];
        snprintf(js, sizeof js, "{\"d_model\":16,\"n_heads\":4,\"d_ff\":24,\"enc_layers\":2,\"dec_layers\":1,\"src_vocab\":20,"
                 "\"tgt_vocab\":30,\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\",%s", bad[i].tail);
        cr_assert_neq(s2s_config_from_json(&r, js, strlen(js), err, sizeof err), 0, "%s", js);
        cr_assert(strstr(err, bad[i].msg), "%s: %s", bad[i].tail, err);
    }
}

Test(prune, uneven_widths_weights_checkpoint_and_decoding) {
    s2s_model *m = tu_model_for(uneven_cfg(), 5);
    tu_perturb_vectors(m, 5);
    int D = 16, Dh = 4;
    cr_assert_null(s2s_model_param(m, "enc.0.attn.q.weight")); /* 0 heads: no attention tensors */
    cr_assert_null(s2s_model_param(m, "enc.0.ln1.weight"));
    cr_assert_null(s2s_model_param(m, "enc.1.fc1.weight"));   /* 0 units: no FFN tensors */
    cr_assert_null(s2s_model_param(m, "enc.1.ln2.weight"));
    const s2s_tensor *q = s2s_model_param(m, "enc.1.attn.q.weight"), *o = s2s_model_param(m, "enc.1.attn.o.weight");
    const s2s_tensor *f1 = s2s_model_param(m, "enc.0.fc1.weight"), *f2 = s2s_model_param(m, "enc.0.fc2.weight");
    cr_assert(q && q->shape[0] == 3 * Dh && q->shape[1] == D);
    cr_assert(o && o->shape[0] == D && o->shape[1] == 3 * Dh);
    cr_assert(f1 && f1->shape[0] == 7 && f1->shape[1] == D);
    cr_assert(f2 && f2->shape[0] == D && f2->shape[1] == 7);
    float *e0 = encode(m), *l0 = logits_of(m);
    char *dir = tu_tmpdir(), *p = tu_path(dir, "m.safetensors"), err[256];
    for (int fp16 = 0; fp16 < 2; fp16++) {
        cr_assert_eq(s2s_model_save(m, p, NULL, 0, NULL, 0, fp16, err, sizeof err), 0, "%s", err);
        for (int tr = 0; tr < 2; tr++) {
            s2s_model *r = s2s_model_load(p, tr, err, sizeof err);
            cr_assert_not_null(r, "%s", err);
            cr_assert_eq(r->cfg.enc_widths, 1);
            cr_assert_eq(r->n_params, m->n_params);
            float *e1 = encode(r), *l1 = logits_of(r);
            double tol = fp16 ? 5e-2 : 1e-6;
            cr_assert(tu_max_diff(e0, e1, 2 * 5 * D) <= tol, "fp16 %d: encoder differs by %g", fp16, tu_max_diff(e0, e1, 2 * 5 * D));
            cr_assert(tu_max_diff(l0, l1, 2 * 4 * (size_t)m->cfg.tgt_vocab) <= 5 * tol);
            /* the step decoders (greedy/beam search) on top of the narrowed encoder */
            cr_assert(tu_select_reorder_diff(r) < 1e-4);
            free(e1); free(l1);
            s2s_model_free(r);
        }
    }
    /* a checkpoint whose config promises other widths is refused with one line */
    s2s_config c2 = m->cfg;
    c2.enc_heads[1] = 2;
    s2s_model *w = s2s_model_new_empty(&c2, 1);
    cr_assert_eq(w->n_params, m->n_params);
    free(e0); free(l0);
    s2s_model_free(w);
    tu_rmrf(dir); free(dir); free(p);
    s2s_model_free(m);
}

/* Finite-difference gradients of a training loss through an uneven encoder. */
Test(prune, uneven_widths_finite_difference_gradients) {
    s2s_model *m = tu_model_for(uneven_cfg(), 8);
    tu_perturb_vectors(m, 8);
    m->cfg.activation = S2S_ACT_GELU;
    s2s_graph *g = s2s_graph_new();
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *loss = s2s_xent(g, s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f), TU_TOUT, 0.1f, S2S_PAD, NULL);
    s2s_zero_grad(m);
    s2s_graph_backward(g, loss);
    uint64_t rng = 5;
    int checked = 0;
    for (int p = 0; p < m->n_params; p++) {
        if (strncmp(m->params[p].name, "enc.", 4) != 0) continue;
        s2s_tensor *t = m->params[p].t;
        for (int r = 0; r < 3; r++) {
            size_t j = s2s_rng_next(&rng) % t->n;
            float old = t->data[j], h = 1e-3f;
            double v[2];
            for (int s = 0; s < 2; s++) {
                t->data[j] = old + (s ? -h : h);
                s2s_graph_reset(g);
                s2s_graph_set_grad(g, 0);
                s2s_tensor *e = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
                v[s] = s2s_xent(g, s2s_model_decode_train(g, m, e, TU_SLEN, TU_TIN, 2, 4, 0.0f), TU_TOUT, 0.1f, S2S_PAD, NULL)->data[0];
            }
            t->data[j] = old;
            double fd = (v[0] - v[1]) / (2 * h), an = t->grad[j];
            cr_assert(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s[%zu]: analytic %.6g vs numeric %.6g",
                      m->params[p].name, j, an, fd);
            checked++;
        }
    }
    cr_assert(checked >= 3 * 20, "%d", checked);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* ------------------------------------------------------ removal == masks */

/* The pruned dense model computes what the L0-masked full model computes in eval
 * mode. Layer 0 loses every head (nothing before it to take its bias: one silent head
 * stays), layer 1 every FFN unit and layer 2 every head (their biases move into layer
 * 1's attention output bias); the other groups keep some units with z in (0, 1). */
Test(prune, removal_folds_masks_exactly) {
    int D = 16, H = 4, F = 24, Le = 3;
    s2s_model *m = tu_model_for(cfg_of(D, H, F, Le, 2), 11);
    tu_perturb_vectors(m, 11);
    s2s_l0 *l0 = s2s_l0_new(m, 0.05f, 3);
    float *la = s2s_l0_log_alpha(l0)->data;
    uint64_t rng = 17;
    float *zh[3], *zf[3];
    int partial = 0;
    for (int l = 0; l < Le; l++)
        for (int s = 0; s < 2; s++) {
            int off, n = s2s_l0_group(l0, l, s, &off);
            cr_assert_eq(n, s ? F : H);
            int dead = (l == 0 && !s) || (l == 1 && s) || (l == 2 && !s), full = l == 1 && !s;
            for (int i = 0; i < n; i++)
                la[off + i] = dead ? -12.0f : full ? 6.0f : 1.5f * s2s_rng_normal(&rng);
            float *z = s2s_xmalloc((size_t)n * sizeof(float));
            s2s_l0_deterministic(z, la + off, n);
            for (int i = 0; i < n; i++) partial += z[i] > 0.0f && z[i] < 1.0f;
            if (s) zf[l] = z; else zh[l] = z;
        }
    cr_assert(partial > 5, "only %d mask values strictly inside (0, 1)", partial);
    s2s_l0_touch(l0);
    m->l0 = l0;
    float *masked = encode(m), *masked_logits = logits_of(m);
    m->l0 = NULL;
    float *full = encode(m);
    cr_assert(tu_max_diff(masked, full, 2 * 5 * (size_t)D) > 1e-2, "the masks must change the encoder");
    s2s_model *p = s2s_prune_encoder(m, zh, zf);
    cr_assert_eq(p->cfg.enc_widths, 1);
    cr_assert_eq(s2s_config_enc_heads(&p->cfg, 0), 1); /* the silent head */
    cr_assert_eq(s2s_config_enc_ff(&p->cfg, 1), 0);
    cr_assert_eq(s2s_config_enc_heads(&p->cfg, 2), 0);
    cr_assert_eq(s2s_config_enc_heads(&p->cfg, 1), H);
    for (int l = 0; l < Le; l++) {
        int nh = 0, nf = 0;
        for (int i = 0; i < H; i++) nh += zh[l][i] != 0.0f;
        for (int i = 0; i < F; i++) nf += zf[l][i] != 0.0f;
        if (l != 0) cr_assert_eq(s2s_config_enc_heads(&p->cfg, l), nh);
        cr_assert_eq(s2s_config_enc_ff(&p->cfg, l), nf);
    }
    cr_assert_lt(s2s_model_param_count(p), s2s_model_param_count(m));
    float *pruned = encode(p), *pruned_logits = logits_of(p);
    double d = tu_max_diff(masked, pruned, 2 * 5 * (size_t)D);
    cr_assert(d < 1e-4, "pruned encoder differs from the masked one by %g", d);
    d = tu_max_diff(masked_logits, pruned_logits, 2 * 4 * (size_t)p->cfg.tgt_vocab);
    cr_assert(d < 1e-4, "logits differ by %g", d);
    /* s2s_prune_read_masks: the same masks from a checkpoint holding the log_alphas */
    char *dir = tu_tmpdir(), *path = tu_path(dir, "masks.safetensors"), err[256];
    s2s_model *m2 = tu_model_for(cfg_of(D, H, F, Le, 2), 11);
    s2s_extra_tensor *ex = s2s_xcalloc((size_t)s2s_l0_max_extra(l0), sizeof *ex);
    int nex = s2s_l0_extra(l0, ex, 0);
    cr_assert_eq(s2s_model_save(m2, path, ex, nex, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    float **rh, **rf;
    cr_assert_eq(s2s_prune_read_masks(path, m2, &rh, &rf, err, sizeof err), 0, "%s", err);
    for (int l = 0; l < Le; l++) {
        cr_assert_eq(memcmp(rh[l], zh[l], (size_t)H * sizeof(float)), 0);
        cr_assert_eq(memcmp(rf[l], zf[l], (size_t)F * sizeof(float)), 0);
    }
    s2s_prune_masks_free(rh, rf, Le);
    cr_assert_eq(s2s_model_save(m2, path, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_neq(s2s_prune_read_masks(path, m2, &rh, &rf, err, sizeof err), 0);
    cr_assert(strstr(err, "no L0 masks") && strstr(err, "enc.0.l0.heads"), "%s", err);
    free(ex);
    s2s_model_free(m2);
    tu_rmrf(dir); free(dir); free(path);
    for (int l = 0; l < Le; l++) { free(zh[l]); free(zf[l]); }
    free(masked); free(masked_logits); free(full); free(pruned); free(pruned_logits);
    s2s_l0_free(l0);
    s2s_model_free(p);
    s2s_model_free(m);
}

/* ------------------------------------------------------ distillation loss */

enum { KB = 2, KT = 3, KV = 7 };
static const int32_t KTGT[KB * KT] = {3, 5, 0, 6, 2, 1}; /* one pad row */

static float kd_value(const float *x, const float *tl, float eps, float a, float T, double *kl) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *s = s2s_tensor_wrap(g, (float *)x, 3, (int[]){KB, KT, KV});
    s2s_tensor *t = s2s_tensor_wrap(g, (float *)tl, 3, (int[]){KB, KT, KV});
    s2s_tensor *klt;
    float v = s2s_kd_loss(g, s, t, KTGT, eps, S2S_PAD, a, T, &klt)->data[0];
    if (kl) *kl = klt->data[0];
    s2s_graph_free(g);
    return v;
}

Test(prune, kd_loss_value_and_finite_difference_gradients) {
    float x[KB * KT * KV], tl[KB * KT * KV];
    uint64_t rng = 4;
    for (int i = 0; i < KB * KT * KV; i++) { x[i] = 2.0f * s2s_rng_normal(&rng); tl[i] = 2.0f * s2s_rng_normal(&rng); }
    float eps = 0.1f, a = 0.7f, T = 2.0f;
    /* KL by hand over the 5 counted rows */
    double kl_ref = 0;
    int n = 0;
    for (int r = 0; r < KB * KT; r++) {
        if (KTGT[r] == S2S_PAD) continue;
        n++;
        double ms = -1e30, mt = -1e30, zs = 0, zt = 0;
        for (int v = 0; v < KV; v++) { ms = fmax(ms, x[r * KV + v] / T); mt = fmax(mt, tl[r * KV + v] / T); }
        for (int v = 0; v < KV; v++) { zs += exp(x[r * KV + v] / T - ms); zt += exp(tl[r * KV + v] / T - mt); }
        for (int v = 0; v < KV; v++) {
            double lp = tl[r * KV + v] / T - mt - log(zt), lq = x[r * KV + v] / T - ms - log(zs);
            kl_ref += exp(lp) * (lp - lq);
        }
    }
    kl_ref /= n;
    double kl;
    kd_value(x, tl, eps, a, T, &kl);
    cr_assert(fabs(kl - kl_ref) < 1e-5, "KL %.8g vs %.8g", kl, kl_ref);
    /* analytic gradients */
    s2s_graph *g = s2s_graph_new();
    s2s_tensor *s = s2s_param_new(3, (int[]){KB, KT, KV});
    memcpy(s->data, x, sizeof x);
    s2s_tensor *t = s2s_tensor_wrap(g, tl, 3, (int[]){KB, KT, KV});
    s2s_tensor *loss = s2s_kd_loss(g, s, t, KTGT, eps, S2S_PAD, a, T, NULL);
    s2s_graph_backward(g, loss);
    for (int i = 0; i < KB * KT * KV; i++) {
        float old = x[i], h = 1e-2f;
        x[i] = old + h;
        double lp = kd_value(x, tl, eps, a, T, NULL);
        x[i] = old - h;
        double lm = kd_value(x, tl, eps, a, T, NULL);
        x[i] = old;
        double fd = (lp - lm) / (2 * h), an = s->grad[i];
        if (KTGT[i / KV] == S2S_PAD) cr_assert_eq(an, 0.0, "pad row gradient %g", an);
        cr_assert(fabs(fd - an) <= 1e-3 + 2e-2 * fabs(an), "[%d]: analytic %.6g vs numeric %.6g", i, an, fd);
    }
    s2s_param_free(s);
    s2s_graph_free(g);
}

Test(prune, kd_weight_zero_is_plain_cross_entropy) {
    float x[KB * KT * KV], tl[KB * KT * KV];
    uint64_t rng = 9;
    for (int i = 0; i < KB * KT * KV; i++) { x[i] = s2s_rng_normal(&rng); tl[i] = 3.0f * s2s_rng_normal(&rng); }
    float grads[2][KB * KT * KV], vals[2];
    for (int k = 0; k < 2; k++) {
        s2s_graph *g = s2s_graph_new();
        s2s_tensor *s = s2s_param_new(3, (int[]){KB, KT, KV});
        memcpy(s->data, x, sizeof x);
        s2s_tensor *t = s2s_tensor_wrap(g, tl, 3, (int[]){KB, KT, KV});
        s2s_tensor *loss = k ? s2s_kd_loss(g, s, t, KTGT, 0.1f, S2S_PAD, 0.0f, 3.0f, NULL)
                             : s2s_xent(g, s, KTGT, 0.1f, S2S_PAD, NULL);
        s2s_graph_backward(g, loss);
        vals[k] = loss->data[0];
        memcpy(grads[k], s->grad, sizeof grads[k]);
        s2s_param_free(s);
        s2s_graph_free(g);
    }
    cr_assert_eq(vals[0], vals[1], "%.9g vs %.9g", vals[0], vals[1]);
    cr_assert(tu_max_diff(grads[0], grads[1], KB * KT * KV) < 1e-7);
    /* and a teacher equal to the student gives KL 0 */
    double kl;
    kd_value(x, x, 0.0f, 1.0f, 1.5f, &kl);
    cr_assert(fabs(kl) < 1e-6, "%g", kl);
}

Test(prune, reshape_copies_values_and_gradients) {
    s2s_graph *g = s2s_graph_new();
    s2s_tensor *a = s2s_param_new(3, (int[]){2, 3, 4});
    for (int i = 0; i < 24; i++) a->data[i] = (float)i - 7.0f;
    s2s_tensor *r = s2s_reshape(g, a, 2, (int[]){6, 4});
    cr_assert(r->ndim == 2 && r->shape[0] == 6 && r->shape[1] == 4);
    cr_assert_eq(memcmp(r->data, a->data, 24 * sizeof(float)), 0);
    s2s_tensor *w = s2s_tensor_wrap(g, a->data, 2, (int[]){6, 4}); /* sum(r * a) -> grad 2a... via a constant */
    s2s_graph_backward(g, s2s_sum(g, s2s_mul(g, r, w)));
    for (int i = 0; i < 24; i++) cr_assert_eq(a->grad[i], a->data[i]);
    s2s_param_free(a);
    s2s_graph_free(g);
}

/* ------------------------------------------------------ s2s prune */

typedef struct { char *dir, *teacher, *out; } prune_fx;

static prune_fx make_fx(void) {
    prune_fx f;
    f.dir = tu_tmpdir();
    f.teacher = tu_path(f.dir, "teacher.safetensors");
    f.out = tu_path(f.dir, "out");
    s2s_model *m = tu_model_for(cfg_of(16, 2, 24, 2, 3), 21);
    char err[256];
    cr_assert_eq(s2s_model_save(m, f.teacher, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    s2s_model_free(m);
    tu_write_reverse_task(f.dir, "train", 40, 5);
    tu_write_reverse_task(f.dir, "dev", 6, 6);
    return f;
}

static void free_fx(prune_fx *f) { tu_rmrf(f->dir); free(f->dir); free(f->teacher); free(f->out); }

Test(prune, cli_end_to_end_then_translate_and_info) {
    prune_fx f = make_fx();
    char cmd[4096], full[4096], *out = NULL;
    snprintf(full, sizeof full,
             "%s prune -m %s -o %s --train-src %s/train.src --train-tgt %s/train.tgt --dev-src %s/dev.src "
             "--dev-tgt %s/dev.tgt --decoder-layers 2 --encoder-sparsity 0.5 --prune-steps 6 --prune-warmup 3 "
             "--finetune-steps 3 --tokens-per-batch 256 --eval-every 3 --log-every 0 --quiet --l0-lr 0.5 --fp16",
             tu_bin(), f.teacher, f.out, f.dir, f.dir, f.dir, f.dir);
    int st = tu_run(full, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "phase 0: keeping decoder layers 0 2 of 3"), "%s", out);
    cr_assert(strstr(out, "phase 3") && strstr(out, "done"), "%s", out);
    free(out);
    char *final = tu_path(f.out, "model.safetensors"), err[256];
    s2s_model *m = s2s_model_load(final, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(m->cfg.dec_layers, 2);
    cr_assert_eq(m->cfg.enc_widths, 1);
    s2s_model_free(m);
    snprintf(cmd, sizeof cmd, "printf 'abc\\nde\\n' | %s translate -m %s --beam 2", tu_bin(), final);
    st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "s2s translate: 2 lines in"), "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s info -m %s", tu_bin(), final);
    st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "enc heads:") && strstr(out, "enc d_ff:"), "%s", out);
    free(out);
    /* a second run finds every phase done */
    snprintf(cmd, sizeof cmd, "%s prune -m %s -o %s --train-src %s/train.src --train-tgt %s/train.tgt", tu_bin(), f.teacher,
             f.out, f.dir, f.dir);
    st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "every phase is done"), "%s", out);
    free(out);
    /* without the final model: the finished phases are skipped, phase 3 resumes at its end */
    cr_assert_eq(remove(final), 0);
    st = tu_run(full, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "phase 0 done") && strstr(out, "phases 1 and 2 done"), "%s", out);
    cr_assert_null(strstr(out, "phase 1:"), "%s", out);
    free(out);
    m = s2s_model_load(final, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(m->cfg.dec_layers, 2);
    s2s_model_free(m);
    free(final);
    free_fx(&f);
}

/* `s2s train --kd-teacher`: a teacher with other tokenizers is refused in one line. */
Test(prune, train_kd_teacher_needs_the_same_tokenizers) {
    prune_fx f = make_fx();
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd, "%s train --train-src %s/train.src --train-tgt %s/train.tgt -o %s --kd-teacher %s "
             "--kd-weight 0.5 --max-steps 2 --d-model 16 --heads 2 --ff 24 --enc-layers 1 --dec-layers 1 --quiet",
             tu_bin(), f.dir, f.dir, f.out, f.teacher);
    int st = tu_run(cmd, &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "tokenizers differ"), "%s", out);
    cr_assert(strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
    free(out);
    free_fx(&f);
}

/* --encoder-sparsity 0: decoder shortening + fine-tuning only, encoder untouched. */
Test(prune, cli_sparsity_zero_keeps_the_encoder) {
    prune_fx f = make_fx();
    char cmd[4096], *out = NULL;
    snprintf(cmd, sizeof cmd,
             "%s prune -m %s -o %s --train-src %s/train.src --train-tgt %s/train.tgt --decoder-layers 1 "
             "--encoder-sparsity 0 --finetune-steps 2 --kd-weight 0 --tokens-per-batch 256 --eval-every 0 --quiet",
             tu_bin(), f.teacher, f.out, f.dir, f.dir);
    int st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert_null(strstr(out, "phase 1"), "%s", out);
    free(out);
    char *final = tu_path(f.out, "model.safetensors"), err[256];
    s2s_model *m = s2s_model_load(final, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(m->cfg.dec_layers, 1);
    cr_assert_eq(m->cfg.enc_widths, 0);
    s2s_model_free(m);
    free(final);
    free_fx(&f);
}

Test(prune, cli_bad_flags_give_one_line_errors) {
    prune_fx f = make_fx();
    static const struct { const char *args, *msg; int rc; } cases[] = {
        {"--train-src X --train-tgt Y", "need -m TEACHER and -o OUT", 2},
        {"-m T -o O", "need --train-src and --train-tgt", 2},
        {"-m T -o O --train-src X --train-tgt Y --encoder-sparsity 1.5", "--encoder-sparsity", 2},
        {"-m T -o O --train-src X --train-tgt Y --decoder-layers 0", "--decoder-layers", 2},
        {"-m T -o O --train-src X --train-tgt Y --prune-steps x", "--prune-steps", 2},
        {"-m T -o O --train-src X --train-tgt Y --prune-steps 10 --prune-warmup 20", "longer than --prune-steps", 2},
        {"-m T -o O --train-src X --train-tgt Y --init Z", "--init is set by prune", 2},
        {"-m T -o O --train-src X --train-tgt Y --l0-target 0.3", "--l0-target is set by prune", 2},
        {"-m T -o O --train-src X --train-tgt Y --bogus 1", "unknown option '--bogus'", 2},
        {"-m T -o O --train-src X --train-tgt Y --kd-weight 2", "--kd-weight", 2},
        {"-m T -o O --train-src X --train-tgt Y --dev-src D", "--dev-src and --dev-tgt go together", 2},
        {"-m T -o O --train-src X --train-tgt Y stray", "unexpected argument 'stray'", 2},
        {"-m T -o O --train-src X --train-tgt Y --decoder-layers", "needs a value", 2},
    };
    char cmd[4096], *out = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(cmd, sizeof cmd, "%s prune %s", tu_bin(), cases[i].args);
        int st = tu_run(cmd, &out);
        cr_assert_eq(st, cases[i].rc, "%s: status %d: %s", cases[i].args, st, out);
        cr_assert(strstr(out, cases[i].msg), "%s: %s", cases[i].args, out);
        cr_assert(strncmp(out, "s2s prune: ", 11) == 0 && strchr(out, '\n') == out + strlen(out) - 1, "%s: %s",
                  cases[i].args, out);
        free(out);
    }
    /* runtime errors: a missing teacher, too many decoder layers */
    snprintf(cmd, sizeof cmd, "%s prune -m %s/nope.safetensors -o %s --train-src %s/train.src --train-tgt %s/train.tgt",
             tu_bin(), f.dir, f.out, f.dir, f.dir);
    int st = tu_run(cmd, &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strncmp(out, "s2s prune: ", 11) == 0 && strstr(out, "nope.safetensors"), "%s", out);
    cr_assert(strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
    free(out);
    snprintf(cmd, sizeof cmd, "%s prune -m %s -o %s --decoder-layers 4 --train-src %s/train.src --train-tgt %s/train.tgt",
             tu_bin(), f.teacher, f.out, f.dir, f.dir);
    st = tu_run(cmd, &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "--decoder-layers 4: the teacher has only 3 decoder layers"), "%s", out);
    free(out);
    free_fx(&f);
}

/* ------------------------------------------------------ GPU (skips without one) */

#include "kernels_cuda.h"
#include "s2s.h"

/* An uneven-width model on the GPU: the encoder output, the teacher-forced logits, the
 * distillation loss and its parameter gradients match the CPU's, and greedy decoding
 * through the GPU decoder runs on it. */
Test(prune, cuda_uneven_widths_match_cpu) {
    if (!s2s_cuda_available()) cr_skip_test("no CUDA device");
#ifdef S2S_CUDA
    s2s_model *c = tu_model_for(uneven_cfg(), 13), *t = tu_model_for(cfg_of(16, 4, 24, 3, 2), 14);
    tu_perturb_vectors(c, 13);
    char *dir = tu_tmpdir(), *p = tu_path(dir, "m.safetensors"), err[256];
    cr_assert_eq(s2s_model_save(c, p, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    s2s_model *gm = s2s_model_load(p, 1, err, sizeof err);
    cr_assert_not_null(gm, "%s", err);
    cr_assert_eq(s2s_model_to_cuda(gm, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_model_to_cuda(t, err, sizeof err), 0, "%s", err);
    float loss[2];
    for (int dev = 0; dev < 2; dev++) {
        s2s_model *m = dev ? gm : c;
        s2s_graph *g = dev ? s2s_graph_new_cuda(err, sizeof err) : s2s_graph_new();
        cr_assert_not_null(g, "%s", err);
        s2s_graph_set_grad(g, 0);
        s2s_tensor *te = s2s_model_encode(g, t, TU_SRC, TU_SLEN, 2, 5, 0.0f);
        s2s_tensor *tl = s2s_model_decode_train(g, t, te, TU_SLEN, TU_TIN, 2, 4, 0.0f);
        s2s_graph_set_grad(g, 1);
        s2s_tensor *e = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
        s2s_tensor *lg = s2s_model_decode_train(g, m, e, TU_SLEN, TU_TIN, 2, 4, 0.0f);
        s2s_tensor *l = s2s_kd_loss(g, lg, tl, TU_TOUT, 0.1f, S2S_PAD, 0.6f, 2.0f, NULL);
        s2s_graph_backward(g, l);
        loss[dev] = s2s_tensor_item(g, l);
        s2s_graph_free(g);
    }
    cr_assert(fabsf(loss[0] - loss[1]) < 1e-4f * (1 + fabsf(loss[0])), "CPU %g vs GPU %g", loss[0], loss[1]);
    for (int i = 0; i < c->n_params; i++) {
        s2s_tensor *a = c->params[i].t, *b = gm->params[i].t;
        float *gb = s2s_xmalloc(b->n * sizeof(float));
        s2s_cuda_download(gb, b->dev_grad, b->n * sizeof(float));
        cr_assert(tu_rel_err(gb, a->grad, a->n, 1e-4, 1e-2) <= 1, "%s", c->params[i].name);
        free(gb);
    }
    s2s_model *im = s2s_model_load(p, 0, err, sizeof err);
    cr_assert_eq(s2s_use_cuda(im, err, sizeof err), 0, "%s", err);
    const char *lines[2] = {"abc", "de"};
    char *out[2];
    s2s_translate_opts to;
    s2s_translate_opts_default(&to);
    to.max_len = 10;
    cr_assert_eq(s2s_translate(im, lines, 2, &to, out, NULL, err, sizeof err), 0, "%s", err);
    free(out[0]); free(out[1]);
    s2s_model_free(im);
    s2s_model_free(gm); s2s_model_free(c); s2s_model_free(t);
    tu_rmrf(dir); free(dir); free(p);
#endif
}
