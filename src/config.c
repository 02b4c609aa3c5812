/* config.c - model config JSON (de)serialization and validation. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "common.h"
#include "json.h"

void s2s_config_default(s2s_config *c) {
    memset(c, 0, sizeof *c);
    c->d_model = 256; c->n_heads = 4; c->d_ff = 1024;
    c->enc_layers = 6; c->dec_layers = 6;
    c->max_len = 256;
    c->activation = S2S_ACT_RELU;
    strcpy(c->decoder, "transformer");
    c->dec_ffn = 1;
    c->dec_attn = S2S_ATTN_SOFTMAX;
    c->t2r_k = S2S_T2R_K_DEFAULT;
    c->exit_rank = S2S_EXIT_RANK_DEFAULT;
}

int s2s_config_is_t2r(const s2s_config *c) { return c->dec_attn == S2S_ATTN_T2R; }

int s2s_config_enc_heads(const s2s_config *c, int l) {
    S2S_ASSERT(l >= 0 && l < c->enc_layers && l < S2S_MAX_LAYERS);
    return c->enc_widths ? c->enc_heads[l] : c->n_heads;
}

int s2s_config_enc_ff(const s2s_config *c, int l) {
    S2S_ASSERT(l >= 0 && l < c->enc_layers && l < S2S_MAX_LAYERS);
    return c->enc_widths ? c->enc_ff[l] : c->d_ff;
}

static const char *const dec_kinds[] = {"transformer", "ssru", "gru", "lstm"};

int s2s_decoder_kind_parse(const char *name) {
    for (int k = 0; k < (int)(sizeof dec_kinds / sizeof dec_kinds[0]); k++)
        if (strcmp(name, dec_kinds[k]) == 0) return k;
    return -1;
}

int s2s_config_dec_kind(const s2s_config *c) {
    int k = s2s_decoder_kind_parse(c->decoder);
    S2S_ASSERT(k >= 0);
    return k;
}

int s2s_config_rnn_gates(const s2s_config *c) {
    static const int gates[] = {0, 2, 3, 4};
    return gates[s2s_config_dec_kind(c)];
}

int s2s_config_check(const s2s_config *c, char *err, size_t errlen) {
#define RANGE(f, lo, hi)                                                              \
    if (c->f < (lo) || c->f > (hi)) {                                                 \
        s2s_errf(err, errlen, "config: %s = %d is out of range [%d, %d]", #f, c->f, lo, hi); \
        return -1;                                                                    \
    }
    RANGE(d_model, 2, 65536);
    RANGE(n_heads, 1, 1024);
    RANGE(d_ff, 1, 1 << 20);
    RANGE(enc_layers, 0, 256);
    RANGE(dec_layers, 1, 256);
    RANGE(src_vocab, 5, 1 << 22);
    RANGE(tgt_vocab, 5, 1 << 22);
    RANGE(max_len, 2, 1 << 16);
    RANGE(share_src_emb, 0, 1);
    RANGE(activation, 0, 1);
    if (c->d_model % c->n_heads != 0) {
        s2s_errf(err, errlen, "config: d_model = %d is not a multiple of n_heads = %d", c->d_model, c->n_heads);
        return -1;
    }
    if (c->d_model % 2 != 0 || c->d_model < 4) {
        s2s_errf(err, errlen, "config: d_model = %d must be even and >= 4 (sinusoidal positions)", c->d_model);
        return -1;
    }
    if (c->share_src_emb && c->src_vocab != c->tgt_vocab) {
        s2s_errf(err, errlen, "config: share_src_emb needs src_vocab == tgt_vocab (%d != %d)", c->src_vocab, c->tgt_vocab);
        return -1;
    }
    int kind = s2s_decoder_kind_parse(c->decoder);
    if (kind < 0) {
        s2s_errf(err, errlen, "config: unknown decoder kind '%.16s' (transformer, ssru, gru or lstm)", c->decoder);
        return -1;
    }
    RANGE(dec_ffn, 0, 1);
    if (kind == S2S_DEC_TRANSFORMER && !c->dec_ffn) {
        s2s_errf(err, errlen, "config: dec_ffn = 0 needs a recurrent decoder (ssru, gru or lstm)");
        return -1;
    }
    RANGE(dec_attn, 0, 1);
    if (c->dec_attn == S2S_ATTN_T2R) { /* t2r_k is ignored for softmax */
        RANGE(t2r_k, 1, 4096);
        RANGE(t2r_map, 0, 1);
        if (c->t2r_map == S2S_T2R_MAP_ELU && c->t2r_k != c->d_model / c->n_heads) {
            s2s_errf(err, errlen, "config: t2r_map \"elu\" needs t2r_k = d_model / n_heads = %d (got %d)",
                     c->d_model / c->n_heads, c->t2r_k);
            return -1;
        }
        if (kind != S2S_DEC_TRANSFORMER) {
            s2s_errf(err, errlen, "config: dec_attn \"t2r\" needs the transformer decoder, not '%.16s'", c->decoder);
            return -1;
        }
    }
    RANGE(multi_exit, 0, 1);
    if (c->multi_exit) { /* exit_rank is ignored without multi_exit */
        RANGE(exit_rank, 1, 65536);
        if (kind != S2S_DEC_TRANSFORMER) { /* softmax or T2R attention */
            s2s_errf(err, errlen, "config: multi_exit needs the transformer decoder, not '%.16s'", c->decoder);
            return -1;
        }
    }
#undef RANGE
    if (c->enc_widths) {
        if (c->enc_widths != 1) {
            s2s_errf(err, errlen, "config: enc_widths = %d must be 0 or 1", c->enc_widths);
            return -1;
        }
        for (int l = 0; l < c->enc_layers; l++) {
            if (c->enc_heads[l] < 0 || c->enc_heads[l] > c->n_heads) {
                s2s_errf(err, errlen, "config: enc_heads[%d] = %d is out of range [0, n_heads = %d]", l, c->enc_heads[l], c->n_heads);
                return -1;
            }
            if (c->enc_ff[l] < 0 || c->enc_ff[l] > c->d_ff) {
                s2s_errf(err, errlen, "config: enc_ff[%d] = %d is out of range [0, d_ff = %d]", l, c->enc_ff[l], c->d_ff);
                return -1;
            }
        }
    }
    return 0;
}

/* Per-layer widths as a JSON array [Le]. */
static void append_widths(s2s_strbuf *b, const char *key, const int *w, int n) {
    s2s_strbuf_appendf(b, ",\"%s\":[", key);
    for (int l = 0; l < n; l++) s2s_strbuf_appendf(b, l ? ",%d" : "%d", w[l]);
    s2s_strbuf_putc(b, ']');
}

char *s2s_config_to_json(const s2s_config *c) {
    s2s_strbuf b;
    s2s_strbuf_init(&b);
    s2s_strbuf_appendf(&b,
        "{\"d_model\":%d,\"n_heads\":%d,\"d_ff\":%d,\"enc_layers\":%d,\"dec_layers\":%d,"
        "\"src_vocab\":%d,\"tgt_vocab\":%d,\"max_len\":%d,\"share_src_emb\":%d,"
        "\"activation\":\"%s\",\"decoder\":",
        c->d_model, c->n_heads, c->d_ff, c->enc_layers, c->dec_layers, c->src_vocab, c->tgt_vocab,
        c->max_len, c->share_src_emb, c->activation == S2S_ACT_GELU ? "gelu" : "relu");
    s2s_json_escape(&b, c->decoder, strlen(c->decoder));
    /* written for recurrent kinds only, so Transformer configs stay as they were */
    if (strcmp(c->decoder, "transformer") != 0) s2s_strbuf_appendf(&b, ",\"dec_ffn\":%d", c->dec_ffn);
    /* written for T2R only, so softmax configs stay as they were */
    if (c->dec_attn == S2S_ATTN_T2R) s2s_strbuf_appendf(&b, ",\"dec_attn\":\"t2r\",\"t2r_k\":%d", c->t2r_k);
    if (c->dec_attn == S2S_ATTN_T2R && c->t2r_map == S2S_T2R_MAP_ELU) s2s_strbuf_appendf(&b, ",\"t2r_map\":\"elu\"");
    /* written for per-layer encoder widths only (pruned models) */
    if (c->enc_widths) {
        append_widths(&b, "enc_heads", c->enc_heads, c->enc_layers);
        append_widths(&b, "enc_ff", c->enc_ff, c->enc_layers);
    }
    /* written for DEED multi-exit models only */
    if (c->multi_exit) s2s_strbuf_appendf(&b, ",\"multi_exit\":1,\"exit_rank\":%d", c->exit_rank);
    s2s_strbuf_putc(&b, '}');
    return b.s;
}

static const struct { const char *key; size_t off; } int_fields[] = {
    {"d_model", offsetof(s2s_config, d_model)},
    {"n_heads", offsetof(s2s_config, n_heads)},
    {"d_ff", offsetof(s2s_config, d_ff)},
    {"enc_layers", offsetof(s2s_config, enc_layers)},
    {"dec_layers", offsetof(s2s_config, dec_layers)},
    {"src_vocab", offsetof(s2s_config, src_vocab)},
    {"tgt_vocab", offsetof(s2s_config, tgt_vocab)},
    {"max_len", offsetof(s2s_config, max_len)},
    {"share_src_emb", offsetof(s2s_config, share_src_emb)},
    {"dec_ffn", offsetof(s2s_config, dec_ffn)},
    {"t2r_k", offsetof(s2s_config, t2r_k)},
    {"multi_exit", offsetof(s2s_config, multi_exit)},
    {"exit_rank", offsetof(s2s_config, exit_rank)},
};

/* A JSON array of per-layer widths into w[S2S_MAX_LAYERS]; its length in *n. */
static int parse_widths(const s2s_json *v, const char *key, int *w, int *n, char *err, size_t errlen) {
    if (s2s_json_typeof(v) != S2S_JSON_ARR) { s2s_errf(err, errlen, "config: %s must be an array of integers", key); return -1; }
    if (s2s_json_len(v) > S2S_MAX_LAYERS) { s2s_errf(err, errlen, "config: %s has more than %d entries", key, S2S_MAX_LAYERS); return -1; }
    *n = (int)s2s_json_len(v);
    for (int l = 0; l < *n; l++) {
        double x = s2s_json_num(s2s_json_at(v, (size_t)l));
        if (s2s_json_typeof(s2s_json_at(v, (size_t)l)) != S2S_JSON_NUM || x != floor(x) || fabs(x) > 1e9) {
            s2s_errf(err, errlen, "config: %s[%d] must be an integer", key, l);
            return -1;
        }
        w[l] = (int)x;
    }
    return 0;
}

int s2s_config_from_json(s2s_config *c, const char *json, size_t len, char *err, size_t errlen) {
    char jerr[200];
    int n_eh = -1, n_ef = -1; /* lengths of enc_heads / enc_ff; -1: absent */
    s2s_json *root = s2s_json_parse(json, len, jerr, sizeof jerr);
    if (!root) { s2s_errf(err, errlen, "config: %s", jerr); return -1; }
    int rc = -1;
    if (s2s_json_typeof(root) != S2S_JSON_OBJ) { s2s_errf(err, errlen, "config: not a JSON object"); goto out; }
    memset(c, 0, sizeof *c);
    c->activation = -1;
    c->dec_ffn = 1; /* absent in older checkpoints */
    c->dec_attn = S2S_ATTN_SOFTMAX; /* absent: softmax (and in older checkpoints) */
    c->t2r_k = S2S_T2R_K_DEFAULT;
    c->exit_rank = S2S_EXIT_RANK_DEFAULT; /* absent: not multi-exit */
    for (size_t i = 0; i < s2s_json_len(root); i++) {
        const char *key = s2s_json_key_at(root, i);
        const s2s_json *v = s2s_json_at(root, i);
        int done = 0;
        for (size_t f = 0; f < sizeof int_fields / sizeof int_fields[0]; f++) {
            if (strcmp(key, int_fields[f].key) != 0) continue;
            double x = s2s_json_num(v);
            if (s2s_json_typeof(v) == S2S_JSON_BOOL) x = s2s_json_bool(v);
            else if (s2s_json_typeof(v) != S2S_JSON_NUM || x != floor(x) || fabs(x) > 1e9) {
                s2s_errf(err, errlen, "config: %s must be an integer", key);
                goto out;
            }
            *(int *)((char *)c + int_fields[f].off) = (int)x;
            done = 1;
        }
        if (done) continue;
        if (strcmp(key, "enc_heads") == 0) {
            if (parse_widths(v, key, c->enc_heads, &n_eh, err, errlen) != 0) goto out;
            continue;
        }
        if (strcmp(key, "enc_ff") == 0) {
            if (parse_widths(v, key, c->enc_ff, &n_ef, err, errlen) != 0) goto out;
            continue;
        }
        if (strcmp(key, "dec_attn") == 0) {
            const char *s = s2s_json_str(v);
            if (s2s_json_typeof(v) != S2S_JSON_STR) { s2s_errf(err, errlen, "config: %s must be a string", key); goto out; }
            if (strcmp(s, "softmax") == 0) c->dec_attn = S2S_ATTN_SOFTMAX;
            else if (strcmp(s, "t2r") == 0) c->dec_attn = S2S_ATTN_T2R;
            else { s2s_errf(err, errlen, "config: dec_attn must be \"softmax\" or \"t2r\", not \"%.40s\"", s); goto out; }
            continue;
        }
        if (strcmp(key, "t2r_map") == 0) {
            const char *s = s2s_json_str(v);
            if (s2s_json_typeof(v) != S2S_JSON_STR) { s2s_errf(err, errlen, "config: %s must be a string", key); goto out; }
            if (strcmp(s, "relu") == 0) c->t2r_map = S2S_T2R_MAP_RELU;
            else if (strcmp(s, "elu") == 0) c->t2r_map = S2S_T2R_MAP_ELU;
            else { s2s_errf(err, errlen, "config: t2r_map must be \"relu\" or \"elu\", not \"%.40s\"", s); goto out; }
            continue;
        }
        if (strcmp(key, "activation") == 0 || strcmp(key, "decoder") == 0) {
            const char *s = s2s_json_str(v);
            if (s2s_json_typeof(v) != S2S_JSON_STR) { s2s_errf(err, errlen, "config: %s must be a string", key); goto out; }
            if (key[0] == 'a') {
                if (strcmp(s, "relu") == 0) c->activation = S2S_ACT_RELU;
                else if (strcmp(s, "gelu") == 0) c->activation = S2S_ACT_GELU;
                else { s2s_errf(err, errlen, "config: activation must be \"relu\" or \"gelu\", not \"%.40s\"", s); goto out; }
            } else {
                if (strlen(s) >= sizeof c->decoder) { s2s_errf(err, errlen, "config: unknown decoder kind '%.40s'", s); goto out; }
                strcpy(c->decoder, s);
            }
            continue;
        }
        s2s_errf(err, errlen, "config: unknown key '%.60s'", key);
        goto out;
    }
    if (c->activation < 0) { s2s_errf(err, errlen, "config: missing key 'activation'"); goto out; }
    if (!c->decoder[0]) strcpy(c->decoder, "transformer");
    if (c->dec_attn != S2S_ATTN_T2R) { c->t2r_k = S2S_T2R_K_DEFAULT; c->t2r_map = S2S_T2R_MAP_RELU; } /* unused, and not written back */
    if (!c->multi_exit) c->exit_rank = S2S_EXIT_RANK_DEFAULT;
    if (n_eh >= 0 || n_ef >= 0) { /* either array alone: the other dimension stays uniform */
        if ((n_eh >= 0 && n_eh != c->enc_layers) || (n_ef >= 0 && n_ef != c->enc_layers)) {
            s2s_errf(err, errlen, "config: enc_heads / enc_ff must have enc_layers = %d entries (got %d / %d)",
                     c->enc_layers, n_eh, n_ef);
            goto out;
        }
        for (int l = 0; l < c->enc_layers; l++) {
            if (n_eh < 0) c->enc_heads[l] = c->n_heads;
            if (n_ef < 0) c->enc_ff[l] = c->d_ff;
        }
        c->enc_widths = 1;
    }
    rc = s2s_config_check(c, err, errlen);
out:
    s2s_json_free(root);
    return rc;
}
