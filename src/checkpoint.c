/* checkpoint.c - load and save models as safetensors files.
 *
 * Layout: every weight under its docs/MODEL.md name (F32, or F16 for shipped
 * models), the tokenizers as U8 tensors "tokenizer.src" / "tokenizer.tgt",
 * trainer state as extra tensors ("opt.*"), and __metadata__ with
 * "s2s.format_version", "s2s.config" (JSON) and "s2s.train" (JSON).
 * Loading checks everything and fails with one line naming the problem. */
#include <math.h>
#include <string.h>

#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "tokenizer.h"

void s2s_model_close_file(s2s_model *m) {
    if (m && m->file) { s2s_st_close(m->file); m->file = NULL; }
}

static void shape_str(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, n - o, "[");
    for (int i = 0; i < ndim && o < n; i++) o += (size_t)snprintf(buf + o, n - o, i ? ", %lld" : "%lld", (long long)shape[i]);
    if (o < n) snprintf(buf + o, n - o, "]");
}

static struct s2s_tokenizer *load_tok(const s2s_st_file *f, const char *path, const char *name,
                                      char *err, size_t errlen) {
    const s2s_st_tensor *t = s2s_st_find(f, name);
    if (!t) { s2s_errf(err, errlen, "%s: missing tensor '%s'", path, name); return NULL; }
    if (t->dtype != S2S_DT_U8) { s2s_errf(err, errlen, "%s: tensor '%s' must be U8", path, name); return NULL; }
    char terr[256];
    struct s2s_tokenizer *tok = s2s_tok_deserialize(t->data, t->nbytes, terr, sizeof terr);
    if (!tok) s2s_errf(err, errlen, "%s: %s: %s", path, name, terr);
    return tok;
}

/* The file's tensor for parameter p, with p's shape and a float dtype; NULL
 * and a message if it is missing or does not fit. */
static const s2s_st_tensor *param_tensor(const s2s_st_file *f, const s2s_param_entry *p, const char *path,
                                         char *err, size_t errlen) {
    const s2s_tensor *t = p->t;
    const s2s_st_tensor *st = s2s_st_find(f, p->name);
    if (!st) { s2s_errf(err, errlen, "%s: missing tensor '%s'", path, p->name); return NULL; }
    int64_t want[2] = {t->shape[0], t->shape[1]};
    if (st->ndim != t->ndim || st->shape[0] != want[0] || (t->ndim == 2 && st->shape[1] != want[1])) {
        char a[64], b[64];
        shape_str(a, sizeof a, st->ndim, st->shape);
        shape_str(b, sizeof b, t->ndim, want);
        s2s_errf(err, errlen, "%s: tensor '%s' has shape %s, the config needs %s", path, p->name, a, b);
        return NULL;
    }
    if (st->dtype != S2S_DT_F32 && st->dtype != S2S_DT_F16 && st->dtype != S2S_DT_BF16) {
        s2s_errf(err, errlen, "%s: tensor '%s' has dtype %s, expected F32, F16 or BF16", path, p->name, s2s_dtype_name(st->dtype));
        return NULL;
    }
    return st;
}

s2s_model *s2s_model_load(const char *path, int trainable, char *err, size_t errlen) {
    char e2[512];
    s2s_st_file *f = s2s_st_open(path, e2, sizeof e2);
    if (!f) { s2s_errf(err, errlen, "%s", e2); return NULL; }
    const char *ver = s2s_st_meta(f, "s2s.format_version");
    if (!ver) {
        s2s_errf(err, errlen, "%s: not an s2s model (no s2s.format_version in the metadata)", path);
        s2s_st_close(f);
        return NULL;
    }
    if (strcmp(ver, S2S_FORMAT_VERSION) != 0) {
        s2s_errf(err, errlen, "%s: format version %.20s, this build reads version %s", path, ver, S2S_FORMAT_VERSION);
        s2s_st_close(f);
        return NULL;
    }
    const char *cj = s2s_st_meta(f, "s2s.config");
    s2s_config cfg;
    if (!cj) { s2s_errf(err, errlen, "%s: no s2s.config in the metadata", path); s2s_st_close(f); return NULL; }
    if (s2s_config_from_json(&cfg, cj, strlen(cj), e2, sizeof e2) != 0) {
        s2s_errf(err, errlen, "%s: %s", path, e2);
        s2s_st_close(f);
        return NULL;
    }
    /* Check every weight against the file before allocating what the config
     * asks for (positions [max_len, D]; every weight when trainable): a corrupt
     * config must give an error, not a multi-gigabyte allocation. The table of
     * a data-less model with max_len 2 costs next to nothing. */
    s2s_config probe_cfg = cfg;
    probe_cfg.max_len = 2;
    s2s_model *probe = s2s_model_new_empty(&probe_cfg, 0);
    int bad = 0;
    for (int i = 0; i < probe->n_params && !bad; i++) bad = !param_tensor(f, &probe->params[i], path, err, errlen);
    s2s_model_free(probe);
    if (bad) { s2s_st_close(f); return NULL; }
    s2s_model *m = s2s_model_new_empty(&cfg, trainable);
    int mapped = 0;
    for (int i = 0; i < m->n_params; i++) {
        s2s_param_entry *p = &m->params[i];
        s2s_tensor *t = p->t;
        const s2s_st_tensor *st = param_tensor(f, p, path, err, errlen);
        if (!st) goto fail;
        t->frozen = !trainable; /* inference weights: may be repacked (s2s_weight_packed) */
        const float *direct = trainable ? NULL : s2s_st_f32_ptr(st);
        if (direct) {
            t->data = (float *)(uintptr_t)direct; /* read-only mapping, never written */
            mapped = 1;
        } else {
            if (!trainable) { t->data = s2s_xmalloc(t->n * sizeof(float)); t->is_param = 1; /* owned */ }
            s2s_st_to_f32(t->data, st);
        }
        /* fp16 weight matrices stay available in fp16 (zero-copy) for the
         * bandwidth-bound small-batch decoding kernels */
        if (!trainable && st->dtype == S2S_DT_F16 && t->ndim == 2 && ((uintptr_t)st->data & 1) == 0) {
            t->half = st->data;
            mapped = 1;
        }
        for (size_t j = 0; j < t->n; j++)
            if (!isfinite(t->data[j])) {
                s2s_errf(err, errlen, "%s: tensor '%s' holds a non-finite value (NaN or Inf) at index %zu", path, p->name, j);
                goto fail;
            }
    }
    m->src_tok = load_tok(f, path, "tokenizer.src", err, errlen);
    if (!m->src_tok) goto fail;
    m->tgt_tok = load_tok(f, path, "tokenizer.tgt", err, errlen);
    if (!m->tgt_tok) goto fail;
    if (s2s_tok_vocab_size(m->src_tok) != cfg.src_vocab || s2s_tok_vocab_size(m->tgt_tok) != cfg.tgt_vocab) {
        s2s_errf(err, errlen, "%s: tokenizer sizes (%d, %d) do not match the config (%d, %d)", path,
                 s2s_tok_vocab_size(m->src_tok), s2s_tok_vocab_size(m->tgt_tok), cfg.src_vocab, cfg.tgt_vocab);
        goto fail;
    }
    const char *tm = s2s_st_meta(f, "s2s.train");
    if (tm) m->train_meta = s2s_xstrdup(tm);
    if (mapped) m->file = f;
    else s2s_st_close(f);
    return m;
fail:
    m->file = f; /* freed by s2s_model_free */
    s2s_model_free(m);
    return NULL;
}

int s2s_model_save(const s2s_model *m, const char *path, const s2s_extra_tensor *extra,
                   int n_extra, const char *const *meta_kv, int n_meta, int fp16, char *err,
                   size_t errlen) {
    s2s_st_writer *w = s2s_st_writer_new();
    int rc = -1;
    char *cfg = s2s_config_to_json(&m->cfg);
    size_t nsrc = 0, ntgt = 0;
    char *bsrc = s2s_tok_serialize(m->src_tok, &nsrc);
    char *btgt = s2s_tok_serialize(m->tgt_tok, &ntgt);
    s2s_st_writer_meta(w, "s2s.format_version", S2S_FORMAT_VERSION);
    s2s_st_writer_meta(w, "s2s.config", cfg);
    if (m->train_meta) s2s_st_writer_meta(w, "s2s.train", m->train_meta);
    for (int i = 0; i + 1 < 2 * n_meta; i += 2) s2s_st_writer_meta(w, meta_kv[i], meta_kv[i + 1]);
    for (int i = 0; i < m->n_params; i++) {
        const s2s_tensor *t = m->params[i].t;
        int64_t shape[2] = {t->shape[0], t->shape[1]};
        if (fp16) {
            uint16_t *h = s2s_xmalloc(t->n * sizeof(uint16_t));
            s2s_f32_to_f16_n(h, t->data, t->n);
            s2s_st_writer_add_copy(w, m->params[i].name, S2S_DT_F16, t->ndim, shape, h);
            free(h);
        } else {
            s2s_st_writer_add(w, m->params[i].name, S2S_DT_F32, t->ndim, shape, t->data);
        }
    }
    int64_t s1[1] = {(int64_t)nsrc}, s2[1] = {(int64_t)ntgt};
    s2s_st_writer_add(w, "tokenizer.src", S2S_DT_U8, 1, s1, bsrc);
    s2s_st_writer_add(w, "tokenizer.tgt", S2S_DT_U8, 1, s2, btgt);
    for (int i = 0; i < n_extra; i++)
        s2s_st_writer_add(w, extra[i].name, S2S_DT_F32, extra[i].ndim, extra[i].shape, extra[i].data);
    if (s2s_st_writer_error(w)) { s2s_errf(err, errlen, "%s: %s", path, s2s_st_writer_error(w)); goto out; }
    rc = s2s_st_writer_save(w, path, err, errlen);
out:
    s2s_st_writer_free(w);
    free(cfg); free(bsrc); free(btgt);
    return rc;
}
