/* shortlist_sel.c - the candidate target tokens of one batch (shortlist.h) and the
 * output projection restricted to them: the rows of the tied target embeddings
 * gathered once per batch ([n, D] fp32, plus fp16 when the model keeps fp16 weights),
 * so every step of every decoder kind runs its usual linear kernels on n rows instead
 * of V. */
#include "shortlist.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "tokenizer.h"

/* A selection from a 0/1 flag per target id (ids ascending). */
static s2s_vocab_sel *from_flags(const s2s_model *m, const unsigned char *on) {
    const int V = m->cfg.tgt_vocab, D = m->cfg.d_model;
    const s2s_tensor *E = m->tgt_emb; /* [V, D] */
    s2s_vocab_sel *vs = s2s_xcalloc(1, sizeof *vs);
    for (int v = 0; v < V; v++) vs->n += on[v] != 0;
    vs->ids = s2s_xmalloc((size_t)(vs->n > 0 ? vs->n : 1) * sizeof(int32_t));
    for (int v = 0, i = 0; v < V; v++) if (on[v]) vs->ids[i++] = v;
    s2s_tensor *w = &vs->w;
    w->ndim = 2; w->shape[0] = vs->n; w->shape[1] = D;
    w->n = (size_t)vs->n * D;
    w->frozen = E->frozen; /* as the model: an inference model's rows may be kept packed (s2s_weight_packed) */
    w->data = s2s_xmalloc((w->n > 0 ? w->n : 1) * sizeof(float));
    for (int i = 0; i < vs->n; i++)
        memcpy(w->data + (size_t)i * D, E->data + (size_t)vs->ids[i] * D, (size_t)D * sizeof(float));
    if (E->half) {
        uint16_t *h = s2s_xmalloc((w->n > 0 ? w->n : 1) * sizeof(uint16_t));
        for (int i = 0; i < vs->n; i++)
            memcpy(h + (size_t)i * D, E->half + (size_t)vs->ids[i] * D, (size_t)D * sizeof(uint16_t));
        w->half = h;
    }
    return vs;
}

s2s_vocab_sel *s2s_vocab_sel_new(const s2s_shortlist *sl, const s2s_model *m, const int32_t *src,
                                 const int32_t *src_len, int B, int Ts) {
    if (!sl) return NULL;
    const int V = m->cfg.tgt_vocab;
    unsigned char *on = s2s_xcalloc((size_t)V, 1);
    on[S2S_EOS] = on[S2S_UNK] = 1;
    for (int i = 0; i < sl->n_frequent; i++) on[sl->freq[i]] = 1;
    for (int b = 0; b < B; b++) {
        int L = src_len[b] < Ts ? src_len[b] : Ts;
        for (int j = 0; j < L; j++) {
            int s = src[(size_t)b * Ts + j];
            if (s < 0 || s >= sl->src_vocab) continue;
            for (int k = sl->offsets[s]; k < sl->offsets[s + 1]; k++) on[sl->ids[k]] = 1;
        }
    }
    s2s_vocab_sel *vs = from_flags(m, on);
    free(on);
    return vs;
}

s2s_vocab_sel *s2s_vocab_sel_all(const s2s_model *m) {
    unsigned char *on = s2s_xmalloc((size_t)m->cfg.tgt_vocab);
    memset(on, 1, (size_t)m->cfg.tgt_vocab);
    s2s_vocab_sel *vs = from_flags(m, on);
    free(on);
    return vs;
}

s2s_vocab_sel *s2s_vocab_sel_of(const s2s_model *m, const int32_t *ids, int n) {
    unsigned char *on = s2s_xcalloc((size_t)m->cfg.tgt_vocab, 1);
    on[S2S_EOS] = 1;
    for (int i = 0; i < n; i++) if (ids[i] >= 0 && ids[i] < m->cfg.tgt_vocab) on[ids[i]] = 1;
    s2s_vocab_sel *vs = from_flags(m, on);
    free(on);
    return vs;
}

void s2s_vocab_sel_free(s2s_vocab_sel *vs) {
    if (!vs) return;
    free(vs->ids);
    free(vs->w.data);
    free((void *)vs->w.half);
    free(vs->w.packed);
    free(vs);
}
