/* config.h - the architecture config of a model (docs/MODEL.md), its JSON form
 * (stored in the checkpoint's __metadata__["s2s.config"]) and its validation. */
#ifndef S2S_CONFIG_H
#define S2S_CONFIG_H

#include <stddef.h>

enum { S2S_ACT_RELU = 0, S2S_ACT_GELU = 1 };

/* Decoder kinds (cfg.decoder): the Transformer, or a recurrent decoder whose
 * layers replace self-attention by an RNN (docs/MODEL.md "Recurrent decoders"). */
enum { S2S_DEC_TRANSFORMER = 0, S2S_DEC_SSRU = 1, S2S_DEC_GRU = 2, S2S_DEC_LSTM = 3 };

/* Attention of the Transformer decoder's self- and cross-attention (cfg.dec_attn;
 * the encoder is always softmax): softmax, or T2R linear attention (kernels_t2r.h)
 * with a learned feature map of t2r_k features per head. */
enum { S2S_ATTN_SOFTMAX = 0, S2S_ATTN_T2R = 1 };
#define S2S_T2R_K_DEFAULT 32
/* T2R feature map (cfg.t2r_map): learned phi(x) = relu(W x + b) (default), or the fixed
 * phi(x) = elu(x) + 1 of Katharopoulos et al. (2020) on the head vector (no weights,
 * t2r_k = d_model / n_heads). */
enum { S2S_T2R_MAP_RELU = 0, S2S_T2R_MAP_ELU = 1 };
#define S2S_EXIT_RANK_DEFAULT 64 /* DEED multi-exit adapter rank (docs/MODEL.md "DEED") */
#define S2S_MAX_LAYERS 256 /* enc_layers / dec_layers limit */

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
    char decoder[16];  /* decoder kind: "transformer", "ssru", "gru", "lstm" */
    int dec_ffn;       /* 1: each decoder layer has its FFN (0 only for recurrent kinds) */
    int dec_attn;      /* S2S_ATTN_*: decoder attention ("softmax" or "t2r"; t2r: Transformer only) */
    int t2r_k;         /* T2R feature size per head (default S2S_T2R_K_DEFAULT; elu map: d_model / n_heads) */
    int t2r_map;       /* S2S_T2R_MAP_*: "relu" (learned, default) or "elu" (fixed elu+1) */
    int multi_exit;    /* DEED: every decoder layer can predict (an adapter per layer l < Ld-1) */
    int exit_rank;     /* DEED adapter bottleneck r (default S2S_EXIT_RANK_DEFAULT) */
    /* Per-layer encoder widths (NASH pruning, docs/MODEL.md): when enc_widths is 1,
     * encoder layer l has enc_heads[l] attention heads (0..n_heads; head dim stays
     * d_model / n_heads) and enc_ff[l] FFN units (0..); 0 heads skips the attention
     * sublayer, 0 units the FFN. enc_widths 0: every layer has n_heads and d_ff
     * (the arrays are ignored). Read them through s2s_config_enc_heads/enc_ff. */
    int enc_widths;
    int enc_heads[S2S_MAX_LAYERS]; /* [Le] */
    int enc_ff[S2S_MAX_LAYERS];    /* [Le] */
} s2s_config;

/* Defaults for a small model (D=256, H=4, F=1024, 6+6, relu, max_len 256). */
void s2s_config_default(s2s_config *c);
/* S2S_DEC_* of a decoder kind name, or -1 if unknown. */
int s2s_decoder_kind_parse(const char *name);
/* S2S_DEC_* of the config's decoder (which must be valid). */
int s2s_config_dec_kind(const s2s_config *c);
/* Gates of the recurrent cell: 2 (SSRU), 3 (GRU), 4 (LSTM); 0 for the Transformer. */
int s2s_config_rnn_gates(const s2s_config *c);
/* The config's decoder uses T2R attention (a Transformer decoder with dec_attn t2r). */
int s2s_config_is_t2r(const s2s_config *c);
/* Attention heads / FFN units of encoder layer l (0 <= l < enc_layers): the
 * per-layer width when cfg.enc_widths, else n_heads / d_ff. */
int s2s_config_enc_heads(const s2s_config *c, int l);
int s2s_config_enc_ff(const s2s_config *c, int l);
/* 0 if valid, else -1 and a one-line message naming the bad field. */
int s2s_config_check(const s2s_config *c, char *err, size_t errlen);
/* Malloc'd JSON object string. */
char *s2s_config_to_json(const s2s_config *c);
/* Parse + check; unknown keys are an error (catches typos). */
int s2s_config_from_json(s2s_config *c, const char *json, size_t len, char *err, size_t errlen);

#endif
