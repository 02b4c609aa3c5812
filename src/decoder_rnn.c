/* decoder_rnn.c - incremental decoding of the recurrent (hybrid) decoders: SSRU, GRU
 * and LSTM layers (docs/MODEL.md "Recurrent decoders") behind the step interface of
 * decoder.h, so greedy and beam search drive them as they drive the Transformer.
 *
 * Per layer the decoding state of a row is a fixed-size vector (SSRU: the cell c;
 * GRU: h; LSTM: h and c, [D] each): nothing grows with the output length, so a step
 * costs the same at position 1 and 1000. Cross-attention K/V are projected once per
 * source sentence at start, as in decoder_transformer.c. A step runs, for all live
 * rows at once: LN1, the input projection of all gates (one linear layer), one cell
 * step (the T = 1 case of the scan kernels of kernels_rnn.h, starting from the
 * carried state), cross-attention, the optional FFN, the final LayerNorm and the tied
 * output projection. Everything start() needs is one allocation, laid out by plan(),
 * which also gives start_bytes(). Checked against the teacher-forced forward pass of
 * model.c by tests/test_rnn.c. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "decoder.h"
#include "kernels.h"
#include "kernels_rnn.h"
#include "decoder_common.h"
#include "shortlist.h"
#include "model.h"

typedef struct {
    const s2s_model *m;
    int kind, G;            /* S2S_DEC_*, gates per cell */
    int B, Ts, max_steps;
    int N, Nmax;            /* live rows, capacity (B*R) */
    int t;                  /* steps taken */
    int32_t *src_len;       /* [B] */
    int32_t *row_sent;      /* [Nmax] sentence of each row */
    int32_t *rows_tmp;      /* [Nmax] select scratch */
    float **hs, **cs;       /* [Ld] -> [Nmax, D] state (SSRU: c in hs; LSTM: h in hs, c in cs) */
    float *spare_h, *spare_c; /* [Nmax, D] the next state / select scratch, swapped in */
    float **ck, **cv;       /* [Ld] -> [B, Ts, D] cross-attention keys/values */
    float *x, *h, *q, *a, *o; /* [Nmax, D] */
    float *xp;              /* [Nmax, G*D] input projections of the step */
    float *gates;           /* [Nmax, 4D] cell scratch */
    float *f;               /* [Nmax, F] FFN hidden (dec_ffn) */
    float *mean, *rstd;     /* [Nmax] */
    float *p;               /* [Nmax, H, Ts] attention weights */
    void *block;            /* the one allocation everything above lives in */
    const s2s_vocab_sel *vs; /* shortlist of the batch, or NULL (decoder.h set_vocab) */
} rstate;

/* Lay out every buffer of a state in one block (base == NULL: only count). Returns
 * the bytes needed; with a base, sets the pointers of s. */
static size_t plan(const s2s_model *m, int B, int Ts, int Nmax, rstate *s, char *base) {
    const s2s_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, L = (size_t)c->dec_layers, N = (size_t)Nmax;
    size_t G = (size_t)s2s_config_rnn_gates(c);
    int lstm = s2s_config_dec_kind(c) == S2S_DEC_LSTM;
    size_t off = 0;
#define CARVE(ptr, type, count)                                        \
    do {                                                               \
        if (base) (ptr) = (type *)(void *)(base + off);                \
        off += (((size_t)(count) * sizeof(type)) + 63) & ~(size_t)63;  \
    } while (0)
    float **pp = NULL;
    CARVE(pp, float *, 4 * L);
    if (base) {
        memset(pp, 0, 4 * L * sizeof(float *)); /* cs[l] stays NULL unless LSTM */
        s->hs = pp; s->cs = pp + L; s->ck = pp + 2 * L; s->cv = pp + 3 * L;
    }
    for (size_t l = 0; l < L; l++) {
        CARVE(s->hs[l], float, N * D);
        if (lstm) CARVE(s->cs[l], float, N * D);
        CARVE(s->ck[l], float, (size_t)B * Ts * D);
        CARVE(s->cv[l], float, (size_t)B * Ts * D);
    }
    CARVE(s->spare_h, float, N * D);
    if (lstm) CARVE(s->spare_c, float, N * D);
    CARVE(s->x, float, N * D); CARVE(s->h, float, N * D); CARVE(s->q, float, N * D);
    CARVE(s->a, float, N * D); CARVE(s->o, float, N * D);
    CARVE(s->xp, float, N * G * D);
    CARVE(s->gates, float, N * 4 * D);
    if (c->dec_ffn) CARVE(s->f, float, N * (size_t)c->d_ff);
    CARVE(s->mean, float, N); CARVE(s->rstd, float, N);
    CARVE(s->p, float, N * (size_t)c->n_heads * Ts);
    CARVE(s->src_len, int32_t, B);
    CARVE(s->row_sent, int32_t, N);
    CARVE(s->rows_tmp, int32_t, N);
#undef CARVE
    return off;
}

static void *r_start(const s2s_model *m, const float *enc, const int32_t *src_len, int B, int Ts,
                     int R, int max_steps) {
    const s2s_config *c = &m->cfg;
    int D = c->d_model;
    rstate *s = s2s_xcalloc(1, sizeof *s);
    s->m = m; s->kind = s2s_config_dec_kind(c); s->G = s2s_config_rnn_gates(c);
    S2S_ASSERT(s->G > 0);
    s->B = B; s->Ts = Ts; s->max_steps = max_steps;
    s->Nmax = s->N = B * R;
    size_t bytes = plan(m, B, Ts, s->Nmax, s, NULL);
    s->block = aligned_alloc(64, bytes);
    S2S_ASSERT(s->block != NULL);
    plan(m, B, Ts, s->Nmax, s, s->block);
    memcpy(s->src_len, src_len, (size_t)B * sizeof(int32_t));
    for (int r = 0; r < s->N; r++) s->row_sent[r] = r / R;
    for (int l = 0; l < c->dec_layers; l++) {
        memset(s->hs[l], 0, (size_t)s->Nmax * D * sizeof(float)); /* zero initial state */
        if (s->cs[l]) memset(s->cs[l], 0, (size_t)s->Nmax * D * sizeof(float));
        const s2s_dec_layer *Ly = &m->dec[l];
        s2s_dec_linear(s->ck[l], enc, &Ly->ck, B * Ts, D, D);
        s2s_dec_linear(s->cv[l], enc, &Ly->cv, B * Ts, D, D);
    }
    return s;
}

/* a[r] = attention of query row r over keys 0..len-1 of its sentence's K/V, through
 * the fast kernel (B = 1, Tq = 1); rows run in parallel (as in decoder_transformer.c). */
static void swap(float **a, float **b) { float *t = *a; *a = *b; *b = t; }

static void r_step(void *st, float *logits, const int32_t *tokens, int N) {
    rstate *s = st;
    const s2s_model *m = s->m;
    const s2s_config *c = &m->cfg;
    int D = c->d_model, H = c->n_heads, G = s->G, t = s->t;
    S2S_ASSERT(N == s->N && t < s->max_steps && t < c->max_len);
    float sq = sqrtf((float)D);
    for (int r = 0; r < N; r++) {
        const float *e = m->tgt_emb->data + (size_t)tokens[r] * D;
        const float *pe = m->pe + (size_t)t * D;
        float *xr = s->x + (size_t)r * D;
        for (int d = 0; d < D; d++) xr[d] = e[d] * sq + pe[d];
    }
    size_t ND = (size_t)N * D;
    for (int l = 0; l < c->dec_layers; l++) {
        const s2s_dec_layer *L = &m->dec[l];
        /* recurrent sublayer: one cell step from the carried state */
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln1.w->data, L->ln1.b->data, N, D);
        s2s_dec_linear(s->xp, s->h, &L->rx, N, D, G * D);
        const float *bh = L->rh.b ? L->rh.b->data : NULL;
        if (s->kind == S2S_DEC_SSRU) {
            s2s_k_ssru_fwd(s->o, s->spare_h, s->xp, s->hs[l], N, 1, D);
            swap(&s->hs[l], &s->spare_h);
            s2s_dec_add(s->x, s->o, ND);
        } else if (s->kind == S2S_DEC_GRU) {
            s2s_k_gru_fwd(s->spare_h, s->gates, s->xp, L->rh.w->data, bh, s->hs[l], N, 1, D);
            swap(&s->hs[l], &s->spare_h);
            s2s_dec_add(s->x, s->hs[l], ND);
        } else {
            s2s_k_lstm_fwd(s->spare_h, s->spare_c, s->gates, s->xp, L->rh.w->data, bh, s->hs[l],
                           s->cs[l], N, 1, D);
            swap(&s->hs[l], &s->spare_h);
            swap(&s->cs[l], &s->spare_c);
            s2s_dec_add(s->x, s->hs[l], ND);
        }
        /* cross-attention over the projected source */
        s2s_k_layernorm_fwd(s->h, s->mean, s->rstd, s->x, L->ln2.w->data, L->ln2.b->data, N, D);
        s2s_dec_linear(s->q, s->h, &L->cq, N, D, D);
        s2s_dec_attend(s->a, s->p, s->q, s->ck[l], s->cv[l], (size_t)s->Ts * D, s->row_sent, s->src_len, s->Ts, N, H, D / H, s->Ts);
        s2s_dec_linear(s->h, s->a, &L->co, N, D, D);
        s2s_dec_add(s->x, s->h, ND);
        if (!c->dec_ffn) continue;
        s2s_dec_ffn(s->x, s->h, s->f, s->mean, s->rstd, m, L, N);
    }
    s2s_dec_logits(logits, s->h, s->mean, s->rstd, s->x, m, s->vs, N);
    s->t++;
}


static void r_select(void *st, const int32_t *rows, int N_new) {
    rstate *s = st;
    S2S_ASSERT(N_new <= s->Nmax);
    for (int i = 0; i < N_new; i++) S2S_ASSERT(rows[i] >= 0 && rows[i] < s->N);
    int D = s->m->cfg.d_model;
    for (int l = 0; l < s->m->cfg.dec_layers; l++) {
        s2s_dec_gather_rows(&s->hs[l], &s->spare_h, rows, N_new, D, D);
        if (s->cs[l]) s2s_dec_gather_rows(&s->cs[l], &s->spare_c, rows, N_new, D, D);
    }
    s2s_dec_gather_i32(s->row_sent, s->rows_tmp, rows, N_new);
    s->N = N_new;
}

static void r_free(void *st) {
    rstate *s = st;
    if (!s) return;
    free(s->block);
    free(s);
}

static size_t r_state_bytes(const s2s_model *m, int Ts, int t) {
    /* per row: the recurrent state (Ld * D, twice for the LSTM) + cross K/V
     * (2 * Ld * Ts * D, per sentence); independent of t */
    (void)t;
    size_t S = s2s_config_dec_kind(&m->cfg) == S2S_DEC_LSTM ? 2 : 1;
    return sizeof(float) * (size_t)m->cfg.dec_layers * (size_t)m->cfg.d_model * (S + 2 * (size_t)Ts);
}

static size_t r_start_bytes(const s2s_model *m, int B, int Ts, int R, int max_steps) {
    (void)max_steps;
    rstate dummy = {0};
    return sizeof(rstate) + plan(m, B, Ts, B * R, &dummy, NULL);
}

static void r_set_vocab(void *st, const s2s_vocab_sel *vs) { ((rstate *)st)->vs = vs; }

const s2s_decoder_ops s2s_ssru_decoder = {
    "ssru", r_start, r_step, r_select, r_free, r_state_bytes, r_start_bytes, r_set_vocab,
};
const s2s_decoder_ops s2s_gru_decoder = {
    "gru", r_start, r_step, r_select, r_free, r_state_bytes, r_start_bytes, r_set_vocab,
};
const s2s_decoder_ops s2s_lstm_decoder = {
    "lstm", r_start, r_step, r_select, r_free, r_state_bytes, r_start_bytes, r_set_vocab,
};
