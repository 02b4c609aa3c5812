/* kd.c - word-level knowledge distillation loss (see kd.h). */
#include "kd.h"

#include <stdlib.h>

#include "common.h"

s2s_tensor *s2s_kd_loss(s2s_graph *g, s2s_tensor *logits, s2s_tensor *t_logits, const int32_t *tgt,
                        float eps, int ignore, float a, float T, s2s_tensor **kl_out) {
    S2S_ASSERT(logits->n == t_logits->n && logits->ndim == t_logits->ndim && T > 0.0f);
    int V = logits->shape[logits->ndim - 1], N = (int)(logits->n / (size_t)V);
    s2s_tensor *ce = s2s_xent(g, logits, tgt, eps, ignore, NULL);
    /* rows that count: gathered from [N, V] views by an embedding lookup */
    int32_t *idx = s2s_xmalloc((size_t)(N > 0 ? N : 1) * sizeof(int32_t));
    int n = 0;
    for (int i = 0; i < N; i++)
        if (tgt[i] != ignore) idx[n++] = i;
    S2S_ASSERT(n > 0);
    s2s_tensor *s2 = s2s_embedding(g, s2s_reshape(g, logits, 2, (int[]){N, V}), idx, 1, (int[]){n});   /* [n, V] */
    s2s_tensor *t2 = s2s_embedding(g, s2s_reshape(g, t_logits, 2, (int[]){N, V}), idx, 1, (int[]){n}); /* [n, V] */
    free(idx);
    s2s_tensor *ts = s2s_scale(g, t2, 1.0f / T);
    s2s_tensor *pt = s2s_softmax(g, ts);          /* teacher probabilities, no grad */
    s2s_tensor *lpt = s2s_logsoftmax(g, ts);
    s2s_tensor *lq = s2s_logsoftmax(g, s2s_scale(g, s2, 1.0f / T));
    /* KL = (1/n) sum p_t (log p_t - log q) */
    s2s_tensor *kl = s2s_sum(g, s2s_add(g, s2s_mul(g, pt, lpt), s2s_scale(g, s2s_mul(g, pt, lq), -1.0f)));
    kl = s2s_scale(g, kl, 1.0f / (float)n);
    if (kl_out) *kl_out = kl;
    return s2s_add(g, s2s_scale(g, ce, 1.0f - a), s2s_scale(g, kl, a * T * T));
}
