/* graph.c - eager tape autodiff over the kernels of kernels.h (see graph.h).
 *
 * One code path for both devices: a CUDA graph (s2s_graph_new_cuda) keeps its
 * tensors' values in a device arena (dev_data/dev_grad) and calls the s2s_kcu_*
 * kernels of kernels_cuda.h, which have the CPU kernels' signatures; KERN(name)
 * picks the implementation, DAT/GRD the pointer. Host-side integer inputs (token
 * ids, lengths, targets) are copied to the graph's device. Tensor heads and the
 * tape itself always live on the host. */
#include "graph.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels.h"
#include "kernels_cuda.h"
#include "kernels_l0.h"
#include "kernels_rnn.h"
#include "kernels_t2r.h"
#include "kernels_t2r_cuda.h"

/* ---------------------------------------------------------------- arena */

typedef struct {
    char *mem;
    size_t size, used;
} arena_block;

typedef enum {
    OP_LINEAR, OP_MATMUL, OP_ADD, OP_MUL, OP_SCALE, OP_EMBEDDING, OP_LAYERNORM,
    OP_SOFTMAX, OP_LOGSOFTMAX, OP_RELU, OP_GELU, OP_DROPOUT, OP_ATTENTION, OP_XENT,
    OP_SUM, OP_MEAN, OP_SSRU, OP_GRU, OP_LSTM, OP_T2R,
    OP_GROUP_SCALE, OP_HARD_CONCRETE, OP_L0_DENSITY, OP_L0_LAGRANGIAN /* structured L0 (kernels_l0.h) */
} op_kind;
#define N_OPS (OP_L0_LAGRANGIAN + 1)
static const char *const op_names[N_OPS] = {
    "linear", "matmul", "add", "mul", "scale", "embedding", "layernorm", "softmax", "logsoftmax",
    "relu", "gelu", "dropout", "attention", "xent", "sum", "mean", "ssru", "gru", "lstm", "t2r",
    "group_scale", "hard_concrete", "l0_density", "l0_lagrangian"};

typedef struct {
    op_kind op;
    s2s_tensor *out;
    s2s_tensor *in[5];
    int ia[8];         /* integer arguments (sizes, flags) */
    float fa[2];       /* float arguments */
    float *sv[3];      /* saved float buffers (arena) */
    int32_t *si;       /* saved int buffer (arena) */
} node;

struct s2s_graph {
    arena_block *blocks;  /* [n_blocks] filled in order; cur is the one in use */
    int n_blocks, cur;
    int cuda;             /* values live on the GPU, in the device arena below */
    arena_block *dblocks;
    int n_dblocks, dcur;
    node *nodes;
    int n_nodes, cap_nodes;
    int grad_enabled;
    int training;
    uint64_t *rng;
    double (*prof)[3];    /* [N_OPS] forward s, backward s, calls; NULL unless profiling */
    double prof_t;        /* end of the last timed op */
};

#define ARENA_MIN (64u << 20)
#define DARENA_MIN (256u << 20)
#define PAR_N 32768 /* elementwise loops go parallel above this size */

/* Bump allocation from a list of blocks (host: aligned_alloc; device: cudaMalloc). */
static void *arena_take(arena_block **blocks, int *n_blocks, int *cur, size_t bytes, int device) {
    bytes = (bytes + 255) & ~(size_t)255;
    while (*cur < *n_blocks && (*blocks)[*cur].used + bytes > (*blocks)[*cur].size) (*cur)++;
    if (*cur == *n_blocks) {
        size_t min = device ? DARENA_MIN : ARENA_MIN;
        size_t sz = bytes > min ? bytes : min;
        *blocks = s2s_xrealloc(*blocks, (size_t)(*n_blocks + 1) * sizeof(arena_block));
        arena_block *nb = &(*blocks)[(*n_blocks)++];
#ifdef S2S_CUDA
        if (device) nb->mem = s2s_cuda_malloc(sz);
        else
#endif
            nb->mem = aligned_alloc(64, sz);
        S2S_ASSERT(nb->mem != NULL);
        nb->size = sz;
        nb->used = 0;
    }
    arena_block *b = &(*blocks)[*cur];
    void *p = b->mem + b->used;
    b->used += bytes;
    return p;
}

/* Host arena allocation without zeroing (for buffers a kernel overwrites fully). */
static void *alloc_raw(s2s_graph *g, size_t bytes) {
    return arena_take(&g->blocks, &g->n_blocks, &g->cur, bytes, 0);
}

#define DAT(t) (g->cuda ? (t)->dev_data : (t)->data)
#define GRD(t) (g->cuda ? (t)->dev_grad : (t)->grad)
#ifdef S2S_CUDA
#define KERN(name) (g->cuda ? s2s_kcu_##name : s2s_k_##name)
#else
#define KERN(name) s2s_k_##name
#endif

/* n floats on the graph's device, not zeroed / zeroed. */
static float *fbuf(s2s_graph *g, size_t n) {
    if (!g->cuda) return alloc_raw(g, n * sizeof(float));
    return arena_take(&g->dblocks, &g->n_dblocks, &g->dcur, n * sizeof(float), 1);
}
static float *fbuf0(s2s_graph *g, size_t n) {
    float *p = fbuf(g, n);
#ifdef S2S_CUDA
    if (g->cuda) { s2s_cuda_memset0(p, n * sizeof(float)); return p; }
#endif
    memset(p, 0, n * sizeof(float));
    return p;
}
/* A copy of host ints on the graph's device. */
static int32_t *ibuf(s2s_graph *g, const int32_t *host, size_t n) {
    int32_t *p;
#ifdef S2S_CUDA
    if (g->cuda) {
        p = arena_take(&g->dblocks, &g->n_dblocks, &g->dcur, n * sizeof(int32_t), 1);
        s2s_cuda_upload(p, host, n * sizeof(int32_t));
        return p;
    }
#endif
    p = alloc_raw(g, n * sizeof(int32_t));
    memcpy(p, host, n * sizeof(int32_t));
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
    const char *p = getenv("S2S_PROFILE");
    if (p && *p && strcmp(p, "0") != 0) s2s_graph_set_profile(g, 1);
    return g;
}

/* ------------------------------------------------------------------ op profile */

/* Now, after the GPU finished what was queued (timing asynchronous kernels). */
static double prof_now(const s2s_graph *g) {
#ifdef S2S_CUDA
    if (g->cuda) s2s_cuda_sync();
#else
    (void)g;
#endif
    return s2s_now();
}

void s2s_graph_set_profile(s2s_graph *g, int on) {
    if (on && !g->prof) g->prof = s2s_xcalloc(N_OPS, sizeof *g->prof);
    if (!on) { free(g->prof); g->prof = NULL; }
    if (g->prof) g->prof_t = prof_now(g);
}

double s2s_graph_profile_seconds(const s2s_graph *g, const char *op, int backward, long *calls) {
    for (int i = 0; g->prof && i < N_OPS; i++)
        if (!strcmp(op_names[i], op)) {
            if (calls) *calls = (long)g->prof[i][2];
            return g->prof[i][backward ? 1 : 0];
        }
    if (calls) *calls = 0;
    return 0.0;
}

void s2s_graph_profile_print(const s2s_graph *g, FILE *f) {
    if (!g->prof) return;
    double total = 0;
    int order[N_OPS];
    for (int i = 0; i < N_OPS; i++) { order[i] = i; total += g->prof[i][0] + g->prof[i][1]; }
    if (total <= 0) return;
    for (int i = 1; i < N_OPS; i++) /* insertion sort, most time first */
        for (int j = i; j > 0; j--) {
            const double *a = g->prof[order[j]], *b = g->prof[order[j - 1]];
            if (a[0] + a[1] <= b[0] + b[1]) break;
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    fprintf(f, "s2s op profile (%s; forward = time since the previous op, host work between ops included)\n",
            g->cuda ? "GPU, synchronised after every op" : "CPU");
    fprintf(f, "%-14s %10s %12s %12s %7s\n", "op", "calls", "forward ms", "backward ms", "share");
    for (int k = 0; k < N_OPS; k++) {
        const double *r = g->prof[order[k]];
        if (r[2] == 0 && r[1] == 0) continue;
        fprintf(f, "%-14s %10.0f %12.2f %12.2f %6.1f%%\n", op_names[order[k]], r[2], 1e3 * r[0], 1e3 * r[1],
                100.0 * (r[0] + r[1]) / total);
    }
}

s2s_graph *s2s_graph_new_cuda(char *err, size_t errlen) {
#ifdef S2S_CUDA
    if (s2s_cuda_available()) {
        s2s_graph *g = s2s_graph_new();
        g->cuda = 1;
        return g;
    }
    s2s_errf(err, errlen, "--device cuda: no CUDA device is available");
#else
    s2s_errf(err, errlen, "--device cuda: this s2s was built without CUDA (rebuild with make CUDA=1)");
#endif
    return NULL;
}

int s2s_graph_is_cuda(const s2s_graph *g) { return g->cuda; }

void s2s_graph_free(s2s_graph *g) {
    if (!g) return;
    if (g->prof) { s2s_graph_profile_print(g, stderr); free(g->prof); }
    for (int i = 0; i < g->n_blocks; i++) free(g->blocks[i].mem);
    free(g->blocks);
#ifdef S2S_CUDA
    for (int i = 0; i < g->n_dblocks; i++) s2s_cuda_free(g->dblocks[i].mem);
#endif
    free(g->dblocks);
    free(g->nodes);
    free(g);
}

void s2s_graph_reset(s2s_graph *g) {
    for (int i = 0; i < g->n_blocks; i++) g->blocks[i].used = 0;
    for (int i = 0; i < g->n_dblocks; i++) g->dblocks[i].used = 0;
    g->cur = g->dcur = 0;
    g->n_nodes = 0;
    if (g->prof) g->prof_t = prof_now(g);
}

size_t s2s_graph_arena_used(const s2s_graph *g) {
    size_t s = 0;
    for (int i = 0; i < g->n_blocks; i++) s += g->blocks[i].used;
    for (int i = 0; i < g->n_dblocks; i++) s += g->dblocks[i].used;
    return s;
}

void s2s_graph_set_grad(s2s_graph *g, int enabled) { g->grad_enabled = enabled; }
void s2s_graph_set_training(s2s_graph *g, int training, uint64_t *rng) { g->training = training; g->rng = rng; }
int s2s_graph_sampling(const s2s_graph *g) { return g->training && g->grad_enabled && g->rng != NULL; }
uint64_t *s2s_graph_rng(s2s_graph *g) { return g->rng; }

/* -------------------------------------------------------------- tensors */

static size_t numel(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) { S2S_ASSERT(shape[i] >= 0); n *= (size_t)shape[i]; }
    return n;
}

const float *s2s_weight_packed(s2s_tensor *w) {
    if (!w->frozen || w->ndim != 2 || !w->data) return NULL;
    float *p = __atomic_load_n(&w->packed, __ATOMIC_ACQUIRE);
    if (p) return p;
    const int M = w->shape[0], K = w->shape[1];
    size_t bytes = s2s_gemm_packed_floats(K, M) * sizeof(float);
    float *mine = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!mine) return NULL; /* the unpacked kernels still work */
    s2s_gemm_pack(mine, w->data, K, M);
    float *expected = NULL;
    if (__atomic_compare_exchange_n(&w->packed, &expected, mine, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return mine;
    free(mine); /* another thread packed it first */
    return expected;
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
    if (g->cuda) t->dev_data = fbuf0(g, t->n);
    else t->data = fbuf0(g, t->n);
    return t;
}

/* Output tensor whose every element the op writes: no zeroing. */
static s2s_tensor *tensor_out(s2s_graph *g, int ndim, const int *shape) {
    s2s_tensor *t = tensor_head(g, ndim, shape);
    if (g->cuda) t->dev_data = fbuf(g, t->n);
    else t->data = fbuf(g, t->n);
    return t;
}

s2s_tensor *s2s_tensor_wrap(s2s_graph *g, float *data, int ndim, const int *shape) {
    s2s_tensor *t = tensor_head(g, ndim, shape);
    if (g->cuda) t->dev_data = data; /* a device pointer on a CUDA graph */
    else t->data = data;
    return t;
}

s2s_tensor *s2s_tensor_from_host(s2s_graph *g, const float *src, int ndim, const int *shape) {
    s2s_tensor *t = tensor_out(g, ndim, shape);
#ifdef S2S_CUDA
    if (g->cuda) { s2s_cuda_upload(t->dev_data, src, t->n * sizeof(float)); return t; }
#endif
    memcpy(t->data, src, t->n * sizeof(float));
    return t;
}

s2s_tensor *s2s_tensor_repeat(s2s_graph *g, const float *src, int reps, int ndim, const int *shape) {
    s2s_tensor *t = tensor_out(g, ndim, shape);
    S2S_ASSERT(reps > 0 && t->n % (size_t)reps == 0);
    size_t per = t->n / (size_t)reps;
#ifdef S2S_CUDA
    if (g->cuda) { /* doubling copies: log2(reps) transfers instead of reps */
        s2s_cuda_copy(t->dev_data, src, per * sizeof(float));
        for (size_t have = 1; have < (size_t)reps;) {
            size_t k = have < (size_t)reps - have ? have : (size_t)reps - have;
            s2s_cuda_copy(t->dev_data + have * per, t->dev_data, k * per * sizeof(float));
            have += k;
        }
        return t;
    }
#endif
    for (int r = 0; r < reps; r++) memcpy(t->data + (size_t)r * per, src, per * sizeof(float));
    return t;
}

void s2s_tensor_read(s2s_graph *g, float *out, const s2s_tensor *t) {
#ifdef S2S_CUDA
    if (g->cuda) { s2s_cuda_download(out, t->dev_data, t->n * sizeof(float)); return; }
#endif
    memcpy(out, t->data, t->n * sizeof(float));
}

float s2s_tensor_item(s2s_graph *g, const s2s_tensor *t) {
    S2S_ASSERT(t->n == 1);
    float v;
    s2s_tensor_read(g, &v, t);
    return v;
}

/* ---------------------------------------------------- elementwise helpers */

static void ew_add(s2s_graph *g, float *y, const float *a, const float *b, size_t n) {
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_add(y, a, b, n); return; }
#endif
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void ew_mul(s2s_graph *g, float *y, const float *a, const float *b, size_t n) {
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_mul(y, a, b, n); return; }
#endif
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i];
}

static void ew_scale(s2s_graph *g, float *y, const float *a, float s, size_t n) {
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_scale(y, a, s, n); return; }
#endif
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) y[i] = a[i] * s;
}

/* y += s * x, or y = s * x when set (the first write of a gradient) */
static void ew_axpy(s2s_graph *g, float *y, float s, const float *x, size_t n, int set) {
    if (set) { ew_scale(g, y, x, s, n); return; }
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_axpy(y, s, x, n); return; }
#endif
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) y[i] += s * x[i];
}

/* y += a * b, or y = a * b when set */
static void ew_mul_acc(s2s_graph *g, float *y, const float *a, const float *b, size_t n, int set) {
    if (set) { ew_mul(g, y, a, b, n); return; }
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_mul_acc(y, a, b, n); return; }
#endif
#pragma omp parallel for simd schedule(static) if (n > PAR_N)
    for (size_t i = 0; i < n; i++) y[i] += a[i] * b[i];
}

/* y += s * dy1[0] */
static void ew_bcast_acc(s2s_graph *g, float *y, const float *dy1, float s, size_t n) {
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_bcast_acc(y, dy1, s, n); return; }
#endif
    float v = s * dy1[0];
    for (size_t i = 0; i < n; i++) y[i] += v;
}

/* out[0] = sum(x) / div (div > 0), accumulated in double */
static void ew_sum(s2s_graph *g, float *out, const float *x, double div, size_t n) {
#ifdef S2S_CUDA
    if (g->cuda) { s2s_kcu_sum(out, x, (float)(1.0 / div), n); return; }
#endif
    double acc = 0;
    for (size_t i = 0; i < n; i++) acc += x[i];
    out[0] = (float)(acc / div);
}

static int last_dim(const s2s_tensor *t) { return t->shape[t->ndim - 1]; }
static int rows(const s2s_tensor *t) { return (int)(t->n / (size_t)last_dim(t)); }

/* Record a node if the tape is on and any of its n inputs needs a gradient. */
static node *record_n(s2s_graph *g, op_kind op, s2s_tensor *out, s2s_tensor *const *in, int n) {
    if (g->prof) { /* every op records after its forward ran */
        const double t = prof_now(g);
        g->prof[op][0] += t - g->prof_t;
        g->prof[op][2] += 1;
        g->prof_t = t;
    }
    int rg = 0;
    for (int i = 0; i < n; i++) rg |= in[i] && in[i]->requires_grad;
    if (!g->grad_enabled || !rg) return NULL;
    out->requires_grad = 1;
    if (g->n_nodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 256;
        g->nodes = s2s_xrealloc(g->nodes, (size_t)g->cap_nodes * sizeof(node));
    }
    node *nd = &g->nodes[g->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->op = op; nd->out = out;
    for (int i = 0; i < n; i++) nd->in[i] = in[i];
    return nd;
}

static node *record(s2s_graph *g, op_kind op, s2s_tensor *out, s2s_tensor *a, s2s_tensor *b,
                    s2s_tensor *c) {
    s2s_tensor *in[3] = {a, b, c};
    return record_n(g, op, out, in, 3);
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
    const float *pw = NULL;
    if (!g->cuda && w->half && N <= S2S_F16_MAX_ROWS) /* inference on an fp16 model, few rows */
        s2s_k_linear_f16_fwd(y->data, x->data, w->half, b ? b->data : NULL, N, K, M);
    else if (!g->cuda && N >= S2S_PACKED_MIN_ROWS && (pw = s2s_weight_packed(w))) /* inference */
        s2s_k_linear_packed_fwd(y->data, x->data, pw, b ? b->data : NULL, N, K, M);
    else
        KERN(linear_fwd)(DAT(y), DAT(x), DAT(w), b ? DAT(b) : NULL, N, K, M);
    node *nd = record(g, OP_LINEAR, y, x, w, b);
    if (nd) { nd->ia[0] = N; nd->ia[1] = K; nd->ia[2] = M; }
    return y;
}

s2s_tensor *s2s_matmul(s2s_graph *g, s2s_tensor *a, s2s_tensor *b) {
    S2S_ASSERT(a->ndim == 2 && b->ndim == 2 && a->shape[1] == b->shape[0]);
    int M = a->shape[0], K = a->shape[1], N = b->shape[1];
    s2s_tensor *c = tensor_out(g, 2, (int[]){M, N});
    KERN(matmul_fwd)(DAT(c), DAT(a), DAT(b), M, K, N);
    node *nd = record(g, OP_MATMUL, c, a, b, NULL);
    if (nd) { nd->ia[0] = M; nd->ia[1] = K; nd->ia[2] = N; }
    return c;
}

s2s_tensor *s2s_add(s2s_graph *g, s2s_tensor *a, s2s_tensor *b) {
    S2S_ASSERT(a->n == b->n);
    s2s_tensor *y = tensor_out(g, a->ndim, a->shape);
    ew_add(g, DAT(y), DAT(a), DAT(b), a->n);
    record(g, OP_ADD, y, a, b, NULL);
    return y;
}

s2s_tensor *s2s_mul(s2s_graph *g, s2s_tensor *a, s2s_tensor *b) {
    S2S_ASSERT(a->n == b->n);
    s2s_tensor *y = tensor_out(g, a->ndim, a->shape);
    ew_mul(g, DAT(y), DAT(a), DAT(b), a->n);
    record(g, OP_MUL, y, a, b, NULL);
    return y;
}

/* A copy under a new shape: recorded as a scale by 1 (its backward is shape-agnostic). */
s2s_tensor *s2s_reshape(s2s_graph *g, s2s_tensor *a, int ndim, const int *shape) {
    S2S_ASSERT(ndim >= 1 && ndim <= 4);
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    S2S_ASSERT(n == a->n);
    s2s_tensor *y = tensor_out(g, ndim, shape);
    ew_scale(g, DAT(y), DAT(a), 1.0f, a->n);
    node *nd = record(g, OP_SCALE, y, a, NULL, NULL);
    if (nd) nd->fa[0] = 1.0f;
    return y;
}

s2s_tensor *s2s_scale(s2s_graph *g, s2s_tensor *a, float s) {
    s2s_tensor *y = tensor_out(g, a->ndim, a->shape);
    ew_scale(g, DAT(y), DAT(a), s, a->n);
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
    int32_t *dids = ibuf(g, ids, (size_t)N);
    KERN(embedding_fwd)(DAT(y), DAT(table), dids, N, D);
    node *nd = record(g, OP_EMBEDDING, y, table, NULL, NULL);
    if (nd) { nd->si = dids; nd->ia[0] = N; nd->ia[1] = D; }
    return y;
}

s2s_tensor *s2s_layernorm(s2s_graph *g, s2s_tensor *x, s2s_tensor *w, s2s_tensor *b) {
    int D = last_dim(x), N = rows(x);
    S2S_ASSERT((int)w->n == D && (int)b->n == D);
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    float *mean = fbuf(g, (size_t)N);
    float *rstd = fbuf(g, (size_t)N);
    KERN(layernorm_fwd)(DAT(y), mean, rstd, DAT(x), DAT(w), DAT(b), N, D);
    node *nd = record(g, OP_LAYERNORM, y, x, w, b);
    if (nd) { nd->sv[0] = mean; nd->sv[1] = rstd; nd->ia[0] = N; nd->ia[1] = D; }
    return y;
}

s2s_tensor *s2s_softmax(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    KERN(softmax_fwd)(DAT(y), DAT(x), rows(x), last_dim(x));
    record(g, OP_SOFTMAX, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_logsoftmax(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    KERN(logsoftmax_fwd)(DAT(y), DAT(x), rows(x), last_dim(x));
    record(g, OP_LOGSOFTMAX, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_relu(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    KERN(relu_fwd)(DAT(y), DAT(x), x->n);
    record(g, OP_RELU, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_gelu(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    KERN(gelu_fwd)(DAT(y), DAT(x), x->n);
    record(g, OP_GELU, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_dropout(s2s_graph *g, s2s_tensor *x, float p) {
    if (!g->training || p <= 0.0f) return x;
    S2S_ASSERT(g->rng != NULL && p < 1.0f);
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    float *mask = fbuf(g, x->n);
    float keep = 1.0f / (1.0f - p);
    /* counter-based: one draw from the graph RNG per op, then a hash per element,
     * so the mask is the same for any thread count (and on the GPU) */
    uint64_t seed = s2s_rng_next(g->rng);
    size_t n = x->n;
#ifdef S2S_CUDA
    if (g->cuda) {
        s2s_kcu_dropout_fwd(y->dev_data, mask, x->dev_data, p, seed, n);
        node *nd = record(g, OP_DROPOUT, y, x, NULL, NULL);
        if (nd) nd->sv[0] = mask;
        return y;
    }
#endif
    const float *xd = x->data;
    float *yd = y->data;
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
    float *p = fbuf(g, (size_t)B * H * Tq * Tk); /* the kernel writes every entry */
    int32_t *len = kv_len ? ibuf(g, kv_len, (size_t)B) : NULL;
    KERN(attention_fwd)(DAT(y), p, DAT(q), DAT(k), DAT(v), len, causal, B, H, Tq, Tk, D / H);
    node *nd = record(g, OP_ATTENTION, y, q, k, v);
    if (nd) {
        nd->sv[0] = p;
        nd->ia[0] = B; nd->ia[1] = H; nd->ia[2] = Tq; nd->ia[3] = Tk; nd->ia[4] = D / H;
    }
    return y;
}

s2s_tensor *s2s_t2r_attention(s2s_graph *g, s2s_tensor *q, s2s_tensor *k, s2s_tensor *v,
                              s2s_tensor *W, s2s_tensor *b, const int32_t *kv_len, int causal, int H) {
    S2S_ASSERT(q->ndim == 3 && k->ndim == 3 && v->ndim == 3);
    int B = q->shape[0], Tq = q->shape[1], D = q->shape[2], Tk = k->shape[1];
    S2S_ASSERT(k->shape[0] == B && v->shape[0] == B && v->shape[1] == Tk);
    S2S_ASSERT(k->shape[2] == D && v->shape[2] == D && H > 0 && D % H == 0);
    int d = D / H, kf = d; /* W == NULL (and b): the fixed elu+1 map, kf = d */
    S2S_ASSERT((W == NULL) == (b == NULL));
    if (W) {
        S2S_ASSERT(W->ndim == 2 && W->shape[1] == d && W->shape[0] % H == 0 && W->shape[0] > 0);
        kf = W->shape[0] / H;
        S2S_ASSERT((int)b->n == H * kf);
    }
    s2s_tensor *y = tensor_out(g, 3, q->shape);
    float *pq = fbuf(g, (size_t)B * H * Tq * kf), *pk = fbuf(g, (size_t)B * H * Tk * kf);
    float *den = fbuf(g, (size_t)B * H * Tq);
    int32_t *len = kv_len ? ibuf(g, kv_len, (size_t)B) : NULL;
    KERN(t2r_fwd)(DAT(y), pq, pk, den, DAT(q), DAT(k), DAT(v), W ? DAT(W) : NULL, b ? DAT(b) : NULL, len, causal, B,
                  H, Tq, Tk, d, kf);
    s2s_tensor *in[5] = {q, k, v, W, b};
    node *nd = record_n(g, OP_T2R, y, in, 5);
    if (nd) {
        nd->sv[0] = pq; nd->sv[1] = pk; nd->sv[2] = den; nd->si = len;
        nd->ia[0] = B; nd->ia[1] = H; nd->ia[2] = Tq; nd->ia[3] = Tk; nd->ia[4] = d; nd->ia[5] = kf;
        nd->ia[6] = causal;
    }
    return y;
}

s2s_tensor *s2s_xent(s2s_graph *g, s2s_tensor *logits, const int32_t *tgt, float eps, int ignore,
                     int *n_counted) {
    int V = last_dim(logits), N = rows(logits);
    float *logp = fbuf(g, logits->n);
    float *loss = fbuf0(g, (size_t)N);
    int32_t *dtgt = ibuf(g, tgt, (size_t)N);
    int cnt = 0;
    for (int i = 0; i < N; i++) cnt += tgt[i] != ignore;
    (void)KERN(xent_fwd)(loss, logp, DAT(logits), dtgt, eps, ignore, N, V);
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    ew_sum(g, DAT(y), loss, cnt > 0 ? (double)cnt : 1.0, (size_t)N); /* all-ignored: loss rows are 0 */
    if (n_counted) *n_counted = cnt;
    node *nd = record(g, OP_XENT, y, logits, NULL, NULL);
    if (nd) {
        nd->sv[0] = logp;
        nd->si = dtgt;
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
    float *c = fbuf(g, h->n);
    KERN(ssru_fwd)(DAT(h), c, DAT(xp), NULL, B, T, D);
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
    float *gates = fbuf(g, (size_t)4 * h->n);
    float *c = op == OP_LSTM ? fbuf(g, h->n) : NULL;
    const float *bd = bh ? DAT(bh) : NULL;
    if (op == OP_GRU) KERN(gru_fwd)(DAT(h), gates, DAT(xp), DAT(wh), bd, NULL, B, T, D);
    else KERN(lstm_fwd)(DAT(h), c, gates, DAT(xp), DAT(wh), bd, NULL, NULL, B, T, D);
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

s2s_tensor *s2s_group_scale(s2s_graph *g, s2s_tensor *x, s2s_tensor *z) {
    int G = (int)z->n;
    S2S_ASSERT(G > 0 && last_dim(x) % G == 0);
    int S = last_dim(x) / G, N = rows(x);
    s2s_tensor *y = tensor_out(g, x->ndim, x->shape);
    KERN(group_scale_fwd)(DAT(y), DAT(x), DAT(z), N, G, S);
    node *nd = record(g, OP_GROUP_SCALE, y, x, z, NULL);
    if (nd) { nd->ia[0] = N; nd->ia[1] = G; nd->ia[2] = S; }
    return y;
}

s2s_tensor *s2s_hard_concrete(s2s_graph *g, s2s_tensor *log_alpha, int off, int n, const float *u) {
    S2S_ASSERT(n > 0 && off >= 0 && (size_t)off + (size_t)n <= log_alpha->n);
    for (int i = 0; i < n; i++) S2S_ASSERT(u[i] > 0.0f && u[i] < 1.0f);
    s2s_tensor *z = tensor_out(g, 1, (int[]){n});
    float *du = fbuf(g, (size_t)n);
#ifdef S2S_CUDA
    if (g->cuda) s2s_cuda_upload(du, u, (size_t)n * sizeof(float)); else
#endif
    memcpy(du, u, (size_t)n * sizeof(float));
    KERN(hard_concrete_fwd)(DAT(z), DAT(log_alpha) + off, du, n);
    node *nd = record(g, OP_HARD_CONCRETE, z, log_alpha, NULL, NULL);
    if (nd) { nd->sv[0] = du; nd->ia[0] = off; nd->ia[1] = n; }
    return z;
}

s2s_tensor *s2s_l0_density(s2s_graph *g, s2s_tensor *log_alpha, const float *cost, float inv_total) {
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    KERN(l0_density_fwd)(DAT(y), DAT(log_alpha), cost, inv_total, (int)log_alpha->n);
    node *nd = record(g, OP_L0_DENSITY, y, log_alpha, NULL, NULL);
    if (nd) { nd->sv[0] = (float *)cost; nd->fa[0] = inv_total; }
    return y;
}

s2s_tensor *s2s_l0_lagrangian(s2s_graph *g, s2s_tensor *density, s2s_tensor *lambda, float t) {
    S2S_ASSERT(density->n == 1 && lambda->n == 2);
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    KERN(l0_lagrangian_fwd)(DAT(y), DAT(density), DAT(lambda), t);
    node *nd = record(g, OP_L0_LAGRANGIAN, y, density, lambda, NULL);
    if (nd) nd->fa[0] = t;
    return y;
}

s2s_tensor *s2s_sum(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    ew_sum(g, DAT(y), DAT(x), 1.0, x->n);
    record(g, OP_SUM, y, x, NULL, NULL);
    return y;
}

s2s_tensor *s2s_mean(s2s_graph *g, s2s_tensor *x) {
    s2s_tensor *y = tensor_out(g, 1, (int[]){1});
    ew_sum(g, DAT(y), DAT(x), (double)x->n, x->n);
    record(g, OP_MEAN, y, x, NULL, NULL);
    return y;
}

/* ------------------------------------------------------------- backward */

/* Gradient buffers. The backward runs the tape in reverse, so every op that writes a
 * tensor's gradient runs before the node that made the tensor reads it, and until the
 * first of them a non-parameter tensor's gradient pointer is NULL. That first writer
 * need not add to zeros: gbuf_first gives it a buffer that is not zeroed and sets the
 * kernel's assign bit, so it overwrites (beta = 0 GEMMs, = instead of +=; kernels.h).
 * Later writers, parameters (their gradients add up across steps and micro-batches;
 * optim.c zeroes them) and ops that write only part of a gradient (embedding scatter,
 * hard-concrete slice, the scans, ...) use gbuf: zeroed on first use, then +=.
 * A gradient no op writes stays NULL, and its node is skipped. */

/* Gradient buffer of an input, allocated (zeroed) on first use; NULL if not needed. */
static float *gbuf(s2s_graph *g, s2s_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (g->cuda) {
        if (!t->dev_grad) t->dev_grad = fbuf0(g, t->n);
        return t->dev_grad;
    }
    if (!t->grad) t->grad = fbuf0(g, t->n);
    return t->grad;
}

static void set_grad(s2s_graph *g, s2s_tensor *t, float *p) {
    if (g->cuda) t->dev_grad = p;
    else t->grad = p;
}

/* 1 when this node's backward is the first writer of input i's gradient: needed, none
 * yet, not a parameter, and not also another input of the node (one kernel call then
 * writes it twice, in an order of the kernel's own, so both writes must add). */
static int first_write(const s2s_graph *g, const node *nd, int i) {
    const s2s_tensor *t = nd->in[i];
    if (!t || !t->requires_grad || t->is_param || GRD(t)) return 0;
    for (int j = 0; j < 5; j++)
        if (j != i && nd->in[j] == t) return 0;
    return 1;
}

/* Gradient buffer of input i for a backward that writes every element of it: on the
 * first write an unzeroed buffer, with S2S_ASSIGN(i) added to *assign (input i's
 * gradient is the kernel's i-th gradient output); otherwise gbuf's. */
static float *gbuf_first(s2s_graph *g, const node *nd, int i, int *assign) {
    s2s_tensor *t = nd->in[i];
    if (!first_write(g, nd, i)) return gbuf(g, t);
    float *p = fbuf(g, t->n);
    set_grad(g, t, p);
    *assign |= S2S_ASSIGN(i);
    return p;
}

void s2s_graph_backward(s2s_graph *g, s2s_tensor *loss) {
    S2S_ASSERT(loss->n == 1);
    if (!loss->requires_grad) return;
    float *dl0 = gbuf(g, loss);
#ifdef S2S_CUDA
    if (g->cuda) { float one = 1.0f; s2s_cuda_upload(dl0, &one, sizeof one); } else
#endif
    dl0[0] += 1.0f;
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        node *nd = &g->nodes[i];
        s2s_tensor *y = nd->out, *a = nd->in[0], *b = nd->in[1], *c = nd->in[2];
        const float *dy = GRD(y);
        if (!dy) continue; /* output never used by the loss */
        float *da, *db, *dc;
        int asg = 0; /* the assign bits of gbuf_first's buffers */
        const double t0 = g->prof ? prof_now(g) : 0.0;
        switch (nd->op) {
        case OP_LINEAR: /* dW, db: parameters, accumulated */
            da = gbuf_first(g, nd, 0, &asg);
            KERN(linear_bwd)(da, gbuf(g, b), gbuf(g, c), dy, DAT(a), DAT(b), nd->ia[0], nd->ia[1], nd->ia[2],
                             asg);
            break;
        case OP_MATMUL:
            da = gbuf_first(g, nd, 0, &asg);
            db = gbuf_first(g, nd, 1, &asg);
            KERN(matmul_bwd)(da, db, dy, DAT(a), DAT(b), nd->ia[0], nd->ia[1], nd->ia[2], asg);
            break;
        case OP_ADD:
            /* dy is final (y's consumers ran before) and no later node reads it (y is this
             * node's output only), so a's first gradient can be dy's buffer itself: later
             * writers of a's gradient then add into it, as into a copy */
            if (first_write(g, nd, 0)) set_grad(g, a, (float *)dy);
            else if ((da = gbuf(g, a))) ew_axpy(g, da, 1.0f, dy, y->n, 0);
            if ((db = gbuf_first(g, nd, 1, &asg))) ew_axpy(g, db, 1.0f, dy, y->n, asg & S2S_ASSIGN(1));
            break;
        case OP_MUL:
            da = gbuf_first(g, nd, 0, &asg);
            db = gbuf_first(g, nd, 1, &asg);
            if (da) ew_mul_acc(g, da, dy, DAT(b), y->n, asg & S2S_ASSIGN(0));
            if (db) ew_mul_acc(g, db, dy, DAT(a), y->n, asg & S2S_ASSIGN(1));
            break;
        case OP_SCALE:
            if ((da = gbuf_first(g, nd, 0, &asg))) ew_axpy(g, da, nd->fa[0], dy, y->n, asg);
            break;
        case OP_EMBEDDING:
            KERN(embedding_bwd)(gbuf(g, a), dy, nd->si, nd->ia[0], nd->ia[1]);
            break;
        case OP_LAYERNORM: /* dg, db: parameters, accumulated */
            da = gbuf_first(g, nd, 0, &asg);
            KERN(layernorm_bwd)(da, gbuf(g, b), gbuf(g, c), dy, DAT(a), nd->sv[0], nd->sv[1], DAT(b),
                                nd->ia[0], nd->ia[1], asg);
            break;
        case OP_SOFTMAX:
            da = gbuf_first(g, nd, 0, &asg);
            KERN(softmax_bwd)(da, dy, DAT(y), rows(y), last_dim(y), asg);
            break;
        case OP_LOGSOFTMAX:
            da = gbuf_first(g, nd, 0, &asg);
            KERN(logsoftmax_bwd)(da, dy, DAT(y), rows(y), last_dim(y), asg);
            break;
        case OP_RELU:
            da = gbuf_first(g, nd, 0, &asg);
            KERN(relu_bwd)(da, dy, DAT(a), y->n, asg);
            break;
        case OP_GELU:
            da = gbuf_first(g, nd, 0, &asg);
            KERN(gelu_bwd)(da, dy, DAT(a), y->n, asg);
            break;
        case OP_DROPOUT:
            if ((da = gbuf_first(g, nd, 0, &asg))) ew_mul_acc(g, da, dy, nd->sv[0], y->n, asg);
            break;
        case OP_ATTENTION:
            da = gbuf_first(g, nd, 0, &asg);
            db = gbuf_first(g, nd, 1, &asg);
            dc = gbuf_first(g, nd, 2, &asg);
            KERN(attention_bwd)(da, db, dc, dy, nd->sv[0], DAT(a), DAT(b), DAT(c), nd->ia[0], nd->ia[1],
                                nd->ia[2], nd->ia[3], nd->ia[4], asg);
            break;
        case OP_XENT: {
            int N = nd->ia[0], cnt = nd->ia[3];
            if (cnt == 0) break;
            float *dl = fbuf0(g, (size_t)N); /* dloss_n = dy / cnt for every row */
            ew_bcast_acc(g, dl, dy, 1.0f / (float)cnt, (size_t)N);
            da = gbuf_first(g, nd, 0, &asg); /* ignored rows: zeros */
            KERN(xent_bwd)(da, dl, nd->sv[0], nd->si, nd->fa[0], nd->ia[2], N, nd->ia[1], asg);
        } break;
        case OP_SSRU:
            KERN(ssru_bwd)(gbuf(g, a), dy, DAT(a), nd->sv[0], NULL, nd->ia[0], nd->ia[1], nd->ia[2]);
            break;
        case OP_GRU:
        case OP_LSTM: {
            int B = nd->ia[0], T = nd->ia[1], D = nd->ia[2], G = nd->op == OP_GRU ? 3 : 4;
            float *ws = fbuf(g, S2S_RNN_BWD_WS(G, B, T, D));
            if (nd->op == OP_GRU)
                KERN(gru_bwd)(gbuf(g, a), gbuf(g, b), gbuf(g, c), ws, dy, DAT(y), nd->sv[0], DAT(b), NULL, B, T, D);
            else
                KERN(lstm_bwd)(gbuf(g, a), gbuf(g, b), gbuf(g, c), ws, dy, DAT(y), nd->sv[1], nd->sv[0], DAT(b),
                               NULL, NULL, B, T, D);
        } break;
        case OP_T2R: /* in[3], in[4]: W, b (NULL: the elu+1 map) */
            KERN(t2r_bwd)(gbuf(g, a), gbuf(g, b), gbuf(g, c), gbuf(g, nd->in[3]), gbuf(g, nd->in[4]), dy, DAT(y),
                          nd->sv[0], nd->sv[1], nd->sv[2], DAT(a), DAT(b), DAT(c),
                          nd->in[3] ? DAT(nd->in[3]) : NULL, nd->si, nd->ia[6], nd->ia[0], nd->ia[1], nd->ia[2],
                          nd->ia[3], nd->ia[4], nd->ia[5]);
            break;
        case OP_GROUP_SCALE:
            KERN(group_scale_bwd)(gbuf(g, a), gbuf(g, b), dy, DAT(a), DAT(b), nd->ia[0], nd->ia[1], nd->ia[2]);
            break;
        case OP_HARD_CONCRETE:
            if ((da = gbuf(g, a))) KERN(hard_concrete_bwd)(da + nd->ia[0], dy, DAT(a) + nd->ia[0], nd->sv[0], nd->ia[1]);
            break;
        case OP_L0_DENSITY:
            KERN(l0_density_bwd)(gbuf(g, a), dy, DAT(a), nd->sv[0], nd->fa[0], (int)a->n);
            break;
        case OP_L0_LAGRANGIAN:
            KERN(l0_lagrangian_bwd)(gbuf(g, a), gbuf(g, b), dy, DAT(a), DAT(b), nd->fa[0]);
            break;
        case OP_SUM:
            if ((da = gbuf(g, a))) ew_bcast_acc(g, da, dy, 1.0f, a->n);
            break;
        case OP_MEAN:
            if ((da = gbuf(g, a))) ew_bcast_acc(g, da, dy, 1.0f / (float)a->n, a->n);
            break;
        }
        if (g->prof) g->prof[nd->op][1] += prof_now(g) - t0;
    }
    if (g->prof) g->prof_t = prof_now(g);
}
