/* translate.c - the public translate path (include/s2s.h): tokenize, sort by
 * length into batches, encode on a no-grad graph, search (search.c), detokenize,
 * restore input order. A model on the GPU (s2s_use_cuda) encodes on a CUDA graph
 * and decodes with the GPU decoder (decoder_cuda.cu: the registry picks it), which
 * takes the encoder output in device memory. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "decoder_deed.h"
#include "graph.h"
#include "kernels.h"
#include "model.h"
#include "s2s.h"
#include "search.h"
#include "shortlist.h"
#include "tokenizer.h"
#include "utf8.h"

s2s_model *s2s_load(const char *path, char *err, size_t errlen) {
    return s2s_model_load(path, 0, err, errlen);
}

void s2s_free(s2s_model *m) { s2s_model_free(m); }

void s2s_threads(int n) { s2s_set_threads(n); }

int s2s_use_cuda(s2s_model *m, char *err, size_t errlen) {
    if (s2s_config_is_t2r(&m->cfg)) { /* T2R trains on the GPU (graph.c) but has no GPU step decoder */
        s2s_errf(err, errlen, "--device cuda: T2R models (dec_attn t2r) decode on the CPU only; use --device cpu");
        return -1;
    }
    return s2s_model_to_cuda(m, err, errlen);
}

void s2s_translate_opts_default(s2s_translate_opts *o) {
    o->beam = 1;
    o->batch = 32;
    o->max_len = 256;
    o->length_penalty = 1.0f;
    o->max_memory_mb = 4096;
    o->exit_threshold = -1.0f;
    o->exit_metric = S2S_EXIT_MAXPROB;
    o->exit_states = S2S_EXIT_JIT;
    o->exit_stats = NULL;
    o->shortlist = NULL;
}

/* Bytes of the encoder's no-grad graph arena for a [B, Ts] batch: per layer the
 * activations of every op (all kept until the graph is reset) and the attention
 * weights, plus embeddings and positions. */
static size_t encode_bytes(const s2s_model *m, int B, int Ts) {
    const s2s_config *c = &m->cfg;
    size_t tok = (size_t)B * Ts, D = (size_t)c->d_model;
    size_t per_layer = tok * (12 * D + 2 * (size_t)c->d_ff) + (size_t)B * c->n_heads * Ts * Ts;
    return sizeof(float) * ((size_t)c->enc_layers * per_layer + tok * 4 * D) + 64 * 64 * (size_t)(c->enc_layers + 2) * 16;
}

typedef struct { int idx, len; } lenidx;
static int by_len(const void *a, const void *b) {
    const lenidx *x = a, *y = b;
    return x->len != y->len ? y->len - x->len : x->idx - y->idx;
}

int s2s_translate(const s2s_model *m, const char *const *lines, int n,
                  const s2s_translate_opts *o, char **out, int *flags, char *err,
                  size_t errlen) {
    if (n <= 0) return 0;
    if (o->beam < 1 || o->beam > 256 || o->batch < 1 || o->max_len < 1) {
        s2s_errf(err, errlen, "bad options: beam %d, batch %d, max_len %d", o->beam, o->batch, o->max_len);
        return -1;
    }
    if (o->exit_threshold >= 0) { /* DEED early exit */
        if (!m->cfg.multi_exit) {
            s2s_errf(err, errlen, "--exit-threshold needs a multi-exit model (s2s train --multi-exit), this one has none");
            return -1;
        }
        if (m->on_cuda) {
            s2s_errf(err, errlen, "--exit-threshold (DEED early exit) runs on the CPU only");
            return -1;
        }
        if ((o->exit_metric != S2S_EXIT_MAXPROB && o->exit_metric != S2S_EXIT_MARGIN) ||
            (o->exit_states != S2S_EXIT_JIT && o->exit_states != S2S_EXIT_COPY)) {
            s2s_errf(err, errlen, "bad options: exit metric %d, exit states %d", o->exit_metric, o->exit_states);
            return -1;
        }
    }
    if (o->shortlist && m->on_cuda) {
        s2s_errf(err, errlen, "--shortlist runs on the CPU only (the GPU decoders score every target token)");
        return -1;
    }
    if (o->shortlist && (o->shortlist->src_vocab != m->cfg.src_vocab || o->shortlist->tgt_vocab != m->cfg.tgt_vocab)) {
        s2s_errf(err, errlen, "the shortlist is for vocabularies of %d / %d tokens, the model has %d / %d",
                 o->shortlist->src_vocab, o->shortlist->tgt_vocab, m->cfg.src_vocab, m->cfg.tgt_vocab);
        return -1;
    }
    if (m->on_cuda && s2s_config_is_t2r(&m->cfg)) {
        s2s_errf(err, errlen, "T2R models (dec_attn t2r) decode on the CPU only, not from GPU weights");
        return -1;
    }
    for (int i = 0; i < n; i++) out[i] = NULL;
    /* one graph per call: its arena holds one batch's encoder activations at a time */
    s2s_graph *g = m->on_cuda ? s2s_graph_new_cuda(err, errlen) : s2s_graph_new();
    if (!g) return -1;
    s2s_graph_set_grad(g, 0);
    int maxs = m->cfg.max_len; /* tokens incl. </s> */
    int32_t **ids = s2s_xcalloc((size_t)n, sizeof *ids);
    lenidx *order = s2s_xmalloc((size_t)n * sizeof *order);
    int n_work = 0; /* non-empty lines, to be decoded */
    for (int i = 0; i < n; i++) {
        int fl = 0;
        const char *s = lines[i];
        char *fixed = NULL;
        if (!s2s_utf8_valid(s, strlen(s))) {
            fixed = s2s_utf8_sanitize(s, strlen(s), NULL);
            s = fixed;
            fl |= S2S_LINE_BAD_UTF8;
        }
        ids[i] = s2s_xmalloc((size_t)maxs * sizeof(int32_t));
        int k = s2s_tok_encode(m->src_tok, s, ids[i], maxs - 1);
        S2S_ASSERT(k >= 0);
        if (k > maxs - 1) { k = maxs - 1; fl |= S2S_LINE_TRUNCATED; }
        ids[i][k] = S2S_EOS;
        if (flags) flags[i] = fl;
        free(fixed);
        if (k == 0) { out[i] = s2s_xstrdup(""); continue; } /* empty line -> empty output */
        order[n_work].idx = i;
        order[n_work].len = k + 1;
        n_work++;
    }
    qsort(order, (size_t)n_work, sizeof *order, by_len);
    s2s_search_opts so;
    s2s_search_opts_default(&so);
    so.beam = o->beam;
    so.max_len = o->max_len;
    so.length_penalty = o->length_penalty;
    s2s_exit_stats xstats;
    memset(&xstats, 0, sizeof xstats);
    s2s_exit_opts xo = {o->exit_threshold, o->exit_metric, o->exit_states, &xstats, 0};
    if (o->exit_threshold >= 0 && o->exit_threshold <= 1) so.exit = &xo; /* above 1: full depth */
    int Bmax = o->batch;
    int32_t *src = s2s_xmalloc((size_t)Bmax * maxs * sizeof(int32_t));
    int32_t *slen = s2s_xmalloc((size_t)Bmax * sizeof(int32_t));
    int32_t **res = s2s_xmalloc((size_t)Bmax * sizeof(int32_t *));
    int *rlen = s2s_xmalloc((size_t)Bmax * sizeof(int));
    int rc = 0;
    size_t limit = o->max_memory_mb > 0 ? (size_t)o->max_memory_mb << 20 : (size_t)-1;
    for (int start = 0; start < n_work;) {
        int B = n_work - start < Bmax ? n_work - start : Bmax;
        int Ts = order[start].len; /* sorted longest first */
        for (;;) { /* shrink the batch until its memory fits the bound */
            for (int b = 0; b < B; b++) slen[b] = order[start + b].len;
            size_t need = encode_bytes(m, B, Ts) + s2s_search_bytes(m, slen, B, Ts, &so);
            if (need <= limit) break;
            if (B == 1) {
                s2s_errf(err, errlen, "needs %zu MB to decode (%d tokens, beam %d), above the bound of %d MB (--max-memory)",
                         need >> 20, Ts, o->beam, o->max_memory_mb);
                if (flags) flags[order[start].idx] |= S2S_LINE_TOO_BIG;
                rc = -1;
                goto done;
            }
            B /= 2;
        }
        for (int b = 0; b < B; b++) {
            int i = order[start + b].idx, L = order[start + b].len;
            slen[b] = L;
            memcpy(src + (size_t)b * Ts, ids[i], (size_t)L * sizeof(int32_t));
            for (int t = L; t < Ts; t++) src[(size_t)b * Ts + t] = S2S_PAD;
        }
        s2s_graph_reset(g);
        s2s_tensor *enc = s2s_model_encode(g, m, src, slen, B, Ts, 0.0f);
        /* host memory, or device memory for the GPU decoder (decoder.h) */
        const float *encp = m->on_cuda ? enc->dev_data : enc->data;
        s2s_vocab_sel *vs = s2s_vocab_sel_new(o->shortlist, m, src, slen, B, Ts); /* NULL without one */
        so.vocab = vs;
        s2s_search(m, encp, slen, B, Ts, &so, res, rlen, NULL);
        s2s_vocab_sel_free(vs);
        for (int b = 0; b < B; b++) {
            out[order[start + b].idx] = s2s_tok_decode(m->tgt_tok, res[b], rlen[b]);
            free(res[b]);
        }
        start += B;
    }
done:
    if (rc == 0 && o->exit_stats && so.exit) {
        o->exit_stats[0] += xstats.exit_layer_sum;
        o->exit_stats[1] += xstats.row_steps;
        o->exit_stats[2] += xstats.layer_items;
        o->exit_stats[3] += o->exit_states == S2S_EXIT_COPY ? xstats.copy_items : xstats.jit_items;
    }
    if (rc != 0) /* leave nothing allocated on error */
        for (int i = 0; i < n; i++) { free(out[i]); out[i] = NULL; }
    s2s_graph_free(g);
    for (int i = 0; i < n; i++) free(ids[i]);
    free(ids); free(order); free(src); free(slen); free(res); free(rlen);
    return rc;
}
