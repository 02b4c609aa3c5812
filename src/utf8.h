/* utf8.h - strict UTF-8 validation, decoding and encoding.
 *
 * "Strict" means well-formed per Unicode Table 3-7 / RFC 3629: no overlong
 * forms, no surrogates (U+D800..U+DFFF), nothing above U+10FFFF, no truncated
 * or stray continuation bytes. The tokenizer (tokenizer.c) rejects text that is
 * not valid; callers that prefer to repair input use s2s_utf8_sanitize().
 *
 *   uint32_t cp;
 *   for (size_t i = 0; i < n;) {
 *       int k = s2s_utf8_decode(s + i, n - i, &cp);
 *       if (k < 0) break;               // ill-formed at byte i
 *       i += (size_t)k;
 *   }
 */
#ifndef S2S_UTF8_H
#define S2S_UTF8_H

#include <stddef.h>
#include <stdint.h>

#define S2S_UTF8_REPLACEMENT 0xFFFDu

/* 1 if s[0..n) is well-formed UTF-8, else 0. (A NUL byte is valid UTF-8.) */
int s2s_utf8_valid(const char *s, size_t n);

/* Length of the longest well-formed prefix of s[0..n) that ends on a code point
 * boundary (== n when all of it is valid): the byte offset of the first error. */
size_t s2s_utf8_valid_prefix(const char *s, size_t n);

/* Decodes the code point starting at s (at most n bytes are read) into *cp.
 * Returns its byte length 1..4, or -1 if the bytes there are ill-formed
 * (or n == 0); *cp is untouched on error. */
int s2s_utf8_decode(const char *s, size_t n, uint32_t *cp);

/* Writes the UTF-8 form of cp into out (room for 4 bytes, no NUL written).
 * Returns the byte count 1..4, or 0 if cp is a surrogate or above U+10FFFF. */
int s2s_utf8_encode(char *out, uint32_t cp);

/* Number of code points in well-formed s[0..n); -1 if it is ill-formed. */
long s2s_utf8_count(const char *s, size_t n);

/* Malloc'd NUL-terminated copy of s[0..n) in which every maximal ill-formed
 * subpart (Unicode's "substitution of maximal subparts") is replaced by U+FFFD.
 * *outlen (if non-NULL) receives the byte length without the NUL. Free with free(). */
char *s2s_utf8_sanitize(const char *s, size_t n, size_t *outlen);

#endif
