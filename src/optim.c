/* optim.c - AdamW, gradient clipping, LR schedule (see optim.h). */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "kernels_cuda.h"

void s2s_adamw_init(s2s_adamw *a, const s2s_model *m) {
    memset(a, 0, sizeof *a);
    a->n = m->n_params;
    a->beta1 = 0.9f; a->beta2 = 0.98f; a->eps = 1e-9f;
    a->mom = s2s_xcalloc((size_t)a->n, sizeof(float *));
    a->var = s2s_xcalloc((size_t)a->n, sizeof(float *));
    for (int i = 0; i < a->n; i++) {
        a->mom[i] = s2s_xcalloc(m->params[i].t->n, sizeof(float));
        a->var[i] = s2s_xcalloc(m->params[i].t->n, sizeof(float));
    }
}

void s2s_adamw_free(s2s_adamw *a) {
#ifdef S2S_CUDA
    if (a->dev_block) s2s_cuda_free(a->dev_block);
#endif
    for (int i = 0; i < a->n; i++) { free(a->mom[i]); free(a->var[i]); }
    free(a->mom); free(a->var);
    memset(a, 0, sizeof *a);
}

#ifdef S2S_CUDA
/* Offset of parameter i in the model's device blocks (model_cuda.c's layout). */
static size_t dev_offset(const s2s_model *m, int i) {
    return (size_t)(m->params[i].t->dev_data - (const float *)m->dev_block);
}

void s2s_adamw_to_cuda(s2s_adamw *a, const s2s_model *m) {
    S2S_ASSERT(m->on_cuda && m->trainable && !a->dev_block);
    a->dev_block = s2s_cuda_malloc(2 * m->dev_floats * sizeof(float));
    s2s_cuda_memset0(a->dev_block, 2 * m->dev_floats * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        size_t off = dev_offset(m, i), n = m->params[i].t->n;
        s2s_cuda_upload(a->dev_block + off, a->mom[i], n * sizeof(float));
        s2s_cuda_upload(a->dev_block + m->dev_floats + off, a->var[i], n * sizeof(float));
    }
}

void s2s_adamw_sync_host(s2s_adamw *a, const s2s_model *m) {
    if (!a->dev_block) return;
    for (int i = 0; i < m->n_params; i++) {
        size_t off = dev_offset(m, i), n = m->params[i].t->n;
        s2s_cuda_download(a->mom[i], a->dev_block + off, n * sizeof(float));
        s2s_cuda_download(a->var[i], a->dev_block + m->dev_floats + off, n * sizeof(float));
    }
}
#else
void s2s_adamw_to_cuda(s2s_adamw *a, const s2s_model *m) { (void)a; (void)m; S2S_ASSERT(!"built without CUDA"); }
void s2s_adamw_sync_host(s2s_adamw *a, const s2s_model *m) { (void)a; (void)m; }
#endif

void s2s_adamw_step(s2s_adamw *a, s2s_model *m, float lr, float wd, long step) {
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
    float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
    float bc2s = sqrtf(bc2), stepsize = lr / bc1;
#ifdef S2S_CUDA
    if (a->dev_block) {
        for (int i = 0; i < m->n_params; i++) {
            s2s_tensor *t = m->params[i].t;
            if (m->params[i].frozen) continue;
            size_t off = dev_offset(m, i);
            float decay = m->params[i].decay ? 1.0f - lr * wd : 1.0f;
            s2s_kcu_adamw(t->dev_data, a->dev_block + off, a->dev_block + m->dev_floats + off, t->dev_grad,
                          1.0f, decay, b1, b2, stepsize, bc2s, eps, t->n);
        }
        return;
    }
#endif
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
        if (m->params[i].frozen) continue;
        float *mo = a->mom[i], *va = a->var[i], *p = t->data, *g = t->grad;
        float decay = m->params[i].decay ? 1.0f - lr * wd : 1.0f;
        size_t n = t->n;
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (size_t j = 0; j < n; j++) {
            p[j] *= decay;
            mo[j] = b1 * mo[j] + (1.0f - b1) * g[j];
            va[j] = b2 * va[j] + (1.0f - b2) * g[j] * g[j];
            p[j] -= stepsize * mo[j] / (sqrtf(va[j]) / bc2s + eps);
        }
    }
}

double s2s_clip_grad_norm(s2s_model *m, float max_norm) {
    for (int i = 0; i < m->n_params; i++) { /* frozen parameters: no gradient, not in the norm */
        s2s_tensor *t = m->params[i].t;
        if (!m->params[i].frozen) continue;
#ifdef S2S_CUDA
        if (m->on_cuda) { s2s_cuda_memset0(t->dev_grad, t->n * sizeof(float)); continue; }
#endif
        memset(t->grad, 0, t->n * sizeof(float));
    }
#ifdef S2S_CUDA
    if (m->on_cuda) { /* one reduction over the whole gradient block (padding is 0) */
        double s;
        s2s_cuda_memset0(m->dev_scratch, sizeof(double));
        s2s_kcu_sqnorm_acc(m->dev_scratch, m->dev_grad_block, m->dev_floats);
        s2s_cuda_download(&s, m->dev_scratch, sizeof s);
        double norm = sqrt(s);
        if (max_norm > 0 && norm > max_norm) {
            float *gb = m->dev_grad_block;
            s2s_kcu_scale(gb, gb, (float)(max_norm / (norm + 1e-6)), m->dev_floats);
        }
        return norm;
    }
#endif
    double s = 0;
    for (int i = 0; i < m->n_params; i++) {
        const s2s_tensor *t = m->params[i].t;
        for (size_t j = 0; j < t->n; j++) s += (double)t->grad[j] * t->grad[j];
    }
    double norm = sqrt(s);
    if (max_norm > 0 && norm > max_norm) {
        float sc = (float)(max_norm / (norm + 1e-6));
        for (int i = 0; i < m->n_params; i++) {
            s2s_tensor *t = m->params[i].t;
            for (size_t j = 0; j < t->n; j++) t->grad[j] *= sc;
        }
    }
    return norm;
}

void s2s_zero_grad(s2s_model *m) {
#ifdef S2S_CUDA
    if (m->on_cuda) { s2s_cuda_memset0(m->dev_grad_block, m->dev_floats * sizeof(float)); return; }
#endif
    for (int i = 0; i < m->n_params; i++) memset(m->params[i].t->grad, 0, m->params[i].t->n * sizeof(float));
}

float s2s_lr_at(float lr, float warmup, long step) {
    return lr * fminf((float)step / warmup, sqrtf(warmup / (float)step));
}
