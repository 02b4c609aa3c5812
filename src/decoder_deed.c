/* decoder_deed.c - DEED dynamic early exit for multi-exit Transformer decoders with
 * softmax or T2R attention (decoder_deed.h; docs/MODEL.md "DEED").
 *
 * Per row: the residual stream of every position after the deepest layer it went
 * through (xs), a K/V cache per layer and the number of positions valid in each
 * layer (valid[r][l]: positions 0..valid-1 have their true layer-l state). valid is
 * non-increasing in l, and the positions a row lacks at layer l are the suffix
 * [valid[r][l], t], all of which stopped exactly before layer l (they have layer l-1
 * because this step ran it first). Step t, layer l: the running rows' missing
 * positions (JIT: earlier positions that exited below l, and position t) go through
 * the layer together, in chunks ordered by (row, position) so that each position's
 * causal self-attention sees every key before it; then the exit of layer l decides
 * on position t only. Copy mode fills the deeper K/V of an exited position from its
 * exited state, so valid[r][l] = t + 1 for every layer after each step and only
 * position t is ever computed. With no early exit, every layer computes position t
 * of all rows at once with the same kernels as decoder_transformer.c, and the last
 * exit is its LN_dec + tied projection: the same logits.
 *
 * T2R attention (cfg.dec_attn t2r): everything above but the attention itself, which
 * decoder_deed_t2r.c does on a recurrent state per (row, layer) instead of a K/V cache;
 * valid[r][l] counts the positions folded into the layer-l state. The same item order
 * (row, then position) folds a row's JIT positions and then position t in order, so
 * each state holds every earlier position's true layer-l contribution once; copy mode
 * folds the exited state's deeper K/V (LN1 of the deeper layer applied to it). With no
 * early exit the rows step as in decoder_t2r.c. xs still keeps every position's
 * residual stream (a JIT position needs its input to the layer it missed). */
#include "decoder_deed.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "decoder_common.h"
#include "shortlist.h"
#include "decoder_deed_t2r.h"
#include "kernels.h"
#include "model.h"

typedef struct {
    const s2s_model *m;
    s2s_exit_opts o;
    s2s_exit_stats st;
    int B, Ts, R, max_steps, Ld, D;
    int N, Nmax;          /* live rows, capacity (B*R) */
    int t;                /* steps taken */
    int CH;               /* items per chunk of a layer */
    int Tmax;             /* max(Ts, max_steps) */
    int32_t *src_len;     /* [B] */
    int32_t *row_sent;    /* [Nmax] sentence of each row */
    int32_t *valid;       /* [Nmax, Ld] */
    int32_t *last_exit;   /* [Nmax] exit layer of the last step */
    long *computed;       /* [Nmax, Ld] layer computations per (row, layer) */
    int32_t *itmp;        /* [Nmax * max(Ld, 1)] select scratch */
    long *ltmp;           /* [Nmax * Ld] select scratch */
    float *xs;            /* [Nmax, max_steps, D] residual stream of each position */
    s2s_deed_t2r *t2;     /* T2R attention states (decoder_deed_t2r.h), or NULL for softmax: */
    float **kc, **vc;     /* softmax: [Ld] -> [Nmax, max_steps, D] self-attention caches */
    float **ck, **cv;     /* softmax: [Ld] -> [B, Ts, D] cross-attention keys / values */
    float *tmp;           /* [Nmax, max_steps, D] select scratch */
    /* chunk scratch [CH, ...] */
    int32_t *it_row, *it_pos, *it_sent;
    float *x, *h, *q, *k, *v, *a; /* [CH, D] */
    float *f;             /* [CH, max(F, r)] */
    float *mean, *rstd;   /* [CH] */
    float *p;             /* [CH, H, Tmax] softmax attention weights */
    /* exit scratch */
    int32_t *run, *run2;  /* [Nmax] running rows */
    float *ex;            /* [Nmax, D] exit inputs */
    float *eh;            /* [Nmax, D] */
    float *elog;          /* [Nmax, V] (the first vs->n of each row's V with a shortlist) */
    const s2s_vocab_sel *vs; /* shortlist of the batch, or NULL (decoder.h set_vocab) */
} dstate;

static size_t chunk_items(int Nmax) { return (size_t)Nmax * 4 + 60; }

void *s2s_deed_start(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                     int R, int max_steps, const s2s_exit_opts *o) {
    const s2s_config *c = &m->cfg;
    S2S_ASSERT(c->multi_exit && !m->on_cuda);
    int D = c->d_model, L = c->dec_layers, H = c->n_heads;
    dstate *s = s2s_xcalloc(1, sizeof *s);
    s->m = m; s->o = *o; s->B = B; s->Ts = Ts; s->R = R; s->max_steps = max_steps;
    s->Ld = L; s->D = D;
    s->Nmax = s->N = B * R;
    s->Tmax = Ts > max_steps ? Ts : max_steps;
    size_t Nm = (size_t)s->Nmax;
    s->CH = o->chunk > 0 ? (o->chunk > s->Nmax ? o->chunk : s->Nmax) : (int)chunk_items(s->Nmax);
    size_t CH = (size_t)s->CH;
    s->src_len = s2s_xmalloc((size_t)B * sizeof(int32_t));
    memcpy(s->src_len, src_len, (size_t)B * sizeof(int32_t));
    s->row_sent = s2s_xmalloc(Nm * sizeof(int32_t));
    for (int r = 0; r < s->N; r++) s->row_sent[r] = r / R;
    s->valid = s2s_xcalloc(Nm * L, sizeof(int32_t));
    s->last_exit = s2s_xcalloc(Nm, sizeof(int32_t));
    s->computed = s2s_xcalloc(Nm * L, sizeof(long));
    s->itmp = s2s_xmalloc(Nm * L * sizeof(int32_t));
    s->ltmp = s2s_xmalloc(Nm * L * sizeof(long));
    size_t cache = Nm * (size_t)max_steps * D;
    s->xs = s2s_xmalloc(cache * sizeof(float));
    s->tmp = s2s_xmalloc(cache * sizeof(float));
    if (s2s_config_is_t2r(c)) {
        s->t2 = s2s_deed_t2r_new(m, enc, src_len, B, Ts, s->Nmax);
    } else {
        s->kc = s2s_xcalloc((size_t)L, sizeof(float *)); s->vc = s2s_xcalloc((size_t)L, sizeof(float *));
        s->ck = s2s_xcalloc((size_t)L, sizeof(float *)); s->cv = s2s_xcalloc((size_t)L, sizeof(float *));
        for (int l = 0; l < L; l++) {
            s->kc[l] = s2s_xmalloc(cache * sizeof(float));
            s->vc[l] = s2s_xmalloc(cache * sizeof(float));
            s->ck[l] = s2s_xmalloc((size_t)B * Ts * D * sizeof(float));
            s->cv[l] = s2s_xmalloc((size_t)B * Ts * D * sizeof(float));
            s2s_dec_linear(s->ck[l], enc, &m->dec[l].ck, B * Ts, D, D);
            s2s_dec_linear(s->cv[l], enc, &m->dec[l].cv, B * Ts, D, D);
        }
        s->p = s2s_xmalloc(CH * (size_t)H * s->Tmax * sizeof(float));
    }
    s->it_row = s2s_xmalloc(CH * sizeof(int32_t));
    s->it_pos = s2s_xmalloc(CH * sizeof(int32_t));
    s->it_sent = s2s_xmalloc(CH * sizeof(int32_t));
    float **bufs[] = {&s->x, &s->h, &s->q, &s->k, &s->v, &s->a};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) *bufs[i] = s2s_xmalloc(CH * D * sizeof(float));
    int F = c->d_ff > c->exit_rank ? c->d_ff : c->exit_rank;
    s->f = s2s_xmalloc(CH * (size_t)F * sizeof(float));
    s->mean = s2s_xmalloc(CH * sizeof(float)); s->rstd = s2s_xmalloc(CH * sizeof(float));
    s->run = s2s_xmalloc(Nm * sizeof(int32_t)); s->run2 = s2s_xmalloc(Nm * sizeof(int32_t));
    s->ex = s2s_xmalloc(Nm * D * sizeof(float)); s->eh = s2s_xmalloc(Nm * D * sizeof(float));
    s->elog = s2s_xmalloc(Nm * (size_t)c->tgt_vocab * sizeof(float));
    return s;
}

static void *d_start_full(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                          int R, int max_steps) {
    s2s_exit_opts o = {2.0f, S2S_EXIT_MAXPROB, S2S_EXIT_JIT, NULL, 0};
    return s2s_deed_start(m, enc, src_len, B, Ts, R, max_steps, &o);
}

/* Softmax self-attention of layer l for the M items in s->it_* (q, k, v in s->q, s->k,
 * s->v -> s->a): K/V go to the layer-l cache first, then every item attends. */
static void self_attend_softmax(dstate *s, int l, int M) {
    int D = s->D, H = s->m->cfg.n_heads, Dh = D / H, Tmax = s->Tmax;
    size_t cstride = (size_t)s->max_steps * D;
    for (int i = 0; i < M; i++) {
        size_t off = (size_t)s->it_row[i] * cstride + (size_t)s->it_pos[i] * D;
        memcpy(s->kc[l] + off, s->k + (size_t)i * D, (size_t)D * sizeof(float));
        memcpy(s->vc[l] + off, s->v + (size_t)i * D, (size_t)D * sizeof(float));
    }
    /* causal self-attention of position p over the row's keys 0..p (the kernel runs
     * serially inside: no nested parallelism, and it never calls BLAS) */
    float *kcl = s->kc[l], *vcl = s->vc[l];
#pragma omp parallel for schedule(static) if (M >= 4 && (size_t)M * H * s->t * Dh > 65536)
    for (int i = 0; i < M; i++) {
        int32_t len = s->it_pos[i] + 1;
        size_t ro = (size_t)s->it_row[i] * cstride;
        s2s_k_attention_fwd(s->a + (size_t)i * D, s->p + (size_t)i * H * Tmax, s->q + (size_t)i * D, kcl + ro,
                            vcl + ro, &len, 0, 1, H, 1, len, Dh);
    }
}

/* Run decoder layer l over the M items (row, position) in s->it_* whose inputs are
 * gathered in s->x (updated in place to the layer's output). */
static void layer_items(dstate *s, int l, int M) {
    const s2s_model *m = s->m;
    const s2s_dec_layer *L = &m->dec[l];
    int D = s->D, H = m->cfg.n_heads, Dh = D / H;
    size_t MD = (size_t)M * D;
    s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln1.w->data, L->ln1.b->data, M, D);
    s2s_dec_linear(s->q, s->h, &L->sq, M, D, D);
    s2s_dec_linear(s->k, s->h, &L->sk, M, D, D);
    s2s_dec_linear(s->v, s->h, &L->sv, M, D, D);
    if (s->t2) s2s_deed_t2r_self(s->t2, l, s->a, s->q, s->k, s->v, s->it_row, M);
    else self_attend_softmax(s, l, M);
    s2s_dec_linear(s->h, s->a, &L->so, M, D, D);
    s2s_dec_add(s->x, s->h, MD);
    /* cross-attention over the projected source (T2R: its precomputed state) */
    s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln2.w->data, L->ln2.b->data, M, D);
    s2s_dec_linear(s->q, s->h, &L->cq, M, D, D);
    if (s->t2)
        s2s_deed_t2r_cross(s->t2, l, s->a, s->q, s->it_sent, M);
    else
        s2s_dec_attend(s->a, s->p, s->q, s->ck[l], s->cv[l], (size_t)s->Ts * D, s->it_sent, s->src_len, s->Ts, M, H,
                       Dh, s->Tmax);
    s2s_dec_linear(s->h, s->a, &L->co, M, D, D);
    s2s_dec_add(s->x, s->h, MD);
    s2s_dec_ffn(s->x, s->h, s->f, s->mean, s->rstd, m, L, M);
}

/* Layer l for the n running rows run[]: every missing position, chunk by chunk. */
static void run_layer(dstate *s, int l, const int32_t *run, int n) {
    int D = s->D, t = s->t, Ld = s->Ld, M = 0;
    size_t cstride = (size_t)s->max_steps * D;
    for (int j = 0; j < n; j++) {
        int r = run[j];
        int32_t *vl = &s->valid[(size_t)r * Ld + l];
        for (int p = *vl; p <= t; p++) {
            s->it_row[M] = r; s->it_pos[M] = p; s->it_sent[M] = s->row_sent[r];
            memcpy(s->x + (size_t)M * D, s->xs + (size_t)r * cstride + (size_t)p * D, (size_t)D * sizeof(float));
            if (p < t) s->st.jit_items++;
            M++;
            if (M == s->CH) { /* flush: rows/positions before this item are all in the cache */
                layer_items(s, l, M);
                for (int i = 0; i < M; i++)
                    memcpy(s->xs + (size_t)s->it_row[i] * cstride + (size_t)s->it_pos[i] * D, s->x + (size_t)i * D,
                           (size_t)D * sizeof(float));
                s->st.layer_items += M;
                M = 0;
            }
        }
        s->computed[(size_t)r * Ld + l] += t + 1 - *vl;
        /* valid is updated after the flush below; later items of this row need only
         * the cache, which layer_items fills before attending */
    }
    if (M > 0) {
        layer_items(s, l, M);
        for (int i = 0; i < M; i++)
            memcpy(s->xs + (size_t)s->it_row[i] * cstride + (size_t)s->it_pos[i] * D, s->x + (size_t)i * D,
                   (size_t)D * sizeof(float));
        s->st.layer_items += M;
    }
    for (int j = 0; j < n; j++) s->valid[(size_t)run[j] * Ld + l] = t + 1;
}

/* Confidence of one row of logits: max softmax probability, or top-1 minus top-2. */
static double confidence(const float *lg, int V, int metric) {
    int b1 = 0, b2 = -1;
    for (int v = 1; v < V; v++) {
        if (lg[v] > lg[b1]) { b2 = b1; b1 = v; }
        else if (b2 < 0 || lg[v] > lg[b2]) b2 = v;
    }
    double mx = lg[b1], z = 0;
    for (int v = 0; v < V; v++) z += exp((double)lg[v] - mx);
    double p1 = 1.0 / z;
    if (metric == S2S_EXIT_MAXPROB) return p1;
    return p1 - exp((double)lg[b2] - mx) / z;
}

/* Exit head of layer l on ex [n, D] -> elog [n, V]: a_l (or LN_dec for the last layer)
 * and the tied projection (over the shortlisted rows only, [n, vs->n], with a shortlist:
 * then the exit test's confidence is the softmax over the shortlist too). */
static void exit_logits(dstate *s, int l, int n) {
    const s2s_model *m = s->m;
    int D = s->D, V;
    s2s_lin_p out = s2s_dec_out_proj(m, s->vs, &V);
    if (l == s->Ld - 1) {
        s2s_k_layernorm_fwd(s->eh, s->mean, s->rstd, s->ex, m->dec_ln.w->data, m->dec_ln.b->data, n, D);
    } else {
        const s2s_dec_layer *L = &m->dec[l];
        int r = m->cfg.exit_rank;
        s2s_dec_linear(s->f, s->ex, &L->exdown, n, D, r);
        s2s_k_relu_fwd(s->f, s->f, (size_t)n * r);
        s2s_dec_linear(s->eh, s->f, &L->exup, n, r, D);
        s2s_dec_add(s->eh, s->ex, (size_t)n * D);
        s2s_k_layernorm_fwd(s->eh, s->mean, s->rstd, s->eh, L->exln.w->data, L->exln.b->data, n, D);
    }
    s2s_dec_linear(s->elog, s->eh, &out, n, D, V);
}

/* Copy mode: K/V of position t in layers above each row's exit, from its exited state
 * (T2R: folded into the layer's state). */
static void copy_up(dstate *s, const int32_t *rows, int n) {
    const s2s_model *m = s->m;
    int D = s->D, t = s->t, Ld = s->Ld;
    size_t cstride = (size_t)s->max_steps * D;
    for (int l = 1; l < Ld; l++) {
        int M = 0;
        for (int j = 0; j < n; j++) {
            int r = rows[j];
            if (s->last_exit[r] >= l) continue;
            s->it_row[M] = r;
            memcpy(s->x + (size_t)M * D, s->xs + (size_t)r * cstride + (size_t)t * D, (size_t)D * sizeof(float));
            M++;
        }
        if (M == 0) continue;
        const s2s_dec_layer *L = &m->dec[l];
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln1.w->data, L->ln1.b->data, M, D);
        s2s_dec_linear(s->k, s->h, &L->sk, M, D, D);
        s2s_dec_linear(s->v, s->h, &L->sv, M, D, D);
        if (s->t2) s2s_deed_t2r_fold(s->t2, l, s->a, s->k, s->v, s->it_row, M);
        for (int i = 0; i < M; i++) {
            int r = s->it_row[i];
            size_t off = (size_t)r * cstride + (size_t)t * D;
            if (!s->t2) {
                memcpy(s->kc[l] + off, s->k + (size_t)i * D, (size_t)D * sizeof(float));
                memcpy(s->vc[l] + off, s->v + (size_t)i * D, (size_t)D * sizeof(float));
            }
            s->valid[(size_t)r * Ld + l] = t + 1;
        }
        s->st.copy_items += M;
    }
}

static void d_step(void *stp, float *logits, const int32_t *tokens, int N) {
    dstate *s = stp;
    const s2s_model *m = s->m;
    int D = s->D, V = s->vs ? s->vs->n : m->cfg.tgt_vocab, Ld = s->Ld, t = s->t;
    S2S_ASSERT(N == s->N && t < s->max_steps && t < m->cfg.max_len);
    size_t cstride = (size_t)s->max_steps * D;
    float sq = sqrtf((float)D);
    for (int r = 0; r < N; r++) {
        const float *e = m->tgt_emb->data + (size_t)tokens[r] * D;
        const float *pe = m->pe + (size_t)t * D;
        float *xr = s->xs + (size_t)r * cstride + (size_t)t * D;
        for (int d = 0; d < D; d++) xr[d] = e[d] * sq + pe[d];
        s->run[r] = r;
    }
    int n = N;
    for (int l = 0; l < Ld && n > 0; l++) {
        run_layer(s, l, s->run, n);
        for (int j = 0; j < n; j++)
            memcpy(s->ex + (size_t)j * D, s->xs + (size_t)s->run[j] * cstride + (size_t)t * D, (size_t)D * sizeof(float));
        exit_logits(s, l, n);
        int n2 = 0;
        for (int j = 0; j < n; j++) {
            int r = s->run[j];
            const float *lg = s->elog + (size_t)j * V;
            if (l == Ld - 1 || confidence(lg, V, s->o.metric) >= (double)s->o.threshold) {
                memcpy(logits + (size_t)r * V, lg, (size_t)V * sizeof(float));
                s->last_exit[r] = l;
                s->st.exits[l]++;
                s->st.exit_layer_sum += l + 1;
                s->st.row_steps++;
            } else {
                s->run2[n2++] = r;
            }
        }
        memcpy(s->run, s->run2, (size_t)n2 * sizeof(int32_t));
        n = n2;
    }
    if (s->o.states == S2S_EXIT_COPY) {
        for (int r = 0; r < N; r++) s->run[r] = r;
        copy_up(s, s->run, N);
    }
    s->t++;
}

static void d_select(void *stp, const int32_t *rows, int N_new) {
    dstate *s = stp;
    S2S_ASSERT(N_new <= s->Nmax);
    int D = s->D, Ld = s->Ld;
    for (int i = 0; i < N_new; i++) S2S_ASSERT(rows[i] >= 0 && rows[i] < s->N);
    size_t cstride = (size_t)s->max_steps * D, used = (size_t)s->t * D;
    int identity = N_new == s->N;
    for (int i = 0; identity && i < N_new; i++) identity = rows[i] == i;
    if (identity) return;
    if (used > 0) {
        s2s_dec_gather_rows(&s->xs, &s->tmp, rows, N_new, cstride, used);
        for (int l = 0; !s->t2 && l < Ld; l++) {
            s2s_dec_gather_rows(&s->kc[l], &s->tmp, rows, N_new, cstride, used);
            s2s_dec_gather_rows(&s->vc[l], &s->tmp, rows, N_new, cstride, used);
        }
    }
    if (s->t2) s2s_deed_t2r_select(s->t2, rows, N_new);
    for (int i = 0; i < N_new; i++) memcpy(s->itmp + (size_t)i * Ld, s->valid + (size_t)rows[i] * Ld, (size_t)Ld * sizeof(int32_t));
    memcpy(s->valid, s->itmp, (size_t)N_new * Ld * sizeof(int32_t));
    for (int i = 0; i < N_new; i++) memcpy(s->ltmp + (size_t)i * Ld, s->computed + (size_t)rows[i] * Ld, (size_t)Ld * sizeof(long));
    memcpy(s->computed, s->ltmp, (size_t)N_new * Ld * sizeof(long));
    s2s_dec_gather_i32(s->row_sent, s->itmp, rows, N_new);
    s2s_dec_gather_i32(s->last_exit, s->itmp, rows, N_new);
    s->N = N_new;
}

static void d_free(void *stp) {
    dstate *s = stp;
    if (!s) return;
    if (s->o.stats) s2s_exit_stats_add(s->o.stats, &s->st);
    s2s_deed_t2r_free(s->t2);
    for (int l = 0; s->kc && l < s->Ld; l++) { free(s->kc[l]); free(s->vc[l]); free(s->ck[l]); free(s->cv[l]); }
    free(s->kc); free(s->vc); free(s->ck); free(s->cv);
    free(s->src_len); free(s->row_sent); free(s->valid); free(s->last_exit); free(s->computed);
    free(s->itmp); free(s->ltmp); free(s->xs); free(s->tmp);
    free(s->it_row); free(s->it_pos); free(s->it_sent);
    free(s->x); free(s->h); free(s->q); free(s->k); free(s->v); free(s->a); free(s->f);
    free(s->mean); free(s->rstd); free(s->p);
    free(s->run); free(s->run2); free(s->ex); free(s->eh); free(s->elog);
    free(s);
}

static size_t d_state_bytes(const s2s_model *m, int Ts, int t) {
    /* per row: self K/V caches + residual streams (t positions) + cross K/V (per sentence);
     * T2R: the residual streams + the self and cross states */
    size_t D = (size_t)m->cfg.d_model, L = (size_t)m->cfg.dec_layers;
    if (s2s_config_is_t2r(&m->cfg)) return sizeof(float) * D * (size_t)t + s2s_deed_t2r_row_bytes(m);
    return sizeof(float) * D * ((2 * L + 1) * (size_t)t + 2 * L * (size_t)Ts);
}

static size_t d_start_bytes(const s2s_model *m, int B, int Ts, int R, int max_steps) {
    const s2s_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, L = (size_t)c->dec_layers, N = (size_t)B * R;
    size_t T = (size_t)(Ts > max_steps ? Ts : max_steps), CH = chunk_items((int)N);
    size_t F = (size_t)(c->d_ff > c->exit_rank ? c->d_ff : c->exit_rank);
    size_t cache = N * (size_t)max_steps * D;
    size_t floats = 2 * cache                                 /* residual streams, select spare */
                    + CH * (6 * D + F + 2)                    /* chunk scratch */
                    + N * (2 * D + (size_t)c->tgt_vocab);     /* exit scratch */
    size_t ints = (size_t)B + N * (3 + 2 * L) + 3 * CH + 2 * N;
    size_t attn = s2s_config_is_t2r(c) ? s2s_deed_t2r_start_bytes(m, B, Ts, (int)N)
                                       : sizeof(float) * (2 * L * cache             /* K/V caches */
                                                          + 2 * L * (size_t)B * Ts * D /* cross K/V */
                                                          + CH * (size_t)c->n_heads * T); /* attention weights */
    return floats * sizeof(float) + ints * sizeof(int32_t) + N * L * sizeof(long) * 2 + attn;
}

static void d_set_vocab(void *st, const s2s_vocab_sel *vs) { ((dstate *)st)->vs = vs; }

const s2s_decoder_ops s2s_deed_decoder = {
    "deed", d_start_full, d_step, d_select, d_free, d_state_bytes, d_start_bytes, d_set_vocab,
};

double s2s_exit_stats_avg(const s2s_exit_stats *s) {
    return s->row_steps > 0 ? s->exit_layer_sum / s->row_steps : 0.0;
}

void s2s_exit_stats_add(s2s_exit_stats *a, const s2s_exit_stats *b) {
    a->exit_layer_sum += b->exit_layer_sum;
    a->row_steps += b->row_steps;
    a->layer_items += b->layer_items;
    a->jit_items += b->jit_items;
    a->copy_items += b->copy_items;
    for (int l = 0; l < 256; l++) a->exits[l] += b->exits[l];
}

const float *s2s_deed_keys(const void *st, int r, int l) {
    const dstate *s = st;
    S2S_ASSERT(!s->t2);
    return s->kc[l] + (size_t)r * s->max_steps * s->D;
}

const float *s2s_deed_values(const void *st, int r, int l) {
    const dstate *s = st;
    S2S_ASSERT(!s->t2);
    return s->vc[l] + (size_t)r * s->max_steps * s->D;
}

void s2s_deed_self_state(const void *st, int r, int l, const float **S, const float **z) {
    const dstate *s = st;
    S2S_ASSERT(s->t2 != NULL);
    s2s_deed_t2r_row_state(s->t2, r, l, S, z);
}

int s2s_deed_valid(const void *st, int r, int l) {
    const dstate *s = st;
    return s->valid[(size_t)r * s->Ld + l];
}

int s2s_deed_last_exit(const void *st, int r) { return ((const dstate *)st)->last_exit[r]; }

long s2s_deed_computed(const void *st, int r, int l) {
    const dstate *s = st;
    return s->computed[(size_t)r * s->Ld + l];
}

const s2s_exit_stats *s2s_deed_stats(const void *st) { return &((const dstate *)st)->st; }
