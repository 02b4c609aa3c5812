/* model_cuda.c - a model's weights on the GPU (see model.h): one device block for
 * every parameter (and one for their gradients when trainable), the position table,
 * and the copy back to the host before a checkpoint is written. Shared parameters
 * (tied source/target embeddings) are uploaded once. */
#include <string.h>

#include "common.h"
#include "kernels_cuda.h"
#include "model.h"

#ifdef S2S_CUDA
/* Distinct tensors of the parameter table (tgt_emb may appear once, src_emb aliases it). */
static size_t total_floats(const s2s_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++) n += (m->params[i].t->n + 63) & ~(size_t)63;
    return n;
}

int s2s_model_to_cuda(s2s_model *m, char *err, size_t errlen) {
    if (m->on_cuda) return 0;
    if (!s2s_cuda_available()) {
        s2s_errf(err, errlen, "--device cuda: no CUDA device is available");
        return -1;
    }
    size_t n = total_floats(m), off = 0;
    float *blk = s2s_cuda_malloc(n * sizeof(float));
    float *gblk = m->trainable ? s2s_cuda_malloc(n * sizeof(float)) : NULL;
    if (gblk) s2s_cuda_memset0(gblk, n * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
        t->dev_data = blk + off;
        t->dev_grad = gblk ? gblk + off : NULL;
        s2s_cuda_upload(t->dev_data, t->data, t->n * sizeof(float));
        off += (t->n + 63) & ~(size_t)63;
    }
    size_t pe = (size_t)m->cfg.max_len * (size_t)m->cfg.d_model;
    m->dev_pe = s2s_cuda_malloc(pe * sizeof(float));
    s2s_cuda_upload(m->dev_pe, m->pe, pe * sizeof(float));
    m->dev_scratch = s2s_cuda_malloc(8 * sizeof(double));
    m->dev_floats = n;
    m->dev_block = blk;
    m->dev_grad_block = gblk;
    m->on_cuda = 1;
    return 0;
}

void s2s_model_sync_host(s2s_model *m) {
    if (!m->on_cuda || !m->trainable) return; /* read-only models never change on the GPU */
    for (int i = 0; i < m->n_params; i++) {
        s2s_tensor *t = m->params[i].t;
        s2s_cuda_download(t->data, t->dev_data, t->n * sizeof(float));
    }
}

void s2s_model_free_cuda(s2s_model *m) {
    if (!m->on_cuda) return;
    s2s_cuda_free(m->dev_block);
    if (m->dev_grad_block) s2s_cuda_free(m->dev_grad_block);
    s2s_cuda_free(m->dev_pe);
    s2s_cuda_free(m->dev_scratch);
    m->dev_scratch = NULL;
    for (int i = 0; i < m->n_params; i++) m->params[i].t->dev_data = m->params[i].t->dev_grad = NULL;
    m->dev_block = m->dev_grad_block = NULL;
    m->dev_pe = NULL;
    m->on_cuda = 0;
}
#else
int s2s_model_to_cuda(s2s_model *m, char *err, size_t errlen) {
    (void)m;
    s2s_errf(err, errlen, "--device cuda: this s2s was built without CUDA (rebuild with make CUDA=1)");
    return -1;
}
void s2s_model_sync_host(s2s_model *m) { (void)m; }
void s2s_model_free_cuda(s2s_model *m) { (void)m; }
#endif
