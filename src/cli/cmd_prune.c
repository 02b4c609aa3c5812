/* cmd_prune.c - `s2s prune -m TEACHER -o OUT [--decoder-layers n] [--encoder-sparsity t]
 * [train options]`: NASH structured pruning (Ko et al. 2023; docs/MODEL.md "NASH
 * structured pruning") in phases, each resumable and skipped once finished:
 *   0. keep n decoder layers of TEACHER, uniformly spread (prune.h)  -> OUT/0-short.safetensors
 *   1. t > 0: train hard-concrete L0 masks on every encoder head and FFN unit with the
 *      Lagrangian pushing the expected sparsity to t (l0.h, ramped over --prune-warmup
 *      steps), plus distillation from TEACHER (kd.h) when --kd-weight > 0 -> OUT/1-prune/
 *   2. remove the pruned heads and units, fold the surviving mask values into the
 *      weights (prune.h)                                                 -> OUT/pruned.safetensors
 *   3. fine-tune the dense pruned model (distillation from TEACHER)       -> OUT/2-finetune/
 * and the result, OUT/2-finetune/best.safetensors, is written as OUT/model.safetensors
 * (fp16 with --fp16). Every `s2s train` data / optimisation / evaluation / device
 * option passes through to phases 1 and 3. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "model.h"
#include "prune.h"
#include "train.h"

#define DEF_DEC_LAYERS 2
#define DEF_SPARSITY 0.5f
#define DEF_PRUNE_STEPS 3000
#define DEF_FINETUNE_STEPS 5000
#define DEF_KD_WEIGHT 0.5f

static void help(FILE *f) {
    fprintf(f,
        "usage: s2s prune -m TEACHER -o OUT --train-src F --train-tgt F [--dev-src F --dev-tgt F] [options]\n"
        "NASH structured pruning: a shallower decoder and a narrower encoder, then fine-tuning.\n"
        "  --decoder-layers %d   decoder layers kept, uniformly spread: floor((L-1)/(n-1) * d), d = 0..n-1\n"
        "                       (n = 1 keeps layer 0)\n"
        "  --encoder-sparsity %.1f  target fraction t of the encoder's heads/FFN parameters removed\n"
        "                       (0: no encoder pruning; hard-concrete L0 masks + Lagrangian otherwise)\n"
        "  --prune-steps %d   mask training steps (phase 1)   --prune-warmup S (target ramp; default half)\n"
        "  --finetune-steps %d  fine-tuning steps of the pruned model (phase 3; 0: none)\n"
        "  --kd-weight %.1f --kd-temp 1  distillation from TEACHER in phases 1 and 3 (0: plain CE)\n"
        "  --fp16               OUT/model.safetensors in fp16\n"
        "Every `s2s train` option passes through (--lr, --warmup, --tokens-per-batch, --device cuda,\n"
        "--threads, --eval-every, --metric, --l0-lr, ...); prune's defaults: --lr 3e-4 --warmup 500.\n"
        "Phases write OUT/0-short.safetensors, OUT/1-prune/, OUT/pruned.safetensors, OUT/2-finetune/\n"
        "and OUT/model.safetensors; rerun the same command to resume (finished phases are skipped).\n",
        DEF_DEC_LAYERS, DEF_SPARSITY, DEF_PRUNE_STEPS, DEF_FINETUNE_STEPS, DEF_KD_WEIGHT);
}

static int exists(const char *p) { struct stat sb; return stat(p, &sb) == 0; }

static char *join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = s2s_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

/* `s2s train` options that prune sets itself. */
static const char *const reserved[] = {"init", "decoder", "dec-layers", "dec-ffn", "multi-exit", "l0-target",
                                       "l0-warmup-steps", "kd-teacher", "fresh", "max-steps", "config"};

typedef struct {
    const char *teacher, *out;
    int dec_layers, prune_steps, prune_warmup, finetune_steps, fp16;
    float sparsity;
} prune_opts;

static void print_widths(const s2s_model *m) {
    fprintf(stderr, "s2s prune: encoder heads [");
    for (int l = 0; l < m->cfg.enc_layers; l++) fprintf(stderr, l ? " %d" : "%d", s2s_config_enc_heads(&m->cfg, l));
    fprintf(stderr, "], FFN units [");
    for (int l = 0; l < m->cfg.enc_layers; l++) fprintf(stderr, l ? " %d" : "%d", s2s_config_enc_ff(&m->cfg, l));
    fprintf(stderr, "], decoder layers %d, %zu parameters\n", m->cfg.dec_layers, s2s_model_param_count(m));
}

/* Run s2s_train for one phase; 0, or the exit status. */
static int train_phase(const s2s_train_opts *base, const char *init, const char *dir, int steps, float l0_target,
                       int l0_warmup) {
    s2s_train_opts o = *base;
    o.init = init;
    o.out_dir = dir;
    o.max_steps = steps;
    o.l0_target = l0_target;
    o.l0_warmup_steps = l0_warmup;
    if (l0_target > 0.0f) o.patience = 0; /* the sparsity target is only met at the end */
    char err[512];
    int rc = s2s_train(&o, err, sizeof err);
    if (rc == 1) fprintf(stderr, "s2s prune: %s\n", err);
    return rc;
}

static int run(const prune_opts *p, const s2s_train_opts *to) {
    char err[512];
    int rc = 1;
    char *short_path = join(p->out, "0-short.safetensors"), *dir1 = join(p->out, "1-prune");
    char *pruned_path = join(p->out, "pruned.safetensors"), *dir2 = join(p->out, "2-finetune");
    char *final_path = join(p->out, "model.safetensors");
    char *last1 = join(dir1, "last.safetensors"), *best2 = join(dir2, "best.safetensors");
    s2s_model *m = NULL, *t = NULL;
    if (mkdir(p->out, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "s2s prune: cannot create %s: %s\n", p->out, strerror(errno));
        goto out;
    }
    if (exists(final_path)) {
        fprintf(stderr, "s2s prune: %s exists: every phase is done (remove it to redo the last step)\n", final_path);
        rc = 0;
        goto out;
    }
    /* phase 0: decoder layer selection */
    if (!exists(short_path)) {
        if (!(t = s2s_model_load(p->teacher, 1, err, sizeof err))) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
        int L = t->cfg.dec_layers;
        if (p->dec_layers > L) {
            fprintf(stderr, "s2s prune: --decoder-layers %d: the teacher has only %d decoder layers\n", p->dec_layers, L);
            goto out;
        }
        int keep[S2S_MAX_LAYERS];
        s2s_prune_select_layers(keep, p->dec_layers, L);
        fprintf(stderr, "s2s prune: phase 0: keeping decoder layers");
        for (int d = 0; d < p->dec_layers; d++) fprintf(stderr, " %d", keep[d]);
        fprintf(stderr, " of %d\n", L);
        if (!(m = s2s_prune_decoder(t, keep, p->dec_layers, err, sizeof err))) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
        if (s2s_model_save(m, short_path, NULL, 0, NULL, 0, 0, err, sizeof err) != 0) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
        s2s_model_free(m); s2s_model_free(t);
        m = t = NULL;
    } else {
        fprintf(stderr, "s2s prune: phase 0 done (%s)\n", short_path);
    }
    /* phases 1 + 2: L0 masks, then removal */
    const char *ft_init = short_path;
    if (p->sparsity > 0.0f) {
        ft_init = pruned_path;
        if (!exists(pruned_path)) {
            fprintf(stderr, "s2s prune: phase 1: L0 mask training to encoder sparsity %.3f (%d steps, target ramp %d) in %s\n",
                    p->sparsity, p->prune_steps, p->prune_warmup, dir1);
            if ((rc = train_phase(to, short_path, dir1, p->prune_steps, p->sparsity, p->prune_warmup)) != 0) goto out;
            rc = 1;
            fprintf(stderr, "s2s prune: phase 2: removing pruned heads and FFN units (masks of %s)\n", last1);
            if (!(m = s2s_model_load(last1, 1, err, sizeof err))) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
            float **zh = NULL, **zf = NULL;
            if (s2s_prune_read_masks(last1, m, &zh, &zf, err, sizeof err) != 0) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
            t = s2s_prune_encoder(m, zh, zf);
            s2s_prune_masks_free(zh, zf, m->cfg.enc_layers);
            s2s_model_free(m);
            m = t; t = NULL;
            free(m->train_meta); m->train_meta = NULL; /* phase 1's */
            print_widths(m);
            if (s2s_model_save(m, pruned_path, NULL, 0, NULL, 0, 0, err, sizeof err) != 0) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
            s2s_model_free(m);
            m = NULL;
        } else {
            fprintf(stderr, "s2s prune: phases 1 and 2 done (%s)\n", pruned_path);
        }
    }
    /* phase 3: fine-tuning */
    const char *result = ft_init;
    if (p->finetune_steps > 0) {
        fprintf(stderr, "s2s prune: phase 3: fine-tuning the pruned model (%d steps) in %s\n", p->finetune_steps, dir2);
        if ((rc = train_phase(to, ft_init, dir2, p->finetune_steps, 0.0f, 0)) != 0) goto out;
        rc = 1;
        result = best2;
    }
    if (!(m = s2s_model_load(result, 0, err, sizeof err))) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
    if (s2s_model_save(m, final_path, NULL, 0, NULL, 0, p->fp16, err, sizeof err) != 0) { fprintf(stderr, "s2s prune: %s\n", err); goto out; }
    print_widths(m);
    fprintf(stderr, "s2s prune: done: %s\n", final_path);
    rc = 0;
out:
    s2s_model_free(m);
    s2s_model_free(t);
    free(short_path); free(dir1); free(pruned_path); free(dir2); free(final_path); free(last1); free(best2);
    return rc;
}

int s2s_cmd_prune(int argc, char **argv) {
    prune_opts p = {NULL, NULL, DEF_DEC_LAYERS, DEF_PRUNE_STEPS, -1, DEF_FINETUNE_STEPS, 0, DEF_SPARSITY};
    s2s_train_opts to;
    s2s_train_opts_default(&to);
    to.lr = 3e-4f;
    to.warmup = 500;
    to.kd_weight = DEF_KD_WEIGHT;
    int rc = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(stdout); rc = 0; goto out; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(p.teacher = s2s_arg_value("prune", argc, argv, &i))) goto out;
            continue;
        }
        if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(p.out = s2s_arg_value("prune", argc, argv, &i))) goto out;
            continue;
        }
        if (!strcmp(a, "--fp16")) { p.fp16 = 1; continue; }
        const char *v;
        if (!strcmp(a, "--decoder-layers")) {
            if (!(v = s2s_arg_value("prune", argc, argv, &i)) || s2s_arg_int("prune", a, v, 1, S2S_MAX_LAYERS, &p.dec_layers)) goto out;
            continue;
        }
        if (!strcmp(a, "--encoder-sparsity")) {
            if (!(v = s2s_arg_value("prune", argc, argv, &i)) || s2s_arg_float("prune", a, v, 0, 0.99, &p.sparsity)) goto out;
            continue;
        }
        if (!strcmp(a, "--prune-steps") || !strcmp(a, "--prune-warmup") || !strcmp(a, "--finetune-steps")) {
            int *dst = a[2] == 'f' ? &p.finetune_steps : a[8] == 's' ? &p.prune_steps : &p.prune_warmup;
            if (!(v = s2s_arg_value("prune", argc, argv, &i)) || s2s_arg_int("prune", a, v, 0, 2000000000, dst)) goto out;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) { fprintf(stderr, "s2s prune: unexpected argument '%s'\n", a); goto out; }
        const char *key = a + 2;
        for (size_t r = 0; r < sizeof reserved / sizeof reserved[0]; r++)
            if (!strcmp(key, reserved[r])) {
                fprintf(stderr, "s2s prune: %s is set by prune itself (see s2s prune --help)\n", a);
                goto out;
            }
        v = "true";
        if (!s2s_train_option_is_flag(key) && !(v = s2s_arg_value("prune", argc, argv, &i))) goto out;
        if (s2s_train_option(&to, "prune", key, v) != 0) goto out;
    }
    if (!p.teacher || !p.out) { fprintf(stderr, "s2s prune: need -m TEACHER and -o OUT (see --help)\n"); goto out; }
    if (!to.train_src || !to.train_tgt) { fprintf(stderr, "s2s prune: need --train-src and --train-tgt (see --help)\n"); goto out; }
    if ((to.dev_src == NULL) != (to.dev_tgt == NULL)) { fprintf(stderr, "s2s prune: --dev-src and --dev-tgt go together\n"); goto out; }
    if (p.sparsity > 0.0f && p.prune_steps < 1) { fprintf(stderr, "s2s prune: --prune-steps must be >= 1 with --encoder-sparsity > 0\n"); goto out; }
    if (p.prune_warmup < 0) p.prune_warmup = p.prune_steps / 2;
    if (p.prune_warmup > p.prune_steps) {
        fprintf(stderr, "s2s prune: --prune-warmup %d is longer than --prune-steps %d\n", p.prune_warmup, p.prune_steps);
        goto out;
    }
    if (to.kd_weight > 0.0f) to.kd_teacher = s2s_xstrdup(p.teacher);
    rc = run(&p, &to);
out:
    s2s_train_options_free(&to);
    return rc;
}
