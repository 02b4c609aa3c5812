/* fuzz_tokenizer.c - libFuzzer harness for the tokenizers (src/tokenizer.c, bpe.c).
 *
 * Input: BLOB [NUL TEXT [NUL TEXT ...]]  (no NUL: the whole input is both).
 *  1. s2s_tok_deserialize(BLOB) as given, then again with the blob's "end"
 *     checksum line recomputed (so mutations reach the parser behind it); a
 *     tokenizer that loads encodes every TEXT, decodes the ids, decodes ids made
 *     of raw input bytes (negative, out of range), and round-trips through
 *     s2s_tok_serialize.
 *  2. s2s_tok_learn on the input as lines: byte 0 picks the kind, byte 1 the
 *     vocabulary size (0 = no limit, 1..4 must fail, else 5..255), byte 2 the
 *     minimum frequency; the rest (at most 4 KB) split at '\n'. A learned
 *     tokenizer must serialize, load back and encode every line identically.
 * Properties (FZ_CHECK): encode returns -1 exactly for invalid UTF-8, ids lie in
 * [0, V), a short buffer is never overrun, decoded text is valid UTF-8, every
 * piece maps back to its id, and serialize(deserialize(b)) == b. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "tokenizer.h"
#include "utf8.h"

#define FZ_TOK_LEARN_MAX 4096

/* Encode text with t and check the contract; returns the malloc'd ids (*k of them) or NULL. */
static int32_t *fz_tok_encode(const s2s_tokenizer *t, const char *text, int *k) {
    int V = s2s_tok_vocab_size(t);
    size_t len = strlen(text);
    int n = s2s_tok_encode(t, text, NULL, 0);
    FZ_CHECK((n < 0) == !s2s_utf8_valid(text, len));
    *k = n;
    if (n < 0) return NULL;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    FZ_CHECK(ids);
    ids[n] = 0x5A5A5A5A; /* canary */
    FZ_CHECK(s2s_tok_encode(t, text, ids, n) == n);
    FZ_CHECK(ids[n] == 0x5A5A5A5A);
    for (int i = 0; i < n; i++) FZ_CHECK(ids[i] >= 0 && ids[i] < V);
    if (n >= 2) { /* truncated output: writes exactly n/2 ids, still returns n */
        int h = n / 2;
        int32_t *part = malloc(((size_t)h + 1) * sizeof *part);
        FZ_CHECK(part);
        part[h] = 0x5A5A5A5A;
        FZ_CHECK(s2s_tok_encode(t, text, part, h) == n);
        FZ_CHECK(part[h] == 0x5A5A5A5A);
        FZ_CHECK(memcmp(part, ids, (size_t)h * sizeof *ids) == 0);
        free(part);
    }
    return ids;
}

static void fz_tok_decode_check(const s2s_tokenizer *t, const int32_t *ids, int n) {
    char *s = s2s_tok_decode(t, ids, n);
    FZ_CHECK(s);
    FZ_CHECK(s2s_utf8_valid(s, strlen(s)));
    free(s);
}

/* Everything a loaded tokenizer must survive. segs: NUL-separated texts in data[0..n). */
static void fz_tok_exercise(const s2s_tokenizer *t, const uint8_t *data, size_t n) {
    int V = s2s_tok_vocab_size(t);
    FZ_CHECK(V >= S2S_NSPECIAL);
    FZ_CHECK(s2s_tok_piece(t, -1) == NULL && s2s_tok_piece(t, V) == NULL);
    for (int i = 0; i < V && i < 4096; i++) {
        const char *p = s2s_tok_piece(t, i);
        FZ_CHECK(p && *p);
        FZ_CHECK(s2s_tok_id(t, p) == i);
    }
    int M = s2s_tok_n_merges(t);
    for (int i = 0; i < M; i++) {
        int l, r;
        FZ_CHECK(s2s_tok_merge(t, i, &l, &r) == 0);
        FZ_CHECK(l >= S2S_NSPECIAL && l < V && r >= S2S_NSPECIAL && r < V);
    }
    int l, r;
    FZ_CHECK(s2s_tok_merge(t, M, &l, &r) == -1 && s2s_tok_merge(t, -1, &l, &r) == -1);
    /* encode / decode each NUL-separated segment */
    for (size_t a = 0; a <= n;) {
        const uint8_t *z = memchr(data + a, '\0', n - a);
        size_t b = z ? (size_t)(z - data) : n;
        char *text = fz_strndup(data + a, b - a);
        int k;
        int32_t *ids = fz_tok_encode(t, text, &k);
        if (ids) { fz_tok_decode_check(t, ids, k); free(ids); }
        free(text);
        a = b + 1;
    }
    /* decode raw input bytes as ids: negative and out-of-range ids must be safe */
    size_t nid = n / 4 < 1024 ? n / 4 : 1024;
    if (nid) {
        int32_t *raw = malloc(nid * sizeof *raw);
        FZ_CHECK(raw);
        memcpy(raw, data, nid * sizeof *raw);
        fz_tok_decode_check(t, raw, (int)nid);
        for (size_t i = 0; i < nid; i++) raw[i] = (int32_t)((uint32_t)raw[i] % (uint32_t)(V + 2)) - 1;
        fz_tok_decode_check(t, raw, (int)nid);
        free(raw);
    }
    fz_tok_decode_check(t, NULL, 0);
    /* serialize -> deserialize -> serialize gives the same bytes */
    size_t blen = 0, blen2 = 0;
    char *blob = s2s_tok_serialize(t, &blen);
    FZ_CHECK(blob && strlen(blob) == blen);
    char err[256] = "";
    s2s_tokenizer *u = s2s_tok_deserialize(blob, blen, err, sizeof err);
    if (!u) fprintf(stderr, "fuzz: reload failed: %s\n", err);
    FZ_CHECK(u);
    char *blob2 = s2s_tok_serialize(u, &blen2);
    FZ_CHECK(blen2 == blen && memcmp(blob, blob2, blen) == 0);
    FZ_CHECK(s2s_tok_kind_of(u) == s2s_tok_kind_of(t) && s2s_tok_vocab_size(u) == V);
    free(blob); free(blob2);
    s2s_tok_free(u);
}

static void fz_tok_try_blob(const char *blob, size_t len, const uint8_t *text, size_t tlen) {
    char err[256] = "";
    s2s_tokenizer *t = s2s_tok_deserialize(blob, len, err, sizeof err);
    if (!t) { FZ_CHECK(err[0] != '\0'); return; }
    fz_tok_exercise(t, text, tlen);
    s2s_tok_free(t);
}

static void fz_tok_learn(const uint8_t *data, size_t n) {
    if (n < 3) return;
    s2s_tok_kind kind = (s2s_tok_kind)(1 + data[0] % 3);
    int vocab = data[1];
    int min_freq = data[2] % 4;
    data += 3; n -= 3;
    if (n > FZ_TOK_LEARN_MAX) n = FZ_TOK_LEARN_MAX;
    char *text = fz_strndup(data, n);
    size_t nl = 1;
    for (size_t i = 0; i < n; i++) nl += text[i] == '\n';
    const char **lines = malloc(nl * sizeof *lines);
    FZ_CHECK(lines);
    size_t k = 0;
    lines[k++] = text;
    for (size_t i = 0; i < n; i++)
        if (text[i] == '\n') { text[i] = '\0'; lines[k++] = text + i + 1; }
    char err[256] = "";
    s2s_tokenizer *t = s2s_tok_learn(kind, lines, nl, vocab, min_freq, err, sizeof err);
    if (vocab >= 1 && vocab <= 4) FZ_CHECK(!t);
    if (!t) {
        FZ_CHECK(err[0] != '\0');
    } else {
        FZ_CHECK(s2s_tok_kind_of(t) == kind);
        FZ_CHECK(vocab == 0 || s2s_tok_vocab_size(t) <= vocab);
        size_t blen;
        char *blob = s2s_tok_serialize(t, &blen);
        s2s_tokenizer *u = s2s_tok_deserialize(blob, blen, err, sizeof err);
        if (!u) fprintf(stderr, "fuzz: learned tokenizer does not reload: %s\n", err);
        FZ_CHECK(u);
        for (size_t i = 0; i < nl; i++) {
            int ka, kb;
            int32_t *a = fz_tok_encode(t, lines[i], &ka);
            int32_t *b = fz_tok_encode(u, lines[i], &kb);
            FZ_CHECK(ka == kb && (ka <= 0 || memcmp(a, b, (size_t)ka * sizeof *a) == 0));
            if (a) fz_tok_decode_check(t, a, ka);
            free(a); free(b);
        }
        free(blob);
        s2s_tok_free(u);
        s2s_tok_free(t);
    }
    free(lines);
    free(text);
}

static int fz_tok_one(const uint8_t *data, size_t size) {
    const uint8_t *z = memchr(data, '\0', size);
    size_t blen = z ? (size_t)(z - data) : size;
    const uint8_t *text = z ? z + 1 : data;
    size_t tlen = z ? size - blen - 1 : size;
    fz_tok_try_blob((const char *)data, blen, text, tlen);
    char *copy = fz_strndup(data, blen);
    if (fz_fix_tok_checksum(copy, blen) && memcmp(copy, data, blen) != 0)
        fz_tok_try_blob(copy, blen, text, tlen);
    free(copy);
    fz_tok_learn(data, size);
    return 0;
}

#ifndef S2S_FUZZ_NO_MAIN
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) { return fz_tok_one(data, size); }
#endif
