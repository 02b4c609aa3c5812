/* model.c - parameters, initialisation and the training forward pass of the
 * encoder-decoder (docs/MODEL.md): a Transformer decoder, or a recurrent one (SSRU,
 * GRU, LSTM) whose layers replace self-attention by one scan over the target.
 * A Transformer decoder may use T2R linear attention (cfg.dec_attn t2r, docs/MODEL.md).
 * Inference decoding lives in decoder_transformer.c, decoder_t2r.c and decoder_rnn.c. */
#include "model.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "decoder_common.h"
#include "l0.h"
#include "tokenizer.h"

/* -------------------------------------------------------- parameters */

static s2s_tensor *reg(s2s_model *m, int cap, const char *name, int d0, int d1) {
    S2S_ASSERT(m->n_params < cap);
    int ndim = d1 > 0 ? 2 : 1;
    int shape[2] = {d0, d1};
    s2s_tensor *t;
    if (m->trainable) {
        t = s2s_param_new(ndim, shape);
    } else {
        t = s2s_xcalloc(1, sizeof *t);
        t->ndim = ndim;
        t->shape[0] = d0; t->shape[1] = d1;
        t->n = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    }
    s2s_param_entry *e = &m->params[m->n_params++];
    snprintf(e->name, sizeof e->name, "%s", name);
    e->t = t;
    e->decay = ndim == 2;
    return t;
}

static void reg_lin(s2s_model *m, int cap, s2s_lin_p *p, const char *prefix, int out, int in) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.weight", prefix); p->w = reg(m, cap, nm, out, in);
    snprintf(nm, sizeof nm, "%s.bias", prefix);   p->b = reg(m, cap, nm, out, 0);
}

static void reg_ln(s2s_model *m, int cap, s2s_ln_p *p, const char *prefix, int D) {
    char nm[64];
    snprintf(nm, sizeof nm, "%s.weight", prefix); p->w = reg(m, cap, nm, D, 0);
    snprintf(nm, sizeof nm, "%s.bias", prefix);   p->b = reg(m, cap, nm, D, 0);
}

/* Build the parameter table; data is allocated only when trainable. */

s2s_model *s2s_model_new_empty(const s2s_config *c, int trainable) {
    s2s_model *m = s2s_xcalloc(1, sizeof *m);
    m->cfg = *c;
    m->trainable = trainable;
    int D = c->d_model, F = c->d_ff; /* F: the decoder's (encoder layers: s2s_config_enc_ff) */
    int cap = 8 + 16 * c->enc_layers + 36 * c->dec_layers; /* dec: 30 + 6 DEED exit tensors */
    m->params = s2s_xcalloc((size_t)cap, sizeof *m->params);
    m->tgt_emb = reg(m, cap, "tgt_emb.weight", c->tgt_vocab, D);
    m->src_emb = c->share_src_emb ? m->tgt_emb : reg(m, cap, "src_emb.weight", c->src_vocab, D);
    m->enc = s2s_xcalloc((size_t)(c->enc_layers ? c->enc_layers : 1), sizeof *m->enc);
    m->dec = s2s_xcalloc((size_t)c->dec_layers, sizeof *m->dec);
    char p[48];
    for (int i = 0; i < c->enc_layers; i++) {
        /* per-layer widths (pruned encoders): A = heads * Dh attention width, Fl FFN
         * units; a sublayer of width 0 has no tensors at all (its pointers stay NULL) */
        s2s_enc_layer *L = &m->enc[i];
        int A = s2s_config_enc_heads(c, i) * (D / c->n_heads), Fl = s2s_config_enc_ff(c, i);
        if (A > 0) {
            snprintf(p, sizeof p, "enc.%d.ln1", i); reg_ln(m, cap, &L->ln1, p, D);
            snprintf(p, sizeof p, "enc.%d.attn.q", i); reg_lin(m, cap, &L->q, p, A, D);
            snprintf(p, sizeof p, "enc.%d.attn.k", i); reg_lin(m, cap, &L->k, p, A, D);
            snprintf(p, sizeof p, "enc.%d.attn.v", i); reg_lin(m, cap, &L->v, p, A, D);
            snprintf(p, sizeof p, "enc.%d.attn.o", i); reg_lin(m, cap, &L->o, p, D, A);
        }
        if (Fl > 0) {
            snprintf(p, sizeof p, "enc.%d.ln2", i); reg_ln(m, cap, &L->ln2, p, D);
            snprintf(p, sizeof p, "enc.%d.fc1", i); reg_lin(m, cap, &L->fc1, p, Fl, D);
            snprintf(p, sizeof p, "enc.%d.fc2", i); reg_lin(m, cap, &L->fc2, p, D, Fl);
        }
    }
    reg_ln(m, cap, &m->enc_ln, "enc.ln", D);
    int G = s2s_config_rnn_gates(c); /* 0: Transformer */
    for (int i = 0; i < c->dec_layers; i++) {
        s2s_dec_layer *L = &m->dec[i];
        snprintf(p, sizeof p, "dec.%d.ln1", i); reg_ln(m, cap, &L->ln1, p, D);
        if (G == 0) {
            snprintf(p, sizeof p, "dec.%d.self.q", i); reg_lin(m, cap, &L->sq, p, D, D);
            snprintf(p, sizeof p, "dec.%d.self.k", i); reg_lin(m, cap, &L->sk, p, D, D);
            snprintf(p, sizeof p, "dec.%d.self.v", i); reg_lin(m, cap, &L->sv, p, D, D);
            snprintf(p, sizeof p, "dec.%d.self.o", i); reg_lin(m, cap, &L->so, p, D, D);
            if (s2s_config_is_t2r(c) && c->t2r_map == S2S_T2R_MAP_RELU) { /* elu: no weights */
                snprintf(p, sizeof p, "dec.%d.self.phi", i);
                reg_lin(m, cap, &L->sphi, p, c->n_heads * c->t2r_k, D / c->n_heads);
            }
        } else {
            snprintf(p, sizeof p, "dec.%d.rnn.wx", i); reg_lin(m, cap, &L->rx, p, G * D, D);
            if (G > 2) { snprintf(p, sizeof p, "dec.%d.rnn.wh", i); reg_lin(m, cap, &L->rh, p, G * D, D); }
        }
        snprintf(p, sizeof p, "dec.%d.ln2", i); reg_ln(m, cap, &L->ln2, p, D);
        snprintf(p, sizeof p, "dec.%d.cross.q", i); reg_lin(m, cap, &L->cq, p, D, D);
        snprintf(p, sizeof p, "dec.%d.cross.k", i); reg_lin(m, cap, &L->ck, p, D, D);
        snprintf(p, sizeof p, "dec.%d.cross.v", i); reg_lin(m, cap, &L->cv, p, D, D);
        snprintf(p, sizeof p, "dec.%d.cross.o", i); reg_lin(m, cap, &L->co, p, D, D);
        if (s2s_config_is_t2r(c) && c->t2r_map == S2S_T2R_MAP_RELU) {
            snprintf(p, sizeof p, "dec.%d.cross.phi", i);
            reg_lin(m, cap, &L->cphi, p, c->n_heads * c->t2r_k, D / c->n_heads);
        }
        if (c->dec_ffn) {
            snprintf(p, sizeof p, "dec.%d.ln3", i); reg_ln(m, cap, &L->ln3, p, D);
            snprintf(p, sizeof p, "dec.%d.fc1", i); reg_lin(m, cap, &L->fc1, p, F, D);
            snprintf(p, sizeof p, "dec.%d.fc2", i); reg_lin(m, cap, &L->fc2, p, D, F);
        }
        if (c->multi_exit && i < c->dec_layers - 1) { /* DEED exit adapter (the last exit: dec.ln) */
            snprintf(p, sizeof p, "dec.%d.exit.ln", i); reg_ln(m, cap, &L->exln, p, D);
            snprintf(p, sizeof p, "dec.%d.exit.down", i); reg_lin(m, cap, &L->exdown, p, c->exit_rank, D);
            snprintf(p, sizeof p, "dec.%d.exit.up", i); reg_lin(m, cap, &L->exup, p, D, c->exit_rank);
        }
    }
    reg_ln(m, cap, &m->dec_ln, "dec.ln", D);

    /* sinusoidal positions, tensor2tensor / CTranslate2 layout */
    int half = D / 2;
    m->pe = s2s_xmalloc((size_t)c->max_len * (size_t)D * sizeof(float));
    double inc = log(10000.0) / (double)(half > 1 ? half - 1 : 1);
    for (int pos = 0; pos < c->max_len; pos++)
        for (int j = 0; j < half; j++) {
            double a = (double)pos * exp(-(double)j * inc);
            m->pe[(size_t)pos * D + j] = (float)sin(a);
            m->pe[(size_t)pos * D + half + j] = (float)cos(a);
        }
    return m;
}

static int is_phi(const char *name) { return strstr(name, ".phi.") != NULL; }

/* Random values of parameter e (s2s_model_create's initialisation). */
static void init_param(const s2s_config *c, s2s_param_entry *e, uint64_t *rng) {
    s2s_tensor *t = e->t;
    const char *nm = e->name;
    size_t L = strlen(nm);
    if (is_phi(nm) && t->ndim == 2) { /* T2R feature map: xavier uniform per head [k, Dh] */
        float lim = sqrtf(6.0f / (float)(c->t2r_k + t->shape[1]));
        for (size_t j = 0; j < t->n; j++) t->data[j] = lim * (2.0f * s2s_rng_uniform(rng) - 1.0f);
    } else if (strstr(nm, "_emb.")) {
        float sd = 1.0f / sqrtf((float)c->d_model);
        for (size_t j = 0; j < t->n; j++) t->data[j] = sd * s2s_rng_normal(rng);
        for (int d = 0; d < c->d_model; d++) t->data[d] = 0.0f; /* <pad> row */
    } else if (t->ndim == 2) { /* xavier uniform */
        float lim = sqrtf(6.0f / (float)(t->shape[0] + t->shape[1]));
        for (size_t j = 0; j < t->n; j++) t->data[j] = lim * (2.0f * s2s_rng_uniform(rng) - 1.0f);
    } else if (L > 7 && strcmp(nm + L - 7, ".weight") == 0) { /* LayerNorm gain */
        for (size_t j = 0; j < t->n; j++) t->data[j] = 1.0f;
    } /* biases stay 0 */
}

s2s_model *s2s_model_create(const s2s_config *c, struct s2s_tokenizer *src_tok,
                            struct s2s_tokenizer *tgt_tok, uint64_t seed) {
    s2s_model *m = s2s_model_new_empty(c, 1);
    m->src_tok = src_tok;
    m->tgt_tok = tgt_tok;
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < m->n_params; i++) init_param(c, &m->params[i], &rng);
    return m;
}

s2s_model *s2s_model_to_t2r(s2s_model *src, int k, int map, uint64_t seed, char *err, size_t errlen) {
    s2s_config c = src->cfg;
    if (s2s_config_dec_kind(&c) != S2S_DEC_TRANSFORMER || s2s_config_is_t2r(&c)) {
        s2s_errf(err, errlen, "--to t2r needs a softmax Transformer decoder (this model: decoder '%.16s', dec_attn %s)",
                 c.decoder, s2s_config_is_t2r(&c) ? "t2r" : "softmax");
        return NULL;
    }
    c.dec_attn = S2S_ATTN_T2R;
    c.t2r_map = map;
    c.t2r_k = map == S2S_T2R_MAP_ELU ? c.d_model / c.n_heads : k; /* elu: k = Dh */
    if (s2s_config_check(&c, err, errlen) != 0) return NULL;
    s2s_model *m = s2s_model_new_empty(&c, 1);
    m->src_tok = src->src_tok;
    m->tgt_tok = src->tgt_tok;
    src->src_tok = src->tgt_tok = NULL; /* moved */
    if (src->train_meta) m->train_meta = s2s_xstrdup(src->train_meta);
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int i = 0; i < m->n_params; i++)
        if (is_phi(m->params[i].name)) init_param(&c, &m->params[i], &rng);
    int copied = s2s_model_copy_matching(m, src, 1);
    S2S_ASSERT(copied == src->n_params &&
               copied + (map == S2S_T2R_MAP_ELU ? 0 : 4) * c.dec_layers == m->n_params); /* all but phi */
    return m;
}

int s2s_model_copy_matching(s2s_model *dst, const s2s_model *src, int with_decoder) {
    S2S_ASSERT(dst->trainable);
    int n = 0;
    for (int i = 0; i < dst->n_params; i++) {
        const s2s_param_entry *e = &dst->params[i];
        if (!with_decoder && strncmp(e->name, "dec.", 4) == 0) continue;
        const s2s_tensor *t = s2s_model_param(src, e->name);
        if (!t || t->ndim != e->t->ndim || t->shape[0] != e->t->shape[0] ||
            (t->ndim == 2 && t->shape[1] != e->t->shape[1]))
            continue;
        memcpy(e->t->data, t->data, e->t->n * sizeof(float));
        n++;
    }
    return n;
}

s2s_model *s2s_model_student(s2s_model *teacher, const s2s_config *dec, uint64_t seed,
                             char *err, size_t errlen) {
    s2s_config c = teacher->cfg;
    memcpy(c.decoder, dec->decoder, sizeof c.decoder);
    if (s2s_decoder_kind_parse(c.decoder) != S2S_DEC_TRANSFORMER) c.dec_attn = S2S_ATTN_SOFTMAX; /* T2R: Transformer only */
    c.dec_layers = dec->dec_layers;
    c.dec_ffn = dec->dec_ffn;
    c.multi_exit = 0; /* a new decoder: DEED exits come from s2s_model_to_multi_exit */
    if (s2s_config_check(&c, err, errlen) != 0) return NULL;
    s2s_model *m = s2s_model_create(&c, teacher->src_tok, teacher->tgt_tok, seed);
    teacher->src_tok = teacher->tgt_tok = NULL; /* moved */
    s2s_model_copy_matching(m, teacher, 0);
    return m;
}

void s2s_model_free(s2s_model *m) {
    if (!m) return;
    s2s_model_free_cuda(m);
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
        if (m->trainable) s2s_param_free(t);
        else { if (t->is_param) free(t->data); free(t->packed); free(t); } /* is_param marks owned data */
    }
    free(m->params); free(m->enc); free(m->dec); free(m->pe); free(m->train_meta);
    s2s_tok_free(m->src_tok);
    if (m->tgt_tok != m->src_tok) s2s_tok_free(m->tgt_tok);
    s2s_model_close_file(m);
    free(m);
}

size_t s2s_model_param_count(const s2s_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += m->params[i].t->n;
    return n;
}

s2s_tensor *s2s_model_param(const s2s_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return m->params[i].t;
    return NULL;
}

/* ---------------------------------------------------- forward (graph) */

/* tok [B, T] -> emb * sqrt(D) + PE, dropout -> [B, T, D] */
static s2s_tensor *embed(s2s_graph *g, const s2s_model *m, s2s_tensor *table, const int32_t *ids,
                         int B, int T, float dropout) {
    int D = m->cfg.d_model;
    S2S_ASSERT(T <= m->cfg.max_len);
    s2s_tensor *e = s2s_embedding(g, table, ids, 2, (int[]){B, T});
    e = s2s_scale(g, e, sqrtf((float)D));
    const float *pos = s2s_graph_is_cuda(g) ? m->dev_pe : m->pe;
    S2S_ASSERT(pos != NULL); /* a CUDA graph needs s2s_model_to_cuda first */
    s2s_tensor *pe = s2s_tensor_repeat(g, pos, B, 3, (int[]){B, T, D});
    return s2s_dropout(g, s2s_add(g, e, pe), dropout);
}

static s2s_tensor *lin(s2s_graph *g, s2s_tensor *x, const s2s_lin_p *p) { return s2s_linear(g, x, p->w, p->b); }
static s2s_tensor *ln(s2s_graph *g, s2s_tensor *x, const s2s_ln_p *p) { return s2s_layernorm(g, x, p->w, p->b); }

static s2s_tensor *ffn(s2s_graph *g, const s2s_model *m, s2s_tensor *x, const s2s_lin_p *fc1,
                       const s2s_lin_p *fc2) {
    s2s_tensor *h = lin(g, x, fc1);
    h = m->cfg.activation == S2S_ACT_GELU ? s2s_gelu(g, h) : s2s_relu(g, h);
    return lin(g, h, fc2);
}

/* phi: the T2R feature map (decoder with dec_attn t2r), NULL for softmax attention */
static s2s_tensor *mha(s2s_graph *g, const s2s_model *m, s2s_tensor *xq, s2s_tensor *xkv,
                       const s2s_lin_p *q, const s2s_lin_p *k, const s2s_lin_p *v,
                       const s2s_lin_p *o, const s2s_lin_p *phi, const int32_t *kv_len, int causal) {
    s2s_tensor *a = phi ? s2s_t2r_attention(g, lin(g, xq, q), lin(g, xkv, k), lin(g, xkv, v), phi->w, phi->b,
                                            kv_len, causal, m->cfg.n_heads)
                        : s2s_attention(g, lin(g, xq, q), lin(g, xkv, k), lin(g, xkv, v), kv_len, causal,
                                        m->cfg.n_heads);
    return lin(g, a, o);
}

/* Inference without the padding rows: x [B, T, D] -> [N, D], the rows t < len[b] in order
 * (N = their count), and back, with zero rows at t >= len[b]. Plain copies on a CPU graph of
 * an inference model (nothing needs a gradient, so no tape). */
static s2s_tensor *rows_pack(s2s_graph *g, s2s_tensor *x, const int32_t *len, int B, int T, int N) {
    const int D = x->shape[x->ndim - 1];
    s2s_tensor *y = s2s_tensor_wrap(g, s2s_graph_alloc(g, (size_t)N * D * sizeof(float)), 2, (int[]){N, D});
    for (int b = 0, r = 0; b < B; r += len[b], b++)
        memcpy(y->data + (size_t)r * D, x->data + (size_t)b * T * D, (size_t)len[b] * D * sizeof(float));
    return y;
}

static s2s_tensor *rows_unpack(s2s_graph *g, s2s_tensor *x, const int32_t *len, int B, int T) {
    const int D = x->shape[x->ndim - 1];
    s2s_tensor *y = s2s_tensor_new(g, 3, (int[]){B, T, D}); /* zeroed */
    for (int b = 0, r = 0; b < B; r += len[b], b++)
        memcpy(y->data + (size_t)b * T * D, x->data + (size_t)r * D, (size_t)len[b] * D * sizeof(float));
    return y;
}

s2s_tensor *s2s_model_encode(s2s_graph *g, const s2s_model *m, const int32_t *src,
                             const int32_t *src_len, int B, int Ts, float dropout) {
    s2s_tensor *x = embed(g, m, m->src_emb, src, B, Ts, dropout);
    /* an inference model on the CPU skips the padding rows: the sentences' rows are packed
     * ([N, D], N = sum of the lengths); every sublayer but attention is row-wise, and
     * attention runs each row over its own sentence's rows (s2s_dec_attend_at); the result
     * is spread back to [B, Ts, D] with zero padding rows */
    int N = 0;
    for (int b = 0; b < B; b++) N += src_len[b] < Ts ? (src_len[b] > 0 ? src_len[b] : 0) : Ts;
    const int compact = !m->trainable && !s2s_graph_is_cuda(g) && dropout == 0.0f && N < B * Ts && N > 0;
    int32_t *clen = NULL, *rsent = NULL, *first = NULL;
    float *pscr = NULL;
    if (compact) {
        clen = s2s_graph_alloc(g, (size_t)B * sizeof(int32_t));
        first = s2s_graph_alloc(g, (size_t)B * sizeof(int32_t)); /* sentence -> its first row */
        rsent = s2s_graph_alloc(g, (size_t)N * sizeof(int32_t)); /* row -> its sentence */
        for (int b = 0, r = 0; b < B; b++) {
            clen[b] = src_len[b] < Ts ? (src_len[b] > 0 ? src_len[b] : 0) : Ts;
            first[b] = r;
            for (int i = 0; i < clen[b]; i++) rsent[r + i] = b;
            r += clen[b];
        }
        pscr = s2s_graph_alloc(g, (size_t)N * m->cfg.n_heads * Ts * sizeof(float));
        x = rows_pack(g, x, clen, B, Ts, N);
    }
    for (int i = 0; i < m->cfg.enc_layers; i++) {
        /* per-layer widths (pruned encoders): Hl heads of Dh = D / n_heads, Fl FFN
         * units; a sublayer of width 0 is skipped (the residual passes through) */
        const s2s_enc_layer *L = &m->enc[i];
        int Hl = s2s_config_enc_heads(&m->cfg, i), Fl = s2s_config_enc_ff(&m->cfg, i);
        if (Hl > 0) {
            s2s_tensor *h = ln(g, x, &L->ln1);
            s2s_tensor *q = lin(g, h, &L->q), *k = lin(g, h, &L->k), *v = lin(g, h, &L->v), *a;
            if (compact) { /* each row over its own sentence's rows: the decoders' one-query kernel */
                const int HD = q->shape[1], Dh = m->cfg.d_model / m->cfg.n_heads;
                a = s2s_tensor_wrap(g, s2s_graph_alloc(g, (size_t)N * HD * sizeof(float)), 2, (int[]){N, HD});
                s2s_dec_attend_at(a->data, pscr, q->data, k->data, v->data, (size_t)HD, (size_t)HD, NULL, 0, rsent,
                                  first, clen, Ts, N, Hl, Dh, Ts);
            } else {
                a = s2s_attention(g, q, k, v, src_len, 0, Hl); /* [B, Ts, Hl*Dh] */
            }
            if (m->l0) a = s2s_group_scale(g, a, s2s_l0_mask(g, m->l0, i, 0)); /* NASH head masks [Hl] */
            x = s2s_add(g, x, s2s_dropout(g, lin(g, a, &L->o), dropout));
        }
        if (Fl > 0) {
            s2s_tensor *h = ln(g, x, &L->ln2);
            h = lin(g, h, &L->fc1); /* [B, Ts, Fl] */
            h = m->cfg.activation == S2S_ACT_GELU ? s2s_gelu(g, h) : s2s_relu(g, h);
            if (m->l0) h = s2s_group_scale(g, h, s2s_l0_mask(g, m->l0, i, 1)); /* NASH FFN unit masks [Fl] */
            x = s2s_add(g, x, s2s_dropout(g, lin(g, h, &L->fc2), dropout));
        }
    }
    x = ln(g, x, &m->enc_ln);
    return compact ? rows_unpack(g, x, clen, B, Ts) : x;
}

/* The recurrent sublayer: one linear layer projects every step's input for all
 * gates at once, then the scan runs the recurrence. [B, Tt, D] -> [B, Tt, D] */
static s2s_tensor *rnn(s2s_graph *g, int kind, s2s_tensor *x, const s2s_dec_layer *L) {
    s2s_tensor *xp = lin(g, x, &L->rx);
    if (kind == S2S_DEC_SSRU) return s2s_ssru_scan(g, xp);
    if (kind == S2S_DEC_GRU) return s2s_gru_scan(g, xp, L->rh.w, L->rh.b);
    return s2s_lstm_scan(g, xp, L->rh.w, L->rh.b);
}

/* Decoder layer L on y [B, Tt, D] -> [B, Tt, D]: self-attention (softmax or T2R) or the
 * recurrence, cross-attention over enc, and the FFN when the config has one. */
static s2s_tensor *dec_layer(s2s_graph *g, const s2s_model *m, const s2s_dec_layer *L, s2s_tensor *y,
                             s2s_tensor *enc, const int32_t *src_len, float dropout) {
    int kind = s2s_config_dec_kind(&m->cfg), t2r = s2s_config_is_t2r(&m->cfg);
    s2s_tensor *h = ln(g, y, &L->ln1);
    s2s_tensor *s = kind == S2S_DEC_TRANSFORMER ? mha(g, m, h, h, &L->sq, &L->sk, &L->sv, &L->so, t2r ? &L->sphi : NULL, NULL, 1)
                                                : rnn(g, kind, h, L);
    y = s2s_add(g, y, s2s_dropout(g, s, dropout));
    h = ln(g, y, &L->ln2);
    y = s2s_add(g, y, s2s_dropout(g, mha(g, m, h, enc, &L->cq, &L->ck, &L->cv, &L->co, t2r ? &L->cphi : NULL, src_len, 0), dropout));
    if (!m->cfg.dec_ffn) return y;
    h = ln(g, y, &L->ln3);
    return s2s_add(g, y, s2s_dropout(g, ffn(g, m, h, &L->fc1, &L->fc2), dropout));
}

s2s_tensor *s2s_model_decode_train(s2s_graph *g, const s2s_model *m, s2s_tensor *enc,
                                   const int32_t *src_len, const int32_t *tgt_in, int B,
                                   int Tt, float dropout) {
    s2s_tensor *y = embed(g, m, m->tgt_emb, tgt_in, B, Tt, dropout);
    for (int i = 0; i < m->cfg.dec_layers; i++) y = dec_layer(g, m, &m->dec[i], y, enc, src_len, dropout);
    y = ln(g, y, &m->dec_ln);
    return s2s_linear(g, y, m->tgt_emb, NULL);
}

/* ------------------------------------------------ DEED multi-exit decoder */

s2s_model *s2s_model_to_multi_exit(s2s_model *src, int rank, uint64_t seed, char *err, size_t errlen) {
    s2s_config c = src->cfg;
    if (c.multi_exit) {
        s2s_errf(err, errlen, "the model is already multi-exit (exit_rank %d)", c.exit_rank);
        return NULL;
    }
    c.multi_exit = 1;
    c.exit_rank = rank;
    if (s2s_config_check(&c, err, errlen) != 0) return NULL;
    s2s_model *m = s2s_model_new_empty(&c, 1);
    m->src_tok = src->src_tok;
    m->tgt_tok = src->tgt_tok;
    src->src_tok = src->tgt_tok = NULL; /* moved */
    if (src->train_meta) m->train_meta = s2s_xstrdup(src->train_meta);
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 1;
    int D = c.d_model;
    for (int i = 0; i < m->n_params; i++) {
        s2s_param_entry *e = &m->params[i];
        if (strstr(e->name, ".exit.down.weight")) init_param(&c, e, &rng); /* xavier; biases and up stay 0 */
    }
    int copied = s2s_model_copy_matching(m, src, 1);
    S2S_ASSERT(copied == src->n_params && copied + 6 * (c.dec_layers - 1) == m->n_params);
    for (int l = 0; l < c.dec_layers - 1; l++) { /* each exit starts as "LN_dec of layer l's state" */
        memcpy(m->dec[l].exln.w->data, m->dec_ln.w->data, (size_t)D * sizeof(float));
        memcpy(m->dec[l].exln.b->data, m->dec_ln.b->data, (size_t)D * sizeof(float));
    }
    return m;
}

/* a_l(y) = LN_l(y + up(relu(down(y)))): [.., D] -> [.., D] */
static s2s_tensor *exit_adapter(s2s_graph *g, s2s_tensor *y, const s2s_dec_layer *L) {
    s2s_tensor *u = lin(g, s2s_relu(g, lin(g, y, &L->exdown)), &L->exup);
    return ln(g, s2s_add(g, y, u), &L->exln);
}

void s2s_model_decode_train_exits(s2s_graph *g, const s2s_model *m, s2s_tensor *enc,
                                  const int32_t *src_len, const int32_t *tgt_in, int B, int Tt,
                                  float dropout, s2s_tensor **exits) {
    S2S_ASSERT(m->cfg.multi_exit && s2s_config_dec_kind(&m->cfg) == S2S_DEC_TRANSFORMER); /* softmax or T2R */
    int Ld = m->cfg.dec_layers;
    s2s_tensor *y = embed(g, m, m->tgt_emb, tgt_in, B, Tt, dropout);
    for (int i = 0; i < Ld; i++) { /* the layers of s2s_model_decode_train */
        const s2s_dec_layer *L = &m->dec[i];
        y = dec_layer(g, m, L, y, enc, src_len, dropout);
        s2s_tensor *a = i < Ld - 1 ? exit_adapter(g, y, L) : ln(g, y, &m->dec_ln);
        exits[i] = s2s_linear(g, a, m->tgt_emb, NULL);
    }
}

s2s_tensor *s2s_model_exit_loss(s2s_graph *g, const s2s_model *m, s2s_tensor **exits,
                                const int32_t *tgt_out, float eps, float last_weight) {
    int Ld = m->cfg.dec_layers;
    s2s_tensor *loss = NULL;
    for (int l = 0; l < Ld; l++) {
        float w = 1.0f / (float)Ld + (l == Ld - 1 ? last_weight : 0.0f);
        s2s_tensor *term = s2s_scale(g, s2s_xent(g, exits[l], tgt_out, eps, S2S_PAD, NULL), w);
        loss = loss ? s2s_add(g, loss, term) : term;
    }
    return loss;
}
