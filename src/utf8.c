/* utf8.c - strict UTF-8 validation, decoding, encoding and U+FFFD repair.
 * See utf8.h. The decoder follows Unicode Table 3-7 (well-formed byte
 * sequences) directly, so overlongs, surrogates and > U+10FFFF fall out of the
 * allowed ranges of the second byte. */
#include "utf8.h"

#include "common.h"

#include <string.h>

/* Decodes one code point. On success returns its length (1..4). On failure
 * returns -1 and sets *bad to the length (>= 1) of the maximal ill-formed
 * subpart there: the longest prefix of a well-formed sequence, or 1. */
static int utf8_scan(const unsigned char *s, size_t n, uint32_t *cp, size_t *bad) {
    *bad = 1;
    if (n == 0) return -1;
    unsigned c = s[0];
    if (c < 0x80) { *cp = c; return 1; }
    int need;              /* total length of the sequence */
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) { need = 2; v = c & 0x1F; }
    else if (c == 0xE0) { need = 3; v = c & 0x0F; lo = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) { need = 3; v = c & 0x0F; }
    else if (c == 0xED) { need = 3; v = c & 0x0F; hi = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) { need = 3; v = c & 0x0F; }
    else if (c == 0xF0) { need = 4; v = c & 0x07; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) { need = 4; v = c & 0x07; }
    else if (c == 0xF4) { need = 4; v = c & 0x07; hi = 0x8F; }
    else return -1; /* 80..C1 (continuation or overlong lead), F5..FF */
    for (int i = 1; i < need; i++) {
        if ((size_t)i >= n) { *bad = (size_t)i; return -1; }
        unsigned b = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (b < l || b > h) { *bad = (size_t)i; return -1; }
        v = (v << 6) | (b & 0x3F);
    }
    *cp = v;
    return need;
}

int s2s_utf8_decode(const char *s, size_t n, uint32_t *cp) {
    uint32_t v;
    size_t bad;
    int k = utf8_scan((const unsigned char *)s, n, &v, &bad);
    if (k > 0) *cp = v;
    return k;
}

size_t s2s_utf8_valid_prefix(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (p[i] < 0x80) { i++; continue; } /* ASCII fast path */
        uint32_t cp;
        size_t bad;
        int k = utf8_scan(p + i, n - i, &cp, &bad);
        if (k < 0) return i;
        i += (size_t)k;
    }
    return n;
}

int s2s_utf8_valid(const char *s, size_t n) { return s2s_utf8_valid_prefix(s, n) == n; }

long s2s_utf8_count(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    long count = 0;
    for (size_t i = 0; i < n; count++) {
        uint32_t cp;
        size_t bad;
        int k = utf8_scan(p + i, n - i, &cp, &bad);
        if (k < 0) return -1;
        i += (size_t)k;
    }
    return count;
}

int s2s_utf8_encode(char *out, uint32_t cp) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    if (cp > 0x10FFFF) return 0;
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

char *s2s_utf8_sanitize(const char *s, size_t n, size_t *outlen) {
    /* Worst case: every byte becomes a 3-byte U+FFFD. */
    S2S_ASSERT(n <= (SIZE_MAX - 1) / 3);
    char *out = s2s_xmalloc(3 * n + 1);
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, j = 0;
    while (i < n) {
        uint32_t cp;
        size_t bad;
        int k = utf8_scan(p + i, n - i, &cp, &bad);
        if (k > 0) {
            memcpy(out + j, p + i, (size_t)k);
            i += (size_t)k;
            j += (size_t)k;
        } else {
            j += (size_t)s2s_utf8_encode(out + j, S2S_UTF8_REPLACEMENT);
            i += bad;
        }
    }
    out[j] = '\0';
    if (outlen) *outlen = j;
    return out;
}
