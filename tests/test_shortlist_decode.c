/* test_shortlist_decode.c - decoding with a vocabulary shortlist (shortlist.h: the
 * selection of shortlist_sel.c, search.c, every CPU decoder kind's set_vocab, the
 * translate API). A selection of every target id must decode exactly like no
 * shortlist (greedy with scores, beam; Transformer, SSRU, GRU, LSTM, T2R, DEED with and
 * without early exit and T2R + DEED; trainable fp32 models and fp16 inference models);
 * a smaller one must give the full logits at its ids and outputs drawn from it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "decoder.h"
#include "decoder_deed.h"
#include "graph.h"
#include "model.h"
#include "s2s.h"
#include "search.h"
#include "shortlist.h"
#include "test_util.h"
#include "tokenizer.h"

enum { K_TRANSFORMER, K_SSRU, K_GRU, K_LSTM, K_T2R, K_DEED, K_DEED_T2R, N_KINDS };
static const char *const KIND_NAME[N_KINDS] = {"transformer", "ssru", "gru", "lstm", "t2r", "deed", "deed+t2r"};

static s2s_model *kind_model(int kind, uint64_t seed) {
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 16; c.n_heads = 2; c.d_ff = 24; c.enc_layers = 1; c.dec_layers = 2;
    c.max_len = 64;
    if (kind >= K_SSRU && kind <= K_LSTM) snprintf(c.decoder, sizeof c.decoder, "%s", KIND_NAME[kind]);
    if (kind == K_T2R || kind == K_DEED_T2R) { c.dec_attn = S2S_ATTN_T2R; c.t2r_k = 4; }
    if (kind == K_DEED || kind == K_DEED_T2R) { c.multi_exit = 1; c.exit_rank = 4; }
    s2s_model *m = tu_model_for(c, seed);
    tu_perturb_vectors(m, seed);
    return m;
}

/* m saved in fp16 and loaded for inference (fp16 kernels, frozen packed weights) */
static s2s_model *inference_copy(const s2s_model *m) {
    char *dir = tu_tmpdir(), *p = tu_path(dir, "m.safetensors"), err[256];
    cr_assert_eq(s2s_model_save(m, p, NULL, 0, NULL, 0, 1, err, sizeof err), 0, "%s", err);
    s2s_model *h = s2s_model_load(p, 0, err, sizeof err);
    cr_assert_not_null(h, "%s", err);
    tu_rmrf(dir);
    free(dir); free(p);
    return h;
}

typedef struct {
    int32_t *out[2];
    int len[2];
    float score[2];
} result;

static void result_free(result *r) { free(r->out[0]); free(r->out[1]); }

/* Search TU_SRC (2 sentences) with beam, DEED exit options xo (or NULL), selection vs (or NULL). */
static result run_search(const s2s_model *m, const float *enc, int beam, const s2s_exit_opts *xo,
                         const s2s_vocab_sel *vs) {
    s2s_search_opts so;
    s2s_search_opts_default(&so);
    so.beam = beam;
    so.max_len = 12;
    so.exit = xo;
    so.vocab = vs;
    result r;
    s2s_search(m, enc, TU_SLEN, 2, 5, &so, r.out, r.len, r.score);
    return r;
}

static void expect_same(const result *a, const result *b, const char *what) {
    for (int s = 0; s < 2; s++) {
        cr_assert_eq(a->len[s], b->len[s], "%s: sentence %d length %d vs %d", what, s, a->len[s], b->len[s]);
        cr_assert(memcmp(a->out[s], b->out[s], (size_t)a->len[s] * sizeof(int32_t)) == 0, "%s: sentence %d differs", what, s);
        cr_assert(a->score[s] == b->score[s], "%s: sentence %d score %.9g vs %.9g", what, s, a->score[s], b->score[s]);
    }
}

/* Every decoder kind, trainable and inference, greedy and beam, DEED with and without
 * early exit (both state modes): the all-ids selection changes nothing, bit for bit. */
Test(shortlist_decode, all_ids_selection_decodes_exactly_like_none) {
    for (int kind = 0; kind < N_KINDS; kind++) {
        s2s_model *train = kind_model(kind, 7 + (uint64_t)kind);
        s2s_model *inf = inference_copy(train);
        s2s_model *ms[2] = {train, inf};
        for (int mi = 0; mi < 2; mi++) {
            const s2s_model *m = ms[mi];
            s2s_graph *g = s2s_graph_new();
            s2s_graph_set_grad(g, 0);
            const float *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f)->data;
            s2s_vocab_sel *all = s2s_vocab_sel_all(m);
            cr_assert_eq(all->n, m->cfg.tgt_vocab);
            int n_exit = m->cfg.multi_exit ? 3 : 1;
            for (int e = 0; e < n_exit; e++) {
                s2s_exit_stats st;
                memset(&st, 0, sizeof st);
                s2s_exit_opts xo = {0.3f, S2S_EXIT_MAXPROB, e == 2 ? S2S_EXIT_COPY : S2S_EXIT_JIT, &st, 0};
                const s2s_exit_opts *x = e == 0 ? NULL : &xo;
                for (int beam = 1; beam <= 3; beam += 2) {
                    char what[96];
                    snprintf(what, sizeof what, "%s %s exit %d beam %d", KIND_NAME[kind], mi ? "fp16" : "fp32", e, beam);
                    result a = run_search(m, enc, beam, x, NULL), b = run_search(m, enc, beam, x, all);
                    expect_same(&a, &b, what);
                    result_free(&a); result_free(&b);
                }
            }
            s2s_vocab_sel_free(all);
            s2s_graph_free(g);
        }
        s2s_model_free(train);
        s2s_model_free(inf);
    }
}

/* A smaller selection: each step's logits are the full logits at the selected ids (every
 * kind's set_vocab, the DEED exits too), and search outputs only selected ids. */
Test(shortlist_decode, subset_gives_the_full_logits_at_its_ids) {
    for (int kind = 0; kind < N_KINDS; kind++) {
        s2s_model *train = kind_model(kind, 21 + (uint64_t)kind);
        s2s_model *m = inference_copy(train);
        s2s_model_free(train);
        int V = m->cfg.tgt_vocab;
        int32_t pick[5] = {S2S_UNK, 5, 7, 8, V - 1};
        s2s_vocab_sel *vs = s2s_vocab_sel_of(m, pick, 5);
        cr_assert_eq(vs->n, 6); /* + </s> */
        for (int i = 1; i < vs->n; i++) cr_assert_lt(vs->ids[i - 1], vs->ids[i], "ids not ascending");
        s2s_graph *g = s2s_graph_new();
        s2s_graph_set_grad(g, 0);
        const float *enc = s2s_model_encode(g, m, TU_SRC, TU_SLEN, 2, 5, 0.0f)->data;
        const s2s_decoder_ops *ops = m->cfg.multi_exit ? &s2s_deed_decoder : s2s_decoder_ops_for(m);
        cr_assert_not_null(ops->set_vocab, "%s: no set_vocab", KIND_NAME[kind]);
        void *full = ops->start(m, enc, TU_SLEN, 2, 5, 2, 8), *part = ops->start(m, enc, TU_SLEN, 2, 5, 2, 8);
        ops->set_vocab(part, vs);
        float *lf = malloc(sizeof(float) * 4 * V), *lp = malloc(sizeof(float) * 4 * vs->n);
        int32_t tok[4] = {S2S_BOS, S2S_BOS, S2S_BOS, S2S_BOS};
        for (int t = 0; t < 3; t++) {
            ops->step(full, lf, tok, 4);
            ops->step(part, lp, tok, 4);
            for (int r = 0; r < 4; r++)
                for (int i = 0; i < vs->n; i++) {
                    float a = lp[r * vs->n + i], b = lf[r * V + vs->ids[i]];
                    cr_assert(fabsf(a - b) <= 1e-5f + 1e-5f * fabsf(b), "%s step %d row %d id %d: %g vs %g",
                              KIND_NAME[kind], t, r, vs->ids[i], a, b);
                }
            for (int r = 0; r < 4; r++) tok[r] = 4 + (t + r) % 5;
        }
        ops->free(full);
        ops->free(part);
        for (int beam = 1; beam <= 3; beam += 2) {
            result a = run_search(m, enc, beam, NULL, vs);
            for (int s = 0; s < 2; s++)
                for (int i = 0; i < a.len[s]; i++) {
                    int tk = a.out[s][i], in = 0;
                    for (int j = 0; j < vs->n; j++) in |= vs->ids[j] == tk;
                    cr_assert(in, "%s beam %d: token %d outside the shortlist", KIND_NAME[kind], beam, tk);
                }
            result_free(&a);
        }
        free(lf); free(lp);
        s2s_vocab_sel_free(vs);
        s2s_graph_free(g);
        s2s_model_free(m);
    }
}

/* The batch's candidates: </s> and <unk>, the frequent list, and the lists of the source ids
 * present (within each sentence's length; ids beyond src_len ignored). */
Test(shortlist_decode, selection_of_a_batch) {
    s2s_model *m = kind_model(K_TRANSFORMER, 3);
    int Vs = m->cfg.src_vocab, V = m->cfg.tgt_vocab;
    cr_assert_gt(V, 12);
    s2s_shortlist sl;
    memset(&sl, 0, sizeof sl);
    sl.src_vocab = Vs; sl.tgt_vocab = V; sl.top = 2; sl.n_frequent = 1;
    sl.offsets = calloc((size_t)Vs + 1, sizeof(int32_t));
    int32_t ids[4] = {9, 10, 11, 12}, freq[1] = {6};
    /* source id 4 -> {9, 10}; source id 5 -> {11, 12}; the others -> nothing */
    for (int s = 0; s <= Vs; s++) sl.offsets[s] = s <= 4 ? 0 : s == 5 ? 2 : 4;
    sl.ids = ids; sl.freq = freq;
    int32_t src[6] = {4, 2, 0, 7, 5, 2}; /* sentence 0: "4 </s>" (the 0 is padding); sentence 1: 7 5 </s> */
    int32_t slen[2] = {2, 3};
    s2s_vocab_sel *vs = s2s_vocab_sel_new(&sl, m, src, slen, 2, 3);
    int32_t want[] = {S2S_EOS, S2S_UNK, 6, 9, 10, 11, 12};
    cr_assert_eq(vs->n, 7);
    cr_assert(memcmp(vs->ids, want, sizeof want) == 0);
    for (int i = 0; i < vs->n; i++)
        cr_assert(memcmp(vs->w.data + (size_t)i * m->cfg.d_model, m->tgt_emb->data + (size_t)want[i] * m->cfg.d_model,
                         (size_t)m->cfg.d_model * sizeof(float)) == 0, "row %d not gathered", i);
    s2s_vocab_sel_free(vs);
    slen[1] = 1; /* sentence 1 is now just "7": source id 5 is beyond its length */
    vs = s2s_vocab_sel_new(&sl, m, src, slen, 2, 3);
    cr_assert_eq(vs->n, 5);
    s2s_vocab_sel_free(vs);
    cr_assert_null(s2s_vocab_sel_new(NULL, m, src, slen, 2, 3));
    free(sl.offsets);
    s2s_model_free(m);
}

/* The translate API: a shortlist listing every target id for every source id translates
 * like none; one for other vocabularies is refused with a message. */
Test(shortlist_decode, translate_api) {
    s2s_model *m = kind_model(K_TRANSFORMER, 5);
    int Vs = m->cfg.src_vocab, V = m->cfg.tgt_vocab;
    s2s_shortlist sl;
    memset(&sl, 0, sizeof sl);
    sl.src_vocab = Vs; sl.tgt_vocab = V; sl.top = V;
    sl.offsets = malloc(sizeof(int32_t) * ((size_t)Vs + 1));
    sl.ids = malloc(sizeof(int32_t) * (size_t)Vs * V);
    for (int s = 0; s <= Vs; s++) sl.offsets[s] = s * V;
    for (int s = 0; s < Vs; s++)
        for (int t = 0; t < V; t++) sl.ids[s * V + t] = t;
    const char *in[3] = {"abc", "hello", "zz"};
    char *a[3], *b[3], err[256];
    s2s_translate_opts o;
    s2s_translate_opts_default(&o);
    for (int beam = 1; beam <= 2; beam++) {
        o.beam = beam;
        o.shortlist = NULL;
        cr_assert_eq(s2s_translate(m, in, 3, &o, a, NULL, err, sizeof err), 0, "%s", err);
        o.shortlist = &sl;
        cr_assert_eq(s2s_translate(m, in, 3, &o, b, NULL, err, sizeof err), 0, "%s", err);
        for (int i = 0; i < 3; i++) {
            cr_assert_str_eq(a[i], b[i]);
            free(a[i]); free(b[i]);
        }
    }
    sl.tgt_vocab = V + 1;
    cr_assert_eq(s2s_translate(m, in, 3, &o, b, NULL, err, sizeof err), -1);
    cr_assert(strstr(err, "shortlist"), "%s", err);
    free(sl.offsets); free(sl.ids);
    s2s_model_free(m);
}
