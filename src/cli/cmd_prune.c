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
 * option passes through to phases 1 and 3. The phases are s2s_prune_run (prune_run.c);
 * this file parses the flags. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "common.h"
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

/* `s2s train` options that prune sets itself. */
static const char *const reserved[] = {"init", "decoder", "dec-layers", "dec-ffn", "multi-exit", "l0-target",
                                       "l0-warmup-steps", "kd-teacher", "fresh", "max-steps", "config"};

int s2s_cmd_prune(int argc, char **argv) {
    s2s_prune_opts p = {.dec_layers = DEF_DEC_LAYERS, .sparsity = DEF_SPARSITY, .prune_steps = DEF_PRUNE_STEPS,
                        .prune_warmup = -1, .finetune_steps = DEF_FINETUNE_STEPS};
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
        if (s2s_train_passthrough(&to, "prune", argc, argv, &i, reserved, sizeof reserved / sizeof reserved[0])) goto out;
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
    char err[512];
    rc = s2s_prune_run(&p, &to, err, sizeof err);
    if (rc == 1) fprintf(stderr, "s2s prune: %s\n", err);
out:
    s2s_train_options_free(&to);
    return rc;
}
