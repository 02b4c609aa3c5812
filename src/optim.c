/* optim.c - AdamW, gradient clipping, LR schedule (see optim.h). */
#include "optim.h"

#include <math.h>
#include <string.h>

#include "common.h"

void s2s_adamw_init(s2s_adamw *a, const s2s_model *m) {
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
    for (int i = 0; i < a->n; i++) { free(a->mom[i]); free(a->var[i]); }
    free(a->mom); free(a->var);
    memset(a, 0, sizeof *a);
}

void s2s_adamw_step(s2s_adamw *a, s2s_model *m, float lr, float wd, long step) {
    const float b1 = a->beta1, b2 = a->beta2, eps = a->eps;
    float bc1 = 1.0f - powf(b1, (float)step), bc2 = 1.0f - powf(b2, (float)step);
    float bc2s = sqrtf(bc2), stepsize = lr / bc1;
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
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
    for (int i = 0; i < m->n_params; i++) memset(m->params[i].t->grad, 0, m->params[i].t->n * sizeof(float));
}

float s2s_lr_at(float lr, float warmup, long step) {
    return lr * fminf((float)step / warmup, sqrtf(warmup / (float)step));
}
