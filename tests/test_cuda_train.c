/* test_cuda_train.c - the GPU training path end to end, against the CPU one:
 *   - one forward + backward of a whole model (Transformer and each recurrent
 *     decoder) on a CUDA graph gives the CPU graph's loss and every parameter's
 *     gradient (fp32, relative ~1e-4);
 *   - `s2s_train` with cuda = 1 logs the CPU run's losses step for step (dropout
 *     on: the counter-based masks are identical on both devices) and saves
 *     checkpoints that load on the CPU;
 *   - TF32 training tracks the fp32 losses.
 * Every test skips cleanly when no GPU is present (and the file compiles to
 * skipping tests in a build without CUDA). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "graph.h"
#include "kernels_cuda.h"
#include "model.h"
#include "optim.h"
#include "test_util.h"
#include "train.h"

#define NEED_GPU() \
    do { if (!s2s_cuda_available()) cr_skip_test("no CUDA device"); } while (0)

#ifdef S2S_CUDA
/* A fixed batch of the reverse task: B sentences, ids from the model's tokenizers. */
typedef struct { int B, Ts, Tt; int32_t src[4 * 12], slen[4], tin[4 * 13], tout[4 * 13]; } mini_batch;

static void make_batch(mini_batch *b, const s2s_model *m) {
    static const int len[4] = {7, 3, 11, 5};
    b->B = 4; b->Ts = 12; b->Tt = 13;
    memset(b->src, 0, sizeof b->src); memset(b->tin, 0, sizeof b->tin); memset(b->tout, 0, sizeof b->tout);
    uint64_t rng = 5;
    for (int i = 0; i < 4; i++) {
        int L = len[i];
        for (int t = 0; t < L; t++) b->src[i * 12 + t] = 4 + (int)(s2s_rng_uniform(&rng) * (m->cfg.src_vocab - 4));
        b->src[i * 12 + L] = 2;
        b->slen[i] = L + 1;
        b->tin[i * 13] = 1;
        for (int t = 0; t < L; t++) {
            int y = 4 + (int)(s2s_rng_uniform(&rng) * (m->cfg.tgt_vocab - 4));
            b->tout[i * 13 + t] = y;
            b->tin[i * 13 + t + 1] = y;
        }
        b->tout[i * 13 + L] = 2;
    }
}

/* loss of one forward + backward with dropout p (RNG seed fixed); grads left in the params */
static float fwd_bwd(s2s_graph *g, s2s_model *m, const mini_batch *b, float p) {
    uint64_t rng = 77;
    s2s_graph_reset(g);
    s2s_graph_set_training(g, p > 0, &rng);
    s2s_zero_grad(m);
    s2s_tensor *enc = s2s_model_encode(g, m, b->src, b->slen, b->B, b->Ts, p);
    s2s_tensor *lg = s2s_model_decode_train(g, m, enc, b->slen, b->tin, b->B, b->Tt, p);
    s2s_tensor *loss = s2s_xent(g, lg, b->tout, 0.1f, 0, NULL);
    s2s_graph_backward(g, loss);
    return s2s_tensor_item(g, loss);
}

static void check_model_grads(const char *decoder) {
    s2s_model *m = tu_tiny_model(16, 2, 24, 2, 2, 11);
    if (strcmp(decoder, "transformer") != 0) { /* same encoder, recurrent decoder */
        s2s_config d = m->cfg;
        snprintf(d.decoder, sizeof d.decoder, "%s", decoder);
        char err[256];
        s2s_model *st = s2s_model_student(m, &d, 3, err, sizeof err);
        cr_assert_not_null(st, "%s", err);
        s2s_model_free(m);
        m = st;
    }
    mini_batch b;
    make_batch(&b, m);
    for (int drop = 0; drop < 2; drop++) {
        float p = drop ? 0.2f : 0.0f;
        s2s_graph *gc = s2s_graph_new();
        float lc = fwd_bwd(gc, m, &b, p);
        /* CPU grads saved, then the same on the GPU */
        float **cg = s2s_xmalloc((size_t)m->n_params * sizeof *cg);
        for (int i = 0; i < m->n_params; i++) {
            cg[i] = s2s_xmalloc(m->params[i].t->n * sizeof(float));
            memcpy(cg[i], m->params[i].t->grad, m->params[i].t->n * sizeof(float));
        }
        char err[256];
        cr_assert_eq(s2s_model_to_cuda(m, err, sizeof err), 0, "%s", err);
        s2s_graph *gg = s2s_graph_new_cuda(err, sizeof err);
        cr_assert_not_null(gg, "%s", err);
        float lg = fwd_bwd(gg, m, &b, p);
        cr_assert(fabsf(lg - lc) <= 1e-5f * fabsf(lc) + 1e-6f, "%s p=%g: GPU loss %.7f vs CPU %.7f", decoder, p, lg, lc);
        for (int i = 0; i < m->n_params; i++) {
            s2s_tensor *t = m->params[i].t;
            float *h = s2s_xmalloc(t->n * sizeof(float));
            s2s_cuda_download(h, t->dev_grad, t->n * sizeof(float));
            double e = tu_rel_err(h, cg[i], t->n, 1e-5, 1e-3);
            cr_assert(e <= 1.0, "%s p=%g: gradient of %s differs (rel err %.3g)", decoder, p, m->params[i].name, e);
            free(h);
            free(cg[i]);
        }
        free(cg);
        s2s_model_free_cuda(m);
        s2s_graph_free(gc);
        s2s_graph_free(gg);
    }
    s2s_model_free(m);
}
#endif

Test(cuda_train, whole_model_gradients_match_cpu_transformer) {
    NEED_GPU();
#ifdef S2S_CUDA
    check_model_grads("transformer");
#endif
}

Test(cuda_train, whole_model_gradients_match_cpu_recurrent) {
    NEED_GPU();
#ifdef S2S_CUDA
    check_model_grads("ssru");
    check_model_grads("gru");
    check_model_grads("lstm");
#endif
}

#ifdef S2S_CUDA
static void opts(s2s_train_opts *o, const char *dir, const char *out, int cuda) {
    s2s_train_opts_default(o);
    o->train_src = tu_path(dir, "train.src");
    o->train_tgt = tu_path(dir, "train.tgt");
    o->dev_src = tu_path(dir, "dev.src");
    o->dev_tgt = tu_path(dir, "dev.tgt");
    o->out_dir = tu_path(dir, out);
    o->model.d_model = 32; o->model.n_heads = 2; o->model.d_ff = 64;
    o->model.enc_layers = 2; o->model.dec_layers = 2; o->model.max_len = 32;
    o->lr = 3e-3f; o->warmup = 20; o->dropout = 0.1f;
    o->tokens_per_batch = 400;
    o->max_steps = 60; o->eval_every = 30; o->log_every = 5;
    o->quiet = getenv("S2S_TEST_VERBOSE") == NULL;
    o->metric = "wer"; o->eval_max = 20;
    o->cuda = cuda;
}

static void free_opts(s2s_train_opts *o) {
    free((char *)o->train_src); free((char *)o->train_tgt); free((char *)o->dev_src);
    free((char *)o->dev_tgt); free((char *)o->out_dir);
}

/* The "loss X" values of train.log, in order. */
static int read_losses(const char *dir, double *out, int cap) {
    char *p = tu_path(dir, "train.log");
    FILE *f = fopen(p, "r");
    cr_assert_not_null(f, "%s", p);
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f) && n < cap) {
        char *q = strstr(line, "| loss ");
        if (q) out[n++] = atof(q + 7);
    }
    fclose(f);
    free(p);
    return n;
}

/* prec: 0 fp32, 1 TF32, 2 bf16 mixed precision */
static void train_and_compare(int prec, double tol) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 400, 3);
    tu_write_reverse_task(dir, "dev", 20, 4);
    char err[512];
    s2s_train_opts a, b;
    opts(&a, dir, "cpu", 0);
    opts(&b, dir, "gpu", 1);
    b.tf32 = prec == 1;
    b.bf16 = prec == 2;
    cr_assert_eq(s2s_train(&a, err, sizeof err), 0, "%s", err);
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    double la[32], lb[32];
    int na = read_losses(a.out_dir, la, 32), nb = read_losses(b.out_dir, lb, 32);
    cr_assert_eq(na, 12);
    cr_assert_eq(nb, na);
    for (int i = 0; i < na; i++) {
        cr_log_info("step %d: cpu %.4f gpu%s %.4f", 5 * (i + 1), la[i], prec == 1 ? " tf32" : prec == 2 ? " bf16" : "", lb[i]);
        cr_assert(fabs(la[i] - lb[i]) <= tol, "step %d: loss CPU %.4f vs GPU %.4f", 5 * (i + 1), la[i], lb[i]);
    }
    cr_assert(lb[na - 1] < lb[0] - 0.5, "GPU training did not learn: %.3f -> %.3f", lb[0], lb[na - 1]);
    /* the GPU run's checkpoints are ordinary files the CPU loads */
    char *last = tu_path(b.out_dir, "last.safetensors"), *best = tu_path(b.out_dir, "best.safetensors");
    s2s_model *m = s2s_model_load(best, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    s2s_model_free(m);
    /* and resuming the GPU run from its last checkpoint continues (no error) */
    b.max_steps = 70;
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    free(last); free(best);
    free_opts(&a); free_opts(&b);
    tu_rmrf(dir);
    free(dir);
}
#endif

/* fp32 on both devices: the logged 5-step mean losses agree to 2e-3 over 60 steps
 * (summation order differs: atomics, cuBLAS; measured differences are ~1e-4). */
Test(cuda_train, training_losses_match_cpu, .timeout = 300) {
    NEED_GPU();
#ifdef S2S_CUDA
    train_and_compare(0, 2e-3);
#endif
}

/* TF32 matmuls (10-bit mantissa inputs): losses track fp32 within 0.05. */
Test(cuda_train, tf32_losses_track_fp32, .timeout = 300) {
    NEED_GPU();
#ifdef S2S_CUDA
    train_and_compare(1, 0.05);
#endif
}

/* bf16 matmul inputs (8-bit mantissa), fp32 sums and master weights: losses track
 * fp32 within 0.1 nats over 60 steps (and the run still learns, checked inside). */
Test(cuda_train, bf16_mixed_precision_losses_track_fp32, .timeout = 300) {
    NEED_GPU();
#ifdef S2S_CUDA
    train_and_compare(2, 0.1);
#endif
}
