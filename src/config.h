/* config.h - the architecture config of a model (docs/MODEL.md), its JSON form
 * (stored in the checkpoint's __metadata__["s2s.config"]) and its validation. */
#ifndef S2S_CONFIG_H
#define S2S_CONFIG_H

#include <stddef.h>

enum { S2S_ACT_RELU = 0, S2S_ACT_GELU = 1 };

typedef struct s2s_config {
    int d_model;       /* D */
    int n_heads;       /* H */
    int d_ff;          /* F */
    int enc_layers;    /* Le */
    int dec_layers;    /* Ld */
    int src_vocab;     /* Vs */
    int tgt_vocab;     /* Vt */
    int max_len;       /* longest sequence (tokens incl. </s>) */
    int share_src_emb; /* encoder uses tgt_emb */
    int activation;    /* S2S_ACT_* */
    char decoder[16];  /* decoder kind: "transformer", ... */
} s2s_config;

/* Defaults for a small model (D=256, H=4, F=1024, 6+6, relu, max_len 256). */
void s2s_config_default(s2s_config *c);
/* 0 if valid, else -1 and a one-line message naming the bad field. */
int s2s_config_check(const s2s_config *c, char *err, size_t errlen);
/* Malloc'd JSON object string. */
char *s2s_config_to_json(const s2s_config *c);
/* Parse + check; unknown keys are an error (catches typos). */
int s2s_config_from_json(s2s_config *c, const char *json, size_t len, char *err, size_t errlen);

#endif
