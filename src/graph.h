/* graph.h - tensors and reverse-mode automatic differentiation.
 *
 * Eager tape: every op computes its output at once (through the fast kernels of
 * kernels.h) and, unless the graph is in no-grad mode, records a node with what
 * its backward needs. s2s_graph_backward() walks the tape in reverse and calls
 * each op's backward kernel, accumulating into .grad buffers.
 *
 * Memory: non-parameter tensors (activations, their grads, saved buffers) are
 * carved from one bump arena owned by the graph; s2s_graph_reset() frees them
 * all at once. Parameters are long-lived tensors made by s2s_param_new().
 *
 *   s2s_graph *g = s2s_graph_new();
 *   s2s_tensor *h = s2s_relu(g, s2s_linear(g, x, w, b));
 *   s2s_tensor *loss = s2s_mean(g, h);
 *   s2s_graph_backward(g, loss);        // w->grad, b->grad now hold dloss/dparam
 *   s2s_graph_reset(g);
 */
#ifndef S2S_GRAPH_H
#define S2S_GRAPH_H

#include <stddef.h>
#include <stdio.h>
#include <stdint.h>

typedef struct s2s_tensor {
    float *data;       /* [n] row-major */
    float *grad;       /* [n] or NULL until needed */
    size_t n;          /* number of elements */
    int ndim;
    int shape[4];
    int requires_grad; /* parameter, or computed from one */
    int is_param;      /* long-lived (s2s_param_new), grad persists across resets */
    const uint16_t *half; /* [n] fp16 copy of data for inference kernels, or NULL */
    /* A weight of an inference model (s2s_model_load, not trainable): data never changes,
     * so a 2-D one may be kept repacked for kernels_gemm.c; packed is that copy, made on
     * first use by s2s_weight_packed and freed with the model, or NULL. */
    int frozen;
    float *packed;
    float *dev_data;   /* [n] on the GPU (CUDA graphs, s2s_model_to_cuda), or NULL */
    float *dev_grad;   /* [n] on the GPU, or NULL */
} s2s_tensor;

typedef struct s2s_graph s2s_graph;

s2s_graph *s2s_graph_new(void);
/* The packed copy of a frozen 2-D weight w[M, K] (kernels.h: s2s_gemm_pack), made on the
 * first call (thread-safe: concurrent first calls agree on one copy); NULL when w is not
 * frozen. s2s_linear and the decoders' linear layers use it from S2S_PACKED_MIN_ROWS rows. */
const float *s2s_weight_packed(s2s_tensor *w);
/* A graph whose ops run on the GPU (kernels_cuda.h): every tensor it makes lives in
 * device memory (dev_data/dev_grad; data/grad stay NULL) and parameters must have
 * been moved with s2s_model_to_cuda. NULL (message in err) without a usable GPU. */
s2s_graph *s2s_graph_new_cuda(char *err, size_t errlen);
int s2s_graph_is_cuda(const s2s_graph *g);
void s2s_graph_free(s2s_graph *g);
void s2s_graph_reset(s2s_graph *g);                 /* drop tape and arena */
void s2s_graph_set_grad(s2s_graph *g, int enabled); /* 0: no tape (inference) */
void s2s_graph_set_training(s2s_graph *g, int training, uint64_t *rng); /* dropout on/off */
/* Training with the tape on and an RNG: stochastic ops (hard-concrete masks, l0.h)
 * sample; otherwise they take their deterministic (inference) values. */
int s2s_graph_sampling(const s2s_graph *g);
uint64_t *s2s_graph_rng(s2s_graph *g); /* the RNG of set_training, or NULL */
size_t s2s_graph_arena_used(const s2s_graph *g);
/* Op profile (issue 4: where a training step's time goes): per op kind, the forward time
 * (from the end of the previous op to this op's record, so host work in between counts),
 * the backward time and the calls; on the GPU every op is synchronised first (slower, but
 * attributable). On with s2s_graph_set_profile or the environment S2S_PROFILE=1 at
 * s2s_graph_new; s2s_graph_free then prints the table to stderr. */
void s2s_graph_set_profile(s2s_graph *g, int on);
double s2s_graph_profile_seconds(const s2s_graph *g, const char *op, int backward, long *calls);
void s2s_graph_profile_print(const s2s_graph *g, FILE *f);
/* loss must be a scalar (n == 1); seeds dloss = 1. Once per tape (reset in between).
 * Parameters' .grad ADD the step's gradients (zeroing them is the caller's); other
 * tensors' gradient buffers are the backward's scratch: written first rather than
 * added to, and a sum's input may take over its output's buffer (graph.c). */
void s2s_graph_backward(s2s_graph *g, s2s_tensor *loss);

/* Tensors */
s2s_tensor *s2s_param_new(int ndim, const int *shape); /* zeroed data + grad */
void s2s_param_free(s2s_tensor *t);
s2s_tensor *s2s_tensor_new(s2s_graph *g, int ndim, const int *shape); /* arena, zeroed */
/* Wrap existing memory (no copy, no grad): inputs, constants, read-only weights. */
s2s_tensor *s2s_tensor_wrap(s2s_graph *g, float *data, int ndim, const int *shape);
void *s2s_graph_alloc(s2s_graph *g, size_t bytes); /* arena scratch, 64-byte aligned, zeroed */
/* A tensor of shape [shape] holding reps back-to-back copies of src[n / reps]; src
 * is on the graph's device (host memory, or device memory on a CUDA graph). */
s2s_tensor *s2s_tensor_repeat(s2s_graph *g, const float *src, int reps, int ndim, const int *shape);
/* A tensor holding a copy of host values src[n] (uploaded on a CUDA graph); no grad. */
s2s_tensor *s2s_tensor_from_host(s2s_graph *g, const float *src, int ndim, const int *shape);
/* The value of a scalar (n == 1) tensor, read back from the device if needed. */
float s2s_tensor_item(s2s_graph *g, const s2s_tensor *t);
/* The tensor's values on the host (copied into out[n]). */
void s2s_tensor_read(s2s_graph *g, float *out, const s2s_tensor *t);

/* Ops. Row-wise ops treat a tensor as [n / last_dim, last_dim]. */
s2s_tensor *s2s_linear(s2s_graph *g, s2s_tensor *x /* [.., K] */, s2s_tensor *w /* [M, K] */,
                       s2s_tensor *b /* [M] or NULL */);                    /* -> [.., M] */
s2s_tensor *s2s_matmul(s2s_graph *g, s2s_tensor *a /* [M, K] */, s2s_tensor *b /* [K, N] */);
s2s_tensor *s2s_add(s2s_graph *g, s2s_tensor *a, s2s_tensor *b);  /* same shape */
s2s_tensor *s2s_mul(s2s_graph *g, s2s_tensor *a, s2s_tensor *b);  /* same shape */
s2s_tensor *s2s_scale(s2s_graph *g, s2s_tensor *a, float s);
/* The same values in another shape (same element count; a copy, grads flow back). */
s2s_tensor *s2s_reshape(s2s_graph *g, s2s_tensor *a, int ndim, const int *shape);
s2s_tensor *s2s_embedding(s2s_graph *g, s2s_tensor *table /* [V, D] */, const int32_t *ids,
                          int ndim, const int *shape);   /* ids [shape] -> [shape, D] */
s2s_tensor *s2s_layernorm(s2s_graph *g, s2s_tensor *x, s2s_tensor *w, s2s_tensor *b);
s2s_tensor *s2s_softmax(s2s_graph *g, s2s_tensor *x);
s2s_tensor *s2s_logsoftmax(s2s_graph *g, s2s_tensor *x);
s2s_tensor *s2s_relu(s2s_graph *g, s2s_tensor *x);
s2s_tensor *s2s_gelu(s2s_graph *g, s2s_tensor *x);
s2s_tensor *s2s_dropout(s2s_graph *g, s2s_tensor *x, float p); /* identity unless training */
/* Multi-head attention core: q [B, Tq, D], k/v [B, Tk, D], D = H * Dh.
 * kv_len [B] (copied; NULL = no padding), causal mask when causal != 0. -> [B, Tq, D] */
s2s_tensor *s2s_attention(s2s_graph *g, s2s_tensor *q, s2s_tensor *k, s2s_tensor *v,
                          const int32_t *kv_len, int causal, int H);
/* T2R linear attention (kernels_t2r.h; CPU and CUDA graphs, kernels_t2r_cuda.h): q [B, Tq, D],
 * k/v [B, Tk, D], D = H * Dh; W [H*kf, Dh] (= [H, kf, Dh]) and b [H*kf] the learned feature
 * map phi(x) = relu(W_h x + b_h), or W = b = NULL: the fixed phi(x) = elu(x) + 1 (kf = Dh); kv_len [B] (copied; NULL = no padding), causal as
 * s2s_attention. Gradients flow to q, k, v, W and b. -> [B, Tq, D] */
s2s_tensor *s2s_t2r_attention(s2s_graph *g, s2s_tensor *q, s2s_tensor *k, s2s_tensor *v,
                              s2s_tensor *W, s2s_tensor *b, const int32_t *kv_len, int causal, int H);
/* Mean label-smoothed cross-entropy over rows whose target != ignore -> scalar. */
s2s_tensor *s2s_xent(s2s_graph *g, s2s_tensor *logits /* [N, V] */, const int32_t *tgt /* [N] */,
                     float eps, int ignore, int *n_counted);
/* Recurrent scans over T steps from a zero state (kernels_rnn.h has the cells and the
 * gate order). xp holds the input projections of every step, computed beforehand by
 * one s2s_linear over all B*T rows; only the recurrence runs step by step. -> h [B, T, D] */
s2s_tensor *s2s_ssru_scan(s2s_graph *g, s2s_tensor *xp /* [B, T, 2D] */);
s2s_tensor *s2s_gru_scan(s2s_graph *g, s2s_tensor *xp /* [B, T, 3D] */,
                         s2s_tensor *wh /* [3D, D] */, s2s_tensor *bh /* [3D] or NULL */);
s2s_tensor *s2s_lstm_scan(s2s_graph *g, s2s_tensor *xp /* [B, T, 4D] */,
                          s2s_tensor *wh /* [4D, D] */, s2s_tensor *bh /* [4D] or NULL */);
/* Structured L0 pruning (kernels_l0.h has the formulas; l0.h uses these):
 * y [.., G*S] = x * z[g] on the last dim's columns g*S..g*S+S-1 (z [G]: one mask value
 * per head or FFN unit); grads to x and z. */
s2s_tensor *s2s_group_scale(s2s_graph *g, s2s_tensor *x, s2s_tensor *z);
/* Hard-concrete sample z [n] from log_alpha[off .. off+n) and uniforms u[n] on the HOST
 * (each in (0, 1); uploaded on a CUDA graph); grads to that slice of log_alpha. */
s2s_tensor *s2s_hard_concrete(s2s_graph *g, s2s_tensor *log_alpha, int off, int n, const float *u);
/* Expected density: scalar inv_total * sum_i cost[i] P(z_i > 0) over all of log_alpha;
 * cost [log_alpha->n] lives on the graph's device and must outlive the tape. */
s2s_tensor *s2s_l0_density(s2s_graph *g, s2s_tensor *log_alpha, const float *cost, float inv_total);
/* Lagrangian lambda[0] (s - t) + lambda[1] (s - t)^2 with s = 1 - density (scalars;
 * lambda [2]) -> scalar; grads to density and lambda. */
s2s_tensor *s2s_l0_lagrangian(s2s_graph *g, s2s_tensor *density, s2s_tensor *lambda, float t);
s2s_tensor *s2s_sum(s2s_graph *g, s2s_tensor *x);  /* -> scalar */
s2s_tensor *s2s_mean(s2s_graph *g, s2s_tensor *x); /* -> scalar */

#endif
