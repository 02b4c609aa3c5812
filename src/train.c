/* train.c - the training loop (see train.h). */
#include "train.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "graph.h"
#include "io.h"
#include "json.h"
#include "kd.h"
#include "kernels.h"
#include "kernels_cuda.h"
#include "l0.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "s2s.h"
#include "safetensors.h"
#include "tokenizer.h"

void s2s_train_opts_default(s2s_train_opts *o) {
    memset(o, 0, sizeof *o);
    s2s_config_default(&o->model);
    o->src_tok = S2S_TOK_CHAR;
    o->tgt_tok = S2S_TOK_SYMBOL;
    o->lr = 7e-4f; o->warmup = 4000; o->weight_decay = 0.0f; o->clip = 1.0f;
    o->dropout = 0.1f; o->label_smoothing = 0.1f;
    o->exit_last_weight = 1.0f;
    o->tokens_per_batch = 4096;
    o->max_steps = 100000; o->max_epochs = 1000;
    o->seed = 1;
    o->eval_every = 1000; o->patience = 10; o->eval_max = 1000;
    o->metric = "loss";
    o->log_every = 100;
    o->threads = 1;
    o->kd_temp = 1.0f;
    o->l0_lr = S2S_L0_LR_DEFAULT; o->l0_droprate_init = S2S_L0_DROPRATE_INIT;
}

/* ------------------------------------------------------------------ data */

typedef struct {
    int n;
    int32_t **src, **tgt; /* src ends with </s>; tgt has no <s>/</s> */
    int *slen, *tlen;
} dataset;

static void dataset_free(dataset *d) {
    for (int i = 0; i < d->n; i++) { free(d->src[i]); free(d->tgt[i]); }
    free(d->src); free(d->tgt); free(d->slen); free(d->tlen);
    memset(d, 0, sizeof *d);
}

/* Tokenize parallel lines; drops pairs that are empty or longer than max_len-1. */
static int dataset_make(dataset *d, char **src, char **tgt, size_t n, const s2s_model *m,
                        const char *name, int quiet) {
    int maxl = m->cfg.max_len - 1;
    d->src = s2s_xmalloc(n * sizeof(int32_t *)); d->tgt = s2s_xmalloc(n * sizeof(int32_t *));
    d->slen = s2s_xmalloc(n * sizeof(int)); d->tlen = s2s_xmalloc(n * sizeof(int));
    d->n = 0;
    int32_t *buf = s2s_xmalloc((size_t)(maxl + 2) * sizeof(int32_t));
    size_t dropped = 0;
    for (size_t i = 0; i < n; i++) {
        char *tab = strchr(tgt[i], '\t'); /* dev/test: first alternative */
        if (tab) *tab = '\0';
        int ks = s2s_tok_encode(m->src_tok, src[i], buf, maxl + 1);
        int kt = ks > 0 && ks <= maxl ? s2s_tok_encode(m->tgt_tok, tgt[i], NULL, 0) : -1;
        if (tab) *tab = '\t';
        if (ks <= 0 || ks > maxl || kt <= 0 || kt > maxl) { dropped++; continue; }
        int j = d->n++;
        d->src[j] = s2s_xmalloc((size_t)(ks + 1) * sizeof(int32_t));
        memcpy(d->src[j], buf, (size_t)ks * sizeof(int32_t));
        d->src[j][ks] = S2S_EOS;
        d->slen[j] = ks + 1;
        d->tgt[j] = s2s_xmalloc((size_t)kt * sizeof(int32_t));
        if (tab) *tab = '\0';
        s2s_tok_encode(m->tgt_tok, tgt[i], d->tgt[j], kt);
        if (tab) *tab = '\t';
        d->tlen[j] = kt;
    }
    free(buf);
    if (!quiet)
        fprintf(stderr, "s2s train: %s: %d pairs (%zu dropped: empty, invalid UTF-8 or longer than %d tokens)\n",
                name, d->n, dropped, maxl);
    return d->n;
}

typedef struct { int start, count; } batch_ref;

typedef struct {
    int *perm;        /* [n] example order of this epoch */
    batch_ref *b;     /* [nb] */
    int nb;
} epoch_plan;

static int plen(const dataset *d, int i) {
    int t = d->tlen[i] + 1;
    return d->slen[i] > t ? d->slen[i] : t;
}

static const dataset *sort_ds;
static int by_plen(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    int lx = plen(sort_ds, x), ly = plen(sort_ds, y);
    return lx != ly ? lx - ly : x - y;
}

/* Deterministic plan of epoch e: shuffle, sort within large chunks by length
 * (bucketing), cut into batches of at most tokens_per_batch padded tokens,
 * shuffle the batch order. */
static void plan_epoch(epoch_plan *p, const dataset *d, int tokens_per_batch, uint64_t seed, int e) {
    uint64_t rng = seed * 0x9E3779B97F4A7C15ull ^ (uint64_t)(e + 1) * 0xD1B54A32D192ED03ull;
    free(p->perm); free(p->b);
    p->perm = s2s_xmalloc((size_t)d->n * sizeof(int));
    for (int i = 0; i < d->n; i++) p->perm[i] = i;
    for (int i = d->n - 1; i > 0; i--) {
        int j = (int)(s2s_rng_next(&rng) % (uint64_t)(i + 1));
        int t = p->perm[i]; p->perm[i] = p->perm[j]; p->perm[j] = t;
    }
    int chunk = 64 * (tokens_per_batch / 16 + 1);
    sort_ds = d;
    for (int s = 0; s < d->n; s += chunk) {
        int c = d->n - s < chunk ? d->n - s : chunk;
        qsort(p->perm + s, (size_t)c, sizeof(int), by_plen);
    }
    p->b = s2s_xmalloc((size_t)(d->n + 1) * sizeof(batch_ref));
    p->nb = 0;
    int start = 0, maxl = 0;
    for (int i = 0; i < d->n; i++) {
        int l = plen(d, p->perm[i]);
        int nl = l > maxl ? l : maxl;
        if (i > start && nl * (i - start + 1) > tokens_per_batch) {
            p->b[p->nb++] = (batch_ref){start, i - start};
            start = i; nl = l;
        }
        maxl = nl;
    }
    if (d->n > start) p->b[p->nb++] = (batch_ref){start, d->n - start};
    for (int i = p->nb - 1; i > 0; i--) {
        int j = (int)(s2s_rng_next(&rng) % (uint64_t)(i + 1));
        batch_ref t = p->b[i]; p->b[i] = p->b[j]; p->b[j] = t;
    }
}

/* Padded batch tensors for examples idx[0..B). */
typedef struct {
    int B, Ts, Tt, ntok;
    int32_t *src, *slen, *tin, *tout;
} batch;

static void batch_make(batch *bt, const dataset *d, const int *idx, int B) {
    int Ts = 0, Tt = 0;
    for (int b = 0; b < B; b++) {
        if (d->slen[idx[b]] > Ts) Ts = d->slen[idx[b]];
        if (d->tlen[idx[b]] + 1 > Tt) Tt = d->tlen[idx[b]] + 1;
    }
    bt->B = B; bt->Ts = Ts; bt->Tt = Tt; bt->ntok = 0;
    bt->src = s2s_xcalloc((size_t)B * Ts, sizeof(int32_t));
    bt->slen = s2s_xmalloc((size_t)B * sizeof(int32_t));
    bt->tin = s2s_xcalloc((size_t)B * Tt, sizeof(int32_t));
    bt->tout = s2s_xcalloc((size_t)B * Tt, sizeof(int32_t));
    for (int b = 0; b < B; b++) {
        int i = idx[b];
        memcpy(bt->src + (size_t)b * Ts, d->src[i], (size_t)d->slen[i] * sizeof(int32_t));
        bt->slen[b] = d->slen[i];
        int32_t *ti = bt->tin + (size_t)b * Tt, *to = bt->tout + (size_t)b * Tt;
        ti[0] = S2S_BOS;
        memcpy(ti + 1, d->tgt[i], (size_t)d->tlen[i] * sizeof(int32_t));
        memcpy(to, d->tgt[i], (size_t)d->tlen[i] * sizeof(int32_t));
        to[d->tlen[i]] = S2S_EOS;
        bt->ntok += d->tlen[i] + 1;
    }
}

static void batch_free(batch *bt) { free(bt->src); free(bt->slen); free(bt->tin); free(bt->tout); }

/* Forward (+ loss) of one batch on g; returns the loss tensor. */
static s2s_tensor *forward_loss(s2s_graph *g, const s2s_model *m, const batch *bt, float dropout,
                                float eps) {
    s2s_tensor *enc = s2s_model_encode(g, m, bt->src, bt->slen, bt->B, bt->Ts, dropout);
    s2s_tensor *logits = s2s_model_decode_train(g, m, enc, bt->slen, bt->tin, bt->B, bt->Tt, dropout);
    return s2s_xent(g, logits, bt->tout, eps, S2S_PAD, NULL);
}

/* The DEED training loss of a multi-exit model: every exit's cross-entropy
 * (s2s_model_exit_loss). Dev loss and metric use the last exit (forward_loss). */
static s2s_tensor *forward_exit_loss(s2s_graph *g, const s2s_model *m, const batch *bt, float dropout,
                                     float eps, float last_weight) {
    s2s_tensor *enc = s2s_model_encode(g, m, bt->src, bt->slen, bt->B, bt->Ts, dropout);
    s2s_tensor *exits[S2S_MAX_LAYERS];
    s2s_model_decode_train_exits(g, m, enc, bt->slen, bt->tin, bt->B, bt->Tt, dropout, exits);
    return s2s_model_exit_loss(g, m, exits, bt->tout, eps, last_weight);
}

/* Forward + distillation loss (kd.h) of one batch: the teacher runs on the same
 * graph with the tape off (no dropout, no gradients), then the student. */
static s2s_tensor *kd_forward_loss(s2s_graph *g, const s2s_model *m, const s2s_model *teacher,
                                   const batch *bt, const s2s_train_opts *o) {
    s2s_graph_set_grad(g, 0);
    s2s_tensor *tenc = s2s_model_encode(g, teacher, bt->src, bt->slen, bt->B, bt->Ts, 0.0f);
    s2s_tensor *tlog = s2s_model_decode_train(g, teacher, tenc, bt->slen, bt->tin, bt->B, bt->Tt, 0.0f);
    s2s_graph_set_grad(g, 1);
    s2s_tensor *enc = s2s_model_encode(g, m, bt->src, bt->slen, bt->B, bt->Ts, o->dropout);
    s2s_tensor *logits = s2s_model_decode_train(g, m, enc, bt->slen, bt->tin, bt->B, bt->Tt, o->dropout);
    return s2s_kd_loss(g, logits, tlog, bt->tout, o->label_smoothing, S2S_PAD, o->kd_weight, o->kd_temp, NULL);
}

/* The distillation teacher of o (NULL when not distilling): loaded read-only, its
 * tokenizers checked against the student's, moved to the GPU with --device cuda. */
static int load_kd_teacher(s2s_model **out, const s2s_train_opts *o, const s2s_model *m, char *err, size_t errlen) {
    *out = NULL;
    if (!o->kd_teacher || o->kd_weight <= 0.0f) return 0;
    if (!(o->kd_weight <= 1.0f) || !(o->kd_temp > 0.0f)) {
        s2s_errf(err, errlen, "--kd-weight must be in [0, 1] and --kd-temp > 0 (got %g, %g)", o->kd_weight, o->kd_temp);
        return -1;
    }
    if (m->cfg.multi_exit) {
        s2s_errf(err, errlen, "--kd-teacher: distillation of a multi-exit (DEED) student is not supported");
        return -1;
    }
    char e2[512];
    s2s_model *t = s2s_model_load(o->kd_teacher, 0, e2, sizeof e2);
    if (!t) { s2s_errf(err, errlen, "--kd-teacher: %s", e2); return -1; }
    size_t n1 = 0, n2 = 0, n3 = 0, n4 = 0;
    char *a = s2s_tok_serialize(t->src_tok, &n1), *b = s2s_tok_serialize(m->src_tok, &n2);
    char *c = s2s_tok_serialize(t->tgt_tok, &n3), *d = s2s_tok_serialize(m->tgt_tok, &n4);
    int same = n1 == n2 && n3 == n4 && memcmp(a, b, n1) == 0 && memcmp(c, d, n3) == 0;
    free(a); free(b); free(c); free(d);
    if (!same) {
        s2s_errf(err, errlen, "--kd-teacher %s: its tokenizers differ from the student's (distillation needs the same vocabularies)", o->kd_teacher);
        s2s_model_free(t);
        return -1;
    }
    if (o->cuda && s2s_model_to_cuda(t, e2, sizeof e2) != 0) {
        s2s_errf(err, errlen, "--kd-teacher: %s", e2);
        s2s_model_free(t);
        return -1;
    }
    if (!o->quiet)
        fprintf(stderr, "s2s train: distilling from %s (weight %g, temperature %g)\n", o->kd_teacher, o->kd_weight, o->kd_temp);
    *out = t;
    return 0;
}

/* ------------------------------------------------------------ trainer state */

typedef struct {
    long step;
    int epoch, batch_pos;
    uint64_t rng;          /* dropout RNG */
    double best;           /* best dev score so far (NAN: none) */
    int bad_evals;
    double elapsed;        /* seconds trained before this process */
    double tokens;         /* target tokens seen */
} trainer_state;

static volatile sig_atomic_t g_stop = 0;
static void on_signal(int sig) { (void)sig; g_stop = 1; }

static char *join_path(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = s2s_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/* Remove what a save killed mid-write left in out_dir: the writer's temporary
 * files "last.safetensors.tmp.*" and "best.safetensors.tmp.*" (see
 * s2s_st_writer_save). Nothing else is touched. */
static void remove_stale_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, "last.safetensors.tmp.", 21) != 0 &&
            strncmp(e->d_name, "best.safetensors.tmp.", 21) != 0) continue;
        char *p = join_path(dir, e->d_name);
        (void)unlink(p);
        free(p);
    }
    closedir(d);
}

static void set_train_meta(s2s_model *m, const s2s_train_opts *o, const trainer_state *ts,
                           double metric) {
    s2s_strbuf b;
    s2s_strbuf_init(&b);
    s2s_strbuf_appendf(&b, "{\"steps\":%ld,\"epoch\":%d,\"seconds\":%.1f,\"target_tokens\":%.0f,", ts->step,
                       ts->epoch, ts->elapsed, ts->tokens);
    s2s_strbuf_puts(&b, "\"train_src\":");
    s2s_json_escape(&b, o->train_src, strlen(o->train_src));
    s2s_strbuf_puts(&b, ",\"metric\":");
    s2s_json_escape(&b, o->metric, strlen(o->metric));
    s2s_strbuf_appendf(&b, ",\"dev_score\":%.4f,\"lr\":%g,\"warmup\":%g,\"tokens_per_batch\":%d,"
                           "\"dropout\":%g,\"label_smoothing\":%g,\"seed\":%llu}",
                       isfinite(metric) ? metric : -1.0, o->lr, o->warmup, o->tokens_per_batch,
                       o->dropout, o->label_smoothing, (unsigned long long)o->seed);
    free(m->train_meta);
    m->train_meta = b.s;
}

static int save_last(s2s_model *m, s2s_adamw *a, const trainer_state *ts, const char *path,
                     char *err, size_t errlen) {
    int np = m->n_params;
    s2s_model_sync_host(m); /* GPU training: bring weights and moments back first */
    s2s_adamw_sync_host(a, m);
    int nl0 = m->l0 ? s2s_l0_max_extra(m->l0) : 0; /* NASH masks, lambdas, their AdamW state */
    s2s_extra_tensor *ex = s2s_xcalloc((size_t)2 * np + (size_t)nl0, sizeof *ex);
    char (*names)[80] = s2s_xmalloc((size_t)2 * np * sizeof *names);
    for (int i = 0; i < np; i++) {
        const s2s_tensor *t = m->params[i].t;
        for (int k = 0; k < 2; k++) {
            s2s_extra_tensor *e = &ex[2 * i + k];
            snprintf(names[2 * i + k], 80, "opt.%s.%s", k ? "v" : "m", m->params[i].name);
            e->name = names[2 * i + k];
            e->data = k ? a->var[i] : a->mom[i];
            e->ndim = t->ndim;
            e->shape[0] = t->shape[0];
            e->shape[1] = t->shape[1];
        }
    }
    char st[512];
    snprintf(st, sizeof st,
             "{\"step\":%ld,\"epoch\":%d,\"batch_pos\":%d,\"rng\":\"%llu\",\"best\":%.17g,"
             "\"has_best\":%d,\"bad_evals\":%d,\"elapsed\":%.17g,\"tokens\":%.17g}",
             ts->step, ts->epoch, ts->batch_pos, (unsigned long long)ts->rng,
             isnan(ts->best) ? 0.0 : ts->best, !isnan(ts->best), ts->bad_evals, ts->elapsed, ts->tokens);
    const char *kv[2] = {"s2s.trainer", st};
    if (m->l0) nl0 = s2s_l0_extra(m->l0, ex + 2 * np, 1);
    int rc = s2s_model_save(m, path, ex, 2 * np + nl0, kv, 1, 0, err, errlen);
    free(ex); free(names);
    return rc;
}

/* best.safetensors (or any model file): the weights, plus the L0 log_alphas
 * (enc.{l}.l0.heads / enc.{l}.l0.ff) while pruning masks are trained. */
static int save_model(s2s_model *m, const char *path, int fp16, char *err, size_t errlen) {
    s2s_model_sync_host(m); /* GPU training: the file gets the current weights */
    if (!m->l0) return s2s_model_save(m, path, NULL, 0, NULL, 0, fp16, err, errlen);
    s2s_extra_tensor *ex = s2s_xcalloc((size_t)s2s_l0_max_extra(m->l0), sizeof *ex);
    int n = s2s_l0_extra(m->l0, ex, 0);
    int rc = s2s_model_save(m, path, ex, n, NULL, 0, fp16, err, errlen);
    free(ex);
    return rc;
}

static int load_trainer(const char *path, s2s_model *m, s2s_adamw *a, trainer_state *ts, char *err,
                        size_t errlen) {
    char e2[512];
    s2s_st_file *f = s2s_st_open(path, e2, sizeof e2);
    if (!f) { s2s_errf(err, errlen, "%s", e2); return -1; }
    int rc = -1;
    const char *st = s2s_st_meta(f, "s2s.trainer");
    s2s_json *j = st ? s2s_json_parse(st, strlen(st), e2, sizeof e2) : NULL;
    if (!j) { s2s_errf(err, errlen, "%s: no valid trainer state (s2s.trainer) to resume from", path); goto out; }
    /* untrusted: range-check before converting (NaN for a missing key, or an
     * out-of-range value, would be undefined; a negative batch_pos would index
     * before the epoch's batch plan) */
    double step = s2s_json_num(s2s_json_get(j, "step")), epoch = s2s_json_num(s2s_json_get(j, "epoch"));
    double bpos = s2s_json_num(s2s_json_get(j, "batch_pos")), bad = s2s_json_num(s2s_json_get(j, "bad_evals"));
    if (!(step >= 0 && step <= 1e15 && epoch >= 0 && epoch <= 2e9 && bpos >= 0 && bpos <= 2e9 && bad >= 0 && bad <= 2e9)) {
        s2s_errf(err, errlen, "%s: corrupt trainer state (s2s.trainer): step, epoch, batch_pos or bad_evals out of range", path);
        goto out;
    }
    ts->step = (long)step;
    ts->epoch = (int)epoch;
    ts->batch_pos = (int)bpos;
    const char *r = s2s_json_str(s2s_json_get(j, "rng"));
    ts->rng = r ? strtoull(r, NULL, 10) : 1;
    ts->best = s2s_json_num(s2s_json_get(j, "has_best")) != 0 ? s2s_json_num(s2s_json_get(j, "best")) : NAN;
    ts->bad_evals = (int)bad;
    ts->elapsed = s2s_json_num(s2s_json_get(j, "elapsed"));
    ts->tokens = s2s_json_num(s2s_json_get(j, "tokens"));
    for (int i = 0; i < m->n_params; i++) {
        for (int k = 0; k < 2; k++) {
            char nm[80];
            snprintf(nm, sizeof nm, "opt.%s.%s", k ? "v" : "m", m->params[i].name);
            const s2s_st_tensor *t = s2s_st_find(f, nm);
            if (!t || t->dtype != S2S_DT_F32 || (size_t)t->numel != m->params[i].t->n) {
                s2s_errf(err, errlen, "%s: optimizer state '%s' is missing or has the wrong size", path, nm);
                goto out;
            }
            s2s_st_to_f32(k ? a->var[i] : a->mom[i], t);
        }
    }
    if (m->l0 && s2s_l0_load(m->l0, f, 1, e2, sizeof e2) < 0) { /* 1: none saved, the masks start fresh */
        s2s_errf(err, errlen, "%s: %s", path, e2);
        goto out;
    }
    rc = 0;
out:
    s2s_json_free(j);
    s2s_st_close(f);
    return rc;
}

/* ------------------------------------------------------------ evaluation */

static double dev_loss(s2s_graph *g, const s2s_model *m, const dataset *dev, int tokens_per_batch) {
    double sum = 0, cnt = 0;
    s2s_graph_set_grad(g, 0);
    int *idx = s2s_xmalloc((size_t)(dev->n + 1) * sizeof(int));
    for (int i = 0; i < dev->n; i++) idx[i] = i;
    int bs = tokens_per_batch / 64 > 0 ? tokens_per_batch / 64 : 1;
    for (int s = 0; s < dev->n; s += bs) {
        int B = dev->n - s < bs ? dev->n - s : bs;
        batch bt;
        batch_make(&bt, dev, idx + s, B);
        s2s_graph_reset(g);
        s2s_tensor *loss = forward_loss(g, m, &bt, 0.0f, 0.0f); /* plain CE */
        sum += (double)s2s_tensor_item(g, loss) * bt.ntok;
        cnt += bt.ntok;
        batch_free(&bt);
    }
    s2s_graph_reset(g);
    s2s_graph_set_grad(g, 1);
    free(idx);
    return cnt > 0 ? sum / cnt : 0.0;
}

/* Greedy-decode the first eval_max dev sources and score them (a model on the GPU
 * decodes there, from its current device weights). */
static double dev_metric(const s2s_model *m, const char *metric, char **src, char **ref, size_t n,
                         char *err, size_t errlen) {
    s2s_translate_opts to;
    s2s_translate_opts_default(&to);
    to.batch = 64;
    char **hyp = s2s_xcalloc(n, sizeof *hyp);
    double score = NAN;
    /* T2R on the GPU: no GPU step decoder, so decode on the CPU from the current weights
     * (copied to the host first; on_cuda is lowered for the call and restored) */
    s2s_model *mm = (s2s_model *)m;
    int t2r_host = mm->on_cuda && s2s_config_is_t2r(&mm->cfg);
    if (t2r_host) { s2s_model_sync_host(mm); mm->on_cuda = 0; }
    int trc = s2s_translate((const struct s2s_model *)m, (const char *const *)src, (int)n, &to, hyp, NULL, err, errlen);
    if (t2r_host) mm->on_cuda = 1;
    if (trc != 0) goto out;
    double sc;
    if (s2s_metric_score(metric, (const char *const *)hyp, (const char *const *)ref, n, &sc, err, errlen) == 0) score = sc;
out:
    for (size_t i = 0; i < n; i++) free(hyp[i]);
    free(hyp);
    return score;
}

static void fmt_time(char *buf, size_t n, double s) {
    if (s < 0 || !isfinite(s)) { snprintf(buf, n, "?"); return; }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

/* ------------------------------------------------------------ main loop */

/* NASH mask training (l0_target > 0): attach fresh hard-concrete gates to m's
 * encoder, started from the init model's log_alphas when it has them (a resumed
 * run reads them, with the lambdas and optimiser state, in load_trainer). */
static int attach_l0(s2s_model *m, const s2s_train_opts *o, int resume, char *err, size_t errlen) {
    if (!(o->l0_target < 1.0f) || !(o->l0_droprate_init > 0.0f && o->l0_droprate_init < 1.0f) || !(o->l0_lr > 0.0f)) {
        s2s_errf(err, errlen, "--l0-target must be in [0, 1), --l0-lr > 0 and the L0 droprate_init in (0, 1)");
        return -1;
    }
    s2s_l0 *l0 = s2s_l0_new(m, o->l0_droprate_init, o->seed);
    if (s2s_l0_size(l0) == 0) {
        s2s_l0_free(l0);
        s2s_errf(err, errlen, "--l0-target: the encoder has no attention heads or FFN units to prune");
        return -1;
    }
    m->l0 = l0;
    if (!resume && o->init) {
        char e2[512];
        s2s_st_file *f = s2s_st_open(o->init, e2, sizeof e2);
        int rc = f ? s2s_l0_load(l0, f, 0, e2, sizeof e2) : -1;
        s2s_st_close(f);
        if (rc < 0) { s2s_errf(err, errlen, "%s: %s", o->init, e2); return -1; }
        if (rc == 0 && !o->quiet) fprintf(stderr, "s2s train: L0 gates start from the log_alphas of %s\n", o->init);
    }
    if (!o->quiet)
        fprintf(stderr, "s2s train: L0 pruning of the encoder: %d gates, target sparsity %.3f (ramped over %d steps), l0 lr %g\n",
                s2s_l0_size(l0), o->l0_target, o->l0_warmup_steps, o->l0_lr);
    return 0;
}

/* " | l0 sparsity S (target T) | lambda L1 L2" for the log line (syncs the gates from the GPU). */
static void l0_log(char *buf, size_t n, const s2s_model *m, const s2s_train_opts *o, long step) {
    s2s_l0_sync_host(m->l0);
    const float *lam = s2s_l0_lambdas(m->l0)->data;
    snprintf(buf, n, " | l0 sparsity %.4f (target %.4f) | lambda %.4f %.4f", 1.0 - s2s_l0_expected_density(m->l0, m),
             s2s_l0_target_at(o->l0_target, o->l0_warmup_steps, step), lam[0], lam[1]);
}

/* --init TEACHER --decoder K: when the requested decoder (kind, layers, FFN) differs
 * from the init model's, a new student with the teacher's tokenizers, embeddings and
 * encoder and a random decoder (s2s_model_student); else the init model itself.
 * Consumes m; NULL + message on error. */
static s2s_model *maybe_student(s2s_model *m, const s2s_train_opts *o, char *err, size_t errlen) {
    const s2s_config *a = &m->cfg, *d = &o->model;
    if (!o->student || (!strcmp(a->decoder, d->decoder) && a->dec_layers == d->dec_layers && a->dec_ffn == d->dec_ffn))
        return m;
    s2s_model *st = s2s_model_student(m, d, o->seed, err, errlen);
    if (st && !o->quiet)
        fprintf(stderr, "s2s train: student of %s: its embeddings and encoder, a new %s decoder (%d layers%s)\n",
                o->init, d->decoder, d->dec_layers, d->dec_ffn ? "" : ", no FFN");
    s2s_model_free(m);
    return st;
}

/* --train-only SET: mark every parameter outside SET frozen (train.h); -1 + message if
 * SET is unknown or selects nothing. */
static int freeze_for(s2s_model *m, const char *set, int quiet, char *err, size_t errlen) {
    if (!set || !strcmp(set, "all")) return 0;
    int attn = !strcmp(set, "attn"), phi = !strcmp(set, "phi");
    if (!attn && !phi) { s2s_errf(err, errlen, "--train-only must be all, attn or phi, not '%.40s'", set); return -1; }
    int n_train = 0;
    size_t floats = 0;
    for (int i = 0; i < m->n_params; i++) {
        const char *nm = m->params[i].name;
        int dec_attn = !strncmp(nm, "dec.", 4) && (strstr(nm, ".self.") || strstr(nm, ".cross."));
        int keep = phi ? strstr(nm, ".phi.") != NULL : dec_attn;
        m->params[i].frozen = !keep;
        if (keep) { n_train++; floats += m->params[i].t->n; }
    }
    if (n_train == 0) {
        s2s_errf(err, errlen, "--train-only %s: this model has no such weights%s", set, phi ? " (not a T2R model with a learned map)" : "");
        return -1;
    }
    if (!quiet) fprintf(stderr, "s2s train: --train-only %s: %d tensors (%zu weights) train, the rest is frozen\n", set, n_train, floats);
    return 0;
}

int s2s_train(const s2s_train_opts *o, char *err, size_t errlen) {
    int rc = 1;
    s2s_set_threads(o->threads > 0 ? o->threads : 1);
    size_t ntr = 0, ntr2 = 0, ndv = 0, ndv2 = 0;
    char **tr_src = NULL, **tr_tgt = NULL, **dv_src = NULL, **dv_tgt = NULL;
    s2s_model *m = NULL, *teacher = NULL;
    dataset tr = {0}, dv = {0};
    s2s_adamw opt = {0};
    epoch_plan plan = {0};
    s2s_graph *g = NULL;
    FILE *logf = NULL;
    char *last_path = NULL, *best_path = NULL, *log_path = NULL;
    struct sigaction old_int, old_term;
    int handlers = 0;

    if (!o->train_src || !o->train_tgt || !o->out_dir) {
        s2s_errf(err, errlen, "need --train-src, --train-tgt and -o OUT_DIR");
        return 1;
    }
    if (mkdir(o->out_dir, 0755) != 0 && errno != EEXIST) {
        s2s_errf(err, errlen, "cannot create %s: %s", o->out_dir, strerror(errno));
        return 1;
    }
    last_path = join_path(o->out_dir, "last.safetensors");
    best_path = join_path(o->out_dir, "best.safetensors");
    log_path = join_path(o->out_dir, "train.log");
    remove_stale_tmp(o->out_dir);

    if (!(tr_src = s2s_read_lines(o->train_src, &ntr, err, errlen))) goto done;
    if (!(tr_tgt = s2s_read_lines(o->train_tgt, &ntr2, err, errlen))) goto done;
    if (ntr != ntr2) { s2s_errf(err, errlen, "%s has %zu lines but %s has %zu", o->train_src, ntr, o->train_tgt, ntr2); goto done; }
    if (o->dev_src) {
        if (!(dv_src = s2s_read_lines(o->dev_src, &ndv, err, errlen))) goto done;
        if (!(dv_tgt = s2s_read_lines(o->dev_tgt, &ndv2, err, errlen))) goto done;
        if (ndv != ndv2) { s2s_errf(err, errlen, "%s has %zu lines but %s has %zu", o->dev_src, ndv, o->dev_tgt, ndv2); goto done; }
    }

    trainer_state ts = {0, 0, 0, o->seed * 0x2545F4914F6CDD1Dull + 7, NAN, 0, 0.0, 0.0};
    struct stat sb;
    int resume = !o->fresh && stat(last_path, &sb) == 0;
    if (resume) {
        m = s2s_model_load(last_path, 1, err, errlen);
        if (!m) goto done;
    } else if (o->init) {
        m = s2s_model_load(o->init, 1, err, errlen);
        if (m) m = maybe_student(m, o, err, errlen);
        if (m && s2s_config_is_t2r(&o->model) && !s2s_config_is_t2r(&m->cfg)) { /* --init SOFTMAX --dec-attn t2r */
            s2s_model *t = s2s_model_to_t2r(m, o->model.t2r_k, o->model.t2r_map, o->seed, err, errlen);
            if (t && !o->quiet)
                fprintf(stderr, "s2s train: T2R copy of %s: decoder attention with %d %s features per head\n", o->init,
                        t->cfg.t2r_k, t->cfg.t2r_map == S2S_T2R_MAP_ELU ? "elu+1" : "learned relu");
            s2s_model_free(m);
            m = t;
        }
        if (m && o->model.multi_exit && !m->cfg.multi_exit) { /* --init TEACHER --multi-exit */
            s2s_model *me = s2s_model_to_multi_exit(m, o->model.exit_rank, o->seed, err, errlen);
            if (me && !o->quiet)
                fprintf(stderr, "s2s train: multi-exit (DEED) copy of %s: exit adapters of rank %d on layers 1..%d\n",
                        o->init, o->model.exit_rank, me->cfg.dec_layers - 1);
            s2s_model_free(m);
            m = me;
        }
        if (!m) goto done;
    } else {
        char terr[256];
        s2s_tokenizer *st, *tt;
        if (o->joint_vocab) {
            size_t nn = 2 * ntr;
            const char **all = s2s_xmalloc(nn * sizeof *all);
            for (size_t i = 0; i < ntr; i++) { all[i] = tr_src[i]; all[ntr + i] = tr_tgt[i]; }
            st = tt = s2s_tok_learn((s2s_tok_kind)o->src_tok, all, nn, o->src_vocab, 1, terr, sizeof terr);
            free(all);
            if (!st) { s2s_errf(err, errlen, "learning the joint vocabulary: %s", terr); goto done; }
        } else {
            st = s2s_tok_learn((s2s_tok_kind)o->src_tok, (const char *const *)tr_src, ntr, o->src_vocab, 1, terr, sizeof terr);
            if (!st) { s2s_errf(err, errlen, "learning the source vocabulary: %s", terr); goto done; }
            tt = s2s_tok_learn((s2s_tok_kind)o->tgt_tok, (const char *const *)tr_tgt, ntr, o->tgt_vocab, 1, terr, sizeof terr);
            if (!tt) { s2s_tok_free(st); s2s_errf(err, errlen, "learning the target vocabulary: %s", terr); goto done; }
        }
        s2s_config cfg = o->model;
        cfg.src_vocab = s2s_tok_vocab_size(st);
        cfg.tgt_vocab = s2s_tok_vocab_size(tt);
        if (o->joint_vocab) cfg.share_src_emb = 1;
        if (s2s_config_check(&cfg, err, errlen) != 0) { s2s_tok_free(st); if (tt != st) s2s_tok_free(tt); goto done; }
        m = s2s_model_create(&cfg, st, tt, o->seed);
    }
    if (o->l0_target > 0.0f && attach_l0(m, o, resume, err, errlen) != 0) goto done;
    if (freeze_for(m, o->train_only, o->quiet, err, errlen) != 0) goto done;
    s2s_adamw_init(&opt, m);
    if (resume && load_trainer(last_path, m, &opt, &ts, err, errlen) != 0) goto done;
    if (o->cuda) { /* weights, gradients and Adam moments live on the GPU from here on */
        if (s2s_model_to_cuda(m, err, errlen) != 0) goto done;
        s2s_adamw_to_cuda(&opt, m);
        if (m->l0 && s2s_l0_to_cuda(m->l0, err, errlen) != 0) goto done;
#ifdef S2S_CUDA
        s2s_cuda_set_precision(o->bf16 ? S2S_PREC_BF16 : o->tf32 ? S2S_PREC_TF32 : S2S_PREC_FP32);
#endif
    }

    if (load_kd_teacher(&teacher, o, m, err, errlen) != 0) goto done;
    if (dataset_make(&tr, tr_src, tr_tgt, ntr, m, o->train_src, o->quiet) == 0) {
        s2s_errf(err, errlen, "%s: no usable training pairs", o->train_src);
        goto done;
    }
    if (dv_src) dataset_make(&dv, dv_src, dv_tgt, ndv, m, o->dev_src, o->quiet);
    size_t n_eval = ndv < (size_t)o->eval_max ? ndv : (size_t)o->eval_max;

    logf = fopen(log_path, "a");
    if (!o->quiet)
        fprintf(stderr, "s2s train: %zu parameters (D=%d H=%d F=%d %d+%d layers, vocab %d/%d), %s at step %ld on %s\n",
                s2s_model_param_count(m), m->cfg.d_model, m->cfg.n_heads, m->cfg.d_ff, m->cfg.enc_layers,
                m->cfg.dec_layers, m->cfg.src_vocab, m->cfg.tgt_vocab, resume ? "resuming" : "starting", ts.step,
                o->cuda ? s2s_cuda_device_name() : "the CPU");

    g = o->cuda ? s2s_graph_new_cuda(err, errlen) : s2s_graph_new();
    if (!g) goto done;
    s2s_graph_set_training(g, 1, &ts.rng);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    g_stop = 0; /* a previous call's interrupt is not this call's */
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    handlers = 1;
    plan_epoch(&plan, &tr, o->tokens_per_batch, o->seed, ts.epoch);

    double t0 = s2s_now(), elapsed0 = ts.elapsed, win_t = s2s_now(), win_tok = 0, win_loss = 0;
    int win_n = 0;
    long start_step = ts.step;
    int stop = 0;
    while (!stop && ts.step < o->max_steps && ts.epoch < o->max_epochs) {
        if (g_stop) {
            ts.elapsed = elapsed0 + s2s_now() - t0;
            set_train_meta(m, o, &ts, ts.best);
            if (save_last(m, &opt, &ts, last_path, err, errlen) != 0) goto done;
            fprintf(stderr, "s2s train: interrupted at step %ld; saved %s (run the same command to resume)\n", ts.step, last_path);
            rc = 2;
            goto done;
        }
        if (ts.batch_pos >= plan.nb) {
            ts.epoch++;
            ts.batch_pos = 0;
            if (ts.epoch >= o->max_epochs) break;
            plan_epoch(&plan, &tr, o->tokens_per_batch, o->seed, ts.epoch);
        }
        batch_ref br = plan.b[ts.batch_pos++];
        batch bt;
        batch_make(&bt, &tr, plan.perm + br.start, br.count);
        ts.step++;
        float lr = s2s_lr_at(o->lr, o->warmup, ts.step);
        s2s_zero_grad(m);
        s2s_graph_reset(g);
        s2s_tensor *loss = teacher ? kd_forward_loss(g, m, teacher, &bt, o)
                           : m->cfg.multi_exit ? forward_exit_loss(g, m, &bt, o->dropout, o->label_smoothing, o->exit_last_weight)
                                   : forward_loss(g, m, &bt, o->dropout, o->label_smoothing);
        s2s_tensor *total = loss; /* + the L0 Lagrangian while pruning masks are trained */
        if (m->l0) {
            s2s_l0_zero_grad(m->l0);
            total = s2s_add(g, loss, s2s_l0_loss(g, m->l0, s2s_l0_target_at(o->l0_target, o->l0_warmup_steps, ts.step)));
        }
        s2s_graph_backward(g, total);
        double gn = s2s_clip_grad_norm(m, o->clip); /* the model's weights only */
        s2s_adamw_step(&opt, m, lr, o->weight_decay, ts.step);
        if (m->l0) s2s_l0_step(m->l0, o->l0_lr);
        float lv = s2s_tensor_item(g, loss);
        ts.tokens += bt.ntok;
        win_tok += bt.ntok; win_loss += lv; win_n++;
        batch_free(&bt);
        if (!isfinite(lv)) {
            s2s_errf(err, errlen, "loss became %f at step %ld (try a lower --lr or longer --warmup)", lv, ts.step);
            goto done;
        }

        int last_step = ts.step >= o->max_steps;
        if (o->log_every > 0 && (ts.step % o->log_every == 0 || last_step)) {
            double now = s2s_now(), tps = win_tok / (now - win_t + 1e-9);
            double rate = (double)(ts.step - start_step) / (now - t0 + 1e-9);
            char eta[32], el[32];
            fmt_time(eta, sizeof eta, (double)(o->max_steps - ts.step) / rate);
            fmt_time(el, sizeof el, elapsed0 + now - t0);
            char line[384];
            int ll = snprintf(line, sizeof line, "step %ld/%d | epoch %d | loss %.4f | %.0f tok/s | lr %.2e | gnorm %.2f | %s | ETA %s",
                     ts.step, o->max_steps, ts.epoch + 1, win_loss / win_n, tps, lr, gn, el, eta);
            if (m->l0 && ll > 0 && ll < (int)sizeof line) l0_log(line + ll, sizeof line - (size_t)ll, m, o, ts.step);
            if (!o->quiet) fprintf(stderr, "%s\n", line);
            if (logf) { fprintf(logf, "%s\n", line); fflush(logf); }
            win_t = now; win_tok = 0; win_loss = 0; win_n = 0;
        }
        if (((o->eval_every > 0 && ts.step % o->eval_every == 0) || last_step) && dv.n == 0) {
            ts.elapsed = elapsed0 + s2s_now() - t0; /* no dev set: just checkpoint */
            set_train_meta(m, o, &ts, NAN);
            if (save_last(m, &opt, &ts, last_path, err, errlen) != 0) goto done;
        } else if ((o->eval_every > 0 && ts.step % o->eval_every == 0) || last_step) {
            double vl = dev_loss(g, m, &dv, o->tokens_per_batch);
            double score = vl;
            if (strcmp(o->metric, "loss") != 0 && n_eval > 0) {
                score = dev_metric(m, o->metric, dv_src, dv_tgt, n_eval, err, errlen);
                if (isnan(score)) goto done;
            }
            int hb = s2s_metric_higher_better(o->metric);
            int improved = !isnan(score) && (isnan(ts.best) || (hb ? score > ts.best : score < ts.best));
            ts.elapsed = elapsed0 + s2s_now() - t0;
            if (improved || isnan(score)) {
                if (improved) { ts.best = score; ts.bad_evals = 0; }
                set_train_meta(m, o, &ts, score);
                if (save_model(m, best_path, o->save_fp16, err, errlen) != 0) goto done;
            } else {
                ts.bad_evals++;
            }
            set_train_meta(m, o, &ts, ts.best);
            if (save_last(m, &opt, &ts, last_path, err, errlen) != 0) goto done;
            char line[256];
            snprintf(line, sizeof line, "eval step %ld | dev loss %.4f | dev %s %.3f%s | best %.3f", ts.step, vl,
                     o->metric, score, improved ? " (new best, saved)" : "", ts.best);
            if (!o->quiet) fprintf(stderr, "%s\n", line);
            if (logf) { fprintf(logf, "%s\n", line); fflush(logf); }
            if (o->patience > 0 && ts.bad_evals >= o->patience) {
                if (!o->quiet) fprintf(stderr, "s2s train: early stop: no improvement in %d evaluations\n", o->patience);
                stop = 1;
            }
        }
    }
    ts.elapsed = elapsed0 + s2s_now() - t0;
    set_train_meta(m, o, &ts, ts.best);
    if (save_last(m, &opt, &ts, last_path, err, errlen) != 0) goto done;
    if (access(best_path, F_OK) != 0 &&
        save_model(m, best_path, o->save_fp16, err, errlen) != 0) goto done;
    if (!o->quiet)
        fprintf(stderr, "s2s train: done at step %ld (%.1f s); best dev %s %.4f; models in %s\n", ts.step,
                ts.elapsed, o->metric, ts.best, o->out_dir);
    rc = 0;
done:
    if (handlers) { /* give the caller its own handlers back */
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    if (logf) fclose(logf);
    s2s_adamw_free(&opt);
    free(plan.perm); free(plan.b);
    dataset_free(&tr); dataset_free(&dv);
    s2s_graph_free(g);
    if (m && m->l0) { s2s_l0_free(m->l0); m->l0 = NULL; }
    s2s_model_free(m);
    s2s_model_free(teacher);
    s2s_free_lines(tr_src, ntr); s2s_free_lines(tr_tgt, ntr2);
    s2s_free_lines(dv_src, ndv); s2s_free_lines(dv_tgt, ndv2);
    free(last_path); free(best_path); free(log_path);
    return rc;
}
