/* test_rnn.c - the recurrent (hybrid) decoders: SSRU, GRU and LSTM.
 *
 * Cells (kernels_rnn.h): every reference backward against central finite differences
 * of its forward (with and without an initial state), the fast kernels against the
 * reference on awkward and parallel-path sizes (gradient buffers start from random
 * values, so "+=" is checked too), and the SSRU against its formula by hand.
 * Models: finite-difference gradients through a whole model of each kind, step-by-step
 * decoding == the teacher-forced forward, select() reorders rows, greedy search ==
 * the forward argmax chain, beam >= greedy, checkpoint round trips and config JSON,
 * the distillation student (encoder copied, decoder new), and a short end-to-end
 * training run per kind through s2s_train that must reach a stated dev loss. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "decoder.h"
#include "graph.h"
#include "kernels_rnn.h"
#include "model.h"
#include "s2s.h"
#include "search.h"
#include "test_util.h"
#include "tokenizer.h"
#include "train.h"

/* ------------------------------------------------------------------------------------
 * cells
 * ---------------------------------------------------------------------------------- */

enum { SSRU = 2, GRU = 3, LSTM = 4 }; /* = gates per cell */
static const char *cell_name(int G) { return G == SSRU ? "ssru" : G == GRU ? "gru" : "lstm"; }

typedef struct {
    int G, B, T, D, with_state;
    float *xp, *wh, *bh, *h0, *c0; /* inputs (h0, c0 NULL without state) */
    float *R;                      /* [B, T, D] loss weights: L = sum(h * R) */
} cell_case;

static uint64_t g_rng = 0xabcdef12345ull;

static float *randn(size_t n, float scale) {
    float *a = s2s_xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) a[i] = scale * s2s_rng_normal(&g_rng);
    return a;
}

static void case_new(cell_case *k, int G, int B, int T, int D, int with_state) {
    memset(k, 0, sizeof *k);
    k->G = G; k->B = B; k->T = T; k->D = D; k->with_state = with_state;
    size_t BTD = (size_t)B * T * D;
    k->xp = randn(BTD * G, 1.0f);
    k->wh = randn((size_t)G * D * D, 1.0f / sqrtf((float)D));
    k->bh = randn((size_t)G * D, 0.5f);
    if (with_state) { k->h0 = randn((size_t)B * D, 0.7f); k->c0 = randn((size_t)B * D, 0.7f); }
    k->R = randn(BTD, 1.0f);
}

static void case_free(cell_case *k) {
    free(k->xp); free(k->wh); free(k->bh); free(k->h0); free(k->c0); free(k->R);
}

/* forward of one implementation into h, c [B,T,D], gates [B,T,4D] */
static void cell_fwd(int fast, const cell_case *k, float *h, float *c, float *gates) {
    int B = k->B, T = k->T, D = k->D;
    if (k->G == SSRU) {
        const float *c0 = k->c0;
        (fast ? s2s_k_ssru_fwd : s2s_kref_ssru_fwd)(h, c, k->xp, c0, B, T, D);
    } else if (k->G == GRU) {
        (fast ? s2s_k_gru_fwd : s2s_kref_gru_fwd)(h, gates, k->xp, k->wh, k->bh, k->h0, B, T, D);
    } else {
        (fast ? s2s_k_lstm_fwd : s2s_kref_lstm_fwd)(h, c, gates, k->xp, k->wh, k->bh, k->h0, k->c0, B, T, D);
    }
}

/* backward of one implementation, given the forward buffers; dh = R */
static void cell_bwd(int fast, const cell_case *k, float *dxp, float *dwh, float *dbh,
                     const float *h, const float *c, const float *gates) {
    int B = k->B, T = k->T, D = k->D;
    float *ws = s2s_xmalloc(S2S_RNN_BWD_WS(k->G, B, T, D) * sizeof(float));
    if (k->G == SSRU)
        (fast ? s2s_k_ssru_bwd : s2s_kref_ssru_bwd)(dxp, k->R, k->xp, c, k->c0, B, T, D);
    else if (k->G == GRU)
        (fast ? s2s_k_gru_bwd : s2s_kref_gru_bwd)(dxp, dwh, dbh, ws, k->R, h, gates, k->wh, k->h0, B, T, D);
    else
        (fast ? s2s_k_lstm_bwd : s2s_kref_lstm_bwd)(dxp, dwh, dbh, ws, k->R, h, c, gates, k->wh, k->h0,
                                                    k->c0, B, T, D);
    free(ws);
}

/* L = sum(h * R) of the reference forward, in double */
static double cell_loss(const cell_case *k) {
    size_t n = (size_t)k->B * k->T * k->D;
    float *h = s2s_xmalloc(n * sizeof(float)), *c = s2s_xmalloc(n * sizeof(float));
    float *g = s2s_xmalloc(4 * n * sizeof(float));
    cell_fwd(0, k, h, c, g);
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)h[i] * k->R[i];
    free(h); free(c); free(g);
    return s;
}

/* |got - ref| <= atol + rtol |ref| everywhere; reports the worst element */
static void check_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                        double rtol) {
    size_t worst = 0;
    double wr = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)got[i] - ref[i]) / (atol + rtol * fabs((double)ref[i]));
        if (!(r <= wr)) { wr = isnan(r) ? INFINITY : r; worst = i; }
    }
    cr_assert(wr <= 1.0, "%s: mismatch at [%zu] of %zu: got %.9g, want %.9g (%.2fx tol)", what, worst, n,
              got[worst], ref[worst], wr);
}

/* The reference backward against central finite differences of the reference forward,
 * for every element of xp, wh and bh. Gradient buffers start random (+= is checked). */
static void fd_cell(int G, int with_state) {
    cell_case k;
    case_new(&k, G, 2, 4, 5, with_state);
    size_t n = (size_t)k.B * k.T * k.D, nx = n * G, nw = (size_t)G * k.D * k.D, nb = (size_t)G * k.D;
    float *h = s2s_xmalloc(n * sizeof(float)), *c = s2s_xmalloc(n * sizeof(float));
    float *gates = s2s_xmalloc(4 * n * sizeof(float));
    cell_fwd(0, &k, h, c, gates);
    float *dx0 = randn(nx, 1), *dw0 = randn(nw, 1), *db0 = randn(nb, 1);
    float *dx = s2s_xmalloc(nx * sizeof(float)), *dw = s2s_xmalloc(nw * sizeof(float)), *db = s2s_xmalloc(nb * sizeof(float));
    memcpy(dx, dx0, nx * sizeof(float)); memcpy(dw, dw0, nw * sizeof(float)); memcpy(db, db0, nb * sizeof(float));
    cell_bwd(0, &k, dx, dw, db, h, c, gates);
    struct { float *x, *after, *before; size_t n; const char *name; } in[3] = {
        {k.xp, dx, dx0, nx, "xp"}, {k.wh, dw, dw0, nw, "wh"}, {k.bh, db, db0, nb, "bh"}};
    int n_in = G == SSRU ? 1 : 3;
    const float eps = 1e-3f;
    for (int a = 0; a < n_in; a++)
        for (size_t i = 0; i < in[a].n; i++) {
            float old = in[a].x[i];
            in[a].x[i] = old + eps;
            double lp = cell_loss(&k);
            in[a].x[i] = old - eps;
            double lm = cell_loss(&k);
            in[a].x[i] = old;
            double num = (lp - lm) / (2.0 * eps), ana = (double)in[a].after[i] - in[a].before[i];
            cr_assert(fabs(num - ana) <= 2e-3 + 1e-2 * fabs(num), "%s%s d/d%s[%zu]: analytic %.6f, numeric %.6f",
                      cell_name(G), with_state ? " (with state)" : "", in[a].name, i, ana, num);
        }
    free(h); free(c); free(gates); free(dx0); free(dw0); free(db0); free(dx); free(dw); free(db);
    case_free(&k);
}

Test(rnn_cells, ssru_backward_matches_finite_differences) { fd_cell(SSRU, 0); fd_cell(SSRU, 1); }
Test(rnn_cells, gru_backward_matches_finite_differences) { fd_cell(GRU, 0); fd_cell(GRU, 1); }
Test(rnn_cells, lstm_backward_matches_finite_differences) { fd_cell(LSTM, 0); fd_cell(LSTM, 1); }

/* fast vs reference, forward and backward, at one size */
static void fast_vs_ref(int G, int B, int T, int D, int with_state) {
    cell_case k;
    case_new(&k, G, B, T, D, with_state);
    size_t n = (size_t)B * T * D, nx = n * G, nw = (size_t)G * D * D, nb = (size_t)G * D;
    float *h[2], *c[2], *g[2], *dx[2], *dw[2], *db[2];
    float *dx0 = randn(nx, 1), *dw0 = randn(nw, 1), *db0 = randn(nb, 1);
    for (int f = 0; f < 2; f++) {
        h[f] = s2s_xmalloc(n * sizeof(float)); c[f] = s2s_xmalloc(n * sizeof(float));
        g[f] = s2s_xcalloc(4 * n, sizeof(float));
        dx[f] = s2s_xmalloc(nx * sizeof(float)); memcpy(dx[f], dx0, nx * sizeof(float));
        dw[f] = s2s_xmalloc(nw * sizeof(float)); memcpy(dw[f], dw0, nw * sizeof(float));
        db[f] = s2s_xmalloc(nb * sizeof(float)); memcpy(db[f], db0, nb * sizeof(float));
        cell_fwd(f, &k, h[f], c[f], g[f]);
        cell_bwd(f, &k, dx[f], dw[f], db[f], h[0], c[0], g[0]); /* both from the reference forward */
    }
    char what[96];
    snprintf(what, sizeof what, "%s B=%d T=%d D=%d%s", cell_name(G), B, T, D, with_state ? " state" : "");
    check_close(what, h[1], h[0], n, 1e-5, 1e-4);
    if (G != GRU) check_close(what, c[1], c[0], n, 1e-5, 1e-4);
    if (G != SSRU) check_close(what, g[1], g[0], 4 * n, 1e-5, 1e-4);
    check_close(what, dx[1], dx[0], nx, 1e-4, 1e-4);
    if (G != SSRU) {
        check_close(what, dw[1], dw[0], nw, 1e-4, 1e-4);
        check_close(what, db[1], db[0], nb, 1e-4, 1e-4);
    }
    for (int f = 0; f < 2; f++) { free(h[f]); free(c[f]); free(g[f]); free(dx[f]); free(dw[f]); free(db[f]); }
    free(dx0); free(dw0); free(db0);
    case_free(&k);
}

static void fast_vs_ref_all(int G) {
    fast_vs_ref(G, 1, 1, 3, 0);   /* one decoding step */
    fast_vs_ref(G, 1, 1, 3, 1);
    fast_vs_ref(G, 3, 7, 70, 0);  /* crosses a 64-column block */
    fast_vs_ref(G, 2, 5, 9, 1);
    fast_vs_ref(G, 66, 2, 250, 1); /* the OpenMP paths */
}

Test(rnn_cells, ssru_fast_matches_reference) { fast_vs_ref_all(SSRU); }
Test(rnn_cells, gru_fast_matches_reference) { fast_vs_ref_all(GRU); }
Test(rnn_cells, lstm_fast_matches_reference) { fast_vs_ref_all(LSTM); }

/* The SSRU by hand: one unit, three steps. */
Test(rnn_cells, ssru_anchor_by_hand) {
    /* xp [1, 3, 2]: (forget logit, candidate) per step */
    const float xp[6] = {0.0f, 2.0f, 1.0f, -1.0f, -20.0f, -3.0f};
    float h[3], c[3];
    s2s_kref_ssru_fwd(h, c, xp, NULL, 1, 3, 1);
    double f1 = 1.0 / (1.0 + exp(-1.0));
    double c0 = 0.5 * 0 + 0.5 * 2.0, c1 = f1 * c0 + (1 - f1) * -1.0;
    double c2 = (1.0 / (1.0 + exp(20.0))) * c1 + (1 - 1.0 / (1.0 + exp(20.0))) * -3.0;
    cr_assert_float_eq(c[0], c0, 1e-6); cr_assert_float_eq(c[1], c1, 1e-6); cr_assert_float_eq(c[2], c2, 1e-6);
    cr_assert_float_eq(h[0], 1.0, 1e-6);
    cr_assert_float_eq(h[1], c1 > 0 ? c1 : 0.0, 1e-6);
    cr_assert_float_eq(h[2], 0.0, 1e-6);
}

/* ------------------------------------------------------------------------------------
 * models
 * ---------------------------------------------------------------------------------- */

/* every recurrent kind, with and without the FFN */
static const struct { const char *kind; int ffn; } KINDS[] = {
    {"ssru", 1}, {"ssru", 0}, {"gru", 1}, {"gru", 0}, {"lstm", 1}, {"lstm", 0},
};
#define N_KINDS ((int)(sizeof KINDS / sizeof KINDS[0]))

/* Tiny random model of a decoder kind (tokenizers from the reverse task). */
static s2s_model *rnn_model(const char *kind, int ffn, int D, int H, int F, int Le, int Ld, uint64_t seed) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = D; c.n_heads = H; c.d_ff = F; c.enc_layers = Le; c.dec_layers = Ld;
    c.max_len = 64;
    snprintf(c.decoder, sizeof c.decoder, "%s", kind);
    c.dec_ffn = ffn;
    s2s_model *m = tu_model_for(c, seed);
    tu_perturb_vectors(m, seed); /* random biases and LayerNorm parameters: every path carries signal */
    return m;
}

static double batch_loss(s2s_graph *g, s2s_model *m, int grad) {
    s2s_graph_reset(g);
    s2s_graph_set_grad(g, grad);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    s2s_tensor *loss = s2s_xent(g, lg, TU_TOUT, 0.1f, S2S_PAD, NULL);
    if (grad) s2s_graph_backward(g, loss);
    return loss->data[0];
}

/* Weight names and shapes of docs/MODEL.md, and the parameter count. */
Test(rnn_model, weight_names_and_shapes) {
    for (int k = 0; k < N_KINDS; k++) {
        s2s_model *m = rnn_model(KINDS[k].kind, KINDS[k].ffn, 16, 2, 24, 1, 2, 3);
        int G = s2s_config_rnn_gates(&m->cfg), D = 16;
        s2s_tensor *wx = s2s_model_param(m, "dec.1.rnn.wx.weight"), *bx = s2s_model_param(m, "dec.1.rnn.wx.bias");
        cr_assert(wx && wx->shape[0] == G * D && wx->shape[1] == D, "%s", KINDS[k].kind);
        cr_assert(bx && bx->n == (size_t)G * D);
        s2s_tensor *wh = s2s_model_param(m, "dec.1.rnn.wh.weight");
        if (G == 2) cr_assert_null(wh);
        else cr_assert(wh && wh->shape[0] == G * D && wh->shape[1] == D && s2s_model_param(m, "dec.1.rnn.wh.bias"));
        cr_assert_null(s2s_model_param(m, "dec.0.self.q.weight"));
        cr_assert_not_null(s2s_model_param(m, "dec.1.cross.k.weight"));
        cr_assert_eq(s2s_model_param(m, "dec.1.fc1.weight") != NULL, KINDS[k].ffn);
        cr_assert_eq(s2s_model_param(m, "dec.1.ln3.weight") != NULL, KINDS[k].ffn);
        /* decoder layer: ln1, rnn, ln2, cross (4 D x D + biases), [ln3, fc1, fc2] */
        size_t per = 2 * D + (size_t)G * D * (D + 1) * (G > 2 ? 2 : 1) + 2 * D + 4 * (size_t)D * (D + 1);
        if (KINDS[k].ffn) per += 2 * D + (size_t)24 * (D + 1) + (size_t)D * (24 + 1);
        size_t enc = 2 * D + 4 * (size_t)D * (D + 1) + 2 * D + (size_t)24 * (D + 1) + (size_t)D * (24 + 1) + 2 * D;
        size_t emb = (size_t)(m->cfg.src_vocab + m->cfg.tgt_vocab) * D;
        cr_assert_eq(s2s_model_param_count(m), emb + enc + 2 * per + 2 * D, "%s ffn %d", KINDS[k].kind, KINDS[k].ffn);
        s2s_model_free(m);
    }
}

Test(rnn_model, finite_difference_gradients_whole_model) {
    for (int k = 0; k < N_KINDS; k++) {
        s2s_model *m = rnn_model(KINDS[k].kind, KINDS[k].ffn, 8, 2, 12, 1, 2, 3 + k);
        m->cfg.activation = S2S_ACT_GELU;
        s2s_graph *g = s2s_graph_new();
        batch_loss(g, m, 1);
        uint64_t rng = 99;
        for (int p = 0; p < m->n_params; p++) {
            s2s_tensor *t = m->params[p].t;
            int dec = strncmp(m->params[p].name, "dec.", 4) == 0;
            for (int r = 0; r < (dec ? 4 : 1); r++) {
                size_t j = s2s_rng_next(&rng) % t->n;
                /* a small step: the SSRU's ReLU has a kink a larger one can cross */
                float old = t->data[j], h = 1e-3f;
                t->data[j] = old + h;
                double lp = batch_loss(g, m, 0);
                t->data[j] = old - h;
                double lm = batch_loss(g, m, 0);
                t->data[j] = old;
                double fd = (lp - lm) / (2 * h), an = t->grad[j];
                cr_assert(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s ffn %d: %s[%zu]: analytic %.6g vs numeric %.6g",
                          KINDS[k].kind, KINDS[k].ffn, m->params[p].name, j, an, fd);
            }
        }
        s2s_graph_free(g);
        s2s_model_free(m);
    }
}

/* Step-by-step logits equal the teacher-forced forward logits, for every kind. */
Test(rnn_model, incremental_decoding_matches_forward) {
    for (int k = 0; k < N_KINDS; k++) {
        s2s_model *m = rnn_model(KINDS[k].kind, KINDS[k].ffn, 16, 4, 24, 2, 3, 5 + k);
        s2s_graph *g = s2s_graph_new();
        s2s_graph_set_grad(g, 0);
        s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
        s2s_tensor *lg = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
        int V = m->cfg.tgt_vocab;
        const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
        cr_assert_not_null(ops);
        cr_assert_str_eq(ops->kind, KINDS[k].kind);
        void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 8);
        float *out = malloc(sizeof(float) * 2 * V);
        for (int t = 0; t < 4; t++) {
            int32_t tok[2] = {TU_TIN[t], TU_TIN[4 + t]};
            ops->step(st, out, tok, 2);
            for (int b = 0; b < 2; b++) {
                double d = tu_max_diff(out + (size_t)b * V, lg->data + ((size_t)b * 4 + t) * V, (size_t)V);
                cr_assert(d < 1e-4, "%s ffn %d step %d row %d: max diff %g", KINDS[k].kind, KINDS[k].ffn, t, b, d);
            }
        }
        ops->free(st);
        free(out);
        s2s_graph_free(g);
        s2s_model_free(m);
    }
}

/* The state is a fixed size: the same bytes per row after 1 or 1000 steps. */
Test(rnn_model, state_does_not_grow_with_length) {
    for (int k = 0; k < N_KINDS; k += 2) {
        s2s_model *m = rnn_model(KINDS[k].kind, 1, 16, 2, 24, 1, 2, 7);
        const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
        cr_assert_eq(ops->state_bytes(m, 5, 1), ops->state_bytes(m, 5, 1000));
        cr_assert_eq(ops->start_bytes(m, 2, 5, 1, 10), ops->start_bytes(m, 2, 5, 1, 10000));
        s2s_model_free(m);
    }
}

/* select() reorders and duplicates rows: continuing after a permutation gives the
 * logits of the permuted prefixes. */
Test(rnn_model, select_reorders_rows) {
    for (int k = 0; k < N_KINDS; k++) {
        s2s_model *m = rnn_model(KINDS[k].kind, KINDS[k].ffn, 16, 2, 24, 1, 2, 8 + k);
        double d = tu_select_reorder_diff(m);
        cr_assert(d < 1e-5, "%s ffn %d: max diff %g", KINDS[k].kind, KINDS[k].ffn, d);
        s2s_model_free(m);
    }
}

/* Greedy output is the argmax chain of the full forward pass; beam search scores at
 * least as well as greedy (plain log-probability). */
Test(rnn_model, greedy_is_forward_argmax_and_beam_beats_it) {
    for (int k = 0; k < N_KINDS; k++) {
        s2s_model *m = rnn_model(KINDS[k].kind, KINDS[k].ffn, 16, 2, 24, 1, 2, 11 + k);
        s2s_graph *g = s2s_graph_new();
        s2s_graph_set_grad(g, 0);
        s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
        s2s_search_opts o;
        s2s_search_opts_default(&o);
        o.max_len = 6;
        o.len_ratio = 0;
        o.length_penalty = 0.0f;
        int32_t *out[2], *bo[2];
        int len[2], bl[2];
        float gs[2], bs[2];
        s2s_search(m, enc->data, TU_SLEN, 2, 5, &o, out, len, gs);
        o.beam = 4;
        s2s_search(m, enc->data, TU_SLEN, 2, 5, &o, bo, bl, bs);
        int V = m->cfg.tgt_vocab;
        for (int b = 0; b < 2; b++) {
            int32_t tin[8] = {S2S_BOS};
            for (int t = 0; t < len[b]; t++) tin[t + 1] = out[b][t];
            int T = len[b] + 1;
            s2s_tensor *e1 = s2s_model_encode(g, m, TU_SRC + 5 * b, TU_SLEN + b, 1, 5, 0.0f);
            s2s_tensor *lg = s2s_model_decode_train(g, m, e1, TU_SLEN + b, tin, 1, T, 0.0f);
            for (int t = 0; t < T; t++) {
                if (t == len[b] && len[b] == o.max_len) break; /* stopped by the length limit */
                const float *r = lg->data + (size_t)t * V;
                int best = 0;
                for (int v = 1; v < V; v++) if (r[v] > r[best]) best = v;
                int want = t < len[b] ? out[b][t] : S2S_EOS;
                cr_assert_eq(best, want, "%s: sentence %d step %d: argmax %d, search chose %d", KINDS[k].kind, b, t,
                             best, want);
            }
            cr_assert(bs[b] >= gs[b] - 1e-4, "%s: sentence %d: beam %g < greedy %g", KINDS[k].kind, b, bs[b], gs[b]);
            free(out[b]); free(bo[b]);
        }
        s2s_graph_free(g);
        s2s_model_free(m);
    }
}

/* logits of the first two steps of sentence 0, for comparing models */
static void first_logits(const s2s_model *m, float *out /* [2, V] */) {
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 4);
    int V = m->cfg.tgt_vocab;
    float *tmp = malloc(sizeof(float) * 2 * V);
    int32_t t0[2] = {1, 1}, t1[2] = {5, 4};
    ops->step(st, tmp, t0, 2);
    memcpy(out, tmp, sizeof(float) * V);
    ops->step(st, tmp, t1, 2);
    memcpy(out + V, tmp, sizeof(float) * V);
    ops->free(st);
    free(tmp);
    s2s_graph_free(g);
}

Test(rnn_model, checkpoint_round_trip_fp32_and_fp16) {
    char *dir = tu_tmpdir(), *p32 = tu_path(dir, "m32.safetensors"), *p16 = tu_path(dir, "m16.safetensors");
    for (int k = 0; k < N_KINDS; k++) {
        s2s_model *m = rnn_model(KINDS[k].kind, KINDS[k].ffn, 16, 2, 24, 1, 2, 17 + k);
        char err[512];
        cr_assert_eq(s2s_model_save(m, p32, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
        cr_assert_eq(s2s_model_save(m, p16, NULL, 0, NULL, 0, 1, err, sizeof err), 0, "%s", err);
        int V = m->cfg.tgt_vocab;
        float *ref = malloc(sizeof(float) * 2 * V), *got = malloc(sizeof(float) * 2 * V);
        first_logits(m, ref);
        for (int f16 = 0; f16 < 2; f16++)
            for (int trainable = 0; trainable < 2; trainable++) {
                s2s_model *l = s2s_model_load(f16 ? p16 : p32, trainable, err, sizeof err);
                cr_assert_not_null(l, "%s", err);
                cr_assert_str_eq(l->cfg.decoder, KINDS[k].kind);
                cr_assert_eq(l->cfg.dec_ffn, KINDS[k].ffn);
                cr_assert_eq(l->n_params, m->n_params);
                for (int i = 0; i < m->n_params; i++) {
                    cr_assert_str_eq(l->params[i].name, m->params[i].name);
                    double d = tu_max_diff(l->params[i].t->data, m->params[i].t->data, m->params[i].t->n);
                    cr_assert(d <= (f16 ? 2e-3 : 0.0), "%s: diff %g", m->params[i].name, d);
                }
                first_logits(l, got);
                double d = tu_max_diff(got, ref, (size_t)2 * V);
                /* fp32: the same weights; an inference model (trainable 0) multiplies through
                 * its packed copy (kernels_gemm.c), so the sums round differently */
                cr_assert(d <= (f16 ? 0.1 : trainable ? 0.0 : 1e-5), "%s ffn %d fp16 %d: logits differ by %g",
                          KINDS[k].kind, KINDS[k].ffn, f16, d);
                s2s_model_free(l);
            }
        free(ref); free(got);
        s2s_model_free(m);
    }
    tu_rmrf(dir);
    free(dir); free(p32); free(p16);
}

Test(rnn_model, config_json_and_checks) {
    s2s_config c;
    s2s_config_default(&c);
    c.src_vocab = c.tgt_vocab = 20;
    char err[256];
    /* Transformer configs are written as before (no dec_ffn key); older files without it load as 1 */
    char *j = s2s_config_to_json(&c);
    cr_assert_null(strstr(j, "dec_ffn"), "%s", j);
    s2s_config r;
    cr_assert_eq(s2s_config_from_json(&r, j, strlen(j), err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.dec_ffn, 1);
    free(j);
    strcpy(c.decoder, "lstm");
    c.dec_ffn = 0;
    j = s2s_config_to_json(&c);
    cr_assert(strstr(j, "\"decoder\":\"lstm\",\"dec_ffn\":0") != NULL, "%s", j);
    cr_assert_eq(s2s_config_from_json(&r, j, strlen(j), err, sizeof err), 0, "%s", err);
    cr_assert_eq(r.dec_ffn, 0);
    cr_assert_str_eq(r.decoder, "lstm");
    free(j);
    const char *bad = "{\"d_model\":8,\"n_heads\":2,\"d_ff\":8,\"enc_layers\":1,\"dec_layers\":1,\"src_vocab\":9,"
                      "\"tgt_vocab\":9,\"max_len\":8,\"share_src_emb\":0,\"activation\":\"relu\",\"decoder\":\"rnn\"}";
    cr_assert_neq(s2s_config_from_json(&r, bad, strlen(bad), err, sizeof err), 0);
    cr_assert(strstr(err, "unknown decoder kind 'rnn'"), "%s", err);
    strcpy(c.decoder, "transformer");
    cr_assert_neq(s2s_config_check(&c, err, sizeof err), 0);
    cr_assert(strstr(err, "dec_ffn"), "%s", err);
    strcpy(c.decoder, "gru");
    c.dec_ffn = 2;
    cr_assert_neq(s2s_config_check(&c, err, sizeof err), 0);
    cr_assert(strstr(err, "dec_ffn = 2"), "%s", err);
}

/* A distillation student: the teacher's tokenizers, embeddings and encoder, a new decoder. */
Test(rnn_model, student_copies_encoder_not_decoder) {
    s2s_model *t = rnn_model("transformer", 1, 16, 2, 24, 2, 3, 31);
    s2s_config want = t->cfg;
    strcpy(want.decoder, "ssru");
    want.dec_layers = 1;
    want.dec_ffn = 0;
    char err[256];
    struct s2s_tokenizer *tok = t->tgt_tok;
    s2s_model *s = s2s_model_student(t, &want, 5, err, sizeof err);
    cr_assert_not_null(s, "%s", err);
    cr_assert_eq(s->tgt_tok, tok);
    cr_assert_null(t->tgt_tok);
    cr_assert_str_eq(s->cfg.decoder, "ssru");
    cr_assert_eq(s->cfg.dec_layers, 1);
    cr_assert_eq(s->cfg.enc_layers, 2);
    int copied = 0;
    for (int i = 0; i < s->n_params; i++) {
        const char *nm = s->params[i].name;
        s2s_tensor *a = s->params[i].t, *b = s2s_model_param(t, nm);
        int same = b && b->n == a->n && memcmp(a->data, b->data, a->n * sizeof(float)) == 0;
        if (strncmp(nm, "dec.", 4) != 0) { cr_assert(same, "%s should be the teacher's", nm); copied++; }
        else if (b && b->ndim == 2) cr_assert(!same, "%s should be new", nm);
    }
    cr_assert(copied >= 2 + 16 * 2 + 2);
    /* an invalid student config leaves the teacher intact */
    want.dec_ffn = 5;
    cr_assert_null(s2s_model_student(t, &want, 5, err, sizeof err));
    s2s_model_free(s);
    s2s_model_free(t);
}

/* ------------------------------------------------------------------------------------
 * training end to end
 * ---------------------------------------------------------------------------------- */

/* the last "dev loss X" of out_dir/train.log */
static double last_dev_loss(const char *out_dir) {
    char *logp = tu_path(out_dir, "train.log");
    FILE *f = fopen(logp, "r");
    cr_assert_not_null(f);
    char line[512];
    double dl = 99;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "dev loss ");
        if (p) dl = atof(p + 9);
    }
    fclose(f);
    free(logp);
    return dl;
}

static void train_opts(s2s_train_opts *o, const char *dir, const char *out, const char *kind, int ffn) {
    tu_train_opts(o, dir, out);
    snprintf(o->model.decoder, sizeof o->model.decoder, "%s", kind);
    o->model.dec_ffn = ffn;
    o->lr = 8e-3f; o->warmup = 30; o->dropout = 0.0f; o->label_smoothing = 0.0f;
    o->tokens_per_batch = 400;
    o->max_steps = 200; o->eval_every = 200; o->eval_max = 30;
}


/* The stated target: 200 steps of a 1+1-layer D=32 model of each recurrent kind on
 * the reverse task bring the dev cross-entropy below 1.0 nats/token (an untrained
 * model: ~2.6; measured: SSRU 0.45, GRU 0.66, LSTM 0.72). Then the trained model decodes through the public API, and a
 * student of it (--init with another decoder kind) starts from its encoder. */
Test(rnn_train, each_kind_learns_the_reverse_task, .timeout = 240) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 1500, 1);
    tu_write_reverse_task(dir, "dev", 40, 2);
    const char *kinds[3] = {"ssru", "gru", "lstm"};
    char err[512];
    for (int k = 0; k < 3; k++) {
        s2s_train_opts o;
        train_opts(&o, dir, kinds[k], kinds[k], k != 1);
        cr_assert_eq(s2s_train(&o, err, sizeof err), 0, "%s: %s", kinds[k], err);
        double dl = last_dev_loss(o.out_dir);
        cr_log_info("%s: dev loss after %d steps: %.4f", kinds[k], o.max_steps, dl);
        cr_assert(dl < 1.0, "%s: dev loss %.4f should be < 1.0", kinds[k], dl);
        char *last = tu_path(o.out_dir, "last.safetensors");
        s2s_model *m = s2s_model_load(last, 0, err, sizeof err);
        cr_assert_not_null(m, "%s", err);
        cr_assert_str_eq(m->cfg.decoder, kinds[k]);
        const char *in[3] = {"abc", "", "hgfedcba"};
        char *out[3];
        s2s_translate_opts to;
        s2s_translate_opts_default(&to);
        to.beam = 3;
        cr_assert_eq(s2s_translate(m, in, 3, &to, out, NULL, err, sizeof err), 0, "%s", err);
        cr_assert_str_eq(out[1], "");
        cr_log_info("%s: abc -> %s; hgfedcba -> %s", kinds[k], out[0], out[2]);
        for (int i = 0; i < 3; i++) free(out[i]);
        if (k == 0) {
            /* student of the SSRU model: a GRU decoder, the SSRU model's encoder */
            s2s_train_opts so;
            train_opts(&so, dir, "student", "gru", 0);
            so.init = s2s_xstrdup(last);
            so.student = 1;
            so.max_steps = 5;
            so.eval_every = 0;
            cr_assert_eq(s2s_train(&so, err, sizeof err), 0, "%s", err);
            char *sl = tu_path(so.out_dir, "last.safetensors");
            s2s_model *s = s2s_model_load(sl, 0, err, sizeof err);
            cr_assert_not_null(s, "%s", err);
            cr_assert_str_eq(s->cfg.decoder, "gru");
            cr_assert_eq(s->cfg.dec_ffn, 0);
            cr_assert_not_null(s2s_model_param(s, "dec.0.rnn.wh.weight"));
            free(sl);
            s2s_model_free(s);
            tu_train_opts_free(&so);
        }
        s2s_model_free(m);
        free(last);
        tu_train_opts_free(&o);
    }
    tu_rmrf(dir);
    free(dir);
}

/* ------------------------------------------------------------------------------------
 * command line
 * ---------------------------------------------------------------------------------- */

/* `s2s train --decoder K --dec-ffn 0`, `s2s info` shows the kind, `s2s translate` decodes;
 * bad values give one-line errors. */
Test(rnn_cli, train_info_translate) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 200, 5);
    char *cmd, *out;
    cr_assert(asprintf(&cmd, "%s train --train-src %s/train.src --train-tgt %s/train.tgt -o %s/run --quiet "
                             "--d-model 16 --heads 2 --ff 16 --enc-layers 1 --dec-layers 2 --max-len 32 "
                             "--decoder lstm --dec-ffn 0 --max-steps 3 --eval-every 0",
                       tu_bin(), dir, dir, dir) > 0);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    free(cmd); free(out);
    cr_assert(asprintf(&cmd, "%s info -m %s/run/last.safetensors", tu_bin(), dir) > 0);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    cr_assert(strstr(out, "decoder 'lstm'") && strstr(out, "without FFN"), "%s", out);
    free(cmd); free(out);
    cr_assert(asprintf(&cmd, "printf 'abc\\n\\nde\\n' | %s translate -q --beam 2 -m %s/run/last.safetensors", tu_bin(), dir) > 0);
    cr_assert_eq(tu_run(cmd, &out), 0, "%s", out);
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    cr_assert_eq(lines, 3, "%s", out);
    free(cmd); free(out);
    const char *bad[2][2] = {{"--decoder rnn", "--decoder must be transformer, ssru, gru or lstm"},
                             {"--dec-ffn 0", "dec_ffn = 0 needs a recurrent decoder"}};
    for (int i = 0; i < 2; i++) {
        cr_assert(asprintf(&cmd, "%s train --train-src %s/train.src --train-tgt %s/train.tgt -o %s/bad --quiet %s",
                           tu_bin(), dir, dir, dir, bad[i][0]) > 0);
        int st = tu_run(cmd, &out);
        cr_assert(st != 0 && st < 128, "%s: status %d", bad[i][0], st);
        cr_assert(strstr(out, bad[i][1]) != NULL, "%s: %s", bad[i][0], out);
        char *nl = strchr(out, '\n');
        cr_assert(nl == NULL || nl[1] == '\0', "one line: %s", out);
        free(cmd); free(out);
    }
    tu_rmrf(dir);
    free(dir);
}
