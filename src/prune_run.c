/* prune_run.c - the NASH pipeline (prune.h s2s_prune_run): decoder layer selection,
 * L0 mask training of the encoder, removal of the pruned units, fine-tuning; every
 * phase resumable and skipped once its output exists. Shared by `s2s prune`
 * (cli/cmd_prune.c) and `s2s optimize` (optimize.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"
#include "model.h"
#include "prune.h"
#include "train.h"

static int exists(const char *p) { struct stat sb; return stat(p, &sb) == 0; }

static char *join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = s2s_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static void print_widths(const s2s_model *m) {
    fprintf(stderr, "s2s prune: encoder heads [");
    for (int l = 0; l < m->cfg.enc_layers; l++) fprintf(stderr, l ? " %d" : "%d", s2s_config_enc_heads(&m->cfg, l));
    fprintf(stderr, "], FFN units [");
    for (int l = 0; l < m->cfg.enc_layers; l++) fprintf(stderr, l ? " %d" : "%d", s2s_config_enc_ff(&m->cfg, l));
    fprintf(stderr, "], decoder layers %d, %zu parameters\n", m->cfg.dec_layers, s2s_model_param_count(m));
}

/* Run s2s_train for one phase: 0, 1 (message in err) or 2 (interrupted). */
static int train_phase(const s2s_train_opts *base, const char *init, const char *dir, int steps, float l0_target,
                       int l0_warmup, char *err, size_t errlen) {
    s2s_train_opts o = *base;
    o.init = init;
    o.out_dir = dir;
    o.max_steps = steps;
    o.l0_target = l0_target;
    o.l0_warmup_steps = l0_warmup;
    if (l0_target > 0.0f) o.patience = 0; /* the sparsity target is only met at the end */
    return s2s_train(&o, err, errlen);
}

int s2s_prune_run(const s2s_prune_opts *p, const s2s_train_opts *to, char *err, size_t errlen) {
    int rc = 1, say = !p->quiet;
    char *short_path = join(p->out, "0-short.safetensors"), *dir1 = join(p->out, "1-prune");
    char *pruned_path = join(p->out, "pruned.safetensors"), *dir2 = join(p->out, "2-finetune");
    char *final_path = join(p->out, "model.safetensors");
    char *last1 = join(dir1, "last.safetensors"), *best2 = join(dir2, "best.safetensors");
    s2s_model *m = NULL, *t = NULL;
    if (mkdir(p->out, 0755) != 0 && errno != EEXIST) {
        s2s_errf(err, errlen, "cannot create %s: %s", p->out, strerror(errno));
        goto out;
    }
    if (exists(final_path)) {
        if (say) fprintf(stderr, "s2s prune: %s exists: every phase is done (remove it to redo the last step)\n", final_path);
        rc = 0;
        goto out;
    }
    /* phase 0: decoder layer selection */
    if (!exists(short_path)) {
        if (!(t = s2s_model_load(p->teacher, 1, err, errlen))) goto out;
        int L = t->cfg.dec_layers;
        if (p->dec_layers > L || p->dec_layers < 1) {
            s2s_errf(err, errlen, "--decoder-layers %d: the teacher has only %d decoder layers", p->dec_layers, L);
            goto out;
        }
        int keep[S2S_MAX_LAYERS];
        s2s_prune_select_layers(keep, p->dec_layers, L);
        if (say) {
            fprintf(stderr, "s2s prune: phase 0: keeping decoder layers");
            for (int d = 0; d < p->dec_layers; d++) fprintf(stderr, " %d", keep[d]);
            fprintf(stderr, " of %d\n", L);
        }
        if (!(m = s2s_prune_decoder(t, keep, p->dec_layers, err, errlen))) goto out;
        if (s2s_model_save(m, short_path, NULL, 0, NULL, 0, 0, err, errlen) != 0) goto out;
        s2s_model_free(m); s2s_model_free(t);
        m = t = NULL;
    } else if (say) {
        fprintf(stderr, "s2s prune: phase 0 done (%s)\n", short_path);
    }
    /* phases 1 + 2: L0 masks, then removal */
    const char *ft_init = short_path;
    if (p->sparsity > 0.0f) {
        ft_init = pruned_path;
        if (!exists(pruned_path)) {
            if (say)
                fprintf(stderr, "s2s prune: phase 1: L0 mask training to encoder sparsity %.3f (%d steps, target ramp %d) in %s\n",
                        p->sparsity, p->prune_steps, p->prune_warmup, dir1);
            if ((rc = train_phase(to, short_path, dir1, p->prune_steps, p->sparsity, p->prune_warmup, err, errlen)) != 0) goto out;
            rc = 1;
            if (say) fprintf(stderr, "s2s prune: phase 2: removing pruned heads and FFN units (masks of %s)\n", last1);
            if (!(m = s2s_model_load(last1, 1, err, errlen))) goto out;
            float **zh = NULL, **zf = NULL;
            if (s2s_prune_read_masks(last1, m, &zh, &zf, err, errlen) != 0) goto out;
            t = s2s_prune_encoder(m, zh, zf);
            s2s_prune_masks_free(zh, zf, m->cfg.enc_layers);
            s2s_model_free(m);
            m = t; t = NULL;
            free(m->train_meta); m->train_meta = NULL; /* phase 1's */
            if (say) print_widths(m);
            if (s2s_model_save(m, pruned_path, NULL, 0, NULL, 0, 0, err, errlen) != 0) goto out;
            s2s_model_free(m);
            m = NULL;
        } else if (say) {
            fprintf(stderr, "s2s prune: phases 1 and 2 done (%s)\n", pruned_path);
        }
    }
    /* phase 3: fine-tuning */
    const char *result = ft_init;
    if (p->finetune_steps > 0) {
        if (say) fprintf(stderr, "s2s prune: phase 3: fine-tuning the pruned model (%d steps) in %s\n", p->finetune_steps, dir2);
        if ((rc = train_phase(to, ft_init, dir2, p->finetune_steps, 0.0f, 0, err, errlen)) != 0) goto out;
        rc = 1;
        result = best2;
    }
    if (!(m = s2s_model_load(result, 0, err, errlen))) goto out;
    if (s2s_model_save(m, final_path, NULL, 0, NULL, 0, p->fp16, err, errlen) != 0) goto out;
    if (say) {
        print_widths(m);
        fprintf(stderr, "s2s prune: done: %s\n", final_path);
    }
    rc = 0;
out:
    s2s_model_free(m);
    s2s_model_free(t);
    free(short_path); free(dir1); free(pruned_path); free(dir2); free(final_path); free(last1); free(best2);
    return rc;
}
