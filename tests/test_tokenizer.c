/* test_tokenizer.c - tests of utf8.c, tokenizer.c and bpe.c (Criterion suite "tokenizer").
 *
 * Round trips for every tokenizer kind on multilingual text (Spanish accents,
 * CJK, emoji), a hand-checked BPE merge sequence (Sennrich's low/lower/newest/
 * widest example with the "▁" word prefix), serialisation round trips, corrupt
 * and truncated blobs, invalid UTF-8, the snprintf-like max_ids contract and
 * concurrent encoding on a shared tokenizer. Kept fast (well under 5 s with
 * ASan); there are no wall-clock assertions. */
#include <criterion/criterion.h>

#include "common.h"
#include "tokenizer.h"
#include "utf8.h"

#include <pthread.h>
#include <string.h>

#define SP "\xE2\x96\x81" /* "▁" */

static const char *const multi[] = {
    "El niño comió piñas en la mañana.",
    "¿Dónde está el baño? ¡Aquí, señor!",
    "Señor, ¿qué pasó con la canción de Begoña?",
    "  Leading and   trailing\tspaces   ",
    "我爱自然语言处理。",
    "東京は日本の首都です。東京タワー！",
    "I love 🍕 and 🎉 parties 👍🏽 👨‍👩‍👧",
    "Ελληνικά γράμματα και λέξεις",
    "Привет, как дела? Всё хорошо.",
    "In the beginning God created the heaven and the earth.",
    "En el principio creó Dios los cielos y la tierra.",
    "Und die Erde war wüst und leer; naïve café résumé",
    "a\\b <unk> <s> tab\there",
};
#define NMULTI (sizeof multi / sizeof multi[0])

/* Whitespace-normalised copy: runs of ASCII whitespace -> one space, ends trimmed. */
static char *norm_ws(const char *s) {
    char *out = s2s_xmalloc(strlen(s) + 1);
    size_t j = 0;
    int pending = 0;
    for (const char *p = s; *p; p++) {
        if (strchr(" \t\n\v\f\r", *p)) { pending = j > 0; continue; }
        if (pending) out[j++] = ' ';
        pending = 0;
        out[j++] = *p;
    }
    out[j] = '\0';
    return out;
}

/* Encodes text fully (asserting success); returns malloc'd ids, count in *n. */
static int32_t *enc(const s2s_tokenizer *t, const char *text, int *n) {
    int k = s2s_tok_encode(t, text, NULL, 0);
    cr_assert(k >= 0, "encode failed on \"%s\"", text);
    int32_t *ids = s2s_xmalloc((size_t)(k + 1) * sizeof *ids);
    cr_assert_eq(s2s_tok_encode(t, text, ids, k), k);
    *n = k;
    return ids;
}

static void check_round_trip(const s2s_tokenizer *t, const char *const *lines, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int k;
        int32_t *ids = enc(t, lines[i], &k);
        for (int j = 0; j < k; j++) {
            cr_assert(ids[j] >= 0 && ids[j] < s2s_tok_vocab_size(t));
            cr_assert_neq(ids[j], S2S_UNK, "unexpected <unk> in \"%s\"", lines[i]);
        }
        char *back = s2s_tok_decode(t, ids, k);
        char *want = norm_ws(lines[i]);
        cr_assert_str_eq(back, want, "kind %s line %zu", s2s_tok_kind_name(s2s_tok_kind_of(t)), i);
        free(back);
        free(want);
        free(ids);
    }
}

/* Concatenation of the pieces of text's encoding, separated by '|'. */
static char *pieces_of(const s2s_tokenizer *t, const char *text) {
    int k;
    int32_t *ids = enc(t, text, &k);
    size_t cap = 16;
    for (int i = 0; i < k; i++) cap += strlen(s2s_tok_piece(t, ids[i])) + 1;
    char *s = s2s_xmalloc(cap);
    s[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (i) strcat(s, "|");
        strcat(s, s2s_tok_piece(t, ids[i]));
    }
    free(ids);
    return s;
}

static uint64_t fnv1a(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

/* Appends a correct end line to a blob body, so only the content is wrong. */
static char *seal(const char *body, size_t *len) {
    size_t n = strlen(body);
    char *b = s2s_xmalloc(n + 32);
    memcpy(b, body, n);
    n += (size_t)sprintf(b + n, "end %016llx\n", (unsigned long long)fnv1a(body, n));
    *len = n;
    return b;
}

/* Random lowercase words from a few syllables (Zipf-ish via squaring). */
static char **synthetic_corpus(size_t nlines, int words_per_line, uint64_t seed) {
    static const char *const syl[] = {"ka", "lo", "mi", "ne", "ru", "sa", "te", "vi", "qu",
                                      "ño", "ba", "do", "fe", "gi", "ja", "pe", "xo", "zu"};
    char **lines = s2s_xmalloc(nlines * sizeof *lines);
    uint64_t rng = seed;
    for (size_t i = 0; i < nlines; i++) {
        char buf[1024];
        size_t n = 0;
        for (int w = 0; w < words_per_line; w++) {
            int ns = 1 + (int)(s2s_rng_next(&rng) % 4);
            for (int s = 0; s < ns; s++) {
                float u = s2s_rng_uniform(&rng);
                const char *x = syl[(int)(u * u * 18)];
                n += (size_t)sprintf(buf + n, "%s", x);
            }
            buf[n++] = w + 1 < words_per_line ? ' ' : '\0';
        }
        lines[i] = s2s_xstrdup(buf);
    }
    return lines;
}

static void free_lines(char **lines, size_t n) {
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(lines);
}

/* ------------------------------------------------------------------------ */

Test(tokenizer, utf8_strict_validation) {
    cr_assert(s2s_utf8_valid("", 0));
    cr_assert(s2s_utf8_valid("abc", 3));
    cr_assert(s2s_utf8_valid("ñ東🍕", strlen("ñ東🍕")));
    cr_assert(s2s_utf8_valid("\xF4\x8F\xBF\xBF", 4));      /* U+10FFFF */
    cr_assert(s2s_utf8_valid("\xED\x9F\xBF", 3));          /* U+D7FF */
    cr_assert(s2s_utf8_valid("\xEE\x80\x80", 3));          /* U+E000 */
    cr_assert_not(s2s_utf8_valid("\xC0\xAF", 2));          /* overlong '/' */
    cr_assert_not(s2s_utf8_valid("\xC1\xBF", 2));          /* overlong */
    cr_assert_not(s2s_utf8_valid("\xE0\x80\xAF", 3));      /* overlong 3-byte */
    cr_assert_not(s2s_utf8_valid("\xF0\x80\x80\xAF", 4));  /* overlong 4-byte */
    cr_assert_not(s2s_utf8_valid("\x80", 1));              /* lone continuation */
    cr_assert_not(s2s_utf8_valid("a\xBF" "b", 3));
    cr_assert_not(s2s_utf8_valid("\xED\xA0\x80", 3));      /* U+D800 surrogate */
    cr_assert_not(s2s_utf8_valid("\xED\xBF\xBF", 3));      /* U+DFFF surrogate */
    cr_assert_not(s2s_utf8_valid("\xF4\x90\x80\x80", 4));  /* U+110000 */
    cr_assert_not(s2s_utf8_valid("\xF5\x80\x80\x80", 4));
    cr_assert_not(s2s_utf8_valid("\xFF", 1));
    cr_assert_not(s2s_utf8_valid("\xE2\x96", 2));          /* truncated */
    cr_assert_not(s2s_utf8_valid("\xF0\x9F\x8D", 3));      /* truncated 4-byte */
    cr_assert_not(s2s_utf8_valid("\xC3", 1));
    cr_assert_eq(s2s_utf8_valid_prefix("ab\xC3", 3), 2);
    cr_assert_eq(s2s_utf8_valid_prefix("ñ\x80", 3), 2);
    cr_assert_eq(s2s_utf8_count("ñ東🍕a", strlen("ñ東🍕a")), 4);
    cr_assert_eq(s2s_utf8_count("\xC3", 1), -1);
    uint32_t cp = 7;
    cr_assert_eq(s2s_utf8_decode("\xC3", 1, &cp), -1);
    cr_assert_eq(cp, 7);
    cr_assert_eq(s2s_utf8_decode("", 0, &cp), -1);
    /* n bounds the read even if more bytes follow */
    cr_assert_eq(s2s_utf8_decode("\xE2\x96\x81", 2, &cp), -1);
    cr_assert_eq(s2s_utf8_decode("\xE2\x96\x81", 3, &cp), 3);
    cr_assert_eq(cp, 0x2581);
}

Test(tokenizer, utf8_encode_decode_every_code_point) {
    char buf[4];
    for (uint32_t cp = 0; cp < 0x110000; cp++) {
        int k = s2s_utf8_encode(buf, cp);
        if (cp >= 0xD800 && cp <= 0xDFFF) { cr_assert_eq(k, 0); continue; }
        cr_assert(k >= 1 && k <= 4);
        uint32_t back;
        cr_assert_eq(s2s_utf8_decode(buf, (size_t)k, &back), k);
        cr_assert_eq(back, cp);
        if (k > 1) cr_assert_eq(s2s_utf8_decode(buf, (size_t)k - 1, &back), -1);
    }
    cr_assert_eq(s2s_utf8_encode(buf, 0x110000), 0);
}

Test(tokenizer, utf8_sanitize_replaces_maximal_subparts) {
    size_t n;
    char *s = s2s_utf8_sanitize("ok", 2, &n);
    cr_assert_str_eq(s, "ok");
    cr_assert_eq(n, 2);
    free(s);
    /* Unicode's example: 61 F1 80 80 E1 80 C2 62 80 63 80 BF 64 */
    const char in[] = "a\xF1\x80\x80\xE1\x80\xC2" "b\x80" "c\x80\xBF" "d";
    s = s2s_utf8_sanitize(in, sizeof in - 1, &n);
    cr_assert_str_eq(s, "a\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD" "b\xEF\xBF\xBD"
                        "c\xEF\xBF\xBD\xEF\xBF\xBD" "d");
    cr_assert(s2s_utf8_valid(s, n));
    free(s);
    s = s2s_utf8_sanitize("\xED\xA0\x80x", 4, NULL); /* surrogate: 3 bad bytes, each its own */
    cr_assert_str_eq(s, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBDx");
    free(s);
}

Test(tokenizer, invalid_utf8_is_rejected) {
    static const char *const bad[] = {"ok \xC0\xAF", "lone \x80 byte", "sur \xED\xA0\x80",
                                      "trunc \xE2\x96", "big \xF4\x90\x80\x80", "\xFF"};
    const char *ok[] = {"hello world"};
    char err[256];
    for (int kind = S2S_TOK_CHAR; kind <= S2S_TOK_BPE; kind++) {
        s2s_tokenizer *t = s2s_tok_learn(kind, ok, 1, 0, 1, err, sizeof err);
        cr_assert_not_null(t, "%s", err);
        for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            int32_t ids[8];
            cr_assert_eq(s2s_tok_encode(t, bad[i], ids, 8), -1, "kind %d case %zu", kind, i);
        }
        s2s_tok_free(t);
        const char *lines[] = {"fine", "also fine", bad[2]};
        err[0] = '\0';
        cr_assert_null(s2s_tok_learn(kind, lines, 3, 0, 1, err, sizeof err));
        cr_assert(strstr(err, "line 3") && strstr(err, "UTF-8"), "message: %s", err);
        cr_assert_null(strchr(err, '\n'));
    }
}

Test(tokenizer, char_round_trip_multilingual) {
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_CHAR, multi, NMULTI, 0, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_kind_of(t), S2S_TOK_CHAR);
    static const char *const specials[] = {"<pad>", "<s>", "</s>", "<unk>"};
    for (int i = 0; i < S2S_NSPECIAL; i++) cr_assert_str_eq(s2s_tok_piece(t, i), specials[i]);
    check_round_trip(t, multi, NMULTI);
    char *p = pieces_of(t, "  ñ 🍕東 ");
    cr_assert_str_eq(p, "ñ|" SP "|🍕|東");
    free(p);
    cr_assert_eq(s2s_tok_id(t, "🍕") >= S2S_NSPECIAL, 1);
    cr_assert_eq(s2s_tok_id(t, "zz"), -1);
    cr_assert_null(s2s_tok_piece(t, -1));
    cr_assert_null(s2s_tok_piece(t, s2s_tok_vocab_size(t)));
    int k;
    int32_t *ids = enc(t, "ñ ☃", &k); /* snowman unseen */
    cr_assert_eq(k, 3);
    cr_assert_eq(ids[2], S2S_UNK);
    char *back = s2s_tok_decode(t, ids, k);
    cr_assert_str_eq(back, "ñ <unk>");
    free(back);
    free(ids);
    s2s_tok_free(t);
}

Test(tokenizer, char_vocab_order_and_limits) {
    const char *lines[] = {"ba ab", "c", "bbb"};
    /* counts: b 5, a 2, ▁ 1, c 1 -> by count desc, ties by byte order: b a c ▁ */
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_CHAR, lines, 3, 0, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_vocab_size(t), 8);
    cr_assert_str_eq(s2s_tok_piece(t, 4), "b");
    cr_assert_str_eq(s2s_tok_piece(t, 5), "a");
    cr_assert_str_eq(s2s_tok_piece(t, 6), "c");
    cr_assert_str_eq(s2s_tok_piece(t, 7), SP);
    s2s_tok_free(t);
    t = s2s_tok_learn(S2S_TOK_CHAR, lines, 3, 6, 1, err, sizeof err); /* keep 2 */
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_vocab_size(t), 6);
    char *p = pieces_of(t, "abc ab");
    cr_assert_str_eq(p, "a|b|<unk>|<unk>|a|b");
    free(p);
    s2s_tok_free(t);
    t = s2s_tok_learn(S2S_TOK_CHAR, lines, 3, 0, 2, err, sizeof err); /* min_freq 2 */
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_vocab_size(t), 6);
    s2s_tok_free(t);
}

Test(tokenizer, symbol_round_trip) {
    const char *lines[] = {"k eh1 m b ax0 l", "  hh ax0 l ow1  ", "k ae1 t", "ñ 東 🍕"};
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_SYMBOL, lines, 4, 0, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_kind_of(t), S2S_TOK_SYMBOL);
    check_round_trip(t, lines, 4);
    /* l and ax0 and k occur twice: first after the specials, in byte order */
    cr_assert_str_eq(s2s_tok_piece(t, 4), "ax0");
    cr_assert_str_eq(s2s_tok_piece(t, 5), "k");
    cr_assert_str_eq(s2s_tok_piece(t, 6), "l");
    int k;
    int32_t *ids = enc(t, "k zz1 <s> ae1", &k);
    cr_assert_eq(k, 4);
    cr_assert_eq(ids[1], S2S_UNK);
    cr_assert_eq(ids[2], S2S_UNK); /* a special's string in the text is not a special */
    int32_t with_specials[] = {S2S_BOS, ids[0], S2S_PAD, ids[1], ids[3], S2S_EOS, 99999, -5};
    char *back = s2s_tok_decode(t, with_specials, 8);
    cr_assert_str_eq(back, "k <unk> ae1 <unk> <unk>");
    free(back);
    free(ids);
    s2s_tok_free(t);
}

Test(tokenizer, bpe_hand_checked_merges) {
    /* Sennrich et al.'s example: low x5, lower x2, newest x6, widest x3. */
    const char *lines[] = {"low low low low low lower lower",
                           "newest newest newest newest newest newest widest widest widest"};
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, lines, 2, 0, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    /* Base characters by count (ties by byte order): e17 w16 ▁16 s9 t9 l7 o7 n6 d3 i3 r2. */
    const char *base[] = {"e", "w", SP, "s", "t", "l", "o", "n", "d", "i", "r"};
    /* Merges, worked out by hand: highest pair count, ties to the smaller left id,
     * then the smaller right id; stops when the best pair occurs once. */
    const char *merged[] = {"es",  "est",      SP "l", "ow",      SP "low",
                            "ew",  SP "n",     "ewest", SP "newest", "wi",
                            SP "wi", "dest",   SP "widest", "er",  SP "lower"};
    cr_assert_eq(s2s_tok_vocab_size(t), 4 + 11 + 15);
    cr_assert_eq(s2s_tok_n_merges(t), 15);
    for (int i = 0; i < 11; i++) cr_assert_str_eq(s2s_tok_piece(t, 4 + i), base[i]);
    for (int i = 0; i < 15; i++) {
        cr_assert_str_eq(s2s_tok_piece(t, 15 + i), merged[i], "merge %d", i);
        int l, r;
        cr_assert_eq(s2s_tok_merge(t, i, &l, &r), 0);
        char cat[64];
        snprintf(cat, sizeof cat, "%s%s", s2s_tok_piece(t, l), s2s_tok_piece(t, r));
        cr_assert_str_eq(cat, merged[i]);
    }
    cr_assert_eq(s2s_tok_merge(t, 15, NULL, NULL), -1);
    char *p = pieces_of(t, "newest lower widest low");
    cr_assert_str_eq(p, SP "newest|" SP "lower|" SP "widest|" SP "low");
    free(p);
    p = pieces_of(t, "löwest"); /* ö unseen */
    cr_assert_str_eq(p, SP "l|<unk>|w|est");
    free(p);
    s2s_tok_free(t);

    /* Vocabulary 20 = 4 + 11 + the first 5 merges. */
    t = s2s_tok_learn(S2S_TOK_BPE, lines, 2, 20, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_vocab_size(t), 20);
    p = pieces_of(t, "lowest newer");
    cr_assert_str_eq(p, SP "low|est|" SP "|n|e|w|e|r");
    free(p);
    s2s_tok_free(t);
}

Test(tokenizer, bpe_round_trip_multilingual) {
    char err[256];
    for (int vocab = 0; vocab <= 400; vocab += 200) {
        s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, multi, NMULTI, vocab, 1, err, sizeof err);
        cr_assert_not_null(t, "%s", err);
        if (vocab) cr_assert_leq(s2s_tok_vocab_size(t), vocab);
        check_round_trip(t, multi, NMULTI);
        s2s_tok_free(t);
    }
    /* A vocabulary smaller than the alphabet keeps the most frequent characters only. */
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, multi, NMULTI, 60, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_vocab_size(t), 60);
    cr_assert_eq(s2s_tok_n_merges(t), 0);
    cr_assert_str_eq(s2s_tok_piece(t, 4), SP);
    char *p = pieces_of(t, "el 我");
    cr_assert_str_eq(p, SP "|e|l|" SP "|<unk>");
    free(p);
    s2s_tok_free(t);
}

Test(tokenizer, bpe_reaches_vocab_size_and_reproduces_training) {
    size_t n = 1500;
    char **lines = synthetic_corpus(n, 12, 42);
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, (const char *const *)lines, n, 400, 1, err,
                                     sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_vocab_size(t), 400);
    check_round_trip(t, (const char *const *)lines, n);
    /* Pieces are unique: each one maps back to its own id. */
    for (int id = 0; id < 400; id++) cr_assert_eq(s2s_tok_id(t, s2s_tok_piece(t, id)), id);
    /* The same corpus learns the same tokenizer (determinism). */
    s2s_tokenizer *u = s2s_tok_learn(S2S_TOK_BPE, (const char *const *)lines, n, 400, 1, err,
                                     sizeof err);
    size_t la, lb;
    char *a = s2s_tok_serialize(t, &la), *b = s2s_tok_serialize(u, &lb);
    cr_assert_eq(la, lb);
    cr_assert_eq(memcmp(a, b, la), 0);
    free(a);
    free(b);
    s2s_tok_free(u);
    s2s_tok_free(t);
    free_lines(lines, n);
}

Test(tokenizer, bpe_min_freq_maps_rare_chars_to_unk) {
    const char *lines[] = {"aaa bbb aaa", "ab ba x"};
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, lines, 2, 0, 2, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    cr_assert_eq(s2s_tok_id(t, "x"), -1);
    int k;
    int32_t *ids = enc(t, "axb", &k);
    int unk = 0;
    for (int i = 0; i < k; i++) unk += ids[i] == S2S_UNK;
    cr_assert_eq(unk, 1);
    char *back = s2s_tok_decode(t, ids, k);
    cr_assert_str_eq(back, "a<unk>b");
    free(back);
    free(ids);
    s2s_tok_free(t);
}

Test(tokenizer, whitespace_normalisation_and_decode_cleanup) {
    char err[256];
    for (int kind = S2S_TOK_CHAR; kind <= S2S_TOK_BPE; kind++) {
        s2s_tokenizer *t = s2s_tok_learn(kind, multi, NMULTI, 0, 1, err, sizeof err);
        cr_assert_not_null(t, "%s", err);
        int a, b;
        int32_t *x = enc(t, " \t la  tierra \r\n", &a), *y = enc(t, "la tierra", &b);
        cr_assert_eq(a, b);
        cr_assert_eq(memcmp(x, y, (size_t)a * sizeof *x), 0);
        cr_assert_eq(s2s_tok_encode(t, "   ", NULL, 0), 0);
        cr_assert_eq(s2s_tok_encode(t, "", NULL, 0), 0);
        char *e = s2s_tok_decode(t, NULL, 0);
        cr_assert_str_eq(e, "");
        free(e);
        free(x);
        free(y);
        if (kind != S2S_TOK_SYMBOL) { /* stray "▁" pieces from a model collapse */
            int sp = s2s_tok_id(t, SP);
            int l = s2s_tok_id(t, "l");
            cr_assert(sp >= 0 && l >= 0);
            int32_t ids[] = {S2S_BOS, sp, sp, l, sp, sp, S2S_EOS};
            char *s = s2s_tok_decode(t, ids, 7);
            cr_assert_str_eq(s, "l");
            free(s);
        }
        s2s_tok_free(t);
    }
}

Test(tokenizer, encode_max_ids_contract) {
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_CHAR, multi, NMULTI, 0, 1, err, sizeof err);
    cr_assert_not_null(t, "%s", err);
    const char *text = "El niño comió";
    int full = s2s_tok_encode(t, text, NULL, 0);
    cr_assert_eq(full, 13);
    int32_t ref[32];
    cr_assert_eq(s2s_tok_encode(t, text, ref, 32), full);
    for (int m = 0; m <= full + 2; m++) {
        int32_t ids[32];
        for (int i = 0; i < 32; i++) ids[i] = -777;
        cr_assert_eq(s2s_tok_encode(t, text, ids, m), full);
        for (int i = 0; i < 32; i++)
            cr_assert_eq(ids[i], i < m && i < full ? ref[i] : -777, "m=%d i=%d", m, i);
    }
    cr_assert_eq(s2s_tok_encode(t, text, ref, -3), full); /* negative: nothing written */
    s2s_tok_free(t);
}

static void check_same_encodings(const s2s_tokenizer *a, const s2s_tokenizer *b,
                                 const char *const *lines, size_t n) {
    cr_assert_eq(s2s_tok_vocab_size(a), s2s_tok_vocab_size(b));
    cr_assert_eq(s2s_tok_kind_of(a), s2s_tok_kind_of(b));
    for (int id = 0; id < s2s_tok_vocab_size(a); id++)
        cr_assert_str_eq(s2s_tok_piece(a, id), s2s_tok_piece(b, id));
    for (size_t i = 0; i < n; i++) {
        int ka, kb;
        int32_t *x = enc(a, lines[i], &ka), *y = enc(b, lines[i], &kb);
        cr_assert_eq(ka, kb);
        cr_assert_eq(memcmp(x, y, (size_t)ka * sizeof *x), 0, "line %zu", i);
        free(x);
        free(y);
    }
}

Test(tokenizer, serialize_round_trip_all_kinds) {
    char err[256];
    const char *extra[] = {"ctrl\x01" "char back\\slash", "k eh1 m"};
    const char *lines[NMULTI + 2];
    for (size_t i = 0; i < NMULTI; i++) lines[i] = multi[i];
    lines[NMULTI] = extra[0];
    lines[NMULTI + 1] = extra[1];
    for (int kind = S2S_TOK_CHAR; kind <= S2S_TOK_BPE; kind++) {
        s2s_tokenizer *t = s2s_tok_learn(kind, lines, NMULTI + 2, 0, 1, err, sizeof err);
        cr_assert_not_null(t, "%s", err);
        size_t len;
        char *blob = s2s_tok_serialize(t, &len);
        cr_assert_eq(strlen(blob), len);
        cr_assert(strncmp(blob, "s2s-tokenizer 1\nkind ", 21) == 0);
        s2s_tokenizer *u = s2s_tok_deserialize(blob, len, err, sizeof err);
        cr_assert_not_null(u, "%s", err);
        check_same_encodings(t, u, lines, NMULTI + 2);
        size_t len2;
        char *blob2 = s2s_tok_serialize(u, &len2);
        cr_assert_eq(len, len2);
        cr_assert_eq(memcmp(blob, blob2, len), 0);
        free(blob2);
        s2s_tok_free(u);
        s2s_tok_free(t);
        free(blob);
    }
}

Test(tokenizer, corrupt_and_truncated_blobs_fail_cleanly) {
    char err[256];
    const char *lines[] = {"low lower newest widest", "ñ 東 🍕 a\\b"};
    for (int kind = S2S_TOK_CHAR; kind <= S2S_TOK_BPE; kind++) {
        s2s_tokenizer *t = s2s_tok_learn(kind, lines, 2, 0, 1, err, sizeof err);
        cr_assert_not_null(t, "%s", err);
        size_t len;
        char *blob = s2s_tok_serialize(t, &len);
        char *copy = s2s_xmalloc(len);
        for (size_t cut = 0; cut < len; cut++) { /* every truncation */
            memcpy(copy, blob, cut);
            err[0] = '\0';
            cr_assert_null(s2s_tok_deserialize(copy, cut, err, sizeof err), "cut %zu", cut);
            cr_assert(err[0] && !strchr(err, '\n'));
        }
        for (size_t pos = 0; pos < len; pos++) { /* a byte flip anywhere */
            static const unsigned char flips[] = {0x01, 0x20, 0x80, 0xff};
            for (size_t f = 0; f < sizeof flips; f++) {
                memcpy(copy, blob, len);
                copy[pos] = (char)(copy[pos] ^ flips[f]);
                err[0] = '\0';
                cr_assert_null(s2s_tok_deserialize(copy, len, err, sizeof err), "pos %zu", pos);
                cr_assert(err[0]);
            }
        }
        s2s_tokenizer *u = s2s_tok_deserialize(blob, len, err, sizeof err); /* still fine */
        cr_assert_not_null(u, "%s", err);
        s2s_tok_free(u);
        free(copy);
        free(blob);
        s2s_tok_free(t);
    }
    cr_assert_null(s2s_tok_deserialize(NULL, 0, err, sizeof err));
    cr_assert_null(s2s_tok_deserialize("x", 1, NULL, 0)); /* NULL err is allowed */

    /* Well-sealed blobs with bad content: the structural checks catch them. */
    static const char *const bodies[] = {
        "s2s-tokenizer 2\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\n",
        "s2s-tokenizer 1\nkind word\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\n",
        "s2s-tokenizer 1\nkind char\npieces 6\nbase 2\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\nb\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<UNK>\na\n",
        "s2s-tokenizer 1\nkind char\npieces 6\nbase 2\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\na\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\nab\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n\\x00\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n\\xff\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n\\q\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n\\x2\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n\\x20\n",
        "s2s-tokenizer 1\nkind char\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\\\n",
        "s2s-tokenizer 1\nkind symbol\npieces 5\nbase 1\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\n<s>\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nba\n4 5\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n4 6\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n3 5\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n4 05\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n4\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n-4 5\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 2\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n4 5\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n4 5\n4 5\n",
        "s2s-tokenizer 1\nkind bpe\npieces 7\nbase 3\nmerges 0\n<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n",
        "s2s-tokenizer 1\nkind bpe\npieces 99999999\nbase 2\nmerges 1\n<pad>\n",
        "s2s-tokenizer 1\nkind bpe\npieces 4294967303\nbase 2\nmerges 1\n",
        "s2s-tokenizer 1\nkind char\n",
        "",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        size_t len;
        char *b = seal(bodies[i], &len);
        err[0] = '\0';
        s2s_tokenizer *u = s2s_tok_deserialize(b, len, err, sizeof err);
        cr_assert_null(u, "body %zu was accepted", i);
        cr_assert(err[0] && !strchr(err, '\n'), "body %zu", i);
        free(b);
    }
    /* The minimal well-formed BPE blob is accepted and works. */
    size_t len;
    char *b = seal("s2s-tokenizer 1\nkind bpe\npieces 7\nbase 2\nmerges 1\n"
                   "<pad>\n<s>\n</s>\n<unk>\na\nb\nab\n4 5\n", &len);
    s2s_tokenizer *u = s2s_tok_deserialize(b, len, err, sizeof err);
    cr_assert_not_null(u, "%s", err);
    char *p = pieces_of(u, "abab b");
    cr_assert_str_eq(p, "<unk>|ab|ab|<unk>|b"); /* no "▁" piece in this vocabulary */
    free(p);
    s2s_tok_free(u);
    free(b);
}

Test(tokenizer, learn_argument_errors) {
    char err[256];
    const char *lines[] = {"a b c"};
    err[0] = '\0';
    cr_assert_null(s2s_tok_learn(S2S_TOK_BPE, lines, 1, 4, 1, err, sizeof err));
    cr_assert(strstr(err, "special"), "%s", err);
    cr_assert_null(s2s_tok_learn((s2s_tok_kind)9, lines, 1, 100, 1, err, sizeof err));
    const char *empty[] = {"", "   \t"};
    for (int kind = S2S_TOK_CHAR; kind <= S2S_TOK_BPE; kind++) {
        err[0] = '\0';
        cr_assert_null(s2s_tok_learn(kind, empty, 2, 100, 1, err, sizeof err));
        cr_assert(err[0]);
        cr_assert_null(s2s_tok_learn(kind, lines, 1, 100, 5, err, sizeof err)); /* all rare */
        cr_assert_null(s2s_tok_learn(kind, NULL, 0, 100, 1, err, sizeof err));
    }
    const char *withnull[] = {"a", NULL};
    cr_assert_null(s2s_tok_learn(S2S_TOK_CHAR, withnull, 2, 0, 1, err, sizeof err));
    cr_assert_eq(s2s_tok_kind_parse("bpe"), S2S_TOK_BPE);
    cr_assert_eq(s2s_tok_kind_parse("BPE"), 0);
    cr_assert_str_eq(s2s_tok_kind_name(S2S_TOK_SYMBOL), "symbol");
}

/* ------------------------------------------------------------------------ */
/* Several threads encode with one shared BPE tokenizer (its cache is shared). */

typedef struct {
    const s2s_tokenizer *t;
    char **lines;
    size_t n;
    int32_t **ref;
    int *refn;
    int ok;
} thread_job;

static void *encode_worker(void *arg) {
    thread_job *j = arg;
    j->ok = 1;
    int32_t ids[512];
    for (int rep = 0; rep < 3; rep++) {
        for (size_t i = 0; i < j->n; i++) {
            int k = s2s_tok_encode(j->t, j->lines[i], ids, 512);
            if (k != j->refn[i] || k > 512 || memcmp(ids, j->ref[i], (size_t)k * sizeof *ids))
                j->ok = 0;
        }
    }
    return NULL;
}

Test(tokenizer, concurrent_encoding_is_consistent) {
    size_t n = 2500;
    char **lines = synthetic_corpus(n, 12, 7);
    char err[256];
    s2s_tokenizer *t = s2s_tok_learn(S2S_TOK_BPE, (const char *const *)lines, n / 2, 300, 1, err,
                                     sizeof err);
    cr_assert_not_null(t, "%s", err);
    /* Reference encodings from a private copy, so the shared cache starts cold. */
    size_t len;
    char *blob = s2s_tok_serialize(t, &len);
    s2s_tokenizer *priv = s2s_tok_deserialize(blob, len, err, sizeof err);
    cr_assert_not_null(priv, "%s", err);
    int32_t **ref = s2s_xmalloc(n * sizeof *ref);
    int *refn = s2s_xmalloc(n * sizeof *refn);
    for (size_t i = 0; i < n; i++) ref[i] = enc(priv, lines[i], &refn[i]);
    enum { NT = 4 };
    pthread_t th[NT];
    thread_job jobs[NT];
    for (int k = 0; k < NT; k++) {
        jobs[k] = (thread_job){t, lines, n, ref, refn, 0};
        cr_assert_eq(pthread_create(&th[k], NULL, encode_worker, &jobs[k]), 0);
    }
    for (int k = 0; k < NT; k++) {
        pthread_join(th[k], NULL);
        cr_assert(jobs[k].ok, "thread %d saw a different encoding", k);
    }
    for (size_t i = 0; i < n; i++) free(ref[i]);
    free(ref);
    free(refn);
    free(blob);
    s2s_tok_free(priv);
    s2s_tok_free(t);
    free_lines(lines, n);
}
