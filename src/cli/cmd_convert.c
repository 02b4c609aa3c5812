/* cmd_convert.c - `s2s convert -m IN -o OUT [--fp16|--fp32]`: rewrite a model's
 * weights in another precision. fp16 halves the file and makes small-batch
 * decoding use the fp16 kernels (docs/DESIGN.md). Trainer state is dropped. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "model.h"

int s2s_cmd_convert(int argc, char **argv) {
    const char *in = NULL, *out = NULL;
    int fp16 = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            printf("usage: s2s convert -m IN -o OUT [--fp16 | --fp32]   (default --fp16)\n");
            return 0;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!(in = s2s_arg_value("convert", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--out")) {
            if (!(out = s2s_arg_value("convert", argc, argv, &i))) return 2;
        } else if (!strcmp(a, "--fp16")) {
            fp16 = 1;
        } else if (!strcmp(a, "--fp32")) {
            fp16 = 0;
        } else {
            fprintf(stderr, "s2s convert: unknown option '%s'\n", a);
            return 2;
        }
    }
    if (!in || !out) {
        fprintf(stderr, "s2s convert: need -m IN and -o OUT\n");
        return 2;
    }
    char err[512];
    s2s_model *m = s2s_model_load(in, 1, err, sizeof err);
    if (!m) { fprintf(stderr, "s2s convert: %s\n", err); return 1; }
    int rc = s2s_model_save(m, out, NULL, 0, NULL, 0, fp16, err, sizeof err);
    if (rc != 0) fprintf(stderr, "s2s convert: %s\n", err);
    s2s_model_free(m);
    return rc ? 1 : 0;
}
