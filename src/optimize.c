/* optimize.c - the `s2s optimize` pipeline (optimize.h): check the data and the teacher,
 * measure the teacher, then for each candidate of the space run its stages in-process
 * (s2s_prune_run for NASH, s2s_train for hybrid decoders on distilled targets, DEED and
 * T2R), write its final model, measure it (optimize_eval.c) and rewrite the results,
 * the front and the report (optimize_report.c). Resumable at every level: s2s_train
 * resumes from last.safetensors, a finished stage has its `done` marker (NASH: its
 * model.safetensors), a measured candidate has its rows in results.tsv, the distilled
 * targets are appended in fsynced chunks. */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "io.h"
#include "json.h"
#include "kernels.h"
#include "model.h"
#include "optimize.h"
#include "prune.h"
#include "s2s.h"
#include "tokenizer.h"
#include "train.h"

#define KD_CHUNK 2048 /* distilled lines decoded and fsynced at a time */

void s2s_optimize_opts_default(s2s_optimize_opts *o) {
    memset(o, 0, sizeof *o);
    o->max_loss = 1.0f;
    o->steps = 2000;
    o->latency_lines = 100;
    o->repeat = 3;
    o->kd_beam = 5;
    o->fp16 = -1;
    s2s_train_opts_default(&o->train);
    o->train.lr = 0.0f;        /* per method */
    o->train.warmup = 0.0f;    /* steps / 10 */
    o->train.dropout = -1.0f;  /* the teacher's */
    o->train.eval_every = -1;  /* steps / 4 */
    o->train.kd_weight = 0.5f; /* NASH stages */
}

typedef struct {
    const s2s_optimize_opts *o;
    char *train_src, *train_tgt, *dev_src, *dev_tgt, *kd_tgt, *cand_dir, *results;
    char **dv_src, **dv_ref;
    size_t n_dv, n_dv2;
    int n_eval, n_lat;
    s2s_model *teacher;
    char metric[8];
    int fp16;
    float dropout;
    s2s_opt_cand *cands;
    int n_cands;
    s2s_opt_result *rows;
    int n_rows;
    s2s_opt_report_info info;
} ctx;

static char *join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = s2s_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int exists(const char *p) { struct stat sb; return stat(p, &sb) == 0; }

static void fmt_time(char *buf, size_t n, double s) {
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ldh%02ldm", t / 3600, (t / 60) % 60);
    else snprintf(buf, n, "%ldm%02lds", t / 60, t % 60);
}

static int mkdir_p1(const char *d, char *err, size_t errlen) {
    if (mkdir(d, 0755) != 0 && errno != EEXIST) { s2s_errf(err, errlen, "cannot create %s: %s", d, strerror(errno)); return -1; }
    return 0;
}

/* Remove "<name>.tmp.*" files that a killed atomic write left in dir (names starting with name). */
static void remove_stale_tmp(const char *dir, const char *const *names, int n) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        for (int i = 0; i < n; i++) {
            size_t l = strlen(names[i]);
            if (strncmp(e->d_name, names[i], l) == 0 && strncmp(e->d_name + l, ".tmp", 4) == 0) {
                char *p = join(dir, e->d_name);
                (void)unlink(p);
                free(p);
            }
        }
    closedir(d);
}

/* ------------------------------------------------------------ setup */

static int check_data(ctx *c, char *err, size_t errlen) {
    const char *dir = c->o->data;
    char *files[4] = {c->train_src, c->train_tgt, c->dev_src, c->dev_tgt};
    for (int i = 0; i < 4; i++)
        if (access(files[i], R_OK) != 0) {
            s2s_errf(err, errlen, "%s: %s (--data %s needs train.src, train.tgt, dev.src and dev.tgt, as `make data` writes them)",
                     files[i], strerror(errno), dir);
            return -1;
        }
    if (!(c->dv_src = s2s_read_lines(c->dev_src, &c->n_dv, err, errlen))) return -1;
    if (!(c->dv_ref = s2s_read_lines(c->dev_tgt, &c->n_dv2, err, errlen))) return -1;
    if (c->n_dv != c->n_dv2) {
        s2s_errf(err, errlen, "%s has %zu lines but %s has %zu", c->dev_src, c->n_dv, c->dev_tgt, c->n_dv2);
        return -1;
    }
    if (c->n_dv == 0) { s2s_errf(err, errlen, "%s is empty", c->dev_src); return -1; }
    size_t ne = c->o->eval_max > 0 && (size_t)c->o->eval_max < c->n_dv ? (size_t)c->o->eval_max : c->n_dv;
    size_t nl = (size_t)c->o->latency_lines < c->n_dv ? (size_t)c->o->latency_lines : c->n_dv;
    c->n_eval = (int)ne;
    c->n_lat = (int)nl;
    return 0;
}

/* The teacher's recorded training field key as a string / number, or NULL / NAN. */
static void teacher_meta(const s2s_model *t, char *metric, size_t mlen, double *dropout) {
    metric[0] = '\0';
    *dropout = NAN;
    if (!t->train_meta) return;
    s2s_json *j = s2s_json_parse(t->train_meta, strlen(t->train_meta), NULL, 0);
    if (!j) return;
    const char *m = s2s_json_str(s2s_json_get(j, "metric"));
    if (m) snprintf(metric, mlen, "%s", m);
    if (s2s_json_typeof(s2s_json_get(j, "dropout")) == S2S_JSON_NUM) *dropout = s2s_json_num(s2s_json_get(j, "dropout"));
    s2s_json_free(j);
}

static int load_teacher(ctx *c, char *err, size_t errlen) {
    const s2s_optimize_opts *o = c->o;
    if (!(c->teacher = s2s_model_load(o->teacher, 0, err, errlen))) return -1;
    const s2s_config *cfg = &c->teacher->cfg;
    if (s2s_config_dec_kind(cfg) != S2S_DEC_TRANSFORMER || cfg->dec_attn != S2S_ATTN_SOFTMAX || cfg->multi_exit) {
        s2s_errf(err, errlen, "%s: the teacher must be a softmax Transformer (this one is %s%s%s)", o->teacher, cfg->decoder,
                 s2s_config_is_t2r(cfg) ? ", T2R" : "", cfg->multi_exit ? ", multi-exit" : "");
        return -1;
    }
    char rec[16];
    double drop;
    teacher_meta(c->teacher, rec, sizeof rec, &drop);
    static const char *const ok[] = {"wer", "per", "bleu", "chrf"};
    const char *metric = o->metric;
    for (int i = 0; i < 4 && !metric; i++) if (!strcmp(rec, ok[i])) metric = ok[i];
    if (!metric) metric = s2s_tok_kind_of(c->teacher->tgt_tok) == S2S_TOK_BPE ? "bleu" : "wer";
    snprintf(c->metric, sizeof c->metric, "%s", metric);
    c->dropout = o->train.dropout >= 0 ? o->train.dropout : drop >= 0 && drop <= 0.95 ? (float)drop : 0.1f;
    c->fp16 = o->fp16;
    if (c->fp16 < 0) { /* as the teacher is stored */
        c->fp16 = 0;
        for (int i = 0; i < c->teacher->n_params; i++) if (c->teacher->params[i].t->half) c->fp16 = 1;
    }
    return 0;
}

/* OUT/settings.txt: what makes results comparable; a rerun must match it. */
static int check_settings(ctx *c, char *err, size_t errlen) {
    char *path = join(c->o->out, "settings.txt");
    s2s_strbuf b;
    s2s_strbuf_init(&b);
    s2s_strbuf_appendf(&b, "teacher = %s\ndata = %s\nmetric = %s\neval-lines = %d\nsteps = %d\nlatency-lines = %d\nprecision = %s\n",
                       c->o->teacher, c->o->data, c->metric, c->n_eval, c->o->steps, c->n_lat, c->fp16 ? "fp16" : "fp32");
    int rc = 0;
    if (exists(path)) {
        size_t n = 0;
        char **lines = s2s_read_lines(path, &n, err, errlen);
        if (!lines) { rc = -1; goto out; }
        char *now = s2s_xstrdup(b.s), *save = NULL;
        size_t i = 0;
        for (char *l = strtok_r(now, "\n", &save); l && rc == 0; l = strtok_r(NULL, "\n", &save), i++)
            if (i >= n || strcmp(lines[i], l) != 0) {
                s2s_errf(err, errlen, "%s was made with '%s', this run has '%s': rerun with the same settings or use another -o",
                         c->o->out, i < n ? lines[i] : "(nothing)", l);
                rc = -1;
            }
        free(now);
        s2s_free_lines(lines, n);
    } else {
        rc = s2s_write_file_atomic(path, b.s, b.len, err, errlen);
    }
out:
    s2s_strbuf_free(&b);
    free(path);
    return rc;
}

/* Drop (with a note) the candidates that cannot apply to this teacher. */
static void filter_space(ctx *c) {
    int Ld = c->teacher->cfg.dec_layers, k = 0;
    for (int i = 0; i < c->n_cands; i++) {
        const s2s_opt_cand *cd = &c->cands[i];
        int layers = Ld;
        const char *why = NULL;
        char buf[128];
        for (int s = 0; s < cd->n_stages && !why; s++) {
            const s2s_opt_stage *st = &cd->st[s];
            if (st->method == S2S_OPT_NASH) {
                if (st->n > Ld) { snprintf(buf, sizeof buf, "the teacher has only %d decoder layers", Ld); why = buf; }
                layers = st->n;
            } else if (st->method == S2S_OPT_DEED && layers < 2) {
                why = "DEED needs a decoder of at least 2 layers";
            } else if (st->method == S2S_OPT_DEED && st->rank > c->teacher->cfg.d_model) {
                snprintf(buf, sizeof buf, "exit adapter rank %d is above d_model %d", st->rank, c->teacher->cfg.d_model);
                why = buf;
            }
        }
        if (why) fprintf(stderr, "s2s optimize: skipping %s (%s line %d): %s\n", cd->name, c->info.space_name, cd->line, why);
        else c->cands[k++] = *cd;
    }
    c->n_cands = k;
}

/* ------------------------------------------------------------ rows */

static const s2s_opt_result *find_row(const ctx *c, const char *name) {
    for (int i = 0; i < c->n_rows; i++) if (!strcmp(c->rows[i].name, name)) return &c->rows[i];
    return NULL;
}

static void row_name(char *buf, size_t n, const s2s_opt_cand *cd, int t) {
    const s2s_opt_stage *last = &cd->st[cd->n_stages - 1];
    if (last->method == S2S_OPT_DEED) snprintf(buf, n, "%s@%g", cd->name, last->tau[t]);
    else snprintf(buf, n, "%s", cd->name);
}

static int n_row_of(const s2s_opt_cand *cd) {
    const s2s_opt_stage *last = &cd->st[cd->n_stages - 1];
    return last->method == S2S_OPT_DEED ? last->n_tau : 1;
}

static int cand_done(const ctx *c, const s2s_opt_cand *cd) {
    char nm[128];
    for (int t = 0; t < n_row_of(cd); t++) {
        row_name(nm, sizeof nm, cd, t);
        if (!find_row(c, nm)) return 0;
    }
    return 1;
}

static int count_done(const ctx *c) {
    int d = 0;
    for (int i = 0; i < c->n_cands; i++) d += cand_done(c, &c->cands[i]);
    return d;
}

/* Append a row, rewrite results.tsv and read it back (so the rows in memory are the
 * file's, rounded as written, whatever computes on them), then the report. */
static int add_row(ctx *c, const s2s_opt_result *r, char *err, size_t errlen) {
    s2s_opt_result *rows = s2s_xmalloc((size_t)(c->n_rows + 1) * sizeof *rows);
    if (c->n_rows) memcpy(rows, c->rows, (size_t)c->n_rows * sizeof *rows);
    rows[c->n_rows] = *r;
    int rc = s2s_opt_results_write(c->results, rows, c->n_rows + 1, c->metric, err, errlen);
    free(rows);
    if (rc != 0) return -1;
    free(c->rows);
    if (s2s_opt_results_read(c->results, &c->rows, &c->n_rows, err, errlen) != 0) return -1;
    c->info.done = count_done(c);
    return s2s_opt_report(c->o->out, c->rows, c->n_rows, &c->info, NULL, err, errlen);
}

/* ------------------------------------------------------------ distilled targets */

/* OUT/kd/train.kd.tgt: the teacher's beam outputs on the training sources, appended in
 * fsynced chunks to train.kd.tgt.part (a rerun continues after its last whole line). */
static int make_kd(ctx *c, char *err, size_t errlen) {
    if (exists(c->kd_tgt)) return 0;
    const s2s_optimize_opts *o = c->o;
    size_t n = 0, done = 0;
    char **src = s2s_read_lines(c->train_src, &n, err, errlen);
    if (!src) return -1;
    char *part = s2s_xmalloc(strlen(c->kd_tgt) + 8);
    sprintf(part, "%s.part", c->kd_tgt);
    s2s_model *t = NULL;
    FILE *f = NULL;
    int rc = -1;
    { /* whole lines already written; cut a torn last line */
        FILE *r = fopen(part, "rb");
        long keep = 0, pos = 0;
        int ch;
        if (r) {
            while ((ch = getc(r)) != EOF) { pos++; if (ch == '\n') { done++; keep = pos; } }
            fclose(r);
            if (truncate(part, keep) != 0) { s2s_errf(err, errlen, "cannot truncate %s: %s", part, strerror(errno)); goto out; }
        }
    }
    if (done > n) { s2s_errf(err, errlen, "%s has more lines (%zu) than %s (%zu): remove it", part, done, c->train_src, n); goto out; }
    if (!(f = fopen(part, "ab"))) { s2s_errf(err, errlen, "cannot write %s: %s", part, strerror(errno)); goto out; }
    const s2s_model *dec = c->teacher;
    if (o->train.cuda) { /* a second copy of the teacher decodes on the GPU */
        if (!(t = s2s_model_load(o->teacher, 0, err, errlen))) goto out;
        if (s2s_use_cuda(t, err, errlen) != 0) goto out;
        dec = t;
    }
    s2s_set_threads(o->train.threads > 0 ? o->train.threads : 1);
    s2s_translate_opts to;
    s2s_translate_opts_default(&to);
    to.beam = o->kd_beam;
    to.batch = o->train.cuda ? 256 : 32;
    fprintf(stderr, "s2s optimize: distilled targets: beam-%d outputs of the teacher on %s (%zu lines%s) -> %s\n", o->kd_beam,
            c->train_src, n, done ? ", resuming" : "", c->kd_tgt);
    double t0 = s2s_now();
    size_t start = done;
    char **out = s2s_xcalloc(KD_CHUNK, sizeof *out);
    while (done < n) {
        int k = n - done < KD_CHUNK ? (int)(n - done) : KD_CHUNK;
        if (s2s_translate(dec, (const char *const *)src + done, k, &to, out, NULL, err, errlen) != 0) { free(out); goto out; }
        for (int i = 0; i < k; i++) { fputs(out[i], f); fputc('\n', f); free(out[i]); out[i] = NULL; }
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) { s2s_errf(err, errlen, "cannot write %s: %s", part, strerror(errno)); free(out); goto out; }
        done += (size_t)k;
        double el = s2s_now() - t0;
        char a[32], b[32];
        fmt_time(a, sizeof a, el);
        fmt_time(b, sizeof b, el / (double)(done - start) * (double)(n - done));
        fprintf(stderr, "s2s optimize: distilled targets: %zu/%zu lines, %s (ETA %s)\n", done, n, a, b);
    }
    free(out);
    if (fclose(f) != 0) { f = NULL; s2s_errf(err, errlen, "cannot write %s: %s", part, strerror(errno)); goto out; }
    f = NULL;
    if (rename(part, c->kd_tgt) != 0) { s2s_errf(err, errlen, "cannot rename %s: %s", part, strerror(errno)); goto out; }
    s2s_fsync_parent(c->kd_tgt);
    rc = 0;
out:
    if (f) fclose(f);
    s2s_model_free(t);
    s2s_free_lines(src, n);
    free(part);
    return rc;
}

/* ------------------------------------------------------------ stages */

static const char *method_of(const s2s_opt_stage *s) {
    static const char *const names[] = {"nash", "", "deed", "t2r"};
    return s->method == S2S_OPT_RNN ? s->rnn : names[s->method];
}

static void describe(char *buf, size_t n, const s2s_opt_stage *s, int steps, int prune_steps) {
    switch (s->method) {
    case S2S_OPT_NASH:
        if (s->t > 0)
            snprintf(buf, n, "NASH: keep %d decoder layers, encoder sparsity %g (%d mask + %d fine-tuning steps, KD from the teacher)",
                     s->n, s->t, prune_steps, steps - prune_steps);
        else
            snprintf(buf, n, "NASH: keep %d decoder layers, no encoder pruning (%d fine-tuning steps, KD from the teacher)", s->n, steps);
        break;
    case S2S_OPT_RNN:
        snprintf(buf, n, "hybrid: a %d-layer %s decoder%s on distilled targets (%d steps)", s->layers, s->rnn,
                 s->ffn ? "" : " without FFN", steps);
        break;
    case S2S_OPT_DEED: snprintf(buf, n, "DEED: multi-exit fine-tuning, adapter rank %d (%d steps)", s->rank, steps); break;
    default:
        if (s->map == S2S_T2R_MAP_ELU) snprintf(buf, n, "T2R: elu+1 linear attention, fine-tuning (%d steps)", steps);
        else snprintf(buf, n, "T2R: linear attention, %d learned features per head, fine-tuning (%d steps)", s->k, steps);
    }
}

/* The training options of stage s, trained in dir from the model init. */
static s2s_train_opts stage_train_opts(const ctx *c, const s2s_opt_stage *s, const char *init, const char *dir) {
    const s2s_optimize_opts *o = c->o;
    s2s_train_opts t = o->train;
    static const float lr[] = {3e-4f, 1e-3f, 3e-4f, 4e-4f}; /* by S2S_OPT_* */
    t.train_src = c->train_src;
    t.train_tgt = s->method == S2S_OPT_RNN ? c->kd_tgt : c->train_tgt;
    t.dev_src = c->dev_src;
    t.dev_tgt = c->dev_tgt;
    t.metric = c->metric;
    t.eval_max = c->n_eval;
    t.init = init;
    t.out_dir = dir;
    t.max_steps = o->steps;
    t.quiet = !o->verbose;
    t.fresh = 0;
    t.save_fp16 = 0;
    t.lr = o->train.lr > 0 ? o->train.lr : lr[s->method];
    t.warmup = o->train.warmup > 0 ? o->train.warmup : (float)(o->steps / 10 > 1 ? o->steps / 10 : 1);
    t.dropout = c->dropout;
    t.eval_every = o->train.eval_every >= 0 ? o->train.eval_every : (o->steps / 4 > 1 ? o->steps / 4 : 1);
    t.kd_teacher = NULL;
    t.l0_target = 0.0f;
    t.l0_warmup_steps = 0;
    t.student = 0;
    switch (s->method) {
    case S2S_OPT_NASH:
        if (t.kd_weight > 0.0f) t.kd_teacher = o->teacher;
        break;
    case S2S_OPT_RNN:
        t.student = 1;
        snprintf(t.model.decoder, sizeof t.model.decoder, "%s", s->rnn);
        t.model.dec_layers = s->layers;
        t.model.dec_ffn = s->ffn;
        break;
    case S2S_OPT_DEED:
        t.model.multi_exit = 1;
        t.model.exit_rank = s->rank;
        break;
    default:
        t.model.dec_attn = S2S_ATTN_T2R;
        t.model.t2r_k = s->k;
        t.model.t2r_map = s->map;
    }
    return t;
}

/* Run (or resume, or reuse) one stage in dir from init; *result (malloc'd): the fp32
 * model it made. 0, 1 + message, 2 interrupted. */
static int run_stage(ctx *c, const char *label, const s2s_opt_stage *s, const char *init, const char *init_name,
                     const char *dir, char **result, char *err, size_t errlen) {
    const s2s_optimize_opts *o = c->o;
    int nash = s->method == S2S_OPT_NASH;
    *result = join(dir, nash ? "model.safetensors" : "best.safetensors");
    char *marker = nash ? s2s_xstrdup(*result) : join(dir, "done");
    int rc = 0;
    if (exists(marker)) {
        fprintf(stderr, "s2s optimize: %s: stage %s done (%s)\n", label, s->name, *result);
        goto out;
    }
    if (s->method == S2S_OPT_RNN && make_kd(c, err, errlen) != 0) { rc = 1; goto out; }
    int prune_steps = nash && s->t > 0 ? (2 * o->steps / 5 > 1 ? 2 * o->steps / 5 : 1) : 0;
    char what[256], el[32];
    describe(what, sizeof what, s, o->steps, prune_steps);
    fprintf(stderr, "s2s optimize: %s: stage %s on %s: %s -> %s\n", label, s->name, init_name, what, dir);
    double t0 = s2s_now();
    s2s_train_opts t = stage_train_opts(c, s, init, dir);
    if (nash) {
        s2s_prune_opts p = {.teacher = init, .out = dir, .dec_layers = s->n, .sparsity = s->t, .prune_steps = prune_steps,
                            .prune_warmup = prune_steps / 2, .finetune_steps = o->steps - prune_steps, .fp16 = 0,
                            .quiet = !o->verbose};
        rc = s2s_prune_run(&p, &t, err, errlen);
    } else {
        if (mkdir_p1(dir, err, errlen) != 0) { rc = 1; goto out; }
        rc = s2s_train(&t, err, errlen);
        if (rc == 0 && s2s_write_file_atomic(marker, "", 0, err, errlen) != 0) rc = 1;
    }
    if (rc == 2) s2s_errf(err, errlen, "interrupted during stage %s; run the same command again to resume", s->name);
    else if (rc == 1) {
        char e2[512];
        snprintf(e2, sizeof e2, "%s", err);
        s2s_errf(err, errlen, "stage %s: %s", s->name, e2);
    }
    if (rc == 0) {
        fmt_time(el, sizeof el, s2s_now() - t0);
        fprintf(stderr, "s2s optimize: %s: stage %s trained in %s\n", label, s->name, el);
    }
out:
    free(marker);
    return rc;
}

/* ------------------------------------------------------------ measuring */

static int eval_teacher(ctx *c, char *err, size_t errlen) {
    if (find_row(c, "teacher")) return 0;
    s2s_opt_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "teacher");
    snprintf(r.method, sizeof r.method, "teacher");
    snprintf(r.model, sizeof r.model, "%s", c->o->teacher);
    r.tau = -1;
    fprintf(stderr, "s2s optimize: teacher: measuring (dev %s on %d lines, latency on %d)\n", c->metric, c->n_eval, c->n_lat);
    s2s_set_threads(c->o->train.threads > 0 ? c->o->train.threads : 1);
    if (s2s_opt_quality(c->teacher, c->metric, c->dv_src, c->dv_ref, c->n_eval, -1.0f, &r.quality, err, errlen) != 0) return -1;
    if (s2s_opt_latency(c->teacher, -1.0f, NULL, c->dv_src, c->n_lat, c->o->repeat, &r.ms, NULL, err, errlen) != 0) return -1;
    r.teacher_ms = r.ms;
    r.speedup = 1.0;
    r.params = (long long)s2s_model_param_count(c->teacher);
    struct stat sb;
    r.mb = stat(c->o->teacher, &sb) == 0 ? (double)sb.st_size / 1e6 : 0.0;
    fprintf(stderr, "s2s optimize: teacher: dev %s %.2f, %.3f ms per sentence\n", c->metric, r.quality, r.ms);
    return add_row(c, &r, err, errlen);
}

/* Measure the rows of candidate cd that results.tsv lacks, from its final model. */
static int eval_cand(ctx *c, const char *label, const s2s_opt_cand *cd, const char *final_rel, char *err, size_t errlen) {
    char *path = join(c->o->out, final_rel);
    s2s_model *m = s2s_model_load(path, 0, err, errlen);
    int rc = -1;
    if (!m) goto out;
    double teacher_q = find_row(c, "teacher")->quality; /* a value: add_row reallocates the rows */
    const s2s_opt_stage *last = &cd->st[cd->n_stages - 1];
    struct stat sb;
    double mb = stat(path, &sb) == 0 ? (double)sb.st_size / 1e6 : 0.0;
    for (int k = 0; k < n_row_of(cd); k++) {
        s2s_opt_result r;
        memset(&r, 0, sizeof r);
        row_name(r.name, sizeof r.name, cd, k);
        if (find_row(c, r.name)) continue;
        if (cd->n_stages == 2) snprintf(r.method, sizeof r.method, "nash+%s", method_of(last));
        else snprintf(r.method, sizeof r.method, "%s", method_of(last));
        snprintf(r.model, sizeof r.model, "%s", final_rel);
        r.tau = last->method == S2S_OPT_DEED ? last->tau[k] : -1.0;
        double t0 = s2s_now();
        s2s_set_threads(c->o->train.threads > 0 ? c->o->train.threads : 1);
        if (s2s_opt_quality(m, c->metric, c->dv_src, c->dv_ref, c->n_eval, (float)r.tau, &r.quality, err, errlen) != 0) goto out;
        if (s2s_opt_latency(m, (float)r.tau, c->teacher, c->dv_src, c->n_lat, c->o->repeat, &r.ms, &r.teacher_ms, err, errlen) != 0)
            goto out;
        r.delta = r.quality - teacher_q;
        r.speedup = r.ms > 0 ? r.teacher_ms / r.ms : 0.0;
        r.params = (long long)s2s_model_param_count(m);
        r.mb = mb;
        char el[32];
        fmt_time(el, sizeof el, s2s_now() - t0);
        char tau[48] = "";
        if (r.tau >= 0) snprintf(tau, sizeof tau, " at --exit-threshold %g", r.tau);
        fprintf(stderr, "s2s optimize: %s%s: dev %s %.2f (%+.2f), %.3f ms per sentence (teacher %.3f: %.2fx), %.2fM params, "
                        "%.1f MB (measured in %s)\n",
                label, tau, c->metric, r.quality, r.delta, r.ms, r.teacher_ms, r.speedup, (double)r.params / 1e6, r.mb, el);
        if (add_row(c, &r, err, errlen) != 0) goto out;
    }
    rc = 0;
out:
    s2s_model_free(m);
    free(path);
    return rc;
}

/* Stages, final model and measurement of one candidate: 0, 1, 2 (interrupted). */
static int run_cand(ctx *c, const char *label, const s2s_opt_cand *cd, char *err, size_t errlen) {
    char *prefix_dir = NULL, *prefix_result = NULL, *result = NULL, *sub = join("cand", cd->name);
    char *dir = join(c->o->out, sub), *final_rel = join(sub, "final.safetensors"), *final = join(c->o->out, final_rel);
    s2s_model *m = NULL;
    int rc;
    const char *init = c->o->teacher, *init_name = "the teacher";
    if (cd->n_stages == 2) {
        prefix_dir = join(c->cand_dir, cd->st[0].name);
        if ((rc = run_stage(c, label, &cd->st[0], init, init_name, prefix_dir, &prefix_result, err, errlen)) != 0) goto out;
        init = prefix_result;
        init_name = cd->st[0].name;
    }
    if ((rc = run_stage(c, label, &cd->st[cd->n_stages - 1], init, init_name, dir, &result, err, errlen)) != 0) goto out;
    rc = 1;
    if (!exists(final)) {
        static const char *const tmp_names[] = {"final.safetensors"};
        remove_stale_tmp(dir, tmp_names, 1);
        /* fp32: the stage's own file (a hard link when the file system allows) */
        if (c->fp16 || link(result, final) != 0) {
            if (!(m = s2s_model_load(result, 0, err, errlen))) goto out;
            if (s2s_model_save(m, final, NULL, 0, NULL, 0, c->fp16, err, errlen) != 0) goto out;
        }
    }
    if (eval_cand(c, label, cd, final_rel, err, errlen) != 0) goto out;
    rc = 0;
out:
    s2s_model_free(m);
    free(prefix_dir); free(prefix_result); free(result); free(sub); free(dir); free(final_rel); free(final);
    return rc;
}

/* ------------------------------------------------------------ the run */

static void ctx_free(ctx *c) {
    free(c->train_src); free(c->train_tgt); free(c->dev_src); free(c->dev_tgt); free(c->kd_tgt);
    free(c->cand_dir); free(c->results);
    s2s_free_lines(c->dv_src, c->n_dv);
    s2s_free_lines(c->dv_ref, c->n_dv2);
    s2s_model_free(c->teacher);
    free(c->cands);
    free(c->rows);
}

int s2s_optimize(const s2s_optimize_opts *o, char *err, size_t errlen) {
    ctx c;
    memset(&c, 0, sizeof c);
    c.o = o;
    int rc = 1;
    if (!o->teacher || !o->data || !o->out) { s2s_errf(err, errlen, "need -m TEACHER, --data DIR and -o OUT"); return 1; }
    if (o->steps < 1 || o->latency_lines < 1 || o->repeat < 1 || o->kd_beam < 1) {
        s2s_errf(err, errlen, "--steps, --latency-lines, --repeat and --kd-beam must be >= 1");
        return 1;
    }
    c.train_src = join(o->data, "train.src"); c.train_tgt = join(o->data, "train.tgt");
    c.dev_src = join(o->data, "dev.src"); c.dev_tgt = join(o->data, "dev.tgt");
    c.cand_dir = join(o->out, "cand"); c.results = join(o->out, "results.tsv");
    char *kd_dir = join(o->out, "kd");
    c.kd_tgt = join(kd_dir, "train.kd.tgt");
    double t_start = s2s_now();
    if (check_data(&c, err, errlen) != 0) goto out;
    if (load_teacher(&c, err, errlen) != 0) goto out;
    const char *space_name = o->space_name ? o->space_name : "default space";
    c.info.space_name = space_name;
    if (s2s_opt_space_parse(o->space ? o->space : s2s_opt_default_space, space_name, &c.cands, &c.n_cands, err, errlen) != 0)
        goto out;
    filter_space(&c);
    if (c.n_cands == 0) { s2s_errf(err, errlen, "%s: no candidate applies to this teacher", space_name); goto out; }
    if (mkdir_p1(o->out, err, errlen) || mkdir_p1(c.cand_dir, err, errlen) || mkdir_p1(kd_dir, err, errlen)) goto out;
    static const char *const tmp_names[] = {"results.tsv", "pareto.tsv", "report.md", "best.safetensors", "settings.txt", "pareto.png"};
    remove_stale_tmp(o->out, tmp_names, 6);
    if (check_settings(&c, err, errlen) != 0) goto out;
    if (s2s_opt_results_read(c.results, &c.rows, &c.n_rows, err, errlen) != 0) goto out;
    c.info = (s2s_opt_report_info){o->teacher, o->data, c.metric, space_name, o->max_loss, o->steps, c.n_eval, c.n_lat,
                                   o->repeat, c.fp16, count_done(&c), c.n_cands};
    fprintf(stderr, "s2s optimize: %d candidates (%s), %d training steps per stage; dev %s on %d lines, latency on %d "
                    "(batch 1, 1 thread, best of %d); %d already measured; results in %s\n",
            c.n_cands, space_name, o->steps, c.metric, c.n_eval, c.n_lat, o->repeat, c.info.done, c.results);
    if (eval_teacher(&c, err, errlen) != 0) goto out;
    int fresh = 0, failed = 0;
    for (int i = 0; i < c.n_cands; i++) {
        const s2s_opt_cand *cd = &c.cands[i];
        char label[160];
        snprintf(label, sizeof label, "[%d/%d] %s", i + 1, c.n_cands, cd->name);
        if (cand_done(&c, cd)) { fprintf(stderr, "s2s optimize: %s: measured already (results.tsv)\n", label); continue; }
        if (o->stop_after > 0 && fresh >= o->stop_after) {
            fprintf(stderr, "s2s optimize: stopping after %d candidate%s (--stop-after); run the same command again to continue\n",
                    fresh, fresh == 1 ? "" : "s");
            break;
        }
        rc = run_cand(&c, label, cd, err, errlen);
        if (rc == 2) goto out; /* interrupted: stop here */
        if (rc == 1) {         /* one candidate failing does not end the search */
            fprintf(stderr, "s2s optimize: %s: FAILED: %s\n", label, err);
            failed++;
        }
        rc = 1;
        fresh++;
    }
    c.info.done = count_done(&c);
    int best = -1;
    if (s2s_opt_report(o->out, c.rows, c.n_rows, &c.info, &best, err, errlen) != 0) goto out;
    char el[32];
    fmt_time(el, sizeof el, s2s_now() - t_start);
    if (best >= 0)
    {
        char tau[48] = "";
        if (c.rows[best].tau >= 0) snprintf(tau, sizeof tau, " (decode with --exit-threshold %g)", c.rows[best].tau);
        fprintf(stderr, "s2s optimize: %d of %d candidates measured (%s); fastest within a loss of %g: %s, %.2fx, dev %s %+.2f -> "
                        "%s/best.safetensors%s; report %s/report.md\n",
                c.info.done, c.n_cands, el, o->max_loss, c.rows[best].name, c.rows[best].speedup, c.metric, c.rows[best].delta,
                o->out, tau, o->out);
    }
    else
        fprintf(stderr, "s2s optimize: %d of %d candidates measured (%s); none within a loss of %g is faster than the teacher; report %s/report.md\n",
                c.info.done, c.n_cands, el, o->max_loss, o->out);
    if (failed) {
        s2s_errf(err, errlen, "%d candidate%s failed (FAILED lines above); the others are in %s/report.md", failed,
                 failed == 1 ? "" : "s", o->out);
        goto out;
    }
    rc = 0;
out:
    free(kd_dir);
    ctx_free(&c);
    return rc;
}
