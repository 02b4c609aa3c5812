/* test_t2r_model.c - the Transformer decoder with T2R linear attention (cfg.dec_attn
 * t2r; kernels_t2r.h): weight names, finite-difference gradients through the whole
 * model, recurrent decoding (decoder_t2r.c) == the teacher-forced parallel forward
 * pass at every step (also after select() reorders rows), a state that does not grow,
 * config JSON, checkpoint round trips, and `s2s convert --to t2r` followed by
 * `s2s train --init`. Uses the binary in $S2S_BIN for the CLI cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "decoder.h"
#include "graph.h"
#include "model.h"
#include "s2s.h"
#include "search.h"
#include "test_util.h"
#include "tokenizer.h"
#include "train.h"

static s2s_config tiny_cfg(int D, int H, int F, int Le, int Ld, int t2r, int k) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = Le; c.dec_layers = Ld;
    c.max_len = 64;
    c.dec_attn = t2r ? S2S_ATTN_T2R : S2S_ATTN_SOFTMAX;
    c.t2r_k = k;
    return c;
}

/* Tiny random T2R model; random biases and LayerNorm parameters (phi biases too). */
static s2s_model *t2r_model(int D, int H, int F, int Le, int Ld, int k, uint64_t seed) {
    s2s_model *m = tu_model_for(tiny_cfg(D, H, F, Le, Ld, 1, k), seed);
    tu_perturb_vectors(m, seed);
    return m;
}

/* Tiny random T2R model with the fixed elu+1 feature map (no phi weights, k = D/H). */
static s2s_model *elu_model(int D, int H, int F, int Le, int Ld, uint64_t seed) {
    s2s_config c = tiny_cfg(D, H, F, Le, Ld, 1, D / H);
    c.t2r_map = S2S_T2R_MAP_ELU;
    s2s_model *m = tu_model_for(c, seed);
    tu_perturb_vectors(m, seed);
    return m;
}

static float *forward_logits(const s2s_model *m, const int *sent, const int32_t *tin, int B, int T);
static double rel_diff(const float *a, const float *b, size_t n);

static double batch_loss(s2s_graph *g, s2s_model *m, int grad) {
    s2s_graph_reset(g);
    s2s_graph_set_grad(g, grad);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    s2s_tensor *loss = s2s_xent(g, lg, TU_TOUT, 0.1f, S2S_PAD, NULL);
    if (grad) s2s_graph_backward(g, loss);
    return loss->data[0];
}

Test(t2r_model, weight_names_and_shapes) {
    int D = 16, H = 2, k = 6, Ld = 2;
    s2s_model *m = t2r_model(D, H, 24, 1, Ld, k, 3);
    s2s_model *soft = tu_model_for(tiny_cfg(D, H, 24, 1, Ld, 0, k), 3);
    const char *names[] = {"self", "cross"};
    for (int l = 0; l < Ld; l++)
        for (int i = 0; i < 2; i++) {
            char nm[64];
            snprintf(nm, sizeof nm, "dec.%d.%s.phi.weight", l, names[i]);
            s2s_tensor *w = s2s_model_param(m, nm);
            cr_assert(w && w->ndim == 2 && w->shape[0] == H * k && w->shape[1] == D / H, "%s", nm);
            cr_assert_null(s2s_model_param(soft, nm));
            snprintf(nm, sizeof nm, "dec.%d.%s.phi.bias", l, names[i]);
            s2s_tensor *b = s2s_model_param(m, nm);
            cr_assert(b && b->ndim == 1 && b->n == (size_t)H * k, "%s", nm);
        }
    cr_assert_null(s2s_model_param(m, "enc.0.attn.phi.weight")); /* the encoder stays softmax */
    cr_assert_eq(m->n_params, soft->n_params + 4 * Ld);
    cr_assert_eq(s2s_model_param_count(m), s2s_model_param_count(soft) + (size_t)2 * Ld * H * k * (D / H + 1)); /* self + cross, weight + bias */
    /* fresh init: xavier on each head's [k, Dh], biases 0 */
    s2s_model *fresh = tu_model_for(tiny_cfg(D, H, 24, 1, Ld, 1, k), 5);
    s2s_tensor *w = s2s_model_param(fresh, "dec.0.self.phi.weight"), *b = s2s_model_param(fresh, "dec.0.self.phi.bias");
    float lim = sqrtf(6.0f / (float)(k + D / H)), mx = 0;
    for (size_t j = 0; j < w->n; j++) mx = fmaxf(mx, fabsf(w->data[j]));
    cr_assert(mx <= lim && mx > 0.5f * lim, "max |phi| %g, limit %g", mx, lim);
    for (size_t j = 0; j < b->n; j++) cr_assert_eq(b->data[j], 0.0f);
    s2s_model_free(fresh);
    s2s_model_free(soft);
    s2s_model_free(m);
}

static void fd_whole_model(int elu) {
    s2s_model *m = elu ? elu_model(8, 2, 12, 1, 2, 3) : t2r_model(8, 2, 12, 1, 2, 4, 3);
    m->cfg.activation = S2S_ACT_GELU;
    s2s_graph *g = s2s_graph_new();
    batch_loss(g, m, 1);
    uint64_t rng = 99;
    int checked = 0, phi_checked = 0;
    for (int p = 0; p < m->n_params; p++) {
        s2s_tensor *t = m->params[p].t;
        int dec = strncmp(m->params[p].name, "dec.", 4) == 0, phi = strstr(m->params[p].name, ".phi.") != NULL;
        for (int r = 0; r < (phi ? 8 : dec ? 4 : 1); r++) {
            size_t j = s2s_rng_next(&rng) % t->n;
            /* a small step: relu in the feature map has kinks a larger one can cross */
            float old = t->data[j], h = 1e-3f;
            t->data[j] = old + h;
            double lp = batch_loss(g, m, 0);
            t->data[j] = old - h;
            double lm = batch_loss(g, m, 0);
            t->data[j] = old;
            double fd = (lp - lm) / (2 * h), an = t->grad[j];
            cr_assert(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s[%zu]: analytic %.6g vs numeric %.6g",
                      m->params[p].name, j, an, fd);
            checked++;
            phi_checked += phi && an != 0.0;
        }
    }
    cr_assert(checked > 100);
    if (!elu) cr_assert(phi_checked > 8, "only %d phi entries with a nonzero gradient", phi_checked);
    else cr_assert_eq(phi_checked, 0);
    s2s_graph_free(g);
    s2s_model_free(m);
}

Test(t2r_model, finite_difference_gradients_whole_model) { fd_whole_model(0); }
Test(t2r_model, elu_finite_difference_gradients_whole_model) { fd_whole_model(1); }

/* The elu+1 map has no weights: the softmax model's parameters exactly, t2r_k = D/H,
 * and the config JSON says so (and round-trips); t2r_map elu with another k is refused. */
Test(t2r_model, elu_weights_and_config) {
    s2s_model *m = elu_model(16, 2, 24, 1, 2, 3);
    s2s_model *soft = tu_model_for(tiny_cfg(16, 2, 24, 1, 2, 0, 8), 3);
    cr_assert_eq(m->n_params, soft->n_params);
    cr_assert_eq(s2s_model_param_count(m), s2s_model_param_count(soft));
    for (int i = 0; i < m->n_params; i++) cr_assert_null(strstr(m->params[i].name, ".phi."), "%s", m->params[i].name);
    cr_assert_eq(m->cfg.t2r_k, 8);
    char *js = s2s_config_to_json(&m->cfg);
    cr_assert(strstr(js, "\"t2r_map\":\"elu\"") && strstr(js, "\"dec_attn\":\"t2r\""), "%s", js);
    s2s_config back;
    char err[256];
    cr_assert_eq(s2s_config_from_json(&back, js, strlen(js), err, sizeof err), 0, "%s", err);
    cr_assert_eq(back.t2r_map, S2S_T2R_MAP_ELU);
    cr_assert_eq(back.t2r_k, 8);
    free(js);
    char *js2 = s2s_config_to_json(&soft->cfg); /* softmax and relu T2R configs do not mention it */
    cr_assert_null(strstr(js2, "t2r_map"));
    free(js2);
    s2s_config bad = m->cfg;
    bad.t2r_k = 4;
    cr_assert_neq(s2s_config_check(&bad, err, sizeof err), 0);
    cr_assert(strstr(err, "t2r_map"), "%s", err);
    const char *badjs = "{\"d_model\":16,\"n_heads\":2,\"d_ff\":24,\"enc_layers\":1,\"dec_layers\":1,"
                        "\"src_vocab\":14,\"tgt_vocab\":14,\"max_len\":64,\"share_src_emb\":0,"
                        "\"activation\":\"relu\",\"decoder\":\"transformer\",\"dec_attn\":\"t2r\",\"t2r_k\":8,"
                        "\"t2r_map\":\"tanh\"}";
    cr_assert_neq(s2s_config_from_json(&back, badjs, strlen(badjs), err, sizeof err), 0);
    cr_assert(strstr(err, "t2r_map"), "%s", err);
    s2s_model_free(soft);
    s2s_model_free(m);
}

/* Recurrent decoding with the elu+1 map == its parallel forward pass. */
Test(t2r_model, elu_incremental_decoding_matches_forward) {
    s2s_model *m = elu_model(16, 4, 24, 2, 3, 7);
    int V = m->cfg.tgt_vocab;
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    cr_assert_not_null(ops);
    cr_assert_str_eq(ops->kind, "t2r");
    int sent[2] = {0, 1};
    float *lg = forward_logits(m, sent, TU_TIN, 2, 4);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 8);
    s2s_graph_free(g);
    float *out = malloc(sizeof(float) * 2 * V);
    for (int t = 0; t < 4; t++) {
        int32_t tok[2] = {TU_TIN[t], TU_TIN[4 + t]};
        ops->step(st, out, tok, 2);
        for (int b = 0; b < 2; b++) {
            double d = rel_diff(out + (size_t)b * V, lg + ((size_t)b * 4 + t) * V, (size_t)V);
            cr_assert(d < 1e-5, "elu step %d row %d: relative diff %g", t, b, d);
        }
    }
    ops->free(st);
    free(out); free(lg);
    s2s_model_free(m);
}

/* logits [B, T, V] of the teacher-forced parallel forward pass for rows whose source
 * is sentence sent[r] of TU_SRC and whose target prefix is tin [B, T] */
static float *forward_logits(const s2s_model *m, const int *sent, const int32_t *tin, int B, int T) {
    int32_t src[8 * 5], len[8];
    cr_assert(B <= 8);
    for (int r = 0; r < B; r++) {
        memcpy(src + 5 * r, TU_SRC + 5 * sent[r], 5 * sizeof(int32_t));
        len[r] = TU_SLEN[sent[r]];
    }
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, len, B, 5, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, len, tin, B, T, 0.0f);
    float *out = malloc(lg->n * sizeof(float));
    memcpy(out, lg->data, lg->n * sizeof(float));
    s2s_graph_free(g);
    return out;
}

/* max |a - b| / (1 + max |b|) */
static double rel_diff(const float *a, const float *b, size_t n) {
    double mb = 0;
    for (size_t i = 0; i < n; i++) mb = fmax(mb, fabs(b[i]));
    return tu_max_diff(a, b, n) / (1.0 + mb);
}

/* Step-by-step (recurrent) logits equal the teacher-forced parallel logits. */
Test(t2r_model, incremental_decoding_matches_forward) {
    for (int ffn_gelu = 0; ffn_gelu < 2; ffn_gelu++) {
        s2s_model *m = t2r_model(16, 4, 24, 2, 3, 8, 5 + ffn_gelu);
        if (ffn_gelu) m->cfg.activation = S2S_ACT_GELU;
        int V = m->cfg.tgt_vocab;
        const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
        cr_assert_not_null(ops);
        cr_assert_str_eq(ops->kind, "t2r");
        int sent[2] = {0, 1};
        float *lg = forward_logits(m, sent, TU_TIN, 2, 4);
        s2s_graph *g = s2s_graph_new();
        s2s_graph_set_grad(g, 0);
        s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
        void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 8);
        s2s_graph_free(g); /* the decoder keeps no pointer into enc */
        float *out = malloc(sizeof(float) * 2 * V);
        for (int t = 0; t < 4; t++) {
            int32_t tok[2] = {TU_TIN[t], TU_TIN[4 + t]};
            ops->step(st, out, tok, 2);
            for (int b = 0; b < 2; b++) {
                double d = rel_diff(out + (size_t)b * V, lg + ((size_t)b * 4 + t) * V, (size_t)V);
                cr_assert(d < 1e-5, "step %d row %d: relative diff %g", t, b, d);
            }
        }
        ops->free(st);
        free(out); free(lg);
        s2s_model_free(m);
    }
}

/* After select() reorders, duplicates and drops rows, every later step still equals
 * the parallel forward pass of each row's own token history. */
Test(t2r_model, select_reorders_rows_and_matches_forward) {
    s2s_model *m = t2r_model(16, 2, 24, 1, 2, 8, 9);
    int V = m->cfg.tgt_vocab;
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 2, 8); /* rows 0, 1: sentence 0; 2, 3: sentence 1 */
    int32_t hist[4][8], nh = 0;
    int sent[4] = {0, 0, 1, 1};
    float *lg = malloc(sizeof(float) * 4 * V * 8);
    int32_t t0[4] = {1, 1, 1, 1}, t1[4] = {4, 5, 6, 7};
    ops->step(st, lg, t0, 4);
    ops->step(st, lg, t1, 4);
    for (int r = 0; r < 4; r++) { hist[r][0] = t0[r]; hist[r][1] = t1[r]; }
    nh = 2;
    int32_t rows[3] = {3, 1, 1}; /* sentence 1's row 3 first, then row 1 twice; rows 0, 2 dropped */
    ops->select(st, rows, 3);
    int32_t nhist[3][8];
    int nsent[3];
    for (int i = 0; i < 3; i++) { memcpy(nhist[i], hist[rows[i]], sizeof nhist[i]); nsent[i] = sent[rows[i]]; }
    int32_t more[3][3] = {{8, 9, 4}, {9, 4, 5}, {5, 6, 7}}; /* [step][row] */
    float *step_lg = malloc(sizeof(float) * 3 * V * 3);
    for (int s = 0; s < 3; s++) {
        ops->step(st, step_lg + (size_t)s * 3 * V, more[s], 3);
        for (int i = 0; i < 3; i++) nhist[i][nh + s] = more[s][i];
    }
    int T = nh + 3;
    int32_t tin[3 * 8];
    for (int i = 0; i < 3; i++) memcpy(tin + i * T, nhist[i], (size_t)T * sizeof(int32_t));
    float *ref = forward_logits(m, nsent, tin, 3, T);
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < 3; i++) {
            double d = rel_diff(step_lg + ((size_t)s * 3 + i) * V, ref + ((size_t)i * T + nh + s) * V, (size_t)V);
            cr_assert(d < 1e-5, "after select: step %d row %d: relative diff %g", nh + s, i, d);
        }
    ops->free(st);
    free(lg); free(step_lg); free(ref);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* The state is a fixed size: the same bytes per row after 1 or 1000 steps, the same
 * start() footprint for 10 or 10000 steps, and a long run never needs more. */
Test(t2r_model, state_does_not_grow_with_length) {
    s2s_model *m = t2r_model(16, 2, 24, 1, 2, 8, 7);
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    cr_assert_eq(ops->state_bytes(m, 5, 1), ops->state_bytes(m, 5, 1000));
    cr_assert_eq(ops->start_bytes(m, 2, 5, 1, 10), ops->start_bytes(m, 2, 5, 1, 10000));
    /* per row: Ld layers x (self + cross) x H x k x (Dh + 1) floats */
    cr_assert_eq(ops->state_bytes(m, 5, 7), sizeof(float) * 2 * 2 * 2 * 8 * (8 + 1));
    /* and much less than the softmax decoder's K/V cache at length 60 */
    s2s_model *soft = tu_model_for(tiny_cfg(16, 2, 24, 1, 2, 0, 8), 7);
    cr_assert(ops->state_bytes(m, 5, 60) < s2s_decoder_ops_for(soft)->state_bytes(soft, 5, 60));
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 60);
    float *out = malloc(sizeof(float) * 2 * m->cfg.tgt_vocab);
    for (int t = 0; t < 60; t++) {
        int32_t tok[2] = {t ? 4 + t % 9 : 1, t ? 5 + t % 7 : 1};
        ops->step(st, out, tok, 2);
    }
    for (int i = 0; i < 2 * m->cfg.tgt_vocab; i++) cr_assert(isfinite(out[i]));
    ops->free(st);
    free(out);
    s2s_graph_free(g);
    s2s_model_free(soft);
    s2s_model_free(m);
}

Test(t2r_model, config_json_and_checks) {
    char err[256];
    s2s_config c = tiny_cfg(16, 2, 24, 1, 1, 1, 12), r;
    c.src_vocab = c.tgt_vocab = 20;
    char *js = s2s_config_to_json(&c);
    cr_assert(strstr(js, "\"dec_attn\":\"t2r\"") && strstr(js, "\"t2r_k\":12"), "%s", js);
    cr_assert_eq(s2s_config_from_json(&r, js, strlen(js), err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.dec_attn, S2S_ATTN_T2R);
    cr_assert_eq(r.t2r_k, 12);
    free(js);
    /* softmax configs are written as before, and old ones (no field) load as softmax */
    c.dec_attn = S2S_ATTN_SOFTMAX;
    js = s2s_config_to_json(&c);
    cr_assert_null(strstr(js, "dec_attn"), "%s", js);
    cr_assert_null(strstr(js, "t2r_k"), "%s", js);
    cr_assert_eq(s2s_config_from_json(&r, js, strlen(js), err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.dec_attn, S2S_ATTN_SOFTMAX);
    free(js);
    const char *base = "{\"d_model\":16,\"n_heads\":2,\"d_ff\":24,\"enc_layers\":1,\"dec_layers\":1,"
                       "\"src_vocab\":20,\"tgt_vocab\":20,\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\"";
    struct { const char *tail; const char *needle; } bad[] = {
        {",\"dec_attn\":\"linear\"}", "dec_attn"},
        {",\"dec_attn\":1}", "dec_attn"},
        {",\"dec_attn\":\"t2r\",\"t2r_k\":0}", "t2r_k"},
        {",\"decoder\":\"ssru\",\"dec_attn\":\"t2r\"}", "t2r"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[512];
        snprintf(buf, sizeof buf, "%s%s", base, bad[i].tail);
        err[0] = 0;
        cr_assert_neq(s2s_config_from_json(&r, buf, strlen(buf), err, sizeof err), 0, "%s", buf);
        cr_assert(strstr(err, bad[i].needle), "%s: '%s'", buf, err);
    }
    char buf[512];
    snprintf(buf, sizeof buf, "%s,\"dec_attn\":\"softmax\"}", base);
    cr_assert_eq(s2s_config_from_json(&r, buf, strlen(buf), err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.dec_attn, S2S_ATTN_SOFTMAX);
    snprintf(buf, sizeof buf, "%s,\"dec_attn\":\"t2r\"}", base);
    cr_assert_eq(s2s_config_from_json(&r, buf, strlen(buf), err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.t2r_k, S2S_T2R_K_DEFAULT);
}

/* logits of the first two steps of both sentences, for comparing models */
static void first_logits(const s2s_model *m, float *out /* [2, 2, V] */) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 4);
    int V = m->cfg.tgt_vocab;
    int32_t t0[2] = {1, 1}, t1[2] = {5, 4};
    ops->step(st, out, t0, 2);
    ops->step(st, out + 2 * V, t1, 2);
    ops->free(st);
    s2s_graph_free(g);
}

Test(t2r_model, checkpoint_round_trip_fp32_and_fp16) {
    char *dir = tu_tmpdir(), *p32 = tu_path(dir, "m32.safetensors"), *p16 = tu_path(dir, "m16.safetensors");
    s2s_model *m = t2r_model(16, 2, 24, 1, 2, 8, 17);
    char err[512];
    cr_assert_eq(s2s_model_save(m, p32, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_model_save(m, p16, NULL, 0, NULL, 0, 1, err, sizeof err), 0, "%s", err);
    int V = m->cfg.tgt_vocab;
    float *ref = malloc(sizeof(float) * 4 * V), *got = malloc(sizeof(float) * 4 * V);
    first_logits(m, ref);
    for (int f16 = 0; f16 < 2; f16++)
        for (int trainable = 0; trainable < 2; trainable++) {
            s2s_model *l = s2s_model_load(f16 ? p16 : p32, trainable, err, sizeof err);
            cr_assert_not_null(l, "%s", err);
            cr_assert_eq(l->cfg.dec_attn, S2S_ATTN_T2R);
            cr_assert_eq(l->cfg.t2r_k, 8);
            cr_assert_eq(l->n_params, m->n_params);
            for (int i = 0; i < m->n_params; i++) {
                cr_assert_str_eq(l->params[i].name, m->params[i].name);
                double d = tu_max_diff(l->params[i].t->data, m->params[i].t->data, m->params[i].t->n);
                cr_assert(d <= (f16 ? 2e-3 : 0.0), "%s: diff %g", m->params[i].name, d);
            }
            first_logits(l, got);
            double d = tu_max_diff(got, ref, (size_t)4 * V);
            /* fp32: the same weights; an inference model (trainable 0) multiplies through its
             * packed copy (kernels_gemm.c), so the sums round differently */
            cr_assert(d <= (f16 ? 0.1 : trainable ? 0.0 : 1e-5), "fp16 %d trainable %d: logits differ by %g", f16,
                      trainable, d);
            s2s_model_free(l);
        }
    free(ref); free(got);
    s2s_model_free(m);
    tu_rmrf(dir);
    free(dir); free(p32); free(p16);
}

/* T2R trains on the GPU (tests/test_cuda_t2r.c) but has no GPU step decoder: decoding
 * with --device cuda (s2s_use_cuda) is refused with one line, whatever the build. */
Test(t2r_model, cuda_decoding_refuses_t2r) {
    for (int elu = 0; elu < 2; elu++) {
        s2s_model *m = elu ? elu_model(16, 2, 24, 1, 1, 2) : t2r_model(16, 2, 24, 1, 1, 4, 2);
        char err[256] = "";
        cr_assert_neq(s2s_use_cuda(m, err, sizeof err), 0);
        cr_assert(strstr(err, "--device cuda") && strstr(err, "CPU") && !strchr(err, '\n'), "%s", err);
        cr_assert_eq(m->on_cuda, 0);
        s2s_model_free(m);
    }
}

/* `s2s convert --to t2r`: every teacher weight kept, phi weights added, seeded; the
 * result decodes; `s2s train --init` of it keeps it T2R. */
Test(t2r_model, convert_cli_then_fine_tune) {
    char *dir = tu_tmpdir(), *tp = tu_path(dir, "teacher.safetensors"), *op = tu_path(dir, "t2r.safetensors"),
         *op2 = tu_path(dir, "t2r2.safetensors"), *op3 = tu_path(dir, "t2r3.safetensors");
    s2s_model *teacher = tu_model_for(tiny_cfg(16, 2, 24, 1, 2, 0, 8), 31);
    char err[512];
    cr_assert_eq(s2s_model_save(teacher, tp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    char *cmd, *out = NULL;
    cr_assert(asprintf(&cmd, "%s convert --to t2r --k 6 -m %s -o %s", tu_bin(), tp, op) > 0);
    int st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    cr_assert(asprintf(&cmd, "%s convert --to t2r --k 6 -m %s -o %s && %s convert --to t2r --k 6 --seed 2 -m %s -o %s",
                       tu_bin(), tp, op2, tu_bin(), tp, op3) > 0);
    st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    s2s_model *m = s2s_model_load(op, 0, err, sizeof err), *m2 = s2s_model_load(op2, 0, err, sizeof err),
              *m3 = s2s_model_load(op3, 0, err, sizeof err);
    cr_assert(m && m2 && m3, "%s", err);
    cr_assert_eq(m->cfg.dec_attn, S2S_ATTN_T2R);
    cr_assert_eq(m->cfg.t2r_k, 6);
    cr_assert_eq(m->n_params, teacher->n_params + 4 * 2);
    int phi = 0;
    for (int i = 0; i < m->n_params; i++) {
        const s2s_param_entry *e = &m->params[i];
        const s2s_tensor *t = s2s_model_param(teacher, e->name);
        const s2s_tensor *t2 = s2s_model_param(m2, e->name), *t3 = s2s_model_param(m3, e->name);
        cr_assert(t2 && t3);
        cr_assert_eq(tu_max_diff(e->t->data, t2->data, e->t->n), 0.0, "%s: same seed, different values", e->name);
        if (strstr(e->name, ".phi.")) {
            phi++;
            cr_assert_null(t);
            if (strstr(e->name, ".weight"))
                cr_assert_gt(tu_max_diff(e->t->data, t3->data, e->t->n), 0.0, "%s: seed ignored", e->name);
            continue;
        }
        cr_assert_not_null(t, "%s", e->name);
        cr_assert_eq(t->n, e->t->n);
        cr_assert_eq(tu_max_diff(e->t->data, t->data, t->n), 0.0, "%s differs from the teacher", e->name);
    }
    cr_assert_eq(phi, 8);
    /* it decodes (greedy and beam) */
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_search_opts so;
    s2s_search_opts_default(&so);
    so.max_len = 6;
    for (int beam = 1; beam <= 4; beam += 3) {
        so.beam = beam;
        int32_t *hyp[2];
        int len[2];
        float score[2];
        s2s_search(m, enc->data, TU_SLEN, 2, 5, &so, hyp, len, score);
        for (int b = 0; b < 2; b++) {
            cr_assert(len[b] >= 0 && len[b] <= 6 && isfinite(score[b]));
            free(hyp[b]);
        }
    }
    s2s_graph_free(g);
    /* converting twice, or a recurrent model, is refused with one line */
    cr_assert(asprintf(&cmd, "%s convert --to t2r -m %s -o %s", tu_bin(), op, op3) > 0);
    st = tu_run(cmd, &out);
    cr_assert(st != 0 && st < 128 && strstr(out, "softmax Transformer"), "%s", out);
    free(cmd); free(out);
    /* fine-tuning: s2s train --init keeps the model T2R */
    tu_write_reverse_task(dir, "train", 40, 3);
    char *tdir = tu_path(dir, "ft"), *last = tu_path(tdir, "last.safetensors");
    cr_assert(asprintf(&cmd, "%s train --init %s --train-src %s/train.src --train-tgt %s/train.tgt -o %s "
                             "--max-steps 3 --eval-every 0 --threads 1", tu_bin(), op, dir, dir, tdir) > 0);
    st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    s2s_model *ft = s2s_model_load(last, 0, err, sizeof err);
    cr_assert_not_null(ft, "%s", err);
    cr_assert_eq(ft->cfg.dec_attn, S2S_ATTN_T2R);
    cr_assert_eq(ft->cfg.t2r_k, 6);
    cr_assert_not_null(s2s_model_param(ft, "dec.1.cross.phi.weight"));
    const s2s_tensor *a = s2s_model_param(ft, "dec.0.self.phi.weight"), *b = s2s_model_param(m, "dec.0.self.phi.weight");
    cr_assert_gt(tu_max_diff(a->data, b->data, a->n), 0.0, "fine-tuning did not update phi");
    s2s_model_free(ft);
    s2s_model_free(m); s2s_model_free(m2); s2s_model_free(m3);
    s2s_model_free(teacher);
    tu_rmrf(dir);
    free(dir); free(tp); free(op); free(op2); free(op3); free(tdir); free(last);
}

/* --train-only phi / attn: only the selected tensors move, every other weight stays
 * bit-identical to the init model; an unknown set or one the model lacks is refused. */
Test(t2r_model, train_only_freezes_the_rest) {
    char *dir = tu_tmpdir(), *ip = tu_path(dir, "init.safetensors");
    s2s_model *init = tu_model_for(tiny_cfg(16, 2, 24, 1, 2, 1, 4), 17);
    char err[512];
    cr_assert_eq(s2s_model_save(init, ip, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    tu_write_reverse_task(dir, "train", 40, 3);
    static const char *sets[2] = {"phi", "attn"};
    for (int si = 0; si < 2; si++) {
        s2s_train_opts o;
        s2s_train_opts_default(&o);
        char *src = tu_path(dir, "train.src"), *tgt = tu_path(dir, "train.tgt"), *out = tu_path(dir, sets[si]);
        o.train_src = src; o.train_tgt = tgt; o.out_dir = out; o.init = ip;
        o.max_steps = 3; o.eval_every = 0; o.quiet = 1; o.lr = 1e-2f; o.warmup = 1; o.weight_decay = 0.1f;
        o.train_only = sets[si];
        cr_assert_eq(s2s_train(&o, err, sizeof err), 0, "%s", err);
        char *last = tu_path(out, "last.safetensors");
        s2s_model *m = s2s_model_load(last, 0, err, sizeof err);
        cr_assert_not_null(m, "%s", err);
        int moved = 0;
        for (int i = 0; i < m->n_params; i++) {
            const char *nm = m->params[i].name;
            const s2s_tensor *a = m->params[i].t, *b = s2s_model_param(init, nm);
            cr_assert_not_null(b, "%s", nm);
            int sel = si == 0 ? strstr(nm, ".phi.") != NULL
                              : !strncmp(nm, "dec.", 4) && (strstr(nm, ".self.") || strstr(nm, ".cross."));
            double d = tu_max_diff(a->data, b->data, a->n);
            if (!sel) cr_assert_eq(d, 0.0, "--train-only %s: %s changed by %g", sets[si], nm, d);
            moved += sel && d > 0.0;
        }
        cr_assert_gt(moved, 4, "--train-only %s: only %d selected tensors moved", sets[si], moved);
        s2s_model_free(m);
        free(last); free(src); free(tgt); free(out);
    }
    /* refused: an unknown set (CLI), phi on a softmax model (API) */
    char *cmd, *outp = NULL;
    cr_assert(asprintf(&cmd, "%s train --init %s --train-src %s/train.src --train-tgt %s/train.tgt -o %s/x "
                             "--train-only everything", tu_bin(), ip, dir, dir, dir) > 0);
    int st = tu_run(cmd, &outp);
    cr_assert(st == 2 && strstr(outp, "--train-only"), "%d: %s", st, outp);
    free(cmd); free(outp);
    char *sp = tu_path(dir, "soft.safetensors");
    s2s_model *soft = tu_model_for(tiny_cfg(16, 2, 24, 1, 2, 0, 4), 17);
    cr_assert_eq(s2s_model_save(soft, sp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    s2s_train_opts o;
    s2s_train_opts_default(&o);
    char *src = tu_path(dir, "train.src"), *tgt = tu_path(dir, "train.tgt"), *out = tu_path(dir, "soft-run");
    o.train_src = src; o.train_tgt = tgt; o.out_dir = out; o.init = sp;
    o.max_steps = 1; o.eval_every = 0; o.quiet = 1; o.train_only = "phi";
    cr_assert_neq(s2s_train(&o, err, sizeof err), 0);
    cr_assert(strstr(err, "--train-only phi") && !strchr(err, '\n'), "%s", err);
    free(src); free(tgt); free(out); free(sp);
    s2s_model_free(soft);
    s2s_model_free(init);
    tu_rmrf(dir);
    free(dir); free(ip);
}

/* From scratch with the training flags: --dec-attn t2r --t2r-k K and --t2r-map elu (the
 * config file keys too); with --init of a softmax model the flags convert it first. */
Test(t2r_model, train_flags_from_scratch_and_init) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 40, 3);
    char *conf = tu_path(dir, "t.conf");
    FILE *f = fopen(conf, "w");
    cr_assert_not_null(f);
    fprintf(f, "d-model = 16\nheads = 2\nff = 24\nenc-layers = 1\ndec-layers = 1\nmax-len = 32\n"
               "dec-attn = t2r\nt2r-k = 5\n");
    fclose(f);
    struct { const char *extra; int map, k; } cases[3] = {
        {"", S2S_T2R_MAP_RELU, 5}, {"--t2r-k 3", S2S_T2R_MAP_RELU, 3}, {"--t2r-map elu", S2S_T2R_MAP_ELU, 8}};
    for (int c = 0; c < 3; c++) {
        char *cmd, *out = NULL, *od;
        cr_assert(asprintf(&od, "%s/run%d", dir, c) > 0);
        cr_assert(asprintf(&cmd, "%s train --config %s --train-src %s/train.src --train-tgt %s/train.tgt -o %s "
                                 "--max-steps 2 --eval-every 0 --quiet %s", tu_bin(), conf, dir, dir, od, cases[c].extra) > 0);
        int st = tu_run(cmd, &out);
        cr_assert_eq(st, 0, "%s: %s", cmd, out);
        char *last = tu_path(od, "last.safetensors"), err[256];
        s2s_model *m = s2s_model_load(last, 0, err, sizeof err);
        cr_assert_not_null(m, "%s", err);
        cr_assert_eq(m->cfg.dec_attn, S2S_ATTN_T2R);
        cr_assert_eq(m->cfg.t2r_map, cases[c].map, "case %d", c);
        cr_assert_eq(m->cfg.t2r_k, cases[c].k, "case %d", c);
        cr_assert((s2s_model_param(m, "dec.0.self.phi.weight") != NULL) == (cases[c].map == S2S_T2R_MAP_RELU));
        s2s_model_free(m);
        free(cmd); free(out); free(od); free(last);
    }
    /* --init SOFTMAX --dec-attn t2r: converted, then trained; bad values refused */
    char *sp = tu_path(dir, "soft.safetensors"), err[256];
    s2s_model *soft = tu_model_for(tiny_cfg(16, 2, 24, 1, 2, 0, 4), 5);
    cr_assert_eq(s2s_model_save(soft, sp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    char *cmd, *out = NULL;
    cr_assert(asprintf(&cmd, "%s train --init %s --dec-attn t2r --t2r-map elu --train-src %s/train.src "
                             "--train-tgt %s/train.tgt -o %s/ft --max-steps 2 --eval-every 0 --quiet", tu_bin(), sp, dir, dir, dir) > 0);
    int st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    char *last;
    cr_assert(asprintf(&last, "%s/ft/last.safetensors", dir) > 0);
    s2s_model *m = s2s_model_load(last, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert_eq(m->cfg.dec_attn, S2S_ATTN_T2R);
    cr_assert_eq(m->cfg.t2r_map, S2S_T2R_MAP_ELU);
    cr_assert_eq(m->n_params, soft->n_params);
    s2s_model_free(m);
    free(last);
    static const char *bad[3] = {"--dec-attn linear", "--t2r-map tanh", "--t2r-k 0"};
    static const char *flag[3] = {"--dec-attn", "--t2r-map", "--t2r-k"};
    for (int b = 0; b < 3; b++) {
        cr_assert(asprintf(&cmd, "%s train --train-src %s/train.src --train-tgt %s/train.tgt -o %s/bad %s", tu_bin(), dir,
                           dir, dir, bad[b]) > 0);
        st = tu_run(cmd, &out);
        cr_assert(st == 2 && strstr(out, flag[b]) && !strchr(out, '\n') == 0 && strchr(out, '\n') == out + strlen(out) - 1,
                  "%s: %d %s", bad[b], st, out);
        free(cmd); free(out);
    }
    s2s_model_free(soft);
    tu_rmrf(dir);
    free(dir); free(conf); free(sp);
}
