/* l0.c - structured L0 pruning masks of a model's encoder (see l0.h): gates,
 * deterministic masks, expected density, Lagrangian, their AdamW steps, the GPU
 * copies and the checkpoint tensors. */
#include "l0.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kernels_cuda.h"
#include "safetensors.h"

#define ADAM_B1 0.9f
#define ADAM_B2 0.999f
#define ADAM_EPS 1e-8f

struct s2s_l0 {
    int n_layers, n;        /* layers, N gates in all */
    int *off_h, *n_h;       /* [n_layers] offset / width of each layer's head group */
    int *off_f, *n_f;       /* [n_layers] the same for the FFN units */
    s2s_tensor *la;         /* param [N]: log_alphas */
    s2s_tensor *lambda;     /* param [2] */
    float *cost;            /* [N] prunable parameters behind each gate */
    double total_cost;
    float *m_la, *v_la;     /* [N] AdamW moments (host) */
    float m_lam[2], v_lam[2];
    long step;              /* AdamW steps taken (bias correction) */
    float step_f;           /* step as a float, for the checkpoint */
    float *z_det;           /* [N] deterministic masks (host cache) */
    int z_dirty;
    int on_cuda;
    float *dev_block;       /* la, la grad, m, v, cost [N each, padded], lambda, grad, m, v [2 each] */
    float *dev_cost, *dev_m_la, *dev_v_la, *dev_m_lam, *dev_v_lam;
    char (*names)[64];      /* checkpoint names */
};

#ifdef S2S_CUDA
static size_t pad64(size_t n) { return (n + 63) & ~(size_t)63; }
#endif

static double sigm(double v) { return 1.0 / (1.0 + exp(-v)); }

s2s_l0 *s2s_l0_new(const s2s_model *m, float droprate_init, uint64_t seed) {
    const s2s_config *c = &m->cfg;
    S2S_ASSERT(droprate_init > 0.0f && droprate_init < 1.0f);
    s2s_l0 *l0 = s2s_xcalloc(1, sizeof *l0);
    int Le = c->enc_layers, D = c->d_model, Dh = c->d_model / c->n_heads;
    l0->n_layers = Le;
    size_t nl = (size_t)(Le > 0 ? Le : 1);
    l0->off_h = s2s_xcalloc(nl, sizeof(int)); l0->n_h = s2s_xcalloc(nl, sizeof(int));
    l0->off_f = s2s_xcalloc(nl, sizeof(int)); l0->n_f = s2s_xcalloc(nl, sizeof(int));
    int n = 0;
    for (int l = 0; l < Le; l++) {
        l0->off_h[l] = n; l0->n_h[l] = s2s_config_enc_heads(c, l); n += l0->n_h[l];
        l0->off_f[l] = n; l0->n_f[l] = s2s_config_enc_ff(c, l); n += l0->n_f[l];
    }
    l0->n = n;
    int nn = n > 0 ? n : 1; /* a param of size 0 is not allowed */
    l0->la = s2s_param_new(1, (int[]){nn});
    l0->lambda = s2s_param_new(1, (int[]){2});
    l0->cost = s2s_xcalloc((size_t)nn, sizeof(float));
    l0->m_la = s2s_xcalloc((size_t)nn, sizeof(float));
    l0->v_la = s2s_xcalloc((size_t)nn, sizeof(float));
    l0->z_det = s2s_xcalloc((size_t)nn, sizeof(float));
    float head_cost = (float)(4 * D * Dh + 3 * Dh), ff_cost = (float)(2 * D + 1);
    double mean = log(1.0 - droprate_init) - log(droprate_init);
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull + 0x10;
    for (int l = 0; l < Le; l++) {
        for (int i = 0; i < l0->n_h[l]; i++) l0->cost[l0->off_h[l] + i] = head_cost;
        for (int i = 0; i < l0->n_f[l]; i++) l0->cost[l0->off_f[l] + i] = ff_cost;
    }
    for (int i = 0; i < n; i++) {
        l0->la->data[i] = (float)(mean + 0.01 * s2s_rng_normal(&rng));
        l0->total_cost += l0->cost[i];
    }
    l0->names = s2s_xcalloc((size_t)s2s_l0_max_extra(l0), sizeof *l0->names);
    l0->z_dirty = 1;
    return l0;
}

void s2s_l0_free(s2s_l0 *l0) {
    if (!l0) return;
#ifdef S2S_CUDA
    if (l0->dev_block) s2s_cuda_free(l0->dev_block);
#endif
    s2s_param_free(l0->la); s2s_param_free(l0->lambda);
    free(l0->off_h); free(l0->n_h); free(l0->off_f); free(l0->n_f);
    free(l0->cost); free(l0->m_la); free(l0->v_la); free(l0->z_det); free(l0->names);
    free(l0);
}

int s2s_l0_size(const s2s_l0 *l0) { return l0->n; }

int s2s_l0_group(const s2s_l0 *l0, int layer, int ffn, int *off) {
    S2S_ASSERT(layer >= 0 && layer < l0->n_layers);
    if (off) *off = ffn ? l0->off_f[layer] : l0->off_h[layer];
    return ffn ? l0->n_f[layer] : l0->n_h[layer];
}

s2s_tensor *s2s_l0_log_alpha(s2s_l0 *l0) { return l0->la; }
s2s_tensor *s2s_l0_lambdas(s2s_l0 *l0) { return l0->lambda; }

/* ------------------------------------------------------- deterministic masks */

static const float *sort_key;
static int by_key(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    if (sort_key[i] != sort_key[j]) return sort_key[i] < sort_key[j] ? -1 : 1;
    return i - j;
}

void s2s_l0_deterministic(float *z_out, const float *log_alpha, int n) {
    if (n <= 0) return;
    const double l = S2S_L0_LIMIT_L, r = S2S_L0_LIMIT_R;
    double zeros = 0;
    for (int i = 0; i < n; i++) {
        zeros += 1.0 - sigm((double)log_alpha[i] - S2S_L0_SHIFT);
        double v = sigm(log_alpha[i]) * (r - l) + l;
        z_out[i] = (float)(v < 0 ? 0 : v > 1 ? 1 : v);
    }
    long k = lround(zeros);
    if (k <= 0) return;
    if (k > n) k = n;
    int *idx = s2s_xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) idx[i] = i;
    sort_key = log_alpha; /* single-threaded (l0.h) */
    qsort(idx, (size_t)n, sizeof(int), by_key);
    for (long i = 0; i < k; i++) z_out[idx[i]] = 0.0f;
    free(idx);
}

static void refresh_det(s2s_l0 *l0) {
    if (!l0->z_dirty) return;
#ifdef S2S_CUDA
    if (l0->on_cuda && l0->n > 0) s2s_cuda_download(l0->la->data, l0->la->dev_data, (size_t)l0->n * sizeof(float));
#endif
    for (int l = 0; l < l0->n_layers; l++) {
        s2s_l0_deterministic(l0->z_det + l0->off_h[l], l0->la->data + l0->off_h[l], l0->n_h[l]);
        s2s_l0_deterministic(l0->z_det + l0->off_f[l], l0->la->data + l0->off_f[l], l0->n_f[l]);
    }
    l0->z_dirty = 0;
}

double s2s_l0_expected_density(const s2s_l0 *l0, const s2s_model *m) {
    const s2s_config *c = &m->cfg;
    S2S_ASSERT(c->enc_layers == l0->n_layers);
    int D = c->d_model, Dh = c->d_model / c->n_heads;
    double head_cost = 4.0 * D * Dh + 3.0 * Dh, ff_cost = 2.0 * D + 1.0, kept = 0, total = 0;
    for (int l = 0; l < l0->n_layers; l++) {
        S2S_ASSERT(l0->n_h[l] == s2s_config_enc_heads(c, l) && l0->n_f[l] == s2s_config_enc_ff(c, l));
        for (int i = 0; i < l0->n_h[l]; i++)
            kept += head_cost * sigm((double)l0->la->data[l0->off_h[l] + i] - S2S_L0_SHIFT);
        for (int i = 0; i < l0->n_f[l]; i++)
            kept += ff_cost * sigm((double)l0->la->data[l0->off_f[l] + i] - S2S_L0_SHIFT);
        total += head_cost * l0->n_h[l] + ff_cost * l0->n_f[l];
    }
    return total > 0 ? kept / total : 1.0;
}

/* ------------------------------------------------------------ graph side */

s2s_tensor *s2s_l0_mask(s2s_graph *g, s2s_l0 *l0, int layer, int ffn) {
    int off, n = s2s_l0_group(l0, layer, ffn, &off);
    if (n == 0) return NULL;
    S2S_ASSERT(!s2s_graph_is_cuda(g) || l0->on_cuda);
    if (s2s_graph_sampling(g)) {
        uint64_t *rng = s2s_graph_rng(g);
        float *u = s2s_xmalloc((size_t)n * sizeof(float));
        for (int i = 0; i < n; i++) u[i] = S2S_L0_EPS + (1.0f - 2.0f * S2S_L0_EPS) * s2s_rng_uniform(rng);
        s2s_tensor *z = s2s_hard_concrete(g, l0->la, off, n, u);
        free(u);
        return z;
    }
    refresh_det(l0);
    return s2s_tensor_from_host(g, l0->z_det + off, 1, (int[]){n});
}

s2s_tensor *s2s_l0_loss(s2s_graph *g, s2s_l0 *l0, float t) {
    S2S_ASSERT(l0->n > 0);
    int cuda = s2s_graph_is_cuda(g);
    S2S_ASSERT(!cuda || l0->on_cuda);
    s2s_tensor *density = s2s_l0_density(g, l0->la, cuda ? l0->dev_cost : l0->cost, (float)(1.0 / l0->total_cost));
    return s2s_l0_lagrangian(g, density, l0->lambda, t);
}

float s2s_l0_target_at(float t, long warmup, long step) {
    if (warmup <= 0 || step >= warmup) return t;
    return t * (float)((double)step / (double)warmup);
}

/* ---------------------------------------------------------- optimisation */

void s2s_l0_zero_grad(s2s_l0 *l0) {
#ifdef S2S_CUDA
    if (l0->on_cuda) {
        s2s_cuda_memset0(l0->la->dev_grad, l0->la->n * sizeof(float));
        s2s_cuda_memset0(l0->lambda->dev_grad, 2 * sizeof(float));
        return;
    }
#endif
    memset(l0->la->grad, 0, l0->la->n * sizeof(float));
    memset(l0->lambda->grad, 0, 2 * sizeof(float));
}

/* torch AdamW without decay (the same arithmetic as optim.c / s2s_kcu_adamw) on g * gscale */
static void adam_host(float *p, float *mo, float *va, const float *g, float gscale, float stepsize, float bc2s,
                      size_t n) {
    for (size_t j = 0; j < n; j++) {
        float gj = g[j] * gscale;
        mo[j] = ADAM_B1 * mo[j] + (1.0f - ADAM_B1) * gj;
        va[j] = ADAM_B2 * va[j] + (1.0f - ADAM_B2) * gj * gj;
        p[j] -= stepsize * mo[j] / (sqrtf(va[j]) / bc2s + ADAM_EPS);
    }
}

void s2s_l0_step(s2s_l0 *l0, float lr) {
    l0->step++;
    float bc1 = 1.0f - powf(ADAM_B1, (float)l0->step), bc2 = 1.0f - powf(ADAM_B2, (float)l0->step);
    float bc2s = sqrtf(bc2), stepsize = lr / bc1;
    l0->z_dirty = 1;
#ifdef S2S_CUDA
    if (l0->on_cuda) {
        if (l0->n > 0)
            s2s_kcu_adamw(l0->la->dev_data, l0->dev_m_la, l0->dev_v_la, l0->la->dev_grad, 1.0f, 1.0f, ADAM_B1,
                          ADAM_B2, stepsize, bc2s, ADAM_EPS, (size_t)l0->n);
        s2s_kcu_adamw(l0->lambda->dev_data, l0->dev_m_lam, l0->dev_v_lam, l0->lambda->dev_grad, -1.0f, 1.0f,
                      ADAM_B1, ADAM_B2, stepsize, bc2s, ADAM_EPS, 2);
        return;
    }
#endif
    adam_host(l0->la->data, l0->m_la, l0->v_la, l0->la->grad, 1.0f, stepsize, bc2s, (size_t)l0->n);
    adam_host(l0->lambda->data, l0->m_lam, l0->v_lam, l0->lambda->grad, -1.0f, stepsize, bc2s, 2); /* ascent */
}

/* ------------------------------------------------------------------- GPU */

#ifdef S2S_CUDA
static void upload_all(s2s_l0 *l0) {
    size_t n = l0->la->n;
    s2s_cuda_upload(l0->la->dev_data, l0->la->data, n * sizeof(float));
    s2s_cuda_upload(l0->dev_m_la, l0->m_la, n * sizeof(float));
    s2s_cuda_upload(l0->dev_v_la, l0->v_la, n * sizeof(float));
    s2s_cuda_upload(l0->dev_cost, l0->cost, n * sizeof(float));
    s2s_cuda_upload(l0->lambda->dev_data, l0->lambda->data, 2 * sizeof(float));
    s2s_cuda_upload(l0->dev_m_lam, l0->m_lam, 2 * sizeof(float));
    s2s_cuda_upload(l0->dev_v_lam, l0->v_lam, 2 * sizeof(float));
}
#endif

int s2s_l0_to_cuda(s2s_l0 *l0, char *err, size_t errlen) {
#ifdef S2S_CUDA
    if (l0->on_cuda) return 0;
    if (!s2s_cuda_available()) { s2s_errf(err, errlen, "--device cuda: no CUDA device is available"); return -1; }
    size_t pn = pad64(l0->la->n), total = 5 * pn + 4 * 64;
    float *b = s2s_cuda_malloc(total * sizeof(float));
    s2s_cuda_memset0(b, total * sizeof(float));
    l0->dev_block = b;
    l0->la->dev_data = b; l0->la->dev_grad = b + pn;
    l0->dev_m_la = b + 2 * pn; l0->dev_v_la = b + 3 * pn; l0->dev_cost = b + 4 * pn;
    float *s = b + 5 * pn;
    l0->lambda->dev_data = s; l0->lambda->dev_grad = s + 64; l0->dev_m_lam = s + 128; l0->dev_v_lam = s + 192;
    l0->on_cuda = 1;
    upload_all(l0);
    return 0;
#else
    (void)l0;
    s2s_errf(err, errlen, "--device cuda: this s2s was built without CUDA (rebuild with make CUDA=1)");
    return -1;
#endif
}

void s2s_l0_sync_host(s2s_l0 *l0) {
#ifdef S2S_CUDA
    if (!l0->on_cuda) return;
    size_t n = l0->la->n;
    s2s_cuda_download(l0->la->data, l0->la->dev_data, n * sizeof(float));
    s2s_cuda_download(l0->m_la, l0->dev_m_la, n * sizeof(float));
    s2s_cuda_download(l0->v_la, l0->dev_v_la, n * sizeof(float));
    s2s_cuda_download(l0->lambda->data, l0->lambda->dev_data, 2 * sizeof(float));
    s2s_cuda_download(l0->m_lam, l0->dev_m_lam, 2 * sizeof(float));
    s2s_cuda_download(l0->v_lam, l0->dev_v_lam, 2 * sizeof(float));
#else
    (void)l0;
#endif
}

void s2s_l0_touch(s2s_l0 *l0) {
#ifdef S2S_CUDA
    if (l0->on_cuda) upload_all(l0);
#endif
    l0->z_dirty = 1;
}

/* ------------------------------------------------------------ checkpoints */

int s2s_l0_max_extra(const s2s_l0 *l0) { return 2 * l0->n_layers + 6; }

static void put(s2s_extra_tensor *e, const char *name, const float *data, int64_t n) {
    e->name = name; e->data = data; e->ndim = 1; e->shape[0] = n;
}

int s2s_l0_extra(s2s_l0 *l0, s2s_extra_tensor *ex, int with_state) {
    s2s_l0_sync_host(l0);
    int k = 0;
    for (int l = 0; l < l0->n_layers; l++)
        for (int f = 0; f < 2; f++) {
            int off, n = s2s_l0_group(l0, l, f, &off);
            if (n == 0) continue;
            snprintf(l0->names[k], sizeof l0->names[k], "enc.%d.l0.%s", l, f ? "ff" : "heads");
            put(&ex[k], l0->names[k], l0->la->data + off, n);
            k++;
        }
    if (!with_state) return k;
    l0->step_f = (float)l0->step;
    put(&ex[k++], "l0.lambda", l0->lambda->data, 2);
    put(&ex[k++], "l0.opt.m.log_alpha", l0->m_la, l0->la->n);
    put(&ex[k++], "l0.opt.v.log_alpha", l0->v_la, l0->la->n);
    put(&ex[k++], "l0.opt.m.lambda", l0->m_lam, 2);
    put(&ex[k++], "l0.opt.v.lambda", l0->v_lam, 2);
    put(&ex[k++], "l0.opt.step", &l0->step_f, 1);
    return k;
}

/* Read tensor name (numel n) into out; -1 + message if absent or of another size. */
static int get(const s2s_st_file *f, const char *name, float *out, int64_t n, char *err, size_t errlen) {
    const s2s_st_tensor *t = s2s_st_find(f, name);
    if (!t || t->numel != n || s2s_st_to_f32(out, t) != 0) {
        s2s_errf(err, errlen, "L0 state '%s' is missing or has the wrong size (expected %lld values)", name,
                 (long long)n);
        return -1;
    }
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(out[i])) { s2s_errf(err, errlen, "L0 state '%s' is not finite", name); return -1; }
    return 0;
}

int s2s_l0_load(s2s_l0 *l0, const s2s_st_file *f, int with_state, char *err, size_t errlen) {
    char nm[64];
    int any = 0;
    for (int l = 0; l < l0->n_layers; l++)
        for (int fi = 0; fi < 2; fi++) {
            snprintf(nm, sizeof nm, "enc.%d.l0.%s", l, fi ? "ff" : "heads");
            if (s2s_st_find(f, nm)) any = 1;
        }
    if (!any) return 1;
    size_t N = l0->la->n;
    float *la = s2s_xcalloc(N, sizeof(float)), *m = s2s_xcalloc(N, sizeof(float)), *v = s2s_xcalloc(N, sizeof(float));
    float lam[2] = {0, 0}, mlam[2] = {0, 0}, vlam[2] = {0, 0}, step = 0;
    int rc = -1;
    for (int l = 0; l < l0->n_layers; l++)
        for (int fi = 0; fi < 2; fi++) {
            int off, n = s2s_l0_group(l0, l, fi, &off);
            snprintf(nm, sizeof nm, "enc.%d.l0.%s", l, fi ? "ff" : "heads");
            if (n == 0) {
                if (s2s_st_find(f, nm)) { s2s_errf(err, errlen, "L0 state '%s' for a group of width 0", nm); goto out; }
                continue;
            }
            if (get(f, nm, la + off, n, err, errlen) != 0) goto out;
        }
    if (with_state) {
        if (get(f, "l0.lambda", lam, 2, err, errlen) || get(f, "l0.opt.m.log_alpha", m, (int64_t)N, err, errlen) ||
            get(f, "l0.opt.v.log_alpha", v, (int64_t)N, err, errlen) || get(f, "l0.opt.m.lambda", mlam, 2, err, errlen) ||
            get(f, "l0.opt.v.lambda", vlam, 2, err, errlen) || get(f, "l0.opt.step", &step, 1, err, errlen))
            goto out;
        if (!(step >= 0 && step <= 16777216.0f && step == floorf(step))) {
            s2s_errf(err, errlen, "L0 state 'l0.opt.step' is out of range");
            goto out;
        }
    }
    memcpy(l0->la->data, la, N * sizeof(float));
    if (with_state) {
        memcpy(l0->m_la, m, N * sizeof(float));
        memcpy(l0->v_la, v, N * sizeof(float));
        memcpy(l0->lambda->data, lam, sizeof lam);
        memcpy(l0->m_lam, mlam, sizeof mlam);
        memcpy(l0->v_lam, vlam, sizeof vlam);
        l0->step = (long)step;
    }
    s2s_l0_touch(l0);
    rc = 0;
out:
    free(la); free(m); free(v);
    return rc;
}
