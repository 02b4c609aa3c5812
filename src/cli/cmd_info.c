/* cmd_info.c - `s2s info -m MODEL`: architecture, parameter count, tokenizers,
 * training metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"
#include "cli.h"
#include "model.h"
#include "tokenizer.h"

int s2s_cmd_info(int argc, char **argv) {
    char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            printf("usage: s2s info [-m MODEL]\n");
            free(path);
            return 0;
        } else if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            const char *v = s2s_arg_value("info", argc, argv, &i);
            if (!v) { free(path); return 2; }
            free(path); path = strdup(v);
        } else {
            fprintf(stderr, "s2s info: unknown option '%s'\n", argv[i]);
            free(path);
            return 2;
        }
    }
    if (!path) path = s2s_default_model_path();
    char err[512];
    s2s_model *m = s2s_model_load(path, 0, err, sizeof err);
    if (!m) { fprintf(stderr, "s2s info: %s\n", err); free(path); return 1; }
    const s2s_config *c = &m->cfg;
    struct stat sb;
    stat(path, &sb);
    printf("model:       %s (%.2f MB)\n", path, (double)sb.st_size / 1e6);
    static const char *const cell[] = {"", "SSRU", "GRU", "LSTM"}; /* by S2S_DEC_* */
    int kind = s2s_config_dec_kind(c);
    if (kind == S2S_DEC_TRANSFORMER)
        printf("arch:        transformer encoder-decoder, pre-LN, decoder '%s'%s\n", c->decoder,
               s2s_config_is_t2r(c) ? ", T2R linear attention" : "");
    else
        printf("arch:        transformer encoder + recurrent decoder, pre-LN, decoder '%s' (%s, layers %s FFN)\n",
               c->decoder, cell[kind], c->dec_ffn ? "with" : "without");
    if (s2s_config_is_t2r(c))
        printf("t2r:         %d features per head, %s (decoder self- and cross-attention)\n", c->t2r_k,
               c->t2r_map == S2S_T2R_MAP_ELU ? "fixed elu+1 map" : "learned relu map");
    printf("dims:        d_model %d, heads %d, d_ff %d, activation %s\n", c->d_model, c->n_heads, c->d_ff,
           c->activation == S2S_ACT_GELU ? "gelu" : "relu");
    printf("layers:      encoder %d, decoder %d\n", c->enc_layers, c->dec_layers);
    if (c->multi_exit) /* docs/MODEL.md "DEED" */
        printf("exits:       DEED multi-exit: every decoder layer (adapter rank %d; --exit-threshold)\n", c->exit_rank);
    if (c->enc_widths) { /* a pruned encoder (docs/MODEL.md "NASH structured pruning") */
        printf("enc heads:   ");
        for (int l = 0; l < c->enc_layers; l++) printf(l ? " %d" : "%d", s2s_config_enc_heads(c, l));
        printf("  (per layer, of %d)\nenc d_ff:    ", c->n_heads);
        for (int l = 0; l < c->enc_layers; l++) printf(l ? " %d" : "%d", s2s_config_enc_ff(c, l));
        printf("  (per layer, of %d)\n", c->d_ff);
    }
    printf("vocab:       source %d (%s), target %d (%s)%s\n", c->src_vocab,
           s2s_tok_kind_name(s2s_tok_kind_of(m->src_tok)), c->tgt_vocab,
           s2s_tok_kind_name(s2s_tok_kind_of(m->tgt_tok)), c->share_src_emb ? ", shared embeddings" : "");
    printf("max_len:     %d\n", c->max_len);
    printf("parameters:  %zu\n", s2s_model_param_count(m));
    printf("training:    %s\n", m->train_meta ? m->train_meta : "(none recorded)");
    s2s_model_free(m);
    free(path);
    return 0;
}
