/* decoder_transformer.c - incremental Transformer decoding (the step interface of
 * decoder.h): a per-layer self-attention K/V cache that grows one position a
 * step, and cross-attention K/V projected once per source sentence at start.
 * Linear layers and LayerNorm run through the fast kernels over all live rows
 * at once (one GEMM per projection); attention runs a one-query kernel per row.
 * The cache is time-major: step t's keys/values of the rows in slots 0..N-1 are one
 * [N, D] block (the K and V projections write straight into it), and a table says
 * which slot holds each of a row's positions, so select() (beam reordering, dropping
 * finished rows) gathers that table of ints instead of copying the caches. Checked
 * against the teacher-forced forward pass of model.c by tests/test_model.c. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "decoder.h"
#include "kernels.h"
#include "decoder_common.h"
#include "shortlist.h"
#include "model.h"

typedef struct {
    const s2s_model *m;
    int B, Ts, R, max_steps;
    int N, Nmax;        /* live rows, capacity (B*R) */
    int t;              /* steps taken */
    int32_t *src_len;   /* [B] */
    int32_t *src_first; /* [B] sentence b's first row in ck/cv */
    int32_t *row_sent;  /* [Nmax] sentence of each row */
    int32_t *rows_tmp;  /* [Nmax] select scratch */
    float **kc, **vc;   /* [Ld] -> [max_steps, Nmax, D] self-attention cache: step t, slot i */
    int32_t *slot, *slot_tmp; /* [Nmax, max_steps]: the slot holding row r's position j; select scratch */
    float **ck, **cv;   /* [Ld] -> [sum of src_len, D] cross-attention keys/values (source rows only) */
    float *x, *h, *q, *a; /* [Nmax, D] */
    float *f;           /* [Nmax, F] */
    float *mean, *rstd; /* [Nmax] */
    float *p;           /* [Nmax, H, max(Ts, max_steps)] attention weights */
    const s2s_vocab_sel *vs; /* shortlist of the batch, or NULL (decoder.h set_vocab) */
} tstate;

static void *t_start(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                     int R, int max_steps) {
    const s2s_config *c = &m->cfg;
    int D = c->d_model, L = c->dec_layers, H = c->n_heads;
    tstate *s = s2s_xcalloc(1, sizeof *s);
    s->m = m; s->B = B; s->Ts = Ts; s->R = R; s->max_steps = max_steps;
    s->Nmax = s->N = B * R;
    size_t Nm = (size_t)s->Nmax;
    s->src_len = s2s_xmalloc((size_t)B * sizeof(int32_t));
    memcpy(s->src_len, src_len, (size_t)B * sizeof(int32_t));
    s->row_sent = s2s_xmalloc(Nm * sizeof(int32_t));
    s->rows_tmp = s2s_xmalloc(Nm * sizeof(int32_t));
    for (int r = 0; r < s->N; r++) s->row_sent[r] = r / R;
    s->kc = s2s_xcalloc((size_t)L, sizeof(float *)); s->vc = s2s_xcalloc((size_t)L, sizeof(float *));
    s->ck = s2s_xcalloc((size_t)L, sizeof(float *)); s->cv = s2s_xcalloc((size_t)L, sizeof(float *));
    size_t cache = Nm * (size_t)max_steps * D;
    /* cross K/V of the source rows only (attention never reads a padding row's) */
    s->src_first = s2s_xmalloc((size_t)B * sizeof(int32_t));
    int Nsrc = 0;
    for (int b = 0; b < B; b++) {
        s->src_first[b] = Nsrc;
        Nsrc += src_len[b] < Ts ? (src_len[b] > 0 ? src_len[b] : 0) : Ts;
    }
    float *ec = NULL;
    if (Nsrc < B * Ts) {
        ec = s2s_xmalloc(((size_t)Nsrc + 1) * D * sizeof(float));
        s2s_dec_rows_pack(ec, enc, src_len, B, Ts, D);
    }
    for (int l = 0; l < L; l++) {
        s->kc[l] = s2s_xmalloc(cache * sizeof(float));
        s->vc[l] = s2s_xmalloc(cache * sizeof(float));
        s->ck[l] = s2s_xmalloc(((size_t)Nsrc + 1) * D * sizeof(float));
        s->cv[l] = s2s_xmalloc(((size_t)Nsrc + 1) * D * sizeof(float));
        const s2s_dec_layer *Ly = &m->dec[l];
        s2s_dec_linear(s->ck[l], ec ? ec : enc, &Ly->ck, Nsrc, D, D);
        s2s_dec_linear(s->cv[l], ec ? ec : enc, &Ly->cv, Nsrc, D, D);
    }
    free(ec);
    s->slot = s2s_xmalloc(Nm * (size_t)max_steps * sizeof(int32_t));
    s->slot_tmp = s2s_xmalloc(Nm * (size_t)max_steps * sizeof(int32_t));
    s->x = s2s_xmalloc(Nm * D * sizeof(float)); s->h = s2s_xmalloc(Nm * D * sizeof(float));
    s->q = s2s_xmalloc(Nm * D * sizeof(float)); s->a = s2s_xmalloc(Nm * D * sizeof(float));
    s->f = s2s_xmalloc(Nm * (size_t)c->d_ff * sizeof(float));
    s->mean = s2s_xmalloc(Nm * sizeof(float)); s->rstd = s2s_xmalloc(Nm * sizeof(float));
    int T = Ts > max_steps ? Ts : max_steps;
    s->p = s2s_xmalloc(Nm * (size_t)H * T * sizeof(float));
    return s;
}

/* a[r] = attention of query row r over keys 0..len-1 of its K/V block, through the
 * fast kernel (B = 1, Tq = 1); rows run in parallel (the kernel itself then runs
 * serially: no nested parallelism, and it never calls BLAS). */
static void t_step(void *st, float *logits, const int32_t *tokens, int N) {
    tstate *s = st;
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads, Dh = D / H, t = s->t;
    S2S_ASSERT(N == s->N && t < s->max_steps && t < c->max_len);
    float sq = sqrtf((float)D);
    for (int r = 0; r < N; r++) {
        const float *e = m->tgt_emb->data + (size_t)tokens[r] * D;
        const float *pe = m->pe + (size_t)t * D;
        float *xr = s->x + (size_t)r * D;
        for (int d = 0; d < D; d++) xr[d] = e[d] * sq + pe[d];
    }
    int Tmax = s->Ts > s->max_steps ? s->Ts : s->max_steps;
    size_t tstride = (size_t)s->Nmax * D; /* one step of the cache */
    for (int r = 0; r < N; r++) s->slot[(size_t)r * s->max_steps + t] = r; /* this step: slot r */
    for (int l = 0; l < c->dec_layers; l++) {
        const s2s_dec_layer *L = &m->dec[l];
        /* self-attention over the cache; this step's K/V go straight into it */
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln1.w->data, L->ln1.b->data, N, D);
        s2s_dec_linear(s->q, s->h, &L->sq, N, D, D);
        s2s_dec_linear(s->kc[l] + t * tstride, s->h, &L->sk, N, D, D);
        s2s_dec_linear(s->vc[l] + t * tstride, s->h, &L->sv, N, D, D);
        s2s_dec_attend_at(s->a, s->p, s->q, s->kc[l], s->vc[l], tstride, D, s->slot, s->max_steps, NULL, NULL,
                          NULL, t + 1, N, H, Dh, Tmax);
        s2s_dec_linear_add(s->x, s->h, s->a, &L->so, N, D, D);
        /* cross-attention over the projected source */
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln2.w->data, L->ln2.b->data, N, D);
        s2s_dec_linear(s->q, s->h, &L->cq, N, D, D);
        s2s_dec_attend_at(s->a, s->p, s->q, s->ck[l], s->cv[l], D, D, NULL, 0, s->row_sent, s->src_first, s->src_len,
                          s->Ts, N, H, Dh, Tmax);
        s2s_dec_linear_add(s->x, s->h, s->a, &L->co, N, D, D);
        /* feed-forward */
        s2s_dec_ffn(s->x, s->h, s->f, s->mean, s->rstd, m, L, N);
    }
    s2s_dec_logits(logits, s->h, s->mean, s->rstd, s->x, m, s->vs, N);
    s->t++;
}

static void t_select(void *st, const int32_t *rows, int N_new) {
    tstate *s = st;
    S2S_ASSERT(N_new <= s->Nmax);
    size_t used = (size_t)s->t;
    int identity = N_new == s->N;
    for (int i = 0; identity && i < N_new; i++) identity = rows[i] == i;
    if (!identity && used > 0) {
        /* the caches stay: each new row takes its old row's slot table */
        for (int i = 0; i < N_new; i++) S2S_ASSERT(rows[i] >= 0 && rows[i] < s->N);
        for (int i = 0; i < N_new; i++)
            memcpy(s->slot_tmp + (size_t)i * s->max_steps, s->slot + (size_t)rows[i] * s->max_steps,
                   used * sizeof(int32_t));
        int32_t *tt = s->slot; s->slot = s->slot_tmp; s->slot_tmp = tt;
    }
    s2s_dec_gather_i32(s->row_sent, s->rows_tmp, rows, N_new);
    s->N = N_new;
}

static void t_free(void *st) {
    tstate *s = st;
    if (!s) return;
    for (int l = 0; l < s->m->cfg.dec_layers; l++) { free(s->kc[l]); free(s->vc[l]); free(s->ck[l]); free(s->cv[l]); }
    free(s->kc); free(s->vc); free(s->ck); free(s->cv);
    free(s->src_len); free(s->src_first); free(s->row_sent); free(s->rows_tmp); free(s->slot); free(s->slot_tmp);
    free(s->x); free(s->h); free(s->q); free(s->a); free(s->f);
    free(s->mean); free(s->rstd); free(s->p);
    free(s);
}

static size_t t_state_bytes(const s2s_model *m, int Ts, int t) {
    /* per row: self K/V cache (2 * Ld * t * D) + cross K/V (2 * Ld * Ts * D, per sentence) */
    return sizeof(float) * 2 * (size_t)m->cfg.dec_layers * (size_t)m->cfg.d_model * (size_t)(t + Ts);
}

static size_t t_start_bytes(const s2s_model *m, int B, int Ts, int R, int max_steps) {
    const s2s_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, L = (size_t)c->dec_layers, N = (size_t)B * R;
    size_t T = (size_t)(Ts > max_steps ? Ts : max_steps);
    size_t cache = N * (size_t)max_steps * D;               /* one K or V cache */
    size_t floats = 2 * L * cache                            /* K/V caches */
                    + 2 * L * (size_t)B * Ts * D             /* cross K/V */
                    + (size_t)B * Ts * D                     /* start: source rows packed */
                    + N * (4 * D + (size_t)c->d_ff + 2)      /* row scratch */
                    + N * (size_t)c->n_heads * T;            /* attention scores */
    return floats * sizeof(float) + N * (2 + 2 * (size_t)max_steps) * sizeof(int32_t) /* + slot tables */
           + 2 * (size_t)B * sizeof(int32_t);
}

static void t_set_vocab(void *st, const s2s_vocab_sel *vs) { ((tstate *)st)->vs = vs; }

const s2s_decoder_ops s2s_transformer_decoder = {
    "transformer", t_start, t_step, t_select, t_free, t_state_bytes, t_start_bytes, t_set_vocab,
};
