/* test_deed.c - DEED multi-exit decoder (cfg.multi_exit; model.c, decoder_deed.c):
 * config JSON, exit adapter weights, the multi-exit loss (its value by hand and its
 * gradients against finite differences), conversion of a trained model, dynamic exit
 * decoding (tau > 1 == the full-depth decoder, greedy and beam, batched; the JIT
 * states == a teacher-forced full pass, each (position, layer) computed once, also
 * after select(); copy mode), the average exit layer, and the CLI (train
 * --multi-exit, convert --to multi-exit, translate --exit-threshold). Uses the
 * binary in $S2S_BIN for the CLI cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "decoder.h"
#include "decoder_deed.h"
#include "graph.h"
#include "kernels.h"
#include "model.h"
#include "search.h"
#include "test_util.h"
#include "tokenizer.h"

static s2s_config me_cfg(int D, int H, int F, int Le, int Ld, int multi, int rank) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = Le; c.dec_layers = Ld;
    c.max_len = 64;
    c.multi_exit = multi;
    c.exit_rank = rank;
    return c;
}

/* Tiny random multi-exit model with random biases / LayerNorm parameters. */
static s2s_model *me_model(int D, int H, int F, int Le, int Ld, int rank, uint64_t seed) {
    s2s_model *m = tu_model_for(me_cfg(D, H, F, Le, Ld, 1, rank), seed);
    tu_perturb_vectors(m, seed);
    return m;
}

Test(deed, config_json_round_trip_and_checks) {
    s2s_config c = me_cfg(16, 2, 24, 1, 3, 1, 5), d;
    c.src_vocab = c.tgt_vocab = 20;
    char err[256];
    cr_assert_eq(s2s_config_check(&c, err, sizeof err), 0, "%s", err);
    char *js = s2s_config_to_json(&c);
    cr_assert(strstr(js, "\"multi_exit\":1") && strstr(js, "\"exit_rank\":5"), "%s", js);
    cr_assert_eq(s2s_config_from_json(&d, js, strlen(js), err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.multi_exit, 1);
    cr_assert_eq(d.exit_rank, 5);
    cr_assert_eq(d.dec_layers, 3);
    free(js);
    /* a plain model writes neither key and reads back as not multi-exit */
    c.multi_exit = 0;
    js = s2s_config_to_json(&c);
    cr_assert(!strstr(js, "multi_exit") && !strstr(js, "exit_rank"), "%s", js);
    cr_assert_eq(s2s_config_from_json(&d, js, strlen(js), err, sizeof err), 0, "%s", err);
    cr_assert_eq(d.multi_exit, 0);
    cr_assert_eq(d.exit_rank, S2S_EXIT_RANK_DEFAULT);
    free(js);
    /* bad values: one line naming the field */
    const char *bad[] = {
        "{\"d_model\":16,\"n_heads\":2,\"d_ff\":24,\"enc_layers\":1,\"dec_layers\":2,\"src_vocab\":20,\"tgt_vocab\":20,"
        "\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\",\"multi_exit\":2}",
        "{\"d_model\":16,\"n_heads\":2,\"d_ff\":24,\"enc_layers\":1,\"dec_layers\":2,\"src_vocab\":20,\"tgt_vocab\":20,"
        "\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\",\"multi_exit\":1,\"exit_rank\":0}",
        "{\"d_model\":16,\"n_heads\":2,\"d_ff\":24,\"enc_layers\":1,\"dec_layers\":2,\"src_vocab\":20,\"tgt_vocab\":20,"
        "\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\",\"decoder\":\"ssru\",\"dec_ffn\":1,\"multi_exit\":1}",
    };
    const char *what[] = {"multi_exit", "exit_rank", "multi_exit"};
    for (int i = 0; i < 3; i++) {
        err[0] = 0;
        cr_assert_neq(s2s_config_from_json(&d, bad[i], strlen(bad[i]), err, sizeof err), 0, "case %d accepted", i);
        cr_assert(strstr(err, what[i]) && !strchr(err, '\n'), "case %d: %s", i, err);
    }
    /* T2R decoder attention stacks with it (tests/test_deed_t2r.c) */
    const char *t2r = "{\"d_model\":16,\"n_heads\":2,\"d_ff\":24,\"enc_layers\":1,\"dec_layers\":2,\"src_vocab\":20,"
                      "\"tgt_vocab\":20,\"max_len\":64,\"share_src_emb\":0,\"activation\":\"relu\",\"dec_attn\":\"t2r\","
                      "\"multi_exit\":1}";
    cr_assert_eq(s2s_config_from_json(&d, t2r, strlen(t2r), err, sizeof err), 0, "%s", err);
    cr_assert(d.multi_exit && d.dec_attn == S2S_ATTN_T2R);
}

Test(deed, exit_adapter_weights) {
    int D = 16, Ld = 3, r = 5;
    s2s_model *m = tu_model_for(me_cfg(D, 2, 24, 1, Ld, 1, r), 3);
    s2s_model *plain = tu_model_for(me_cfg(D, 2, 24, 1, Ld, 0, r), 3);
    cr_assert_eq(m->n_params, plain->n_params + 6 * (Ld - 1));
    for (int l = 0; l < Ld; l++) {
        char nm[64];
        static const char *parts[] = {"ln.weight", "ln.bias", "down.weight", "down.bias", "up.weight", "up.bias"};
        int shape0[] = {D, D, r, r, D, D}, shape1[] = {0, 0, D, 0, r, 0};
        for (int i = 0; i < 6; i++) {
            snprintf(nm, sizeof nm, "dec.%d.exit.%s", l, parts[i]);
            s2s_tensor *t = s2s_model_param(m, nm);
            cr_assert_null(s2s_model_param(plain, nm));
            if (l == Ld - 1) { cr_assert_null(t, "%s: the last exit uses dec.ln", nm); continue; }
            cr_assert_not_null(t, "%s", nm);
            cr_assert_eq(t->ndim, shape1[i] ? 2 : 1, "%s", nm);
            cr_assert_eq(t->shape[0], shape0[i], "%s", nm);
            if (shape1[i]) cr_assert_eq(t->shape[1], shape1[i], "%s", nm);
        }
    }
    cr_assert_eq(m->dec[0].exln.w->data[0], 1.0f); /* LayerNorm gain init */
    s2s_model_free(plain);
    s2s_model_free(m);
}

/* loss of the batch through s2s_model_exit_loss (grad: also backward) */
static double exit_loss(s2s_graph *g, s2s_model *m, float eps, float w, int grad) {
    s2s_graph_reset(g);
    s2s_graph_set_grad(g, grad);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *ex[8];
    s2s_model_decode_train_exits(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f, ex);
    s2s_tensor *loss = s2s_model_exit_loss(g, m, ex, TU_TOUT, eps, w);
    if (grad) s2s_graph_backward(g, loss);
    return loss->data[0];
}

/* The multi-exit loss is (1/Ld) sum_l CE_l + w CE_last, each CE computed here from
 * the exit logits in double; the last exit's logits are s2s_model_decode_train's. */
Test(deed, exit_loss_is_the_hand_computed_combination) {
    int Ld = 3;
    s2s_model *m = me_model(16, 2, 24, 1, Ld, 4, 5);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *ex[3];
    s2s_model_decode_train_exits(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f, ex);
    s2s_tensor *full = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    int V = m->cfg.tgt_vocab;
    cr_assert_eq(tu_max_diff(ex[Ld - 1]->data, full->data, (size_t)8 * V), 0.0, "last exit != decode_train");
    cr_assert_gt(tu_max_diff(ex[0]->data, full->data, (size_t)8 * V), 1e-3, "exit 0 == last exit");
    float eps = 0.1f, w = 0.7f;
    double want = 0;
    for (int l = 0; l < Ld; l++) {
        double ce = 0;
        int n = 0;
        for (int i = 0; i < 8; i++) {
            if (TU_TOUT[i] == S2S_PAD) continue;
            const float *lg = ex[l]->data + (size_t)i * V;
            double mx = lg[0], z = 0, sum = 0;
            for (int v = 1; v < V; v++) mx = fmax(mx, lg[v]);
            for (int v = 0; v < V; v++) z += exp(lg[v] - mx);
            double lz = mx + log(z);
            for (int v = 0; v < V; v++) sum += lz - lg[v];
            ce += (1 - eps) * (lz - lg[TU_TOUT[i]]) + eps * sum / V;
            n++;
        }
        ce /= n;
        want += ce / Ld + (l == Ld - 1 ? w * ce : 0.0);
    }
    double got = exit_loss(g, m, eps, w, 0);
    cr_assert(fabs(got - want) < 1e-5 * fmax(1.0, fabs(want)), "exit loss %.8g, by hand %.8g", got, want);
    s2s_graph_free(g);
    s2s_model_free(m);
}

Test(deed, exit_loss_gradients_vs_finite_differences) {
    s2s_model *m = me_model(8, 2, 12, 1, 3, 3, 7);
    s2s_graph *g = s2s_graph_new();
    exit_loss(g, m, 0.1f, 0.5f, 1);
    uint64_t rng = 17;
    int checked = 0, exit_checked = 0;
    for (int p = 0; p < m->n_params; p++) {
        s2s_tensor *t = m->params[p].t;
        int ex = strstr(m->params[p].name, ".exit.") != NULL, dec = !strncmp(m->params[p].name, "dec.", 4);
        for (int r = 0; r < (ex ? 6 : dec ? 2 : 1); r++) {
            size_t j = s2s_rng_next(&rng) % t->n;
            float old = t->data[j], h = 1e-3f;
            t->data[j] = old + h;
            double lp = exit_loss(g, m, 0.1f, 0.5f, 0);
            t->data[j] = old - h;
            double lm = exit_loss(g, m, 0.1f, 0.5f, 0);
            t->data[j] = old;
            double fd = (lp - lm) / (2 * h), an = t->grad[j];
            cr_assert(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s[%zu]: analytic %.6g vs numeric %.6g",
                      m->params[p].name, j, an, fd);
            checked++;
            exit_checked += ex && an != 0.0;
        }
    }
    cr_assert(checked > 80);
    cr_assert(exit_checked > 12, "only %d adapter entries with a nonzero gradient", exit_checked);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Conversion: every weight kept, exit LN = dec.ln, up = 0, down random from the seed;
 * so each exit starts as LN_dec of its layer's state, and the last exit is the teacher. */
Test(deed, convert_trained_model) {
    s2s_model *t = tu_model_for(me_cfg(16, 2, 24, 1, 3, 0, 4), 9);
    tu_perturb_vectors(t, 9);
    s2s_model *t2 = tu_model_for(me_cfg(16, 2, 24, 1, 3, 0, 4), 9);
    tu_perturb_vectors(t2, 9);
    char err[256];
    int nt = t->n_params;
    s2s_model *m = s2s_model_to_multi_exit(t, 6, 1, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert(m->cfg.multi_exit && m->cfg.exit_rank == 6);
    cr_assert_eq(m->n_params, nt + 6 * 2);
    for (int i = 0; i < m->n_params; i++) {
        const s2s_param_entry *e = &m->params[i];
        const s2s_tensor *o = s2s_model_param(t2, e->name);
        if (!strstr(e->name, ".exit.")) {
            cr_assert_not_null(o, "%s", e->name);
            cr_assert_eq(tu_max_diff(e->t->data, o->data, o->n), 0.0, "%s changed", e->name);
        }
    }
    for (int l = 0; l < 2; l++) {
        const s2s_dec_layer *L = &m->dec[l];
        cr_assert_eq(tu_max_diff(L->exln.w->data, m->dec_ln.w->data, 16), 0.0);
        cr_assert_eq(tu_max_diff(L->exln.b->data, m->dec_ln.b->data, 16), 0.0);
        float mx = 0;
        for (size_t j = 0; j < L->exup.w->n; j++) mx = fmaxf(mx, fabsf(L->exup.w->data[j]));
        cr_assert_eq(mx, 0.0f, "up-projection not zero");
        for (size_t j = 0; j < L->exdown.w->n; j++) mx = fmaxf(mx, fabsf(L->exdown.w->data[j]));
        cr_assert_gt(mx, 0.0f, "down-projection not random");
    }
    /* exit l of the converted model == LN_dec(y_l) E^T: check with a 1-layer cut of the
     * teacher (y_0 = the output of decoder layer 0) */
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *ex[3];
    s2s_model_decode_train_exits(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f, ex);
    s2s_tensor *full = s2s_model_decode_train(g, t2, s2s_model_encode(g, t2, TU_SRC, TU_SLEN, 2, 5, 0.0f), TU_SLEN, TU_TIN, 2, 4, 0.0f);
    int V = m->cfg.tgt_vocab;
    cr_assert_eq(tu_max_diff(ex[2]->data, full->data, (size_t)8 * V), 0.0);
    t2->cfg.dec_layers = 1; /* the teacher cut after layer 0 (dec.ln kept) */
    s2s_tensor *cut = s2s_model_decode_train(g, t2, s2s_model_encode(g, t2, TU_SRC, TU_SLEN, 2, 5, 0.0f), TU_SLEN, TU_TIN, 2, 4, 0.0f);
    t2->cfg.dec_layers = 3;
    cr_assert_lt(tu_max_diff(ex[0]->data, cut->data, (size_t)8 * V), 1e-5);
    /* converting twice is refused */
    cr_assert_null(s2s_model_to_multi_exit(m, 6, 1, err, sizeof err));
    cr_assert(strstr(err, "multi-exit") && !strchr(err, '\n'), "%s", err);
    s2s_graph_free(g);
    s2s_model_free(m); s2s_model_free(t); s2s_model_free(t2);
}

/* ------------------------------------------------------------ decoding */

/* Run the search with exit options (NULL: the model's own full-depth decoder). */
static void search(const s2s_model *m, const float *enc, const int32_t *slen, int B, int Ts, int beam,
                   const s2s_exit_opts *xo, int32_t **out, int *len, float *score) {
    s2s_search_opts so;
    s2s_search_opts_default(&so);
    so.beam = beam;
    so.max_len = 10;
    so.exit = xo;
    s2s_search(m, enc, slen, B, Ts, &so, out, len, score);
}

/* tau > 1: no early exit; outputs (and scores) identical to the full-depth decoder,
 * greedy and beam, batched, in both state modes; avg exit layer == Ld. */
Test(deed, above_one_threshold_equals_full_model) {
    s2s_model *m = me_model(16, 2, 24, 1, 3, 4, 11);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    for (int states = 0; states < 2; states++)
        for (int beam = 1; beam <= 3; beam += 2) {
            int32_t *ref[2], *got[2];
            int rl[2], gl[2];
            float rs[2], gs[2];
            search(m, enc->data, TU_SLEN, 2, 5, beam, NULL, ref, rl, rs);
            s2s_exit_stats stats;
            memset(&stats, 0, sizeof stats);
            s2s_exit_opts xo = {1.5f, states ? S2S_EXIT_MARGIN : S2S_EXIT_MAXPROB, states, &stats, 0};
            search(m, enc->data, TU_SLEN, 2, 5, beam, &xo, got, gl, gs);
            for (int b = 0; b < 2; b++) {
                cr_assert_eq(gl[b], rl[b], "beam %d states %d sentence %d: length %d vs %d", beam, states, b, gl[b], rl[b]);
                cr_assert_eq(memcmp(got[b], ref[b], (size_t)rl[b] * sizeof(int32_t)), 0, "beam %d sentence %d differs", beam, b);
                cr_assert_eq(gs[b], rs[b], "beam %d sentence %d: score %g vs %g", beam, b, gs[b], rs[b]);
                free(got[b]); free(ref[b]);
            }
            cr_assert_gt(stats.row_steps, 0);
            cr_assert_eq(s2s_exit_stats_avg(&stats), 3.0);
            cr_assert_eq(stats.jit_items, 0);
            cr_assert_eq(stats.copy_items, 0);
        }
    /* step level: the same logits, bit for bit */
    int dstep = tu_deed_full_depth_diff_step(m, enc->data);
    cr_assert_eq(dstep, -1, "step %d: logits differ", dstep);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Largest relative difference between the state's valid K/V of row r (whose token
 * history is hist[0..T)) and a full pass over that history; sentence sent. */
static double kv_err(const s2s_model *m, const void *st, int r, int sent, const int32_t *hist, int T, int *n_valid) {
    int D = m->cfg.d_model, Ld = m->cfg.dec_layers;
    float *kk[8], *vv[8];
    int32_t src[5];
    for (int i = 0; i < 5; i++) src[i] = TU_SRC[sent * 5 + i];
    tu_dec_layer_kv(m, src, &TU_SLEN[sent], 5, hist, 1, T, kk, vv);
    double worst = 0;
    for (int l = 0; l < Ld; l++) {
        int nv = s2s_deed_valid(st, r, l);
        cr_assert(nv <= T);
        *n_valid += nv;
        double ek = tu_rel_err(s2s_deed_keys(st, r, l), kk[l], (size_t)nv * D, 1e-5, 1e-4);
        double ev = tu_rel_err(s2s_deed_values(st, r, l), vv[l], (size_t)nv * D, 1e-5, 1e-4);
        worst = fmax(worst, fmax(ek, ev));
        free(kk[l]); free(vv[l]);
    }
    return worst;
}

static void *forced_decode(const s2s_model *m, const float *enc, float tau, int states, int32_t hist[4][8], float *logits) {
    return tu_deed_forced_decode(m, enc, tau, states, hist, logits, 0);
}

/* JIT: after decoding with early exits (and a select() that reorders and duplicates
 * rows), every valid K/V of every layer equals a teacher-forced full pass over the
 * row's history, and each (position, layer) was computed exactly once. */
Test(deed, jit_states_equal_full_pass_and_are_computed_once) {
    s2s_model *m = me_model(16, 2, 24, 1, 3, 4, 13);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    int V = m->cfg.tgt_vocab;
    float *logits = malloc(sizeof(float) * 7 * 4 * V);
    float tau = tu_deed_mixed_tau(m, enc->data, logits);
    cr_assert_gt(tau, 0.0f, "no threshold gives mixed exits on this model");
    int32_t hist[4][8];
    void *st = forced_decode(m, enc->data, tau, S2S_EXIT_JIT, hist, logits);
    const s2s_exit_stats *s = s2s_deed_stats(st);
    cr_assert_gt(s->jit_items, 0);
    double total = 0;
    for (int r = 0; r < 4; r++) {
        int sent = r < 2 ? 0 : 1, nv = 0;
        double e = kv_err(m, st, r, sent, hist[r], 7, &nv);
        cr_assert(e <= 1.0, "row %d: K/V differ from the full pass (rel err %g)", r, e);
        cr_assert_eq(s2s_deed_valid(st, r, 0), 7, "layer 0 always runs");
        for (int l = 0; l < 3; l++) {
            cr_assert_eq(s2s_deed_computed(st, r, l), s2s_deed_valid(st, r, l),
                         "row %d layer %d: computed %ld times for %d valid positions", r, l,
                         s2s_deed_computed(st, r, l), s2s_deed_valid(st, r, l));
            if (l > 0) cr_assert(s2s_deed_valid(st, r, l) <= s2s_deed_valid(st, r, l - 1));
        }
        /* the last step's exit layer: positions 0..6 valid up to that layer */
        int ex = s2s_deed_last_exit(st, r);
        for (int l = 0; l <= ex; l++) cr_assert_eq(s2s_deed_valid(st, r, l), 7);
        total += nv;
    }
    cr_assert_gt(total, 4 * 7);
    double avg = s2s_exit_stats_avg(s);
    cr_assert(avg >= 1.0 && avg <= 3.0 && avg < 3.0, "avg exit layer %g", avg);
    s2s_deed_decoder.free(st);
    /* layers run in small chunks of (row, position) items (4: the rows): the same states */
    float *l2 = malloc(sizeof(float) * 7 * 4 * V);
    st = tu_deed_forced_decode(m, enc->data, tau, S2S_EXIT_JIT, hist, l2, 4);
    cr_assert_gt(s2s_deed_stats(st)->jit_items, 0);
    for (int r = 0; r < 4; r++) {
        int nv = 0;
        double e = kv_err(m, st, r, r < 2 ? 0 : 1, hist[r], 7, &nv);
        cr_assert(e <= 1.0, "chunked: row %d: K/V differ from the full pass (rel err %g)", r, e);
        for (int l = 0; l < 3; l++) cr_assert_eq(s2s_deed_computed(st, r, l), s2s_deed_valid(st, r, l));
    }
    cr_assert(tu_rel_err(l2, logits, (size_t)7 * 4 * V, 1e-5, 1e-4) <= 1.0, "chunked: other logits");
    free(l2);
    s2s_deed_decoder.free(st);
    /* tau = 0: every step stops at layer 1 */
    st = forced_decode(m, enc->data, 0.0f, S2S_EXIT_JIT, hist, logits);
    cr_assert_eq(s2s_exit_stats_avg(s2s_deed_stats(st)), 1.0);
    cr_assert_eq(s2s_deed_valid(st, 0, 1), 0);
    s2s_deed_decoder.free(st);
    free(logits);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Copy mode: deeper K/V of exited positions come from the exited state (not the true
 * deeper state), every layer stays valid up to the current step, nothing is recomputed;
 * its outputs differ from JIT's at a mixed threshold and equal the full model above 1. */
Test(deed, copy_mode_fills_deeper_states_from_the_exited_state) {
    s2s_model *m = me_model(16, 2, 24, 1, 3, 4, 13);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    int V = m->cfg.tgt_vocab;
    float *lj = malloc(sizeof(float) * 7 * 4 * V), *lc = malloc(sizeof(float) * 7 * 4 * V);
    float tau = tu_deed_mixed_tau(m, enc->data, lj);
    cr_assert_gt(tau, 0.0f);
    int32_t hj[4][8], hc[4][8];
    void *sj = forced_decode(m, enc->data, tau, S2S_EXIT_JIT, hj, lj);
    void *sc = forced_decode(m, enc->data, tau, S2S_EXIT_COPY, hc, lc);
    const s2s_exit_stats *s = s2s_deed_stats(sc);
    cr_assert_eq(s->jit_items, 0);
    cr_assert_gt(s->copy_items, 0);
    cr_assert_eq(s->layer_items + s->copy_items, 7 * 4 * 3, "each (row, step, layer) once: %g + %g",
                 s->layer_items, s->copy_items);
    double worst = 0;
    for (int r = 0; r < 4; r++) {
        for (int l = 0; l < 3; l++) cr_assert_eq(s2s_deed_valid(sc, r, l), 7);
        int nv = 0;
        worst = fmax(worst, kv_err(m, sc, r, r < 2 ? 0 : 1, hc[r], 7, &nv));
    }
    cr_assert_gt(worst, 1.0, "copied K/V equal the true deeper states");
    cr_assert_gt(tu_max_diff(lj, lc, (size_t)7 * 4 * V), 1e-4, "copy and JIT give the same logits");
    s2s_deed_decoder.free(sj);
    s2s_deed_decoder.free(sc);
    free(lj); free(lc);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Early exit through greedy and beam search, batched: valid outputs, stats counted,
 * avg exit layer within [1, Ld] and below Ld at a mixed threshold. */
Test(deed, search_with_early_exit_greedy_and_beam) {
    s2s_model *m = me_model(16, 2, 24, 1, 3, 4, 13);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    float *lg = malloc(sizeof(float) * 7 * 4 * m->cfg.tgt_vocab);
    float tau = tu_deed_mixed_tau(m, enc->data, lg);
    free(lg);
    for (int states = 0; states < 2; states++)
        for (int metric = 0; metric < 2; metric++)
            for (int beam = 1; beam <= 4; beam += 3) {
                s2s_exit_stats stats;
                memset(&stats, 0, sizeof stats);
                s2s_exit_opts xo = {metric ? tau / 2 : tau, metric, states, &stats, 0};
                int32_t *out[2];
                int len[2];
                float score[2];
                search(m, enc->data, TU_SLEN, 2, 5, beam, &xo, out, len, score);
                for (int b = 0; b < 2; b++) {
                    cr_assert(len[b] >= 0 && len[b] <= 10 && isfinite(score[b]));
                    for (int i = 0; i < len[b]; i++) cr_assert(out[b][i] >= 0 && out[b][i] < m->cfg.tgt_vocab);
                    free(out[b]);
                }
                double avg = s2s_exit_stats_avg(&stats);
                cr_assert(stats.row_steps > 0 && avg >= 1.0 && avg <= 3.0, "avg %g", avg);
                double n = 0;
                for (int l = 0; l < 3; l++) n += stats.exits[l];
                cr_assert_eq(n, stats.row_steps);
            }
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* ------------------------------------------------------------ CLI */

static int run(const char *cmd, char **out) { return tu_run(cmd, out); }

Test(deed, cli_train_convert_translate) {
    char *dir = tu_tmpdir(), *tp = tu_path(dir, "teacher.safetensors"), *cp = tu_path(dir, "me.safetensors");
    s2s_model *teacher = tu_model_for(me_cfg(16, 2, 24, 1, 2, 0, 4), 31);
    char err[512];
    cr_assert_eq(s2s_model_save(teacher, tp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    tu_write_reverse_task(dir, "train", 40, 3);
    char *cmd, *out = NULL;
    /* translate --exit-threshold on a plain model: one-line error */
    cr_assert(asprintf(&cmd, "echo abc | %s translate -m %s --exit-threshold 0.5", tu_bin(), tp) > 0);
    int st = run(cmd, &out);
    cr_assert(st == 1 && strstr(out, "multi-exit") && strchr(out, '\n') == strrchr(out, '\n'), "%d: %s", st, out);
    free(cmd); free(out);
    /* convert --to multi-exit */
    cr_assert(asprintf(&cmd, "%s convert --to multi-exit --exit-rank 3 -m %s -o %s", tu_bin(), tp, cp) > 0);
    st = run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    s2s_model *c = s2s_model_load(cp, 0, err, sizeof err);
    cr_assert_not_null(c, "%s", err);
    cr_assert(c->cfg.multi_exit && c->cfg.exit_rank == 3 && s2s_model_param(c, "dec.0.exit.up.weight"));
    s2s_model_free(c);
    /* train --init TEACHER --multi-exit: adapters added, then fine-tuned */
    char *tdir = tu_path(dir, "ft"), *last = tu_path(tdir, "last.safetensors");
    cr_assert(asprintf(&cmd, "%s train --init %s --multi-exit --exit-rank 5 --exit-last-weight 0.5 --train-src %s/train.src "
                             "--train-tgt %s/train.tgt -o %s --max-steps 3 --eval-every 0 --threads 1",
                       tu_bin(), tp, dir, dir, tdir) > 0);
    st = run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    s2s_model *ft = s2s_model_load(last, 0, err, sizeof err);
    cr_assert_not_null(ft, "%s", err);
    cr_assert(ft->cfg.multi_exit && ft->cfg.exit_rank == 5);
    const s2s_tensor *up = s2s_model_param(ft, "dec.0.exit.up.weight");
    cr_assert_not_null(up);
    float upmax = 0;
    for (size_t j = 0; j < up->n; j++) upmax = fmaxf(upmax, fabsf(up->data[j]));
    cr_assert_gt(upmax, 0.0f, "fine-tuning did not update the adapter (up-projection still 0)");
    s2s_model_free(ft);
    /* translate with early exit (greedy, beam, copy, margin) prints the average exit layer */
    char why[512];
    cr_assert_eq(tu_early_exit_cli(last, 2, why, sizeof why), 0, "%s", why);
    /* bad values: one-line errors */
    const char *bad[] = {"--exit-threshold -1", "--exit-metric prob --exit-threshold 0.5", "--exit-states jit"};
    for (int i = 0; i < 3; i++) {
        cr_assert(asprintf(&cmd, "echo abc | %s translate -m %s %s", tu_bin(), last, bad[i]) > 0);
        st = run(cmd, &out);
        cr_assert(st != 0 && st < 128, "%s: %d %s", bad[i], st, out);
        free(cmd); free(out);
    }
    /* from scratch */
    char *sdir = tu_path(dir, "scratch"), *slast = tu_path(sdir, "last.safetensors");
    cr_assert(asprintf(&cmd, "%s train --multi-exit --exit-rank 4 --d-model 16 --heads 2 --ff 24 --enc-layers 1 "
                             "--dec-layers 2 --train-src %s/train.src --train-tgt %s/train.tgt -o %s --max-steps 2 "
                             "--eval-every 0 --threads 1", tu_bin(), dir, dir, sdir) > 0);
    st = run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    free(cmd); free(out);
    ft = s2s_model_load(slast, 0, err, sizeof err);
    cr_assert_not_null(ft, "%s", err);
    cr_assert(ft->cfg.multi_exit && ft->cfg.exit_rank == 4 && s2s_model_param(ft, "dec.0.exit.down.weight"));
    s2s_model_free(ft);
    s2s_model_free(teacher);
    tu_rmrf(dir);
    free(dir); free(tp); free(cp); free(tdir); free(last); free(sdir); free(slast);
}
