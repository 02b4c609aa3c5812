/* cmd_train.c - `s2s train`: options from a config file (--config FILE, lines of
 * "key = value", keys are the long option names) and/or the command line (which
 * wins). Runs s2s_train (train.c). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "common.h"
#include "io.h"
#include "tokenizer.h"
#include "train.h"

static void help(FILE *f) {
    fprintf(f,
        "usage: s2s train --train-src F --train-tgt F [--dev-src F --dev-tgt F] -o OUT_DIR [options]\n"
        "       s2s train --config FILE [options]   (config: 'key = value' lines, keys as below)\n"
        "data:   --train-src --train-tgt --dev-src --dev-tgt  -o/--out DIR  --init MODEL (fine-tune)\n"
        "model:  --d-model 256 --heads 4 --ff 1024 --enc-layers 6 --dec-layers 6 --activation relu|gelu\n"
        "        --decoder transformer|ssru|gru|lstm --dec-ffn 1 (0: recurrent decoder layers without FFN)\n"
        "        --max-len 256 --src-tok char|symbol|bpe --tgt-tok char|symbol|bpe\n"
        "        --src-vocab N --tgt-vocab N (BPE vocabulary size) --joint-vocab (one shared vocabulary)\n"
        "optim:  --lr 7e-4 --warmup 4000 --weight-decay 0 --clip 1.0 --dropout 0.1 --label-smoothing 0.1\n"
        "        --tokens-per-batch 4096 --max-steps 100000 --max-epochs 1000 --seed 1 --threads 1\n"
        "eval:   --eval-every 1000 --metric loss|wer|per|bleu|chrf --eval-max 1000 --patience 10\n"
        "other:  --log-every 100 --fresh (ignore OUT_DIR/last.safetensors) --quiet --fp16 (best in fp16)\n"
        "device: --device cpu|cuda (cuda: train on the GPU; same checkpoints) --tf32 (cuda: TF32 matmuls)\n"
        "        --bf16 (cuda: mixed precision, bf16 matmuls with fp32 sums and fp32 master weights)\n"
        "KD:     --kd-teacher MODEL --kd-weight 0 (a: loss = (1-a) CE + a T^2 KL(teacher_T || student_T))\n"
        "        --kd-temp 1 (T); word-level distillation from a teacher with the same tokenizers\n"
        "NASH:   --l0-target 0 (t > 0: learn hard-concrete masks on every encoder head and FFN unit,\n"
        "        expected sparsity pushed to t by a Lagrangian) --l0-warmup-steps 0 (t ramps up linearly)\n"
        "        --l0-lr 0.02 (AdamW of the gates and multipliers) --l0-droprate-init 0.05\n"
        "An existing OUT_DIR/last.safetensors is resumed exactly (weights, Adam state, data position, RNG).\n"
        "--init TEACHER with --decoder K whose decoder (K, --dec-layers, --dec-ffn) differs from TEACHER's:\n"
        "a distillation student with TEACHER's tokenizers, embeddings and encoder and a new random decoder.\n"
        "T2R:    --dec-attn softmax|t2r (decoder attention) --t2r-k 32 (features per head)\n"
        "        --t2r-map relu|elu (learned relu(Wx+b), or the fixed elu(x)+1 with k = head dim);\n"
        "        with --init SOFTMAX_MODEL --dec-attn t2r: converted first (as s2s convert --to t2r)\n"
        "        --train-only all|attn|phi (train only the decoder's attention, or only the T2R\n"
        "        feature maps; every other weight frozen)\n"
        "DEED:   --multi-exit (every decoder layer predicts; with --init: adds exit adapters to the model)\n"
        "        --exit-rank 64 (adapter bottleneck) --exit-last-weight 1.0 (loss = mean exit CE + w * last CE)\n"
        "        stacks with T2R: --dec-attn t2r --multi-exit, or --init of a T2R model (T2R first, then exits)\n");
}

static int flagged(const char *key) {
    return !strcmp(key, "joint-vocab") || !strcmp(key, "multi-exit") || !strcmp(key, "fresh") || !strcmp(key, "quiet") || !strcmp(key, "fp16") ||
           !strcmp(key, "tf32") || !strcmp(key, "bf16");
}

/* Apply one option; returns 0, or -1 after printing an error. */
static int apply(s2s_train_opts *o, const char *C, const char *key, const char *v) {
    char flag[64];
    snprintf(flag, sizeof flag, "--%s", key);
#define STR(k, field) if (!strcmp(key, k)) { free((char *)o->field); o->field = s2s_xstrdup(v); return 0; }
#define INT(k, field, lo, hi) if (!strcmp(key, k)) return s2s_arg_int(C, flag, v, lo, hi, &o->field);
#define FLT(k, field, lo, hi) if (!strcmp(key, k)) return s2s_arg_float(C, flag, v, lo, hi, &o->field);
    STR("train-src", train_src) STR("train-tgt", train_tgt) STR("dev-src", dev_src) STR("dev-tgt", dev_tgt)
    STR("out", out_dir) STR("init", init) STR("kd-teacher", kd_teacher)
    FLT("kd-weight", kd_weight, 0, 1) FLT("kd-temp", kd_temp, 0.01, 100)
    FLT("l0-target", l0_target, 0, 0.999) INT("l0-warmup-steps", l0_warmup_steps, 0, 2000000000)
    FLT("l0-lr", l0_lr, 1e-8, 10) FLT("l0-droprate-init", l0_droprate_init, 1e-6, 0.999)
    INT("d-model", model.d_model, 4, 65536) INT("heads", model.n_heads, 1, 1024) INT("ff", model.d_ff, 1, 1 << 20)
    INT("enc-layers", model.enc_layers, 0, 256) INT("dec-layers", model.dec_layers, 1, 256)
    INT("dec-ffn", model.dec_ffn, 0, 1)
    INT("exit-rank", model.exit_rank, 1, 65536) FLT("exit-last-weight", exit_last_weight, 0, 1000)
    INT("max-len", model.max_len, 2, 65536)
    INT("src-vocab", src_vocab, 0, 1 << 22) INT("tgt-vocab", tgt_vocab, 0, 1 << 22)
    FLT("lr", lr, 1e-8, 10) FLT("warmup", warmup, 1, 1e9) FLT("weight-decay", weight_decay, 0, 1)
    FLT("clip", clip, 0, 1e9) FLT("dropout", dropout, 0, 0.95) FLT("label-smoothing", label_smoothing, 0, 0.99)
    INT("tokens-per-batch", tokens_per_batch, 16, 1 << 24) INT("max-steps", max_steps, 1, 2000000000)
    INT("max-epochs", max_epochs, 1, 1000000) INT("eval-every", eval_every, 0, 2000000000)
    INT("patience", patience, 0, 1000000) INT("eval-max", eval_max, 0, 100000000)
    INT("log-every", log_every, 0, 2000000000) INT("threads", threads, 1, 1024)
#undef STR
#undef INT
#undef FLT
    if (!strcmp(key, "seed")) {
        int s;
        if (s2s_arg_int(C, flag, v, 0, 2147483647, &s)) return -1;
        o->seed = (uint64_t)s;
        return 0;
    }
    if (!strcmp(key, "activation")) {
        if (!strcmp(v, "relu")) o->model.activation = S2S_ACT_RELU;
        else if (!strcmp(v, "gelu")) o->model.activation = S2S_ACT_GELU;
        else { fprintf(stderr, "s2s %s: --activation must be relu or gelu, not '%s'\n", C, v); return -1; }
        return 0;
    }
    if (!strcmp(key, "decoder")) {
        if (s2s_decoder_kind_parse(v) < 0) {
            fprintf(stderr, "s2s %s: --decoder must be transformer, ssru, gru or lstm, not '%s'\n", C, v);
            return -1;
        }
        snprintf(o->model.decoder, sizeof o->model.decoder, "%s", v);
        o->student = 1; /* with --init: a student if the decoder differs (train.h) */
        return 0;
    }
    if (!strcmp(key, "src-tok") || !strcmp(key, "tgt-tok")) {
        s2s_tok_kind k = s2s_tok_kind_parse(v);
        if ((int)k <= 0) { fprintf(stderr, "s2s %s: %s must be char, symbol or bpe, not '%s'\n", C, flag, v); return -1; }
        if (key[0] == 's') o->src_tok = k; else o->tgt_tok = k;
        return 0;
    }
    if (!strcmp(key, "dec-attn")) { /* T2R (docs/MODEL.md "T2R decoder attention") */
        if (!strcmp(v, "softmax")) o->model.dec_attn = S2S_ATTN_SOFTMAX;
        else if (!strcmp(v, "t2r")) o->model.dec_attn = S2S_ATTN_T2R;
        else { fprintf(stderr, "s2s %s: --dec-attn must be softmax or t2r, not '%s'\n", C, v); return -1; }
        return 0;
    }
    if (!strcmp(key, "t2r-k")) return s2s_arg_int(C, flag, v, 1, 4096, &o->model.t2r_k);
    if (!strcmp(key, "train-only")) {
        static const char *ok[] = {"all", "attn", "phi"};
        for (int i = 0; i < 3; i++) if (!strcmp(v, ok[i])) { o->train_only = ok[i]; return 0; }
        fprintf(stderr, "s2s %s: --train-only must be all, attn or phi, not '%s'\n", C, v);
        return -1;
    }
    if (!strcmp(key, "t2r-map")) {
        if (!strcmp(v, "relu")) o->model.t2r_map = S2S_T2R_MAP_RELU;
        else if (!strcmp(v, "elu")) o->model.t2r_map = S2S_T2R_MAP_ELU;
        else { fprintf(stderr, "s2s %s: --t2r-map must be relu or elu, not '%s'\n", C, v); return -1; }
        return 0;
    }
    if (!strcmp(key, "device")) {
        if (!strcmp(v, "cpu")) o->cuda = 0;
        else if (!strcmp(v, "cuda")) o->cuda = 1;
        else { fprintf(stderr, "s2s %s: --device must be cpu or cuda, not '%s'\n", C, v); return -1; }
        return 0;
    }
    if (!strcmp(key, "metric")) {
        static const char *ok[] = {"loss", "wer", "per", "bleu", "chrf"};
        for (int i = 0; i < 5; i++) if (!strcmp(v, ok[i])) { o->metric = ok[i]; return 0; }
        fprintf(stderr, "s2s %s: --metric must be loss, wer, per, bleu or chrf, not '%s'\n", C, v);
        return -1;
    }
    if (flagged(key)) {
        int b;
        if (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "yes")) b = 1;
        else if (!strcmp(v, "0") || !strcmp(v, "false") || !strcmp(v, "no")) b = 0;
        else { fprintf(stderr, "s2s %s: %s must be true or false, not '%s'\n", C, flag, v); return -1; }
        if (!strcmp(key, "joint-vocab")) o->joint_vocab = b;
        else if (!strcmp(key, "multi-exit")) o->model.multi_exit = b;
        else if (!strcmp(key, "fresh")) o->fresh = b;
        else if (!strcmp(key, "quiet")) o->quiet = b;
        else if (!strcmp(key, "tf32")) o->tf32 = b;
        else if (!strcmp(key, "bf16")) o->bf16 = b;
        else o->save_fp16 = b;
        return 0;
    }
    fprintf(stderr, "s2s %s: unknown option '%s'\n", C, flag);
    return -1;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = '\0';
    return s;
}

static int load_config(s2s_train_opts *o, const char *path) {
    char err[512];
    size_t n;
    char **lines = s2s_read_lines(path, &n, err, sizeof err);
    if (!lines) { fprintf(stderr, "s2s train: %s\n", err); return -1; }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        char *l = trim(lines[i]);
        if (!*l || *l == '#') continue;
        char *eq = strchr(l, '=');
        if (!eq) { fprintf(stderr, "s2s train: %s:%zu: expected 'key = value'\n", path, i + 1); rc = -1; break; }
        *eq = '\0';
        char *k = trim(l), *v = trim(eq + 1);
        char where[300];
        snprintf(where, sizeof where, "train (%.200s line %zu)", path, i + 1);
        if (apply(o, where, k, v) != 0) rc = -1;
    }
    s2s_free_lines(lines, n);
    return rc;
}

static void free_opts(s2s_train_opts *o) {
    free((char *)o->train_src); free((char *)o->train_tgt); free((char *)o->dev_src);
    free((char *)o->dev_tgt); free((char *)o->out_dir); free((char *)o->init);
    free((char *)o->kd_teacher);
}

/* For `s2s prune` (cmd_prune.c), which passes `s2s train` options through. */
int s2s_train_option(s2s_train_opts *o, const char *cmd, const char *key, const char *value) {
    return apply(o, cmd, key, value);
}
int s2s_train_option_is_flag(const char *key) { return flagged(key); }

int s2s_train_passthrough(s2s_train_opts *o, const char *cmd, int argc, char **argv, int *i,
                          const char *const *reserved, size_t n_reserved) {
    const char *a = argv[*i];
    if (strncmp(a, "--", 2) != 0) { fprintf(stderr, "s2s %s: unexpected argument '%s'\n", cmd, a); return -1; }
    const char *key = a + 2, *v = "true";
    for (size_t r = 0; r < n_reserved; r++)
        if (!strcmp(key, reserved[r])) {
            fprintf(stderr, "s2s %s: %s is set by %s itself (see s2s %s --help)\n", cmd, a, cmd, cmd);
            return -1;
        }
    if (!flagged(key) && !(v = s2s_arg_value(cmd, argc, argv, i))) return -1;
    return s2s_train_option(o, cmd, key, v) != 0 ? -1 : 0;
}
void s2s_train_options_free(s2s_train_opts *o) { free_opts(o); }

static int parse_and_train(s2s_train_opts *o, int argc, char **argv) {
    for (int i = 1; i < argc; i++) { /* the config file first, so flags override it */
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) { fprintf(stderr, "s2s train: --config needs a value\n"); return 2; }
            if (load_config(o, argv[i + 1]) != 0) return 2;
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { help(stdout); return 0; }
        if (!strcmp(a, "--config")) { i++; continue; }
        if (!strcmp(a, "-o")) a = "--out";
        if (strncmp(a, "--", 2) != 0) { fprintf(stderr, "s2s train: unexpected argument '%s'\n", a); return 2; }
        const char *key = a + 2;
        const char *v = "true";
        if (!flagged(key)) {
            if (i + 1 >= argc) { fprintf(stderr, "s2s train: %s needs a value\n", a); return 2; }
            v = argv[++i];
        }
        if (apply(o, "train", key, v) != 0) return 2;
    }
    /* the elu+1 feature map has k = head dim (config.h) */
    if (o->model.t2r_map == S2S_T2R_MAP_ELU && o->model.n_heads > 0) o->model.t2r_k = o->model.d_model / o->model.n_heads;
    if (!o->train_src || !o->train_tgt || !o->out_dir) {
        fprintf(stderr, "s2s train: need --train-src, --train-tgt and -o OUT_DIR (see --help)\n");
        return 2;
    }
    if ((o->dev_src == NULL) != (o->dev_tgt == NULL)) {
        fprintf(stderr, "s2s train: --dev-src and --dev-tgt go together\n");
        return 2;
    }
    char err[512];
    int rc = s2s_train(o, err, sizeof err);
    if (rc == 1) fprintf(stderr, "s2s train: %s\n", err);
    return rc;
}

int s2s_cmd_train(int argc, char **argv) {
    s2s_train_opts o;
    s2s_train_opts_default(&o);
    int rc = parse_and_train(&o, argc, argv);
    free_opts(&o);
    return rc;
}
