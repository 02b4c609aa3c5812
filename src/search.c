/* search.c - greedy and beam search, written once against the step interface of
 * decoder.h (start / step / select / free), so every decoder kind gets both.
 *
 * Greedy: one row per sentence; finished sentences are dropped with select().
 * Beam: K rows per live sentence; each step takes the top 2K of K*V candidates,
 * EOS candidates among the first K finish a hypothesis (normalised by
 * len^length_penalty), the others refill the K rows; a sentence is done when it
 * has K finished hypotheses or reaches its length limit.
 *
 * A model on the GPU (m->on_cuda: the registry gave decoder_cuda.cu's ops) steps
 * through s2s_dec_cuda_step_top instead of ops->step: the argmax (greedy), or each
 * row's top 2K log-probabilities (beam), is picked on the device and only that comes
 * back, instead of N x V logits scanned here. Beam search needs no more: a candidate
 * among a sentence's top 2K is among its row's top 2K (bscore is the same for the whole
 * row), and the candidates are pushed in the same order (row, then token). Greedy with
 * a score still takes the logits (the log-sum-exp of every row). */
#include "search.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "decoder.h"
#include "decoder_deed.h"
#include "kernels.h"
#include "model.h"
#include "shortlist.h"
#include "tokenizer.h"

#ifdef S2S_CUDA
/* decoder_cuda.cu: a step of a GPU decoder state whose selection runs on the device:
 * k <= 0: tok[r] = argmax of row r (first maximum); k >= 1: each row's kk = min(k, V)
 * best tokens by log-softmax (ties to the lower token) in increasing token order, in
 * tok[r * kk + i], their log-probabilities in val[r * kk + i]. Returns kk (1 for k <= 0). */
int s2s_dec_cuda_step_top(void *st, const int32_t *tokens, int N, int k, int32_t *tok, float *val);
#define DEV_TOP(m) ((m)->on_cuda)
#else
static int s2s_dec_cuda_step_top(void *st, const int32_t *tokens, int N, int k, int32_t *tok, float *val) {
    S2S_ASSERT(0 && "no GPU decoder in this build");
    return 0;
}
#define DEV_TOP(m) 0
#endif

void s2s_search_opts_default(s2s_search_opts *o) {
    o->beam = 1;
    o->max_len = 256;
    o->len_ratio = 2.0f;
    o->length_penalty = 1.0f;
    o->exit = NULL;
    o->vocab = NULL;
}

/* The shortlist that applies: o->vocab when the decoder kind takes one (CPU decoders). */
static const s2s_vocab_sel *vocab_of(const s2s_decoder_ops *ops, const s2s_search_opts *o) {
    return o->vocab && ops->set_vocab ? o->vocab : NULL;
}

/* ops->start, or the DEED decoder's start with the exit options; then the shortlist */
static void *start_state(const s2s_model *m, const s2s_decoder_ops *ops, const s2s_search_opts *o,
                         const float *enc, const int32_t *src_len, int B, int Ts, int R, int max_steps) {
    void *st = o->exit ? s2s_deed_start(m, enc, src_len, B, Ts, R, max_steps, o->exit)
                       : ops->start(m, enc, src_len, B, Ts, R, max_steps);
    if (st && vocab_of(ops, o)) ops->set_vocab(st, o->vocab);
    return st;
}

static int limit_for(const s2s_model *m, const s2s_search_opts *o, int src_len) {
    int lim = o->max_len;
    if (lim > m->cfg.max_len - 1) lim = m->cfg.max_len - 1;
    if (o->len_ratio > 0) {
        int r = (int)(o->len_ratio * (float)src_len) + 10;
        if (r < lim) lim = r;
    }
    return lim < 1 ? 1 : lim;
}

static void greedy(const s2s_model *m, const s2s_decoder_ops *ops, const float *enc,
                   const int32_t *src_len, int B, int Ts, const s2s_search_opts *o,
                   int32_t **out, int *out_len, float *score) {
    const s2s_vocab_sel *vs = vocab_of(ops, o);
    const int32_t *ids = vs ? vs->ids : NULL; /* logit index -> token (shortlist) */
    int V = vs ? vs->n : m->cfg.tgt_vocab, maxT = 0;
    int *lim = s2s_xmalloc((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) { lim[b] = limit_for(m, o, src_len[b]); if (lim[b] > maxT) maxT = lim[b]; }
    void *st = start_state(m, ops, o, enc, src_len, B, Ts, 1, maxT + 1);
    int N = B;
    const int dev = DEV_TOP(m) && !score; /* the argmax on the device */
    int32_t *sent = s2s_xmalloc((size_t)B * sizeof(int32_t)); /* row -> sentence */
    int32_t *tok = s2s_xmalloc((size_t)B * sizeof(int32_t));
    int32_t *keep = s2s_xmalloc((size_t)B * sizeof(int32_t));
    int32_t *dbest = dev ? s2s_xmalloc((size_t)B * sizeof(int32_t)) : NULL;
    float *logits = dev ? NULL : s2s_xmalloc((size_t)B * V * sizeof(float));
    double *lp = s2s_xcalloc((size_t)B, sizeof(double));
    for (int b = 0; b < B; b++) {
        sent[b] = b; tok[b] = S2S_BOS;
        out[b] = s2s_xmalloc((size_t)(lim[b] + 1) * sizeof(int32_t));
        out_len[b] = 0;
    }
    for (int t = 0; N > 0; t++) {
        if (dev) s2s_dec_cuda_step_top(st, tok, N, 0, dbest, NULL);
        else ops->step(st, logits, tok, N);
        int N2 = 0;
        for (int r = 0; r < N; r++) {
            int best = 0;
            if (dev) {
                best = dbest[r];
            } else {
                const float *lr = logits + (size_t)r * V;
                for (int v = 1; v < V; v++) if (lr[v] > lr[best]) best = v;
                if (score) { /* log-probability of the argmax */
                    double mx = lr[best], z = 0;
                    for (int v = 0; v < V; v++) z += exp((double)lr[v] - mx);
                    lp[sent[r]] -= log(z);
                }
                if (ids) best = ids[best];
            }
            int b = sent[r];
            if (best == S2S_EOS) continue;
            out[b][out_len[b]++] = best;
            if (out_len[b] >= lim[b]) continue;
            keep[N2] = r; sent[N2] = b; tok[N2] = best; N2++;
        }
        if (N2 < N) ops->select(st, keep, N2);
        N = N2;
    }
    if (score) for (int b = 0; b < B; b++) score[b] = (float)(lp[b] / pow((double)out_len[b] + 1, o->length_penalty));
    ops->free(st);
    free(lim); free(sent); free(tok); free(keep); free(logits); free(lp); free(dbest);
}

typedef struct { float s; int row, tok; } cand;

/* keep the top n candidates (by s) in h[0..n) as a min-heap */
static void heap_push(cand *h, int *size, int cap, cand c) {
    if (*size < cap) {
        int i = (*size)++;
        h[i] = c;
        while (i > 0 && h[(i - 1) / 2].s > h[i].s) { cand t = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = t; i = (i - 1) / 2; }
    } else if (c.s > h[0].s) {
        h[0] = c;
        int i = 0;
        for (;;) {
            int l = 2 * i + 1, r = l + 1, mn = i;
            if (l < cap && h[l].s < h[mn].s) mn = l;
            if (r < cap && h[r].s < h[mn].s) mn = r;
            if (mn == i) break;
            cand t = h[i]; h[i] = h[mn]; h[mn] = t; i = mn;
        }
    }
}

static int cand_desc(const void *a, const void *b) {
    float x = ((const cand *)a)->s, y = ((const cand *)b)->s;
    return x < y ? 1 : x > y ? -1 : ((const cand *)a)->row - ((const cand *)b)->row;
}

static void beam_search(const s2s_model *m, const s2s_decoder_ops *ops, const float *enc,
                        const int32_t *src_len, int B, int Ts, const s2s_search_opts *o,
                        int32_t **out, int *out_len, float *score) {
    const s2s_vocab_sel *vs = vocab_of(ops, o);
    const int32_t *ids = vs ? vs->ids : NULL; /* logit index -> token (shortlist; ascending, so the
                                               * candidates' order is that of the full vocabulary) */
    int K = o->beam, V = vs ? vs->n : m->cfg.tgt_vocab, maxT = 0;
    int *lim = s2s_xmalloc((size_t)B * sizeof(int));
    for (int b = 0; b < B; b++) { lim[b] = limit_for(m, o, src_len[b]); if (lim[b] > maxT) maxT = lim[b]; }
    void *st = start_state(m, ops, o, enc, src_len, B, Ts, K, maxT + 1);
    int NK = B * K;
    const int dev = DEV_TOP(m); /* each row's top 2K on the device */
    int kc = 2 * K < V ? 2 * K : V; /* candidates per row from the device */
    float *logits = dev ? NULL : s2s_xmalloc((size_t)NK * V * sizeof(float));
    float *cval = dev ? s2s_xmalloc((size_t)NK * kc * sizeof(float)) : NULL;
    int32_t *ctok = dev ? s2s_xmalloc((size_t)NK * kc * sizeof(int32_t)) : NULL;
    float *bscore = s2s_xmalloc((size_t)NK * sizeof(float));    /* cumulative logprob per row */
    int32_t *hist = s2s_xmalloc((size_t)NK * (maxT + 1) * sizeof(int32_t));
    int32_t *hist2 = s2s_xmalloc((size_t)NK * (maxT + 1) * sizeof(int32_t));
    int32_t *tok = s2s_xmalloc((size_t)NK * sizeof(int32_t));
    int32_t *keep = s2s_xmalloc((size_t)NK * sizeof(int32_t));
    float *nscore = s2s_xmalloc((size_t)NK * sizeof(float));
    int32_t *ntok = s2s_xmalloc((size_t)NK * sizeof(int32_t));
    int *live = s2s_xmalloc((size_t)B * sizeof(int));  /* live sentences in row-block order */
    float *best = s2s_xmalloc((size_t)B * sizeof(float));
    int *nfin = s2s_xcalloc((size_t)B, sizeof(int));
    cand *heap = s2s_xmalloc((size_t)2 * K * sizeof(cand));
    int nlive = B;
    for (int b = 0; b < B; b++) {
        live[b] = b; best[b] = -INFINITY; out[b] = NULL; out_len[b] = 0;
        for (int k = 0; k < K; k++) bscore[b * K + k] = k == 0 ? 0.0f : -INFINITY;
    }
    for (int r = 0; r < NK; r++) tok[r] = S2S_BOS;
    /* the first step runs one row per sentence (its other K - 1 rows would be copies of it,
     * with score -inf): select() keeps row b * K of each sentence, and the step's candidates
     * then refill K rows per sentence as on every other step */
    if (K > 1) {
        for (int b = 0; b < B; b++) { keep[b] = b * K; bscore[b] = 0.0f; }
        ops->select(st, keep, B);
    }
    for (int t = 0; nlive > 0; t++) {
        const int rk = t == 0 ? 1 : K; /* rows per live sentence in this step */
        int N = nlive * rk;
        if (dev) kc = s2s_dec_cuda_step_top(st, tok, N, 2 * K, ctok, cval);
        else {
            ops->step(st, logits, tok, N);
            s2s_k_logsoftmax_fwd(logits, logits, N, V);
        }
        int nlive2 = 0, N2 = 0;
        for (int si = 0; si < nlive; si++) {
            int b = live[si], hs = 0;
            for (int k = 0; k < rk; k++) {
                int r = si * rk + k;
                if (bscore[r] == -INFINITY) continue;
                if (dev) { /* the row's top kc, in token order */
                    const float *cv = cval + (size_t)r * kc;
                    const int32_t *ct = ctok + (size_t)r * kc;
                    for (int i = 0; i < kc; i++) heap_push(heap, &hs, 2 * K, (cand){bscore[r] + cv[i], r, ct[i]});
                    continue;
                }
                const float *lr = logits + (size_t)r * V;
                for (int v = 0; v < V; v++) heap_push(heap, &hs, 2 * K, (cand){bscore[r] + lr[v], r, ids ? ids[v] : v});
            }
            qsort(heap, (size_t)hs, sizeof(cand), cand_desc);
            int filled = 0, len = t + 1; /* tokens incl. the new one */
            for (int c = 0; c < hs && filled < K; c++) {
                cand cd = heap[c];
                int at_limit = len >= lim[b];
                if (cd.tok == S2S_EOS || at_limit) {
                    if (cd.tok == S2S_EOS && c >= K) continue; /* EOS beyond the top K: ignore */
                    int olen = cd.tok == S2S_EOS ? t : len;
                    float ns = cd.s / powf((float)(olen + 1), o->length_penalty);
                    nfin[b]++;
                    if (ns > best[b]) {
                        best[b] = ns;
                        free(out[b]);
                        out[b] = s2s_xmalloc((size_t)(olen + 1) * sizeof(int32_t));
                        memcpy(out[b], hist + (size_t)cd.row * (maxT + 1), (size_t)t * sizeof(int32_t));
                        if (cd.tok != S2S_EOS) out[b][t] = cd.tok;
                        out_len[b] = olen;
                    }
                    continue;
                }
                nscore[N2] = cd.s; ntok[N2] = cd.tok; keep[N2] = cd.row;
                memcpy(hist2 + (size_t)N2 * (maxT + 1), hist + (size_t)cd.row * (maxT + 1), (size_t)t * sizeof(int32_t));
                hist2[(size_t)N2 * (maxT + 1) + t] = cd.tok;
                N2++; filled++;
            }
            int done = nfin[b] >= K || len >= lim[b] || filled == 0;
            if (done) { N2 -= filled; continue; }
            for (; filled < K; filled++) { /* pad the beam with dead rows */
                nscore[N2] = -INFINITY; ntok[N2] = S2S_EOS; keep[N2] = keep[N2 - 1];
                memcpy(hist2 + (size_t)N2 * (maxT + 1), hist2 + (size_t)(N2 - 1) * (maxT + 1), (size_t)(t + 1) * sizeof(int32_t));
                N2++;
            }
            live[nlive2++] = b;
        }
        if (N2 > 0) ops->select(st, keep, N2);
        memcpy(bscore, nscore, (size_t)N2 * sizeof(float));
        memcpy(tok, ntok, (size_t)N2 * sizeof(int32_t));
        int32_t *th = hist; hist = hist2; hist2 = th;
        nlive = nlive2;
    }
    for (int b = 0; b < B; b++) {
        if (!out[b]) out[b] = s2s_xmalloc(sizeof(int32_t));
        if (score) score[b] = best[b];
    }
    ops->free(st);
    free(lim); free(logits); free(bscore); free(hist); free(hist2); free(tok); free(keep);
    free(nscore); free(ntok); free(live); free(best); free(nfin); free(heap); free(cval); free(ctok);
}

size_t s2s_search_bytes(const s2s_model *m, const int32_t *src_len, int B, int Ts,
                        const s2s_search_opts *o) {
    const s2s_decoder_ops *ops = o->exit ? &s2s_deed_decoder : s2s_decoder_ops_for(m);
    int maxT = 0, K = o->beam > 1 ? o->beam : 1;
    for (int b = 0; b < B; b++) { int l = limit_for(m, o, src_len[b]); if (l > maxT) maxT = l; }
    size_t N = (size_t)B * K, V = (size_t)m->cfg.tgt_vocab;
    size_t search = N * V * sizeof(float)                         /* logits */
                    + 2 * N * (size_t)(maxT + 1) * sizeof(int32_t) /* histories */
                    + (size_t)B * (size_t)(maxT + 1) * sizeof(int32_t) /* outputs */
                    + N * 32;                                      /* per-row bookkeeping */
    return ops->start_bytes(m, B, Ts, K, maxT + 1) + search;
}

void s2s_search(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                const s2s_search_opts *o, int32_t **out, int *out_len, float *score) {
    const s2s_decoder_ops *ops = o->exit ? &s2s_deed_decoder : s2s_decoder_ops_for(m);
    S2S_ASSERT(ops != NULL && (!o->exit || (m->cfg.multi_exit && !m->on_cuda)));
    if (o->beam <= 1) greedy(m, ops, enc, src_len, B, Ts, o, out, out_len, score);
    else beam_search(m, ops, enc, src_len, B, Ts, o, out, out_len, score);
}
