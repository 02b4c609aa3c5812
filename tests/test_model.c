/* test_model.c - the Transformer: finite-difference gradients through the whole
 * model, incremental decoding == teacher-forced forward, beam reordering,
 * greedy search, checkpoint round trips and bad checkpoint files. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "decoder.h"
#include "decoder_common.h"
#include "graph.h"
#include "kernels.h"
#include "model.h"
#include "safetensors.h"
#include "search.h"
#include "test_util.h"
#include "tokenizer.h"

static double batch_loss(s2s_graph *g, s2s_model *m, int grad) {
    s2s_graph_reset(g);
    s2s_graph_set_grad(g, grad);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    s2s_tensor *loss = s2s_xent(g, lg, TU_TOUT, 0.1f, S2S_PAD, NULL);
    if (grad) s2s_graph_backward(g, loss);
    return loss->data[0];
}

Test(model, finite_difference_gradients_whole_model) {
    s2s_model *m = tu_tiny_model(8, 2, 12, 1, 1, 3);
    m->cfg.activation = S2S_ACT_GELU;
    s2s_graph *g = s2s_graph_new();
    batch_loss(g, m, 1);
    uint64_t rng = 99;
    int checked = 0;
    for (int p = 0; p < m->n_params; p++) {
        s2s_tensor *t = m->params[p].t;
        for (int k = 0; k < 3; k++) {
            size_t j = s2s_rng_next(&rng) % t->n;
            float old = t->data[j], h = 1e-2f;
            t->data[j] = old + h;
            double lp = batch_loss(g, m, 0);
            t->data[j] = old - h;
            double lm = batch_loss(g, m, 0);
            t->data[j] = old;
            double fd = (lp - lm) / (2 * h), an = t->grad[j];
            cr_assert(fabs(fd - an) <= 2e-3 + 3e-2 * fabs(an), "%s[%zu]: analytic %.6g vs numeric %.6g",
                      m->params[p].name, j, an, fd);
            checked++;
        }
    }
    cr_assert(checked > 50);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Step-by-step logits of the decoder equal the teacher-forced logits. */
Test(model, incremental_decoding_matches_forward) {
    s2s_model *m = tu_tiny_model(16, 4, 24, 2, 3, 5);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, TU_SLEN, TU_TIN, 2, 4, 0.0f);
    int V = m->cfg.tgt_vocab;
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    void *st = ops->start(m, enc->data, TU_SLEN, 2, 5, 1, 8);
    float *out = malloc(sizeof(float) * 2 * V);
    for (int t = 0; t < 4; t++) {
        int32_t tok[2] = {TU_TIN[t], TU_TIN[4 + t]};
        ops->step(st, out, tok, 2);
        for (int b = 0; b < 2; b++) {
            const float *ref = lg->data + ((size_t)b * 4 + t) * V;
            double d = tu_max_diff(out + (size_t)b * V, ref, (size_t)V);
            cr_assert(d < 1e-4, "step %d row %d: max diff %g", t, b, d);
        }
    }
    ops->free(st);
    free(out);
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* select() reorders and duplicates rows: continuing after a permutation gives
 * the logits of the permuted prefixes. */
Test(model, decoder_select_reorders_rows) {
    s2s_model *m = tu_tiny_model(16, 2, 24, 1, 2, 8);
    double d = tu_select_reorder_diff(m);
    cr_assert(d < 1e-5, "max diff %g", d);
    s2s_model_free(m);
}

/* The decoders' one-query attention (s2s_dec_attend_at) over keys spread through a
 * time-major cache with a slot table, against the reference attention kernel on the same
 * keys laid out contiguously; Dh 16 (the AVX-512 path) and 6 (plain loops). */
Test(model, decoder_attention_over_slot_tables) {
    for (int c = 0; c < 2; c++) {
        const int H = 3, Dh = c ? 6 : 16, D = H * Dh, N = 5, T = 7, S = 9; /* S slots per step */
        uint64_t rng = 41 + c;
        float *K = malloc(sizeof(float) * T * S * D), *V = malloc(sizeof(float) * T * S * D);
        float *q = malloc(sizeof(float) * N * D), *a = malloc(sizeof(float) * N * D), *p = malloc(sizeof(float) * N * H * T);
        for (int i = 0; i < T * S * D; i++) { K[i] = s2s_rng_normal(&rng); V[i] = s2s_rng_normal(&rng); }
        for (int i = 0; i < N * D; i++) q[i] = s2s_rng_normal(&rng);
        int32_t slots[5 * 7], lens[5] = {7, 1, 4, 0, 6}, blk[5] = {0, 1, 2, 3, 4};
        for (int i = 0; i < N * T; i++) slots[i] = (int32_t)(s2s_rng_next(&rng) % S);
        s2s_dec_attend_at(a, p, q, K, V, (size_t)S * D, D, slots, T, blk, NULL, lens, T, N, H, Dh, T);
        float *kr = malloc(sizeof(float) * T * D), *vr = malloc(sizeof(float) * T * D), *o = malloc(sizeof(float) * D),
              *pr = malloc(sizeof(float) * H * T);
        for (int r = 0; r < N; r++) {
            for (int j = 0; j < T; j++) {
                memcpy(kr + (size_t)j * D, K + ((size_t)j * S + slots[r * T + j]) * D, sizeof(float) * D);
                memcpy(vr + (size_t)j * D, V + ((size_t)j * S + slots[r * T + j]) * D, sizeof(float) * D);
            }
            s2s_kref_attention_fwd(o, pr, q + (size_t)r * D, kr, vr, &lens[r], 0, 1, H, 1, T, Dh);
            double e = tu_rel_err(a + (size_t)r * D, o, (size_t)D, 1e-5, 1e-4);
            cr_assert(e <= 1.0, "Dh %d row %d (len %d): max diff %g", Dh, r, lens[r], tu_max_diff(a + (size_t)r * D, o, (size_t)D));
        }
        free(K); free(V); free(q); free(a); free(p); free(kr); free(vr); free(o); free(pr);
    }
}

/* An inference model (loaded, not trainable) takes other paths than the trainable one: the
 * encoder without padding rows, linear layers on weights packed once (kernels_gemm.c),
 * fused ReLU / residual adds. Same encoder output (zero padding rows), same step logits
 * through select(), same search results. */
Test(model, inference_model_paths_match_trainable) {
    s2s_model *m = tu_tiny_model(64, 4, 96, 2, 2, 23);
    tu_perturb_vectors(m, 24);
    char *dir = tu_tmpdir(), *path = tu_path(dir, "m.safetensors");
    char err[256];
    cr_assert_eq(s2s_model_save(m, path, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    s2s_model *f = s2s_model_load(path, 0, err, sizeof err);
    cr_assert_not_null(f, "%s", err);
    static const int32_t src[21] = {4, 5, 6, 7, 8, 9, 2, 8, 9, 2, 0, 0, 0, 0, 6, 5, 4, 2, 0, 0, 0};
    static const int32_t slen[3] = {7, 3, 4};
    const int B = 3, Ts = 7, D = 64, V = m->cfg.tgt_vocab;
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *em = s2s_model_encode(g, m, src, slen, B, Ts, 0.0f);
    s2s_tensor *ef = s2s_model_encode(g, f, src, slen, B, Ts, 0.0f);
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Ts; t++) {
            const float *rm = em->data + ((size_t)b * Ts + t) * D, *rf = ef->data + ((size_t)b * Ts + t) * D;
            if (t < slen[b]) cr_assert(tu_rel_err(rf, rm, D, 1e-5, 1e-4) <= 1.0, "encoder row %d,%d: diff %g", b, t, tu_max_diff(rf, rm, D));
            else for (int d = 0; d < D; d++) cr_assert(rf[d] == 0.0f, "padding row %d,%d not zero", b, t);
        }
    const s2s_decoder_ops *ops = s2s_decoder_ops_for(m);
    void *sm = ops->start(m, em->data, slen, B, Ts, 2, 8), *sf = ops->start(f, ef->data, slen, B, Ts, 2, 8);
    float *lm = malloc(sizeof(float) * 6 * V), *lf = malloc(sizeof(float) * 6 * V);
    int32_t steps[4][6] = {{1, 1, 1, 1, 1, 1}, {4, 5, 6, 7, 8, 9}, {9, 8, 7, 6, 5, 4}, {5, 5, 6, 6, 7, 7}};
    int32_t rows[5] = {1, 1, 3, 5, 4};
    int N = 6;
    for (int t = 0; t < 4; t++) {
        if (t == 3) { ops->select(sm, rows, 5); ops->select(sf, rows, 5); N = 5; }
        ops->step(sm, lm, steps[t], N);
        ops->step(sf, lf, steps[t], N);
        double e = tu_rel_err(lf, lm, (size_t)N * V, 1e-4, 1e-3);
        cr_assert(e <= 1.0, "step %d: logits differ by %g", t, tu_max_diff(lf, lm, (size_t)N * V));
    }
    ops->free(sm); ops->free(sf);
    cr_assert_not_null(f->dec[0].fc1.w->packed, "the inference model's weights should have been packed");
    cr_assert_null(m->dec[0].fc1.w->packed, "a trainable model's weights are never packed");
    for (int beam = 1; beam <= 3; beam += 2) {
        s2s_search_opts o;
        s2s_search_opts_default(&o);
        o.beam = beam;
        o.max_len = 6;
        int32_t *om[3], *of[3];
        int nm[3], nf[3];
        s2s_search(m, em->data, slen, B, Ts, &o, om, nm, NULL);
        s2s_search(f, ef->data, slen, B, Ts, &o, of, nf, NULL);
        for (int b = 0; b < B; b++) {
            cr_assert(nm[b] == nf[b] && memcmp(om[b], of[b], sizeof(int32_t) * (size_t)nm[b]) == 0,
                      "beam %d sentence %d: different outputs", beam, b);
            free(om[b]); free(of[b]);
        }
    }
    free(lm); free(lf);
    s2s_graph_free(g);
    s2s_model_free(f); s2s_model_free(m);
    tu_rmrf(dir);
    free(dir); free(path);
}

/* Greedy search output is the argmax chain of the full forward pass; beam 1 == greedy. */
Test(model, greedy_search_is_forward_argmax) {
    s2s_model *m = tu_tiny_model(16, 2, 24, 1, 2, 11);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_search_opts o;
    s2s_search_opts_default(&o);
    o.max_len = 6;
    o.len_ratio = 0;
    int32_t *out[2];
    int len[2];
    s2s_search(m, enc->data, TU_SLEN, 2, 5, &o, out, len, NULL);
    int V = m->cfg.tgt_vocab;
    for (int b = 0; b < 2; b++) {
        int32_t tin[8] = {S2S_BOS};
        for (int t = 0; t < len[b]; t++) tin[t + 1] = out[b][t];
        int T = len[b] + 1;
        s2s_tensor *e1 = s2s_model_encode(g, m, TU_SRC + 5 * b, TU_SLEN + b, 1, 5, 0.0f);
        s2s_tensor *lg = s2s_model_decode_train(g, m, e1, TU_SLEN + b, tin, 1, T, 0.0f);
        for (int t = 0; t < T; t++) {
            const float *r = lg->data + (size_t)t * V;
            int best = 0;
            for (int v = 1; v < V; v++) if (r[v] > r[best]) best = v;
            int want = t < len[b] ? out[b][t] : S2S_EOS;
            if (t == len[b] && len[b] == o.max_len) break; /* stopped by the length limit */
            cr_assert_eq(best, want, "sentence %d step %d: argmax %d, search chose %d", b, t, best, want);
        }
    }
    int32_t *bo[2];
    int bl[2];
    o.beam = 1;
    s2s_search(m, enc->data, TU_SLEN, 2, 5, &o, bo, bl, NULL);
    for (int b = 0; b < 2; b++) {
        cr_assert_eq(bl[b], len[b]);
        cr_assert(memcmp(bo[b], out[b], sizeof(int32_t) * (size_t)len[b]) == 0);
        free(out[b]); free(bo[b]);
    }
    s2s_graph_free(g);
    s2s_model_free(m);
}

/* Beam search finds a hypothesis at least as probable (length-normalised) as greedy. */
Test(model, beam_search_scores_at_least_greedy) {
    s2s_model *m = tu_tiny_model(16, 2, 24, 1, 2, 13);
    s2s_graph *g = s2s_graph_new();
    s2s_graph_set_grad(g, 0);
    s2s_tensor *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f);
    s2s_search_opts o;
    s2s_search_opts_default(&o);
    o.max_len = 8;
    o.length_penalty = 0.0f; /* plain log-probability: beam must not lose to greedy */
    int32_t *go[2], *bo[2];
    int gl[2], bl[2];
    float gs[2], bs[2];
    s2s_search(m, enc->data, TU_SLEN, 2, 5, &o, go, gl, gs);
    o.beam = 5;
    s2s_search(m, enc->data, TU_SLEN, 2, 5, &o, bo, bl, bs);
    for (int b = 0; b < 2; b++) {
        cr_assert(bs[b] >= gs[b] - 1e-4, "sentence %d: beam %g < greedy %g", b, bs[b], gs[b]);
        free(go[b]); free(bo[b]);
    }
    s2s_graph_free(g);
    s2s_model_free(m);
}

Test(model, checkpoint_round_trip_fp32_and_fp16) {
    s2s_model *m = tu_tiny_model(16, 2, 24, 1, 1, 17);
    char *dir = tu_tmpdir(), *p32 = tu_path(dir, "m32.safetensors"), *p16 = tu_path(dir, "m16.safetensors");
    char err[512];
    cr_assert_eq(s2s_model_save(m, p32, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_model_save(m, p16, NULL, 0, NULL, 0, 1, err, sizeof err), 0, "%s", err);
    for (int k = 0; k < 2; k++) {
        for (int trainable = 0; trainable < 2; trainable++) {
            s2s_model *l = s2s_model_load(k ? p16 : p32, trainable, err, sizeof err);
            cr_assert_not_null(l, "%s", err);
            cr_assert_eq(l->n_params, m->n_params);
            for (int i = 0; i < m->n_params; i++) {
                double d = tu_max_diff(l->params[i].t->data, m->params[i].t->data, m->params[i].t->n);
                cr_assert(d <= (k ? 2e-3 : 0.0), "%s: diff %g", m->params[i].name, d);
            }
            cr_assert_eq(s2s_tok_vocab_size(l->tgt_tok), m->cfg.tgt_vocab);
            s2s_model_free(l);
        }
    }
    tu_rmrf(dir);
    free(dir); free(p32); free(p16);
    s2s_model_free(m);
}

/* Write a model whose metadata or tensors are changed in one way. */
static void save_variant(const s2s_model *m, const char *path, const char *version, const char *cfg,
                         const char *drop, int nan_in) {
    s2s_st_writer *w = s2s_st_writer_new();
    char *cj = s2s_config_to_json(&m->cfg);
    s2s_st_writer_meta(w, "s2s.format_version", version);
    s2s_st_writer_meta(w, "s2s.config", cfg ? cfg : cj);
    float *copy = NULL;
    for (int i = 0; i < m->n_params; i++) {
        const s2s_tensor *t = m->params[i].t;
        if (drop && !strcmp(drop, m->params[i].name)) continue;
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        const float *data = t->data;
        if (nan_in && i == 3) {
            copy = malloc(t->n * sizeof(float));
            memcpy(copy, t->data, t->n * sizeof(float));
            copy[0] = NAN;
            data = copy;
        }
        s2s_st_writer_add(w, m->params[i].name, S2S_DT_F32, t->ndim, shape, data);
    }
    size_t n1, n2;
    char *b1 = s2s_tok_serialize(m->src_tok, &n1), *b2 = s2s_tok_serialize(m->tgt_tok, &n2);
    int64_t s1[1] = {(int64_t)n1}, s2[1] = {(int64_t)n2};
    s2s_st_writer_add(w, "tokenizer.src", S2S_DT_U8, 1, s1, b1);
    s2s_st_writer_add(w, "tokenizer.tgt", S2S_DT_U8, 1, s2, b2);
    char err[256];
    cr_assert_eq(s2s_st_writer_save(w, path, err, sizeof err), 0, "%s", err);
    s2s_st_writer_free(w);
    free(cj); free(b1); free(b2); free(copy);
}

static void expect_load_error(const char *path, const char *needle) {
    char err[512] = "";
    s2s_model *l = s2s_model_load(path, 0, err, sizeof err);
    cr_assert_null(l, "loading %s should fail", path);
    cr_assert(strstr(err, needle) != NULL, "error '%s' should mention '%s'", err, needle);
    cr_assert(strchr(err, '\n') == NULL, "one line");
}

Test(model, bad_checkpoints_give_one_line_errors) {
    s2s_model *m = tu_tiny_model(16, 2, 24, 1, 1, 19);
    char *dir = tu_tmpdir();
    char *p = tu_path(dir, "x.safetensors");
    save_variant(m, p, "2", NULL, NULL, 0);
    expect_load_error(p, "format version 2");
    save_variant(m, p, "1", NULL, "dec.0.fc1.weight", 0);
    expect_load_error(p, "missing tensor 'dec.0.fc1.weight'");
    save_variant(m, p, "1", NULL, NULL, 1);
    expect_load_error(p, "non-finite");
    char *cj = s2s_config_to_json(&m->cfg), *bad = strdup(cj);
    char *pos = strstr(bad, "\"d_ff\":24");
    cr_assert_not_null(pos);
    memcpy(pos, "\"d_ff\":25", 9);
    save_variant(m, p, "1", bad, NULL, 0);
    expect_load_error(p, "shape");
    save_variant(m, p, "1", "{\"d_model\": \"big\"}", NULL, 0);
    expect_load_error(p, "d_model must be an integer");
    /* truncated real checkpoint */
    char err[256];
    cr_assert_eq(s2s_model_save(m, p, NULL, 0, NULL, 0, 0, err, sizeof err), 0);
    FILE *f = fopen(p, "r+");
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(p, size / 2), 0);
    expect_load_error(p, "x.safetensors");
    cr_assert_eq(truncate(p, 0), 0);
    expect_load_error(p, "empty");
    expect_load_error("/nonexistent/model.safetensors", "/nonexistent/model.safetensors");
    tu_write(p, "this is not a model\n");
    expect_load_error(p, "x.safetensors");
    free(cj); free(bad);
    tu_rmrf(dir);
    free(dir); free(p);
    s2s_model_free(m);
}
