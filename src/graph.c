/* graph.c - eager tape autodiff over the kernels of kernels.h (see graph.h). */
#include "graph.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "kernels.h"
#include "kernels_rnn.h"

/* ---------------------------------------------------------------- arena */

typedef struct {
    char *mem;
    size_t size, used;
} arena_block;

typedef enum {
    OP_LINEAR, OP_MATMUL, OP_ADD, OP_MUL, OP_SCALE, OP_EMBEDDING, OP_LAYERNORM,
    OP_SOFTMAX, OP_LOGSOFTMAX, OP_RELU, OP_GELU, OP_DROPOUT, OP_ATTENTION, OP_XENT,
    OP_SUM, OP_MEAN, OP_SSRU, OP_GRU, OP_LSTM
} op_kind;

typedef struct {
    op_kind op;
    s2s_tensor *out;
    s2s_tensor *in[3];
    int ia[6];         /* integer arguments (sizes, flags) */
    float fa[2];       /* float arguments */
    float *sv[2];      /* saved float buffers (arena) */
    int32_t *si;       /* saved int buffer (arena) */
} node;

struct s2s_graph {
    arena_block *blocks;  /* [n_blocks] filled in order; cur is the one in use */
    int n_blocks, cur;
    node *nodes;
    int n_nodes, cap_nodes;
    int grad_enabled;
    int training;
    uint64_t *rng;
};

#define ARENA_MIN (64u << 20)
#define PAR_N 32768 /* elementwise loops go parallel above this size */

/* Arena allocation without zeroing (for buffers a kernel overwrites fully). */
static void *alloc_raw(s2s_graph *g, size_t bytes) {
    bytes = (bytes + 63) & ~(size_t)63;
    while (g->cur < g->n_blocks && g->blocks[g->cur].used + bytes > g->blocks[g->cur].size) g->cur++;
    if (g->cur == g->n_blocks) {
        size_t sz = bytes > ARENA_MIN ? bytes : ARENA_MIN;
        g->blocks = s2s_xrealloc(g->blocks, (size_t)(g->n_blocks + 1) * sizeof(arena_block));
        arena_block *nb = &g->blocks[g->n_blocks++];
        nb->mem = aligned_alloc(64, sz);
        S2S_ASSERT(nb->mem != NULL);
        nb->size = sz;
        nb->used = 0;
    }
    arena_block *b = &g->blocks[g->cur];
    void *p = b->mem + b->used;
    b->used += bytes;
    return p;
}

void *s2s_graph_alloc(s2s_graph *g, size_t bytes) {
    void *p = alloc_raw(g, bytes);
    memset(p, 0, bytes);
    return p;
}

s2s_graph *s2s_graph_new(void) {
    s2s_graph *g = s2s_xcalloc(1, sizeof *g);
    g->grad_enabled = 1;
    return g;
}

void s2s_graph_free(s2s_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_blocks; i++) free(g->blocks[i].mem);
    free(g->blocks);
    free(g->nodes);
    free(g);
}

void s2s_graph_reset(s2s_graph *g) {
    for (int i = 0; i < g->n_blocks; i++) g->blocks[i].used = 0;
    g->cur = 0;
    g->n_nodes = 0;
}

size_t s2s_graph_arena_used(const s2s_graph *g) {
    size_t s = 0;
    for (int i = 0; i < g->n_blocks; i++) s += g->blocks[i].used;
    return s;
}

void s2s_graph_set_grad(s2s_graph *g, int enabled) { g->grad_enabled = enabled; }
void s2s_graph_set_training(s2s_graph *g, int training, uint64_t *rng) { g->training = training; g->rng = rng; }

/* -------------------------------------------------------------- tensors */

static size_t numel(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) { S2S_ASSERT(shape[i] >= 0); n *= (size_t)shape[i]; }
    return n;
}

s2s_tensor *s2s_param_new(int ndim, const int *shape) {
    S2S_ASSERT(ndim >= 1 && ndim <= 4);
    s2s_tensor *t = s2s_xcalloc(1, sizeof *t);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int));
    t->n = numel(ndim, shape);
    t->data = s2s_xcalloc(t->n, sizeof(float));
    t->grad = s2s_xcalloc(t->n, sizeof(float));
    t->requires_grad = 1;
    t->is_param = 1;
    return t;
}

void s2s_param_free(s2s_tensor *t) {
    if (!t) return;
    free(t->data); free(t->grad); free(t);
}

static s2s_tensor *tensor_head(s2s_graph *g, int ndim, const int *shape) {
    S2S_ASSERT(ndim >= 1 && ndim <= 4);
    s2s_tensor *t = s2s_graph_alloc(g, sizeof *t);
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof(int));
    t->n = numel(ndim, shape);
    return t;
}

s2s_tensor *s2s_tensor_new(s2s_graph *g, int ndim, const int *shape) {
    s2s_tensor *t = tensor_head(g, ndim, shape);
    t->data = s2s_graph_alloc(g, t->n * sizeof(float));
    return t;
}

/* Output tensor whose every element the op writes: no zeroing. */
static s2s_tensor *tensor_out(s2s_graph *g, int ndim, const int *shape) {
    s2s_tensor *t = tensor_head(g, ndim, shape);
    t->data = alloc_raw(g, t->n * sizeof(float));
    return t;
}

s2s_tensor *s2s_tensor_wrap(s2s_graph *g, float *data, int ndim, const int *shape) {
    s2s_tensor *t = tensor_head(g, ndim, shape);
    t->data = data;
    return t;
}

static int last_dim(const s2s_tensor *t) { return t->shape[t->ndim - 1]; }
static int rows(const s2s_tensor *t) { return (int)(t->n / (size_t)last_dim(t)); }

/* Record a node if the tape is on and any input needs a gradient. */
static node *record(s2s_graph *g, op_kind op, s2s_tensor *out, s2s_tensor *a, s2s_tensor *b,
                    s2s_tensor *c) {
    int rg = (a && a->requires_grad) || (b && b->requires_grad) || (c && c->requires_grad);
    if (!g->grad_enabled || !rg) return NULL;
    out->requires_grad = 1;
    if (g->n_nodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 256;
        g->nodes = s2s_xrealloc(g->nodes, (size_t)g->cap_nodes * sizeof(node));
    }
    node *nd = &g->nodes[g->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->op = op; nd->out = out; nd->in[0] = a; nd->in[1] = b; nd->in[2] = c;
    return nd;
}

/* ------------------------------------------------------------------ ops */

s2s_tensor *s2s_linear(s2s_graph *g, s2s_tensor *x, s2s_tensor *w, s2s_tensor *b) {
    int K = last_dim(x), N = rows(x), M = w->shape[0];
    S2S_ASSERT(w->ndim == 2 && w->shape[1] == K);
    S2S_ASSERT(!b || (int)b->n == M);
    int shape[4];
    memcpy(shape, x->shape, sizeof shape);
    shape[x->ndim - 1] = M;
    s2s_tensor *y = tensor_out(g, x->ndim, shape);
    s2s_k_linear_fwd(y->data, x->data, w->data, b ? b->data : NULL, N, K, M);
    node *nd = record(g, OP_LINEAR, y, x, w, b);
    if (nd) { nd->ia[0] = N; nd->ia[1] = K; nd->ia[2] = M; }
    return y;
}

s2s_tensor *s2s_matmul(s2s_graph *g, s2s_tensor *a, s2s_tensor *b) {
    S2S_ASSERT(a->ndim == 2 && b->ndim == 2 && a->shape[1] == b->shape[0]);
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    s2s_tensor *c = tensor_out(g, 2, (int[]){M, N});
    s2s_k_matmul_fwd(c->data, a->data, b->data, M, K, N);
    node *nd = record(g, OP_MATMUL, c, a, b, NULL);
    if (nd) { nd->ia[0] = M; nd->ia[1] = K; nd->ia[2] = N; }
    return c;
}

s2s_tensor *s2s_add(s2s_graph *g, s2s_tensor *a, s2s_tensor *b) {
    S2S_ASSERT(a->n == b->n);
    s2s_tensor *y = tensor_out(g, a->ndim, a->shape);
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    size_t n = a->n;
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) yd[i] = ad[i] + bd[i];
    record(g, OP_ADD, y, a, b, NULL);
    return y;
}

s2s_tensor *s2s_mul(s2s_graph *g, s2s_tensor *a, s2s_tensor *b) {
    S2S_ASSERT(a->n == b->n);
    s2s_tensor *y = tensor_out(g, a->ndim, a->shape);
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    size_t n = a->n;
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) yd[i] = ad[i] * bd[i];
    record(g, OP_MUL, y, a, b, NULL);
    return y;
}

s2s_tensor *s2s_scale(s2s_graph *g, s2s_tensor *a, float s) {
    s2s_tensor *y = tensor_out(g, a->ndim, a->shape);
    const float *ad = a->data;
    float *yd = y->data;
    size_t n = a->n;
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) yd[i] = ad[i] * s;
    node *nd = record(g, OP_SCALE, y, a, NULL, NULL);
    if (nd) nd->fa[0] = s;
    return y;
}

s2s_tensor *s2s_embedding(s2s_graph *g, s2s_tensor *table, const int32_t *ids, int ndim,
                          const int *shape) {
    S2S_ASSERT(table->ndim == 2 && ndim < 4);
    int D = table->shape[1], V = table->shape[0];
    int oshape[4];
    memcpy(oshape, shape, (size_t)ndim * sizeof(int));
    oshape[ndim] = D;
    s2s_tensor *y = tensor_out(g, ndim + 1, oshape);
    int N = rows(y);
    for (int i = 0; i < N; i++) S2S_ASSERT(ids[i] >= 0 && ids[i] < V);
    s2s_k_embedding_fwd(y->data, table->data, ids, N, D);
    node *nd = record(g, OP_EMBEDDING, y, table, NULL, NULL);
    if (nd) {
        nd->si = s2s_graph_alloc(g, (size_t)N * sizeof(int32_t));
        memcpy(nd->si, ids, (size_t)N * sizeof(int32_t));
        nd->ia[0] = N; nd->ia[1] = D;
    }
    return y;
}

s2s_tensor *s2s_layernorm(s2s_graph *g, s2s_tensor *x, s2s_tensor *w, s2s_tensor *b) {
    int D = last_dim(x), N = rows(x);
    S2S_ASSERT((int)w->n == D && (int)b->n == D);
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    float *mean = s2s_graph_alloc(g, (size_t)N * sizeof(float));
    float *rstd = s2s_graph_alloc(g, (size_t)N * sizeof(float));
    s2s_k_layernorm_fwd(y->data, mean, rstd, x->data, w->data, b->data, N, D);
    node *nd = record(g, OP_LAYERNORM, y, x, w, b);
    if (nd) { nd->sv[0] = mean; nd->sv[1] = rstd; nd->ia[0] = N; nd->ia[1] = D; }
    return y;
}

s2s_tensor *s2s_softmax(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    s2s_k_softmax_fwd(y->data, x->data, rows(x), last_dim(x));
    record(g, OP_SOFTMAX, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_logsoftmax(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    s2s_k_logsoftmax_fwd(y->data, x->data, rows(x), last_dim(x));
    record(g, OP_LOGSOFTMAX, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_relu(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    s2s_k_relu_fwd(y->data, x->data, x->n);
    record(g, OP_RELU, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_gelu(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    s2s_k_gelu_fwd(y->data, x->data, x->n);
    record(g, OP_GELU, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_dropout(s2s_graph *g, s2s_tensor *x, float p) {
    if (!g->training || p <= 0.0f) return x;
    S2S_ASSERT(g->rng != NULL && p < 1.0f);
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    float *mask = alloc_raw(g, x->n * sizeof(float));
    float keep = 1.0f / (1.0f - p);
    /* counter-based: one draw from the graph RNG per op, then a hash per element,
     * so the mask is the same for any thread count */
    uint64_t seed = s2s_rng_next(g->rng);
    const float *xd = x->data;
    float *yd = y->data;
    size_t n = x->n;
#pragma omp parallel for schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) {
        uint64_t z = seed + (uint64_t)(i + 1) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        float u = (float)(z >> 40) / 16777216.0f;
        mask[i] = u >= p ? keep : 0.0f;
        yd[i] = xd[i] * mask[i];
    }
    node *nd = record(g, OP_DROPOUT, y, x, NULL, NULL);
    if (nd) nd->sv[0] = mask;
    return y;
}

s2s_tensor *s2s_attention(s2s_graph *g, s2s_tensor *q, s2s_tensor *k, s2s_tensor *v,
                          const int32_t *kv_len, int causal, int H) {
    S2S_ASSERT(q->ndim == 3 && k->ndim == 3 && v->ndim == 3);
    int B = q->shape[0], Tq = q->shape[1], D = q->shape[2], Tk = k->shape[1];
    S2S_ASSERT(k->shape[0] == B && v->shape[0] == B && v->shape[1] == Tk);
    S2S_ASSERT(k->shape[2] == D && v->shape[2] == D && D % H == 0);
    s2s_tensor *y = tensor_out(g, 3, q->shape);
    float *p = s2s_graph_alloc(g, (size_t)B * H * Tq * Tk * sizeof(float));
    int32_t *len = NULL;
    if (kv_len) {
        len = s2s_graph_alloc(g, (size_t)B * sizeof(int32_t));
        memcpy(len, kv_len, (size_t)B * sizeof(int32_t));
    }
    s2s_k_attention_fwd(y->data, p, q->data, k->data, v->data, len, causal, B, H, Tq, Tk, D / H);
    node *nd = record(g, OP_ATTENTION, y, q, k, v);
    if (nd) {
        nd->sv[0] = p;
        nd->ia[0] = B; nd->ia[1] = H; nd->ia[2] = Tq; nd->ia[3] = Tk; nd->ia[4] = D / H;
    }
    return y;
}

s2s_tensor *s2s_xent(s2s_graph *g, s2s_tensor *logits, const int32_t *tgt, float eps, int ignore,
                     int *n_counted) {
    int V = last_dim(logits), N = rows(logits);
    float *logp = s2s_graph_alloc(g, logits->n * sizeof(float));
    float *loss = s2s_graph_alloc(g, (size_t)N * sizeof(float));
    int cnt = s2s_k_xent_fwd(loss, logp, logits->data, tgt, eps, ignore, N, V);
    double s = 0;
    for (int i = 0; i < N; i++) s += loss[i];
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    y->data[0] = cnt > 0 ? (float)(s / cnt) : 0.0f;
    if (n_counted) *n_counted = cnt;
    node *nd = record(g, OP_XENT, y, logits, NULL, NULL);
    if (nd) {
        nd->sv[0] = logp;
        nd->si = s2s_graph_alloc(g, (size_t)N * sizeof(int32_t));
        memcpy(nd->si, tgt, (size_t)N * sizeof(int32_t));
        nd->ia[0] = N; nd->ia[1] = V; nd->ia[2] = ignore; nd->ia[3] = cnt;
        nd->fa[0] = eps;
    }
    return y;
}

/* xp [B, T, G*D] -> the output [B, T, D]; sets *B, *T, *D */
static s2s_tensor *scan_out(s2s_graph *g, const s2s_tensor *xp, int G, int *B, int *T, int *D) {
    S2S_ASSERT(xp->ndim == 3 && xp->shape[2] % G == 0 && xp->shape[2] > 0);
    *B = xp->shape[0]; *T = xp->shape[1]; *D = xp->shape[2] / G;
    return tensor_out(g, 3, (int[]){*B, *T, *D});
}

s2s_tensor *s2s_ssru_scan(s2s_graph *g, s2s_tensor *xp) {
    int B, T, D;
    s2s_tensor *h = scan_out(g, xp, 2, &B, &T, &D);
    float *c = alloc_raw(g, h->n * sizeof(float));
    s2s_k_ssru_fwd(h->data, c, xp->data, NULL, B, T, D);
    node *nd = record(g, OP_SSRU, h, xp, NULL, NULL);
    if (nd) { nd->sv[0] = c; nd->ia[0] = B; nd->ia[1] = T; nd->ia[2] = D; }
    return h;
}

static s2s_tensor *gated_scan(s2s_graph *g, op_kind op, s2s_tensor *xp, s2s_tensor *wh,
                              s2s_tensor *bh) {
    int G = op == OP_GRU ? 3 : 4, B, T, D;
    s2s_tensor *h = scan_out(g, xp, G, &B, &T, &D);
    S2S_ASSERT(wh->ndim == 2 && wh->shape[0] == G * D && wh->shape[1] == D);
    S2S_ASSERT(!bh || (int)bh->n == G * D);
    float *gates = alloc_raw(g, (size_t)4 * h->n * sizeof(float));
    float *c = op == OP_LSTM ? alloc_raw(g, h->n * sizeof(float)) : NULL;
    const float *bd = bh ? bh->data : NULL;
    if (op == OP_GRU) s2s_k_gru_fwd(h->data, gates, xp->data, wh->data, bd, NULL, B, T, D);
    else s2s_k_lstm_fwd(h->data, c, gates, xp->data, wh->data, bd, NULL, NULL, B, T, D);
    node *nd = record(g, op, h, xp, wh, bh);
    if (nd) { nd->sv[0] = gates; nd->sv[1] = c; nd->ia[0] = B; nd->ia[1] = T; nd->ia[2] = D; }
    return h;
}

s2s_tensor *s2s_gru_scan(s2s_graph *g, s2s_tensor *xp, s2s_tensor *wh, s2s_tensor *bh) {
    return gated_scan(g, OP_GRU, xp, wh, bh);
}

s2s_tensor *s2s_lstm_scan(s2s_graph *g, s2s_tensor *xp, s2s_tensor *wh, s2s_tensor *bh) {
    return gated_scan(g, OP_LSTM, xp, wh, bh);
}

s2s_tensor *s2s_sum(s2s_graph *g, s2s_tensor *x) {
    double s = 0;
    for (size_t i = 0; i < x->n; i++) s += x->data[i];
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    y->data[0] = (float)s;
    record(g, OP_SUM, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_mean(s2s_graph *g, s2s_tensor *x) {
    double s = 0;
    for (size_t i = 0; i < x->n; i++) s += x->data[i];
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    y->data[0] = (float)(s / (double)x->n);
    record(g, OP_MEAN, y, x, NULL, NULL);
    return y;
}

/* ------------------------------------------------------------- backward */

/* Gradient buffer of an input, allocated (zeroed) on first use; NULL if not needed. */
static float *gbuf(s2s_graph *g, s2s_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad) t->grad = s2s_graph_alloc(g, t->n * sizeof(float));
    return t->grad;
}

void s2s_graph_backward(s2s_graph *g, s2s_tensor *loss) {
    S2S_ASSERT(loss->n == 1);
    if (!loss->requires_grad) return;
    gbuf(g, loss)[0] += 1.0f;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        node *nd = &g->nodes[i];
        s2s_tensor *y = nd->out, *a = nd->in[0], *b = nd->in[1], *c = nd->in[2];
        const float *dy = y->grad;
        if (!dy) continue; /* output never used by the loss */
        switch (nd->op) {
        case OP_LINEAR:
            s2s_k_linear_bwd(gbuf(g, a), gbuf(g, b), gbuf(g, c), dy, a->data, b->data,
                             nd->ia[0], nd->ia[1], nd->ia[2]);
            break;
        case OP_MATMUL:
            s2s_k_matmul_bwd(gbuf(g, a), gbuf(g, b), dy, a->data, b->data, nd->ia[0], nd->ia[1], nd->ia[2]);
            break;
        case OP_ADD: {
            float *da = gbuf(g, a), *db = gbuf(g, b);
            size_t n = y->n;
            if (da) {
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
                for (size_t j = 0; j < n; j++) da[j] += dy[j];
            }
            if (db) {
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
                for (size_t j = 0; j < n; j++) db[j] += dy[j];
            }
        } break;
        case OP_MUL: {
            float *da = gbuf(g, a), *db = gbuf(g, b);
            if (da) for (size_t j = 0; j < y->n; j++) da[j] += dy[j] * b->data[j];
            if (db) for (size_t j = 0; j < y->n; j++) db[j] += dy[j] * a->data[j];
        } break;
        case OP_SCALE: {
            float *da = gbuf(g, a), s = nd->fa[0];
            size_t n = y->n;
            if (da) {
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
                for (size_t j = 0; j < n; j++) da[j] += dy[j] * s;
            }
        } break;
        case OP_EMBEDDING:
            s2s_k_embedding_bwd(gbuf(g, a), dy, nd->si, nd->ia[0], nd->ia[1]);
            break;
        case OP_LAYERNORM:
            s2s_k_layernorm_bwd(gbuf(g, a), gbuf(g, b), gbuf(g, c), dy, a->data, nd->sv[0],
                                nd->sv[1], b->data, nd->ia[0], nd->ia[1]);
            break;
        case OP_SOFTMAX:
            s2s_k_softmax_bwd(gbuf(g, a), dy, y->data, rows(y), last_dim(y));
            break;
        case OP_LOGSOFTMAX:
            s2s_k_logsoftmax_bwd(gbuf(g, a), dy, y->data, rows(y), last_dim(y));
            break;
        case OP_RELU:
            s2s_k_relu_bwd(gbuf(g, a), dy, a->data, y->n);
            break;
        case OP_GELU:
            s2s_k_gelu_bwd(gbuf(g, a), dy, a->data, y->n);
            break;
        case OP_DROPOUT: {
            float *da = gbuf(g, a);
            const float *m = nd->sv[0];
            size_t n = y->n;
            if (da) {
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
                for (size_t j = 0; j < n; j++) da[j] += dy[j] * m[j];
            }
        } break;
        case OP_ATTENTION:
            s2s_k_attention_bwd(gbuf(g, a), gbuf(g, b), gbuf(g, c), dy, nd->sv[0], a->data, b->data,
                                c->data, nd->ia[0], nd->ia[1], nd->ia[2], nd->ia[3], nd->ia[4]);
            break;
        case OP_XENT: {
            int N = nd->ia[0], cnt = nd->ia[3];
            if (cnt == 0) break;
            float *dl = s2s_graph_alloc(g, (size_t)N * sizeof(float));
            for (int j = 0; j < N; j++) dl[j] = dy[0] / (float)cnt;
            s2s_k_xent_bwd(gbuf(g, a), dl, nd->sv[0], nd->si, nd->fa[0], nd->ia[2], N, nd->ia[1]);
        } break;
        case OP_SSRU:
            s2s_k_ssru_bwd(gbuf(g, a), dy, a->data, nd->sv[0], NULL, nd->ia[0], nd->ia[1], nd->ia[2]);
            break;
        case OP_GRU:
        case OP_LSTM: {
            int B = nd->ia[0], T = nd->ia[1], D = nd->ia[2], G = nd->op == OP_GRU ? 3 : 4;
            float *ws = alloc_raw(g, S2S_RNN_BWD_WS(G, B, T, D) * sizeof(float));
            if (nd->op == OP_GRU)
                s2s_k_gru_bwd(gbuf(g, a), gbuf(g, b), gbuf(g, c), ws, dy, y->data, nd->sv[0], b->data,
                              NULL, B, T, D);
            else
                s2s_k_lstm_bwd(gbuf(g, a), gbuf(g, b), gbuf(g, c), ws, dy, y->data, nd->sv[1], nd->sv[0],
                               b->data, NULL, NULL, B, T, D);
        } break;
        case OP_SUM: {
            float *da = gbuf(g, a);
            if (da) for (size_t j = 0; j < a->n; j++) da[j] += dy[0];
        } break;
        case OP_MEAN: {
            float *da = gbuf(g, a);
            if (da) for (size_t j = 0; j < a->n; j++) da[j] += dy[0] / (float)a->n;
        } break;
        }
    }
}
