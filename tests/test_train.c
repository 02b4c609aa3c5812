/* test_train.c - end-to-end training on the reverse-string task (must reach a
 * stated loss), exact resume (interrupted + resumed run == uninterrupted run,
 * bit for bit), and checkpoint files on disk. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "model.h"
#include "s2s.h"
#include "test_util.h"
#include "tokenizer.h"
#include "train.h"


/* The stated target: 600 steps of a 1+1-layer D=64 model on the reverse task
 * bring the dev loss (plain cross-entropy) below 0.5 nats/token and the greedy
 * dev WER below 50% (an untrained model: ~2.6 nats, 100% WER; measured: ~0.15
 * and ~10%). */
Test(train, end_to_end_reaches_stated_loss, .timeout = 240) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 3000, 1);
    tu_write_reverse_task(dir, "dev", 60, 2);
    s2s_train_opts o;
    tu_train_opts(&o, dir, "run");
    o.model.d_model = 64;
    o.model.d_ff = 128;
    o.dropout = 0.0f;
    o.max_steps = 600;
    o.eval_every = 600;
    char err[512];
    cr_assert_eq(s2s_train(&o, err, sizeof err), 0, "%s", err);
    char *best = tu_path(o.out_dir, "best.safetensors");
    s2s_model *m = s2s_model_load(best, 0, err, sizeof err);
    cr_assert_not_null(m, "%s", err);
    cr_assert_not_null(m->train_meta);
    cr_assert(strstr(m->train_meta, "\"steps\":600") != NULL, "%s", m->train_meta);
    const char *ds = strstr(m->train_meta, "\"dev_score\":");
    cr_assert_not_null(ds);
    double wer = atof(ds + 12);
    cr_log_info("dev WER after 600 steps: %.1f", wer);
    cr_assert(wer < 50.0, "dev WER %.1f should be < 50", wer);
    /* the log has the eval line with the dev loss */
    char *logp = tu_path(o.out_dir, "train.log");
    FILE *f = fopen(logp, "r");
    cr_assert_not_null(f);
    char line[512];
    double dl = 99;
    while (fgets(line, sizeof line, f)) {
        char *p = strstr(line, "dev loss ");
        if (p) dl = atof(p + 9);
    }
    fclose(f);
    cr_log_info("dev loss after 600 steps: %.4f", dl);
    cr_assert(dl < 0.5, "dev loss %.4f should be < 0.5", dl);
    /* decode with the trained model through the public API */
    const char *in[2] = {"abc", ""};
    char *out[2];
    s2s_translate_opts to;
    s2s_translate_opts_default(&to);
    cr_assert_eq(s2s_translate((s2s_model *)m, in, 2, &to, out, NULL, err, sizeof err), 0);
    cr_assert_str_eq(out[1], "");
    cr_log_info("abc -> %s", out[0]);
    free(out[0]); free(out[1]);
    s2s_model_free(m);
    free(best); free(logp);
    tu_train_opts_free(&o);
    tu_rmrf(dir);
    free(dir);
}

static int same_weights(const char *a, const char *b) {
    char err[512];
    s2s_model *x = s2s_model_load(a, 1, err, sizeof err), *y = s2s_model_load(b, 1, err, sizeof err);
    cr_assert(x && y, "%s", err);
    int same = x->n_params == y->n_params;
    for (int i = 0; same && i < x->n_params; i++)
        same = memcmp(x->params[i].t->data, y->params[i].t->data, x->params[i].t->n * sizeof(float)) == 0;
    s2s_model_free(x);
    s2s_model_free(y);
    return same;
}

/* 60 steps straight == 25 steps, stop, resume to 60 (bit for bit, 1 thread). */
Test(train, resume_equals_uninterrupted_run, .timeout = 240) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 300, 3);
    tu_write_reverse_task(dir, "dev", 20, 4);
    char err[512];
    s2s_train_opts a;
    tu_train_opts(&a, dir, "a");
    a.max_steps = 60; a.eval_every = 20; a.tokens_per_batch = 300; /* > 1 epoch */
    cr_assert_eq(s2s_train(&a, err, sizeof err), 0, "%s", err);
    s2s_train_opts b;
    tu_train_opts(&b, dir, "b");
    b.max_steps = 25; b.eval_every = 20; b.tokens_per_batch = 300;
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    b.max_steps = 60;
    cr_assert_eq(s2s_train(&b, err, sizeof err), 0, "%s", err);
    char *la = tu_path(a.out_dir, "last.safetensors"), *lb = tu_path(b.out_dir, "last.safetensors");
    cr_assert(same_weights(la, lb), "resumed run differs from the uninterrupted one");
    /* and a run with another seed does differ (the comparison can fail) */
    s2s_train_opts c;
    tu_train_opts(&c, dir, "c");
    c.max_steps = 60; c.eval_every = 20; c.tokens_per_batch = 300; c.seed = 2;
    cr_assert_eq(s2s_train(&c, err, sizeof err), 0, "%s", err);
    char *lc = tu_path(c.out_dir, "last.safetensors");
    cr_assert(!same_weights(la, lc));
    /* no temporary files are left behind */
    char *cmd;
    cr_assert(asprintf(&cmd, "ls %s/a %s/b | grep -c '[.]tmp[.]'", dir, dir) > 0);
    char *outp;
    tu_run(cmd, &outp);
    cr_assert_eq(atoi(outp), 0, "temporary files left: %s", outp);
    free(outp); free(cmd);
    free(la); free(lb); free(lc);
    tu_train_opts_free(&a); tu_train_opts_free(&b); tu_train_opts_free(&c);
    tu_rmrf(dir);
    free(dir);
}
