/* test_deed_t2r.c - DEED early exit on a T2R decoder (cfg.multi_exit with cfg.dec_attn
 * t2r; model.c, decoder_deed.c, decoder_deed_t2r.c): the multi-exit training graph
 * (last exit == the T2R forward pass, finite-difference gradients of phi and adapter
 * weights), dynamic exit decoding (tau > 1 == the plain T2R decoder, greedy and beam,
 * batched, both state modes; JIT: every recurrent state S, z == the sums of a
 * teacher-forced full pass over the positions it holds, each (position, layer)
 * computed once, also after select() and in small chunks, and the last step's logits
 * == its exit's logits in a full pass; copy mode), a NASH-pruned encoder under it,
 * memory accounting, and the CLI (convert --to multi-exit of a T2R model, info,
 * translate --exit-threshold; train --multi-exit with --init of a T2R model, of a
 * pruned T2R model, of a softmax model with --dec-attn t2r, and from scratch). Uses
 * the binary in $S2S_BIN for the CLI cases. */
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
#include "kernels_t2r.h"
#include "model.h"
#include "search.h"
#include "test_util.h"

/* A tiny random multi-exit T2R model (random biases / LayerNorm / phi biases);
 * map: S2S_T2R_MAP_RELU with k features, or S2S_T2R_MAP_ELU (k = D/H). */
static s2s_model *mt_model(int Ld, int map, int k, uint64_t seed) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 16; c.n_heads = 2; c.d_ff = 24; c.enc_layers = 1; c.dec_layers = Ld;
    c.max_len = 64;
    c.dec_attn = S2S_ATTN_T2R;
    c.t2r_map = map;
    c.t2r_k = map == S2S_T2R_MAP_ELU ? 8 : k;
    c.multi_exit = 1;
    c.exit_rank = 4;
    s2s_model *m = tu_model_for(c, seed);
    tu_perturb_vectors(m, seed);
    return m;
}

/* the encoder output of TU_SRC on graph g */
static const float *encode(s2s_graph *g, const s2s_model *m) {
    s2s_graph_set_grad(g, 0);
    return s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f)->data;
}

/* ------------------------------------------------------------ training graph */

static double exit_loss(s2s_graph *g, s2s_model *m, int grad) {
    s2s_graph_reset(g);
    s2s_graph_set_grad(g, grad);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *ex[8];
    s2s_model_decode_train_exits(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f, ex);
    s2s_tensor *loss = s2s_model_exit_loss(g, m, ex, TU_TOUT, 0.1f, 0.5f);
    if (grad) s2s_graph_backward(g, loss);
    return loss->data[0];
}

/* The exits of a T2R model run the T2R layers: the last one is s2s_model_decode_train's
 * logits bit for bit, and the loss has the right gradients for phi and the adapters. */
Test(deed_t2r, exit_graph_and_gradients) {
    s2s_model *m = mt_model(2, S2S_T2R_MAP_RELU, 4, 3);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *ex[2];
    s2s_model_decode_train_exits(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f, ex);
    s2s_tensor *full = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    size_t n = (size_t)8 * m->cfg.tgt_vocab;
    cr_assert_eq(tu_max_diff(ex[1]->data, full->data, n), 0.0, "last exit != decode_train");
    cr_assert_gt(tu_max_diff(ex[0]->data, full->data, n), 1e-3, "exit 0 == last exit");
    exit_loss(g, m, 1);
    uint64_t rng = 5;
    int checked = 0;
    for (int p = 0; p < m->n_params; p++) {
        const char *nm = m->params[p].name;
        if (!strstr(nm, ".phi.") && !strstr(nm, ".exit.") && !strstr(nm, ".self.")) continue;
        s2s_tensor *t = m->params[p].t;
        for (int r = 0; r < 3; r++) {
            size_t j = s2s_rng_next(&rng) % t->n;
            float old = t->data[j], h = 1e-3f;
            t->data[j] = old + h;
            double lp = exit_loss(g, m, 0);
            t->data[j] = old - h;
            double lm = exit_loss(g, m, 0);
            t->data[j] = old;
            double fd = (lp - lm) / (2 * h), an = t->grad[j];
            cr_assert(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s[%zu]: analytic %.6g vs numeric %.6g", nm, j, an, fd);
            checked += an != 0.0;
        }
    }
    cr_assert_gt(checked, 20);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* ------------------------------------------------------------ decoding */

static void search(const s2s_model *m, const float *enc, int beam, const s2s_exit_opts *xo, int32_t **out, int *len,
                   float *score) {
    s2s_search_opts so;
    s2s_search_opts_default(&so);
    so.beam = beam;
    so.max_len = 10;
    so.exit = xo;
    s2s_search(m, enc, TU_SLEN, 2, 5, &so, out, len, score);
}

/* tau > 1 on model m: the same outputs and scores as its plain T2R decoder, greedy and
 * beam, batched, both state modes, and the same step logits bit for bit. */
static void check_full_depth(const s2s_model *m) {
    s2s_graph *g = s2s_graph_new();
    const float *enc = encode(g, m);
    int Ld = m->cfg.dec_layers;
    cr_assert_str_eq(s2s_decoder_ops_for(m)->kind, "t2r");
    for (int states = 0; states < 2; states++)
        for (int beam = 1; beam <= 3; beam += 2) {
            int32_t *ref[2], *got[2];
            int rl[2], gl[2];
            float rs[2], gs[2];
            search(m, enc, beam, NULL, ref, rl, rs);
            s2s_exit_stats stats;
            memset(&stats, 0, sizeof stats);
            s2s_exit_opts xo = {1.5f, states ? S2S_EXIT_MARGIN : S2S_EXIT_MAXPROB, states, &stats, 0};
            search(m, enc, beam, &xo, got, gl, gs);
            for (int b = 0; b < 2; b++) {
                cr_assert_eq(gl[b], rl[b], "beam %d states %d sentence %d: length %d vs %d", beam, states, b, gl[b], rl[b]);
                cr_assert_eq(memcmp(got[b], ref[b], (size_t)rl[b] * sizeof(int32_t)), 0, "beam %d sentence %d differs", beam,
                             b);
                cr_assert_eq(gs[b], rs[b], "beam %d sentence %d: score %g vs %g", beam, b, gs[b], rs[b]);
                free(got[b]); free(ref[b]);
            }
            cr_assert_gt(stats.row_steps, 0);
            cr_assert_eq(s2s_exit_stats_avg(&stats), (double)Ld);
            cr_assert_eq(stats.jit_items + stats.copy_items, 0);
        }
    int dstep = tu_deed_full_depth_diff_step(m, enc);
    cr_assert_eq(dstep, -1, "step %d: logits differ", dstep);
    s2s_graph_free(g);
}

Test(deed_t2r, above_one_threshold_equals_the_t2r_decoder) {
    s2s_model *m = mt_model(3, S2S_T2R_MAP_RELU, 6, 11);
    check_full_depth(m);
    s2s_model_free(m);
    m = mt_model(2, S2S_T2R_MAP_ELU, 0, 12);
    check_full_depth(m);
    s2s_model_free(m);
}

/* Largest relative error of the T2R states of row r (history hist[0..T), sentence
 * sent) in layers 0..upto-1 against the sums over its valid positions of a
 * teacher-forced full pass. */
static double state_err(const s2s_model *m, const void *st, int r, int sent, const int32_t *hist, int T, int upto) {
    const s2s_config *c = &m->cfg;
    int Ld = c->dec_layers, H = c->n_heads, Dh = c->d_model / H, kf = c->t2r_k;
    float *kk[8], *vv[8];
    int32_t src[5];
    for (int i = 0; i < 5; i++) src[i] = TU_SRC[sent * 5 + i];
    tu_dec_layer_kv(m, src, &TU_SLEN[sent], 5, hist, 1, T, kk, vv);
    size_t nS = (size_t)H * kf * Dh, nz = (size_t)H * kf;
    float *S = malloc(sizeof(float) * nS), *z = malloc(sizeof(float) * nz);
    double worst = 0;
    for (int l = 0; l < Ld; l++) {
        int32_t nv = s2s_deed_valid(st, r, l);
        cr_assert(nv >= 0 && nv <= T);
        const s2s_lin_p *phi = &m->dec[l].sphi;
        s2s_kref_t2r_cross_state(S, z, kk[l], vv[l], phi->w ? phi->w->data : NULL, phi->b ? phi->b->data : NULL, &nv, 1,
                                 H, T, Dh, kf);
        const float *gS, *gz;
        s2s_deed_self_state(st, r, l, &gS, &gz);
        if (l < upto) worst = fmax(worst, fmax(tu_rel_err(gS, S, nS, 1e-5, 1e-4), tu_rel_err(gz, z, nz, 1e-5, 1e-4)));
        free(kk[l]); free(vv[l]);
    }
    free(S); free(z);
    return worst;
}

/* The exit logits of a teacher-forced full pass: exits[l] at position t of row r's
 * history (sentence sent) -> out [V]. */
static void full_exit_logits(const s2s_model *m, int sent, const int32_t *hist, int T, int l, int t, float *out) {
    int32_t src[5];
    for (int i = 0; i < 5; i++) src[i] = TU_SRC[sent * 5 + i];
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, src, &TU_SLEN[sent], 1, 5, 0.0f);
    s2s_tensor *ex[8];
    s2s_model_decode_train_exits(g, m, enc, &TU_SLEN[sent], hist, 1, T, 0.0f, ex);
    int V = m->cfg.tgt_vocab;
    memcpy(out, ex[l]->data + (size_t)t * V, sizeof(float) * V);
    s2s_graph_free(g);
}

/* A model (relu map, 3 layers) and a threshold with mixed exits and JIT work. */
static s2s_model *mixed_model(float *tau_out, float **logits_out) {
    for (uint64_t seed = 13; seed < 40; seed++) {
        s2s_model *m = mt_model(3, S2S_T2R_MAP_RELU, 6, seed);
        s2s_graph *g = s2s_graph_new();
        float *lg = malloc(sizeof(float) * 7 * 4 * m->cfg.tgt_vocab);
        float tau = tu_deed_mixed_tau(m, encode(g, m), lg);
        s2s_graph_free(g);
        if (tau > 0) { *tau_out = tau; *logits_out = lg; return m; }
        free(lg);
        s2s_model_free(m);
    }
    cr_assert_fail("no seed gives a threshold with mixed exits");
    return NULL;
}

/* JIT: after early exits (and a select() that reorders and duplicates rows), each
 * row's layer-l state holds exactly its valid positions' true layer-l contributions,
 * each (position, layer) was computed once, and the last step's logits are its exit's
 * logits in a full pass (every state it read was a true state). In chunks of 4 items:
 * the same. tau = 0: every step stops at layer 1. */
Test(deed_t2r, jit_states_equal_full_pass_and_are_computed_once) {
    float tau, *logits;
    s2s_model *m = mixed_model(&tau, &logits);
    s2s_graph *g = s2s_graph_new();
    const float *enc = encode(g, m);
    int V = m->cfg.tgt_vocab, Ld = m->cfg.dec_layers;
    float *l2 = malloc(sizeof(float) * 7 * 4 * V), *ref = malloc(sizeof(float) * V);
    for (int chunk = 0; chunk <= 4; chunk += 4) {
        int32_t hist[4][8];
        void *st = tu_deed_forced_decode(m, enc, tau, S2S_EXIT_JIT, hist, chunk ? l2 : logits, chunk);
        const s2s_exit_stats *s = s2s_deed_stats(st);
        cr_assert_gt(s->jit_items, 0);
        double below = 0;
        for (int l = 0; l < Ld - 1; l++) below += s->exits[l];
        cr_assert(below > 0 && s->exits[Ld - 1] > 0);
        for (int r = 0; r < 4; r++) {
            int sent = r < 2 ? 0 : 1;
            double e = state_err(m, st, r, sent, hist[r], 7, Ld);
            cr_assert(e <= 1.0, "chunk %d row %d: S, z differ from the full pass (rel err %g)", chunk, r, e);
            cr_assert_eq(s2s_deed_valid(st, r, 0), 7, "layer 0 always runs");
            for (int l = 0; l < Ld; l++) {
                cr_assert_eq(s2s_deed_computed(st, r, l), s2s_deed_valid(st, r, l),
                             "chunk %d row %d layer %d: computed %ld times for %d valid positions", chunk, r, l,
                             s2s_deed_computed(st, r, l), s2s_deed_valid(st, r, l));
                if (l > 0) cr_assert(s2s_deed_valid(st, r, l) <= s2s_deed_valid(st, r, l - 1));
            }
            int ex = s2s_deed_last_exit(st, r);
            for (int l = 0; l <= ex; l++) cr_assert_eq(s2s_deed_valid(st, r, l), 7);
            full_exit_logits(m, sent, hist[r], 7, ex, 6, ref);
            const float *got = (chunk ? l2 : logits) + ((size_t)6 * 4 + r) * V;
            cr_assert(tu_rel_err(got, ref, (size_t)V, 1e-5, 1e-4) <= 1.0,
                      "chunk %d row %d: last logits != exit %d of a full pass", chunk, r, ex);
        }
        double avg = s2s_exit_stats_avg(s);
        cr_assert(avg >= 1.0 && avg < Ld, "avg exit layer %g", avg);
        s2s_deed_decoder.free(st);
    }
    cr_assert(tu_rel_err(l2, logits, (size_t)7 * 4 * V, 1e-5, 1e-4) <= 1.0, "chunked: other logits");
    int32_t hist[4][8];
    void *st = tu_deed_forced_decode(m, enc, 0.0f, S2S_EXIT_JIT, hist, logits, 0);
    cr_assert_eq(s2s_exit_stats_avg(s2s_deed_stats(st)), 1.0);
    const float *S, *z;
    s2s_deed_self_state(st, 0, 1, &S, &z);
    cr_assert_eq(s2s_deed_valid(st, 0, 1), 0);
    for (int i = 0; i < m->cfg.n_heads * m->cfg.t2r_k; i++) cr_assert_eq(z[i], 0.0f, "layer 1 never ran but z != 0");
    s2s_deed_decoder.free(st);
    free(l2); free(ref); free(logits);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Copy mode: deeper states get the exited state's K/V folded in (not the true deeper
 * ones), every layer holds every step, nothing is recomputed; at a mixed threshold its
 * logits differ from JIT's (at tau > 1 both equal the T2R decoder: above). */
Test(deed_t2r, copy_mode_folds_the_exited_state) {
    float tau, *lj;
    s2s_model *m = mixed_model(&tau, &lj);
    s2s_graph *g = s2s_graph_new();
    const float *enc = encode(g, m);
    int V = m->cfg.tgt_vocab, Ld = m->cfg.dec_layers;
    float *lc = malloc(sizeof(float) * 7 * 4 * V);
    int32_t hj[4][8], hc[4][8];
    void *sj = tu_deed_forced_decode(m, enc, tau, S2S_EXIT_JIT, hj, lj, 0);
    void *sc = tu_deed_forced_decode(m, enc, tau, S2S_EXIT_COPY, hc, lc, 0);
    const s2s_exit_stats *s = s2s_deed_stats(sc);
    cr_assert_eq(s->jit_items, 0);
    cr_assert_gt(s->copy_items, 0);
    cr_assert_eq(s->layer_items + s->copy_items, 7 * 4 * Ld, "each (row, step, layer) once: %g + %g", s->layer_items,
                 s->copy_items);
    double worst = 0;
    for (int r = 0; r < 4; r++) {
        for (int l = 0; l < Ld; l++) cr_assert_eq(s2s_deed_valid(sc, r, l), 7);
        worst = fmax(worst, state_err(m, sc, r, r < 2 ? 0 : 1, hc[r], 7, Ld));
    }
    cr_assert_gt(worst, 1.0, "copied states equal the true deeper states");
    cr_assert_gt(tu_max_diff(lj, lc, (size_t)7 * 4 * V), 1e-4, "copy and JIT give the same logits");
    s2s_deed_decoder.free(sj);
    s2s_deed_decoder.free(sc);
    /* tau = 0: every step exits at layer 0, so layer 1's folded K/V come from the true
     * layer-0 output: layer 1 equals the full pass, layer 2 (from y_0, not y_1) does not */
    sc = tu_deed_forced_decode(m, enc, 0.0f, S2S_EXIT_COPY, hc, lc, 0);
    cr_assert_eq(s2s_exit_stats_avg(s2s_deed_stats(sc)), 1.0);
    for (int r = 0; r < 4; r++) {
        double e = state_err(m, sc, r, r < 2 ? 0 : 1, hc[r], 7, 2);
        cr_assert(e <= 1.0, "row %d: copy mode's layer-1 state differs from the full pass (rel err %g)", r, e);
        cr_assert_gt(state_err(m, sc, r, r < 2 ? 0 : 1, hc[r], 7, 3), 1.0, "row %d: layer 2 == the full pass", r);
    }
    s2s_deed_decoder.free(sc);
    free(lj); free(lc);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Early exit through greedy and beam search, batched, both modes and metrics: valid
 * outputs, every row step counted once. */
static void check_search(const s2s_model *m, float tau) {
    s2s_graph *g = s2s_graph_new();
    const float *enc = encode(g, m);
    int Ld = m->cfg.dec_layers;
    for (int states = 0; states < 2; states++)
        for (int metric = 0; metric < 2; metric++)
            for (int beam = 1; beam <= 4; beam += 3) {
                s2s_exit_stats stats;
                memset(&stats, 0, sizeof stats);
                s2s_exit_opts xo = {metric ? tau / 2 : tau, metric, states, &stats, 0};
                int32_t *out[2];
                int len[2];
                float score[2];
                search(m, enc, beam, &xo, out, len, score);
                for (int b = 0; b < 2; b++) {
                    cr_assert(len[b] >= 0 && len[b] <= 10 && isfinite(score[b]));
                    for (int i = 0; i < len[b]; i++) cr_assert(out[b][i] >= 0 && out[b][i] < m->cfg.tgt_vocab);
                    free(out[b]);
                }
                double avg = s2s_exit_stats_avg(&stats), n = 0;
                cr_assert(stats.row_steps > 0 && avg >= 1.0 && avg <= Ld, "avg %g", avg);
                for (int l = 0; l < Ld; l++) n += stats.exits[l];
                cr_assert_eq(n, stats.row_steps);
            }
    s2s_graph_free(g);
}

Test(deed_t2r, search_with_early_exit_greedy_and_beam) {
    float tau, *lg;
    s2s_model *m = mixed_model(&tau, &lg);
    free(lg);
    check_search(m, tau);
    s2s_model_free(m);
}

/* A NASH-pruned encoder (per-layer heads / FFN units, one sublayer removed) under a
 * multi-exit T2R decoder: full depth == the T2R decoder, early exit runs. */
Test(deed_t2r, pruned_encoder) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 16; c.n_heads = 2; c.d_ff = 24; c.enc_layers = 2; c.dec_layers = 2; c.max_len = 64;
    c.dec_attn = S2S_ATTN_T2R; c.t2r_k = 5; c.multi_exit = 1; c.exit_rank = 3;
    c.enc_widths = 1;
    c.enc_heads[0] = 1; c.enc_ff[0] = 7;
    c.enc_heads[1] = 0; c.enc_ff[1] = 10;
    s2s_model *m = tu_model_for(c, 21);
    tu_perturb_vectors(m, 21);
    cr_assert_null(s2s_model_param(m, "enc.1.attn.q.weight"));
    check_full_depth(m);
    check_search(m, 0.1f);
    s2s_model_free(m);
}

/* Memory accounting: no K/V caches, so a row's state grows only by its residual stream
 * (D floats a step) and start() needs less than the softmax DEED decoder's. */
Test(deed_t2r, memory_accounting) {
    s2s_model *m = mt_model(3, S2S_T2R_MAP_RELU, 6, 7);
    s2s_config c = m->cfg;
    c.dec_attn = S2S_ATTN_SOFTMAX;
    s2s_model *soft = tu_model_for(c, 7);
    const s2s_decoder_ops *d = &s2s_deed_decoder;
    cr_assert_eq(d->state_bytes(m, 5, 11) - d->state_bytes(m, 5, 10), sizeof(float) * 16);
    cr_assert_eq(d->state_bytes(m, 5, 0), s2s_decoder_ops_for(m)->state_bytes(m, 5, 0), "the T2R states");
    cr_assert_lt(d->start_bytes(m, 2, 5, 4, 60), d->start_bytes(soft, 2, 5, 4, 60));
    cr_assert_gt(d->start_bytes(m, 2, 5, 4, 60), d->start_bytes(m, 2, 5, 4, 30));
    s2s_model_free(soft);
    s2s_model_free(m);
}

/* ------------------------------------------------------------ CLI */

/* a checkpoint's decoder attention and exits: both must be there */
static s2s_model *load_stacked(const char *path, int rank) {
    char err[512];
    s2s_model *m = s2s_model_load(path, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert(m->cfg.multi_exit && m->cfg.exit_rank == rank && s2s_config_is_t2r(&m->cfg), "%s", path);
    cr_assert(s2s_model_param(m, "dec.0.exit.down.weight") && s2s_model_param(m, "dec.0.self.phi.weight"), "%s", path);
    return m;
}

Test(deed_t2r, cli_convert_train_info_translate) {
    char *dir = tu_tmpdir(), *tp = tu_path(dir, "t2r.safetensors"), *sp = tu_path(dir, "soft.safetensors"),
         *cp = tu_path(dir, "me.safetensors"), *pp = tu_path(dir, "pruned.safetensors");
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 16; c.n_heads = 2; c.d_ff = 24; c.enc_layers = 1; c.dec_layers = 2; c.max_len = 64;
    s2s_model *soft = tu_model_for(c, 31);
    c.dec_attn = S2S_ATTN_T2R; c.t2r_k = 6;
    s2s_model *t2r = tu_model_for(c, 31);
    c.enc_widths = 1; c.enc_heads[0] = 1; c.enc_ff[0] = 9; /* a NASH-pruned encoder */
    s2s_model *pruned = tu_model_for(c, 32);
    char err[512];
    cr_assert_eq(s2s_model_save(t2r, tp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_model_save(pruned, pp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_model_save(soft, sp, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    tu_write_reverse_task(dir, "train", 40, 3);
    tu_write_reverse_task(dir, "dev", 8, 4);
    char *cmd, *out = NULL;
    /* convert --to multi-exit of a T2R model; info shows both */
    cr_assert(asprintf(&cmd, "%s convert --to multi-exit --exit-rank 3 -m %s -o %s && %s info -m %s", tu_bin(), tp, cp,
                       tu_bin(), cp) > 0);
    int st = tu_run(cmd, &out);
    cr_assert_eq(st, 0, "%s: %s", cmd, out);
    cr_assert(strstr(out, "T2R") && strstr(out, "DEED"), "%s", out);
    free(cmd); free(out);
    s2s_model_free(load_stacked(cp, 3));
    /* translate: early exit prints the average exit layer; above 1 it is the T2R decoder's output */
    char why[512];
    cr_assert_eq(tu_early_exit_cli(cp, 2, why, sizeof why), 0, "%s", why);
    /* at tau 1 (the early-exit decoder, which no step of a random model leaves before the
     * last layer) the translations (stdout) are the plain T2R decoder's */
    cr_assert(asprintf(&cmd, "printf 'abc\\nde\\nfghi\\n' | %s translate -m %s --exit-threshold 1 2>/dev/null | cat && "
                             "echo --- && printf 'abc\\nde\\nfghi\\n' | %s translate -m %s 2>/dev/null | cat",
                       tu_bin(), cp, tu_bin(), cp) > 0);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    char *sep = strstr(out, "---\n");
    cr_assert_not_null(sep, "%s", out);
    cr_assert(strlen(sep + 4) == (size_t)(sep - out) && !strncmp(out, sep + 4, (size_t)(sep - out)),
              "tau 1 vs plain T2R:\n%s", out);
    free(cmd); free(out);
    /* train --init T2R --multi-exit (adapters added, then trained, dev decoding on the way);
     * --init SOFTMAX --dec-attn t2r --multi-exit; from scratch --dec-attn t2r --multi-exit;
     * --init of a T2R model with a pruned encoder --multi-exit */
    const char *runs[4] = {"--init %s --multi-exit --exit-rank 5 --dev-src %s/dev.src --dev-tgt %s/dev.tgt --eval-every 2",
                           "--init %s --dec-attn t2r --t2r-k 6 --multi-exit --exit-rank 5",
                           "--dec-attn t2r --t2r-k 6 --multi-exit --exit-rank 5 --d-model 16 --heads 2 --ff 24 "
                           "--enc-layers 1 --dec-layers 2",
                           "--init %s --multi-exit --exit-rank 5"};
    const char *init[4] = {tp, sp, NULL, pp};
    for (int i = 0; i < 4; i++) {
        char *od, *flags, *last;
        cr_assert(asprintf(&od, "%s/run%d", dir, i) > 0);
        cr_assert(asprintf(&flags, runs[i], init[i] ? init[i] : "", dir, dir) > 0);
        cr_assert(asprintf(&cmd, "%s train %s --train-src %s/train.src --train-tgt %s/train.tgt -o %s --max-steps 2 "
                                 "--threads 1 %s", tu_bin(), flags, dir, dir, od, i == 0 ? "" : "--eval-every 0") > 0);
        st = tu_run(cmd, &out);
        cr_assert_eq(st, 0, "%s: %s", cmd, out);
        last = tu_path(od, "last.safetensors");
        s2s_model *m = load_stacked(last, 5);
        cr_assert_eq(m->cfg.enc_widths, i == 3, "run %d", i);
        if (i == 3) cr_assert(s2s_config_enc_heads(&m->cfg, 0) == 1 && s2s_config_enc_ff(&m->cfg, 0) == 9);
        if (i != 2) { /* the adapter was trained */
            const s2s_tensor *up = s2s_model_param(m, "dec.0.exit.up.weight");
            float mx = 0;
            for (size_t j = 0; j < up->n; j++) mx = fmaxf(mx, fabsf(up->data[j]));
            cr_assert_gt(mx, 0.0f, "run %d: the adapter's up-projection is still 0", i);
        }
        s2s_model_free(m);
        free(cmd); free(out);
        cr_assert(asprintf(&cmd, "echo abc | %s translate -m %s --exit-threshold 0.5", tu_bin(), last) > 0);
        st = tu_run(cmd, &out);
        cr_assert(st == 0 && strstr(out, "average exit layer"), "run %d: %s", i, out);
        free(cmd); free(out); free(od); free(flags); free(last);
    }
    s2s_model_free(soft);
    s2s_model_free(t2r);
    s2s_model_free(pruned);
    tu_rmrf(dir);
    free(dir); free(tp); free(sp); free(cp); free(pp);
}
