/* fuzz_safetensors.c - libFuzzer harness for the safetensors reader
 * (src/safetensors.c) and the checkpoint loader (src/checkpoint.c), the code
 * that reads untrusted model files.
 *
 * The input is written to a memfd (a temp file without /proc) and opened:
 *  1. s2s_st_open; if it opens, every tensor is checked against the header
 *     guarantees of safetensors.h (data inside the file, nbytes == numel *
 *     element size, unique names found by s2s_st_find), every byte of every
 *     tensor is read, float tensors are converted with s2s_st_to_f32, and all
 *     metadata is read.
 *  2. s2s_model_load, read-only (zero-copy, as s2s translate loads) and
 *     trainable (as train --init and resume load): format version, config,
 *     shapes, dtypes, finiteness, tokenizers. A model that loads translates
 *     three fixed lines, greedy and beam 2: whatever passes validation must
 *     also be safe to run.
 *  3. If the file holds tokenizer tensors whose bytes changed, step 2 again
 *     with their checksum lines recomputed, so that mutated tokenizers get past
 *     the checksum into the parser, the vocabulary checks and decoding.
 *  4. s2s_shortlist_load (no model to match): a shortlist that loads has monotone
 *     offsets from 0 and every id in range, so the selection code may trust it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "model.h"
#include "s2s.h"
#include "safetensors.h"
#include "shortlist.h"

static fz_file fz_st_file;

static void fz_st_tensors(const s2s_st_file *f) {
    int n = s2s_st_count(f);
    uint64_t fsize = s2s_st_file_size(f), dstart = s2s_st_data_start(f);
    FZ_CHECK(dstart >= 8 && dstart <= fsize);
    FZ_CHECK(s2s_st_at(f, -1) == NULL && s2s_st_at(f, n) == NULL);
    unsigned sum = 0;
    for (int i = 0; i < n; i++) {
        const s2s_st_tensor *t = s2s_st_at(f, i);
        FZ_CHECK(t && t->name);
        FZ_CHECK(s2s_st_find(f, t->name) == t);
        FZ_CHECK(s2s_dtype_name(t->dtype) != NULL);
        FZ_CHECK(t->ndim >= 0 && t->ndim <= S2S_ST_MAX_NDIM);
        int64_t numel = 1;
        for (int d = 0; d < t->ndim; d++) { FZ_CHECK(t->shape[d] >= 0); numel *= t->shape[d]; }
        FZ_CHECK(numel == t->numel);
        FZ_CHECK(t->nbytes == (size_t)t->numel * s2s_dtype_size(t->dtype));
        FZ_CHECK(t->offset >= dstart && t->offset + t->nbytes <= fsize);
        const unsigned char *p = t->data;
        for (size_t k = 0; k < t->nbytes; k++) sum += p[k]; /* touch every byte */
        if (t->dtype == S2S_DT_F32 || t->dtype == S2S_DT_F16 || t->dtype == S2S_DT_BF16 ||
            t->dtype == S2S_DT_F64) {
            float *out = malloc(((size_t)t->numel + 1) * sizeof *out);
            FZ_CHECK(out);
            FZ_CHECK(s2s_st_to_f32(out, t) == 0);
            const float *direct = s2s_st_f32_ptr(t);
            if (direct && t->numel) FZ_CHECK(memcmp(direct, out, t->nbytes) == 0);
            free(out);
        } else {
            float dummy;
            FZ_CHECK(s2s_st_f32_ptr(t) == NULL);
            if (t->numel == 0) FZ_CHECK(s2s_st_to_f32(&dummy, t) == -1);
        }
    }
    for (int i = 0; i < s2s_st_meta_count(f); i++) {
        const char *k = s2s_st_meta_key(f, i), *v = s2s_st_meta_value(f, i);
        FZ_CHECK(k && v);
        FZ_CHECK(s2s_st_meta(f, k) == v);
        sum += (unsigned)strlen(k) + (unsigned)strlen(v);
    }
    FZ_CHECK(s2s_st_meta_key(f, s2s_st_meta_count(f)) == NULL);
    (void)sum;
}

static void fz_st_translate(const s2s_model *m) {
    static const char *const lines[3] = {"abc", "hello world \xc3\xb1", ""};
    for (int beam = 1; beam <= 2; beam++) {
        s2s_translate_opts o;
        s2s_translate_opts_default(&o);
        o.beam = beam;
        o.batch = 3;
        o.max_len = 16;
        char *out[3] = {NULL, NULL, NULL};
        int flags[3];
        char err[256] = "";
        if (s2s_translate(m, lines, 3, &o, out, flags, err, sizeof err) == 0) {
            for (int i = 0; i < 3; i++) { FZ_CHECK(out[i]); free(out[i]); }
        } else {
            FZ_CHECK(err[0] != '\0');
            for (int i = 0; i < 3; i++) free(out[i]);
        }
    }
}

static void fz_st_load(const char *path) {
    for (int trainable = 0; trainable <= 1; trainable++) {
        char err[512] = "";
        s2s_model *m = s2s_model_load(path, trainable, err, sizeof err);
        if (!m) { FZ_CHECK(err[0] != '\0'); continue; }
        FZ_CHECK(m->src_tok && m->tgt_tok);
        if (!trainable) fz_st_translate(m);
        s2s_model_free(m);
    }
}

/* Copy of data[size] with the checksums of the U8 tensors "tokenizer.src" and
 * "tokenizer.tgt" recomputed (see fz_fix_tok_checksum), so that mutated
 * tokenizers inside a model reach the tokenizer parser, the vocabulary checks
 * and decoding; NULL if there is nothing to fix. */
static uint8_t *fz_st_fix_tokenizers(const s2s_st_file *f, const uint8_t *data, size_t size) {
    uint8_t *copy = NULL;
    static const char *const names[2] = {"tokenizer.src", "tokenizer.tgt"};
    for (int i = 0; i < 2; i++) {
        const s2s_st_tensor *t = s2s_st_find(f, names[i]);
        if (!t || t->dtype != S2S_DT_U8 || t->offset + t->nbytes > size) continue;
        if (!copy) { copy = malloc(size); FZ_CHECK(copy); memcpy(copy, data, size); }
        fz_fix_tok_checksum((char *)copy + t->offset, t->nbytes);
    }
    if (copy && memcmp(copy, data, size) == 0) { free(copy); copy = NULL; }
    return copy;
}

static void fz_st_shortlist(const char *path) {
    char err[512] = "";
    s2s_shortlist *sl = s2s_shortlist_load(path, NULL, err, sizeof err);
    if (!sl) { FZ_CHECK(err[0] != '\0'); return; }
    FZ_CHECK(sl->src_vocab >= 0 && sl->tgt_vocab > 0 && sl->n_frequent >= 0);
    FZ_CHECK(sl->offsets[0] == 0);
    for (int s = 0; s < sl->src_vocab; s++) {
        FZ_CHECK(sl->offsets[s] <= sl->offsets[s + 1]);
        for (int k = sl->offsets[s]; k < sl->offsets[s + 1]; k++) FZ_CHECK(sl->ids[k] >= 0 && sl->ids[k] < sl->tgt_vocab);
    }
    for (int i = 0; i < sl->n_frequent; i++) FZ_CHECK(sl->freq[i] >= 0 && sl->freq[i] < sl->tgt_vocab);
    s2s_shortlist_free(sl);
}

static int fz_st_one(const uint8_t *data, size_t size) {
    if (fz_st_file.path[0] == '\0') fz_file_open(&fz_st_file, "st");
    fz_file_set(&fz_st_file, data, size);
    char err[512] = "";
    uint8_t *fixed = NULL;
    s2s_st_file *f = s2s_st_open(fz_st_file.path, err, sizeof err);
    if (f) {
        fz_st_tensors(f);
        fixed = fz_st_fix_tokenizers(f, data, size);
        s2s_st_close(f);
    } else {
        FZ_CHECK(err[0] != '\0');
    }
    fz_st_load(fz_st_file.path);
    fz_st_shortlist(fz_st_file.path);
    if (fixed) {
        fz_file_set(&fz_st_file, fixed, size);
        fz_st_load(fz_st_file.path);
        free(fixed);
    }
    return 0;
}

#ifndef S2S_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fz_st_one(data, size); }
#endif
