/* cmd_convert.c - `s2s convert -m IN -o OUT [--fp16|--fp32]`: rewrite a model's
 * weights in another precision. fp16 halves the file and makes small-batch
 * decoding use the fp16 kernels (docs/DESIGN.md). Trainer state is dropped.
 *
 * `s2s convert --to t2r [--k K] [--feature-map relu|elu] [--seed S] -m TEACHER -o OUT` (written in fp32 unless
 * --fp16 is given): a copy of a softmax Transformer model whose decoder self- and
 * cross-attention become T2R linear attention (cfg.dec_attn t2r, K features per head,
 * default 32): every weight is kept and the new feature maps dec.{i}.{self,cross}.phi
 * are random, as s2s_model_create initialises them (xavier uniform per head, bias 0),
 * from the seed (default 1). --feature-map elu: the fixed elu(x)+1 map instead (no phi
 * weights, K = head dim). Fine-tune it with `s2s train --init OUT`.
 *
 * `s2s convert --to multi-exit [--exit-rank R] [--seed S] -m TEACHER -o OUT` (fp32 unless
 * --fp16): a DEED multi-exit copy (s2s_model_to_multi_exit: exit adapters of rank R,
 * default 64, on decoder layers 0..Ld-2) of a softmax or T2R Transformer model, to
 * fine-tune with `s2s train --init OUT`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "model.h"

int s2s_cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int fp16 = 1, fp_given = 0, to_t2r = 0, k = S2S_T2R_K_DEFAULT, seed = 1, map = S2S_T2R_MAP_RELU;
    int to_me = 0, rank = S2S_EXIT_RANK_DEFAULT; /* --to multi-exit (DEED) */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: s2s convert -m IN -o OUT [--fp16 | --fp32]   (default --fp16)\n"
                   "       s2s convert --to t2r [--k K] [--feature-map relu|elu] [--seed S] -m TEACHER -o OUT\n"
                   "               [--fp16 | --fp32]\n"
                   "         T2R linear attention in the decoder (K features per head, default 32; random\n"
                   "         feature maps from seed S, default 1; every other weight kept; default --fp32)\n"
                   "         --feature-map relu|elu: learned relu(W x + b) (default) or the fixed\n"
                   "         elu(x) + 1 of Katharopoulos et al. 2020 (no weights; K = head dim)\n"
                   "       s2s convert --to multi-exit [--exit-rank R] [--seed S] -m TEACHER -o OUT\n"
                   "         DEED exit adapters of rank R (default 64) on every decoder layer but the last\n"
                   "         (LN from dec.ln, up-projection 0, down-projection random from seed S; default --fp32);\n"
                   "         TEACHER may have softmax or T2R decoder attention (T2R + DEED: convert --to t2r first)\n");
            return 0;
        } else if (!strcmp(a, "--to")) {
            const char *v = s2s_arg_value("convert", argc, argv, &i);
            if (!v) return 2;
            if (!strcmp(v, "multi-exit")) to_me = 1;
            else if (strcmp(v, "t2r") != 0) { fprintf(stderr, "s2s convert: --to must be t2r or multi-exit, not '%s'\n", v); return 2; }
            else to_t2r = 1;
        } else if (!strcmp(a, "--exit-rank")) {
            const char *v = s2s_arg_value("convert", argc, argv, &i);
            if (!v || s2s_arg_int("convert", a, v, 1, 65536, &rank)) return 2;
        } else if (!strcmp(a, "--feature-map")) {
            const char *v = s2s_arg_value("convert", argc, argv, &i);
            if (!v) return 2;
            if (!strcmp(v, "relu")) map = S2S_T2R_MAP_RELU;
            else if (!strcmp(v, "elu")) map = S2S_T2R_MAP_ELU;
            else { fprintf(stderr, "s2s convert: --feature-map must be relu or elu, not '%s'\n", v); return 2; }
        } else if (!strcmp(a, "--k") || !strcmp(a, "--seed")) {
            const char *v = s2s_arg_value("convert", argc, argv, &i);
            if (!v) return 2;
            if (s2s_arg_int("convert", a, v, a[2] == 'k' ? 1 : 0, a[2] == 'k' ? 4096 : 2147483647L,
                            a[2] == 'k' ? &k : &seed))
                return 2;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(in = s2s_arg_value("convert", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = s2s_arg_value("convert", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--fp16")) {
            fp16 = 1; fp_given = 1;
        } else if (!strcmp(a, "--fp32")) {
            fp16 = 0; fp_given = 1;
        } else {
            fprintf(stderr, "s2s convert: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (map != S2S_T2R_MAP_RELU && !to_t2r) {
        fprintf(stderr, "s2s convert: --feature-map needs --to t2r\n");
        return 2;
    }
    if (!in || !out) {
        fprintf(stderr, "s2s convert: need -m IN and -o OUT\n");
        return 2;
    }
    char err[512];
    s2s_model *m = s2s_model_load(in, 1, err, sizeof err);
    if (!m) { fprintf(stderr, "s2s convert: %s\n", err); return 1; }
    if (to_t2r) {
        if (!fp_given) fp16 = 0; /* a model to fine-tune */
        s2s_model *t = s2s_model_to_t2r(m, k, map, (uint64_t)seed, err, sizeof err);
        s2s_model_free(m);
        if (!t) { fprintf(stderr, "s2s convert: %s: %s\n", in, err); return 1; }
        m = t;
    }
    if (to_me) {
        if (!fp_given) fp16 = 0; /* a model to fine-tune */
        s2s_model *t = s2s_model_to_multi_exit(m, rank, (uint64_t)seed, err, sizeof err);
        s2s_model_free(m);
        if (!t) { fprintf(stderr, "s2s convert: %s: %s\n", in, err); return 1; }
        m = t;
    }
    int rc = s2s_model_save(m, out, NULL, 0, NULL, 0, fp16, err, sizeof err);
    if (rc != 0) fprintf(stderr, "s2s convert: %s\n", err);
    s2s_model_free(m);
    return rc ? 1 : 0;
}
