/* cmd_bpe.c - `s2s bpe`: learn a tokenizer from a corpus, apply it, invert it.
 *
 *   s2s bpe learn --vocab 8000 [--min-freq N] [--kind bpe|char|symbol] -o FILE < corpus
 *   s2s bpe encode -t FILE [--ids] < text      one line of pieces (or ids) per line
 *   s2s bpe decode -t FILE [--ids] < pieces    one line of text per line
 *
 * FILE holds the blob of s2s_tok_serialize() (tokenizer.h), written atomically;
 * the model code stores the same blob inside checkpoints. Errors are one line
 * on stderr starting with "s2s bpe: "; exit status 1 runtime, 2 usage. */
#include "cli.h"
#include "common.h"
#include "tokenizer.h"

#include <errno.h>
#include <limits.h>
#include <string.h>

static const char *const usage_text =
    "usage: s2s bpe learn --vocab N [--min-freq N] [--kind bpe|char|symbol] -o FILE < corpus\n"
    "       s2s bpe encode -t FILE [--ids] < text\n"
    "       s2s bpe decode -t FILE [--ids] < pieces\n"
    "  learn   learns a tokenizer (default kind bpe; --vocab 0 = no limit) from stdin lines\n"
    "  encode  prints each stdin line as space-separated pieces (--ids: ids)\n"
    "  decode  reads space-separated pieces (--ids: ids) and prints the text\n";

static int usage_error(const char *msg, const char *arg) {
    if (arg) fprintf(stderr, "s2s bpe: %s: %s (see s2s bpe --help)\n", msg, arg);
    else fprintf(stderr, "s2s bpe: %s (see s2s bpe --help)\n", msg);
    return 2;
}

/* Strict decimal int in [lo, hi]; returns 0 on success. */
static int parse_int(const char *s, long lo, long hi, int *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

/* Reads one line from f without its "\n" / "\r\n" into *buf (getline-managed).
 * Returns its length, -1 at end of input, -2 if it contains a NUL byte. */
static long read_line(FILE *f, char **buf, size_t *cap) {
    ssize_t n = getline(buf, cap, f);
    if (n < 0) return -1;
    if (n > 0 && (*buf)[n - 1] == '\n') (*buf)[--n] = '\0';
    if (n > 0 && (*buf)[n - 1] == '\r') (*buf)[--n] = '\0';
    if (strlen(*buf) != (size_t)n) return -2;
    return (long)n;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { s2s_errf(err, errlen, "cannot open %s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = s2s_xmalloc(cap);
    for (;;) {
        if (n == cap) buf = s2s_xrealloc(buf, cap *= 2);
        size_t k = fread(buf + n, 1, cap - n, f);
        n += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { s2s_errf(err, errlen, "cannot read %s", path); free(buf); return NULL; }
    *len = n;
    return buf;
}

static s2s_tokenizer *load_tokenizer(const char *path) {
    char err[512];
    size_t len;
    char *blob = read_file(path, &len, err, sizeof err);
    s2s_tokenizer *t = blob ? s2s_tok_deserialize(blob, len, err, sizeof err) : NULL;
    if (!blob) fprintf(stderr, "s2s bpe: %s\n", err);
    else if (!t) fprintf(stderr, "s2s bpe: %s: %s\n", path, err);
    free(blob);
    return t;
}

static int finish_output(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "s2s bpe: write error on stdout: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

static int cmd_learn(int vocab, int min_freq, s2s_tok_kind kind, const char *out) {
    size_t n = 0, cap = 0, lcap = 0;
    char **lines = NULL, *buf = NULL;
    long len;
    int rc = 1;
    while ((len = read_line(stdin, &buf, &lcap)) != -1) {
        if (len == -2) {
            fprintf(stderr, "s2s bpe: stdin line %zu contains a NUL byte\n", n + 1);
            goto done;
        }
        if (n == cap) lines = s2s_xrealloc(lines, (cap = cap ? 2 * cap : 4096) * sizeof *lines);
        lines[n++] = s2s_xstrdup(buf);
    }
    if (ferror(stdin)) { fprintf(stderr, "s2s bpe: cannot read stdin\n"); goto done; }
    char err[512];
    double t0 = s2s_now();
    s2s_tokenizer *t = s2s_tok_learn(kind, (const char *const *)lines, n, vocab, min_freq, err,
                                     sizeof err);
    double secs = s2s_now() - t0;
    if (!t) { fprintf(stderr, "s2s bpe: %s\n", err); goto done; }
    size_t blen;
    char *blob = s2s_tok_serialize(t, &blen);
    if (s2s_write_file_atomic(out, blob, blen, err, sizeof err) != 0) {
        fprintf(stderr, "s2s bpe: %s\n", err);
    } else {
        fprintf(stderr, "s2s bpe: %s tokenizer, %d pieces", s2s_tok_kind_name(kind),
                s2s_tok_vocab_size(t));
        if (kind == S2S_TOK_BPE) fprintf(stderr, " (%d merges)", s2s_tok_n_merges(t));
        fprintf(stderr, " learned from %zu lines in %.2f s -> %s\n", n, secs, out);
        rc = 0;
    }
    free(blob);
    s2s_tok_free(t);
done:
    for (size_t i = 0; i < n; i++) free(lines[i]);
    free(lines);
    free(buf);
    return rc;
}

static int cmd_encode(const s2s_tokenizer *t, int as_ids) {
    char *buf = NULL;
    size_t lcap = 0, lineno = 0;
    int cap = 256, rc = 0;
    int32_t *ids = s2s_xmalloc((size_t)cap * sizeof *ids);
    long len;
    while ((len = read_line(stdin, &buf, &lcap)) != -1) {
        lineno++;
        if (len == -2) {
            fprintf(stderr, "s2s bpe: stdin line %zu contains a NUL byte\n", lineno);
            rc = 1;
            break;
        }
        int k = s2s_tok_encode(t, buf, ids, cap);
        if (k > cap) {
            cap = k;
            ids = s2s_xrealloc(ids, (size_t)cap * sizeof *ids);
            k = s2s_tok_encode(t, buf, ids, cap);
        }
        if (k < 0) {
            fprintf(stderr, "s2s bpe: stdin line %zu is not valid UTF-8\n", lineno);
            rc = 1;
            break;
        }
        for (int i = 0; i < k; i++) {
            if (i) putchar(' ');
            if (as_ids) printf("%d", (int)ids[i]);
            else fputs(s2s_tok_piece(t, ids[i]), stdout);
        }
        putchar('\n');
    }
    free(ids);
    free(buf);
    return finish_output() || rc;
}

static int cmd_decode(const s2s_tokenizer *t, int as_ids) {
    char *buf = NULL;
    size_t lcap = 0, lineno = 0, cap = 256;
    int rc = 0;
    int32_t *ids = s2s_xmalloc(cap * sizeof *ids);
    long len;
    while ((len = read_line(stdin, &buf, &lcap)) != -1) {
        lineno++;
        if (len == -2) {
            fprintf(stderr, "s2s bpe: stdin line %zu contains a NUL byte\n", lineno);
            rc = 1;
            break;
        }
        size_t n = 0;
        for (char *tok = strtok(buf, " \t\r\v\f"); tok; tok = strtok(NULL, " \t\r\v\f")) {
            int id;
            if (as_ids) {
                if (parse_int(tok, INT_MIN, INT_MAX, &id) != 0) {
                    fprintf(stderr, "s2s bpe: stdin line %zu: not an id: %s\n", lineno, tok);
                    rc = 1;
                    goto done;
                }
            } else {
                id = s2s_tok_id(t, tok);
                if (id < 0) id = S2S_UNK;
            }
            if (n == cap) ids = s2s_xrealloc(ids, (cap *= 2) * sizeof *ids);
            ids[n++] = id;
        }
        S2S_ASSERT(n <= INT_MAX);
        char *text = s2s_tok_decode(t, ids, (int)n);
        puts(text);
        free(text);
    }
done:
    free(ids);
    free(buf);
    return finish_output() || rc;
}

int s2s_cmd_bpe(int argc, char **argv) {
    if (argc < 2) return usage_error("missing action (learn, encode or decode)", NULL);
    const char *action = argv[1];
    if (!strcmp(action, "-h") || !strcmp(action, "--help") || !strcmp(action, "help")) {
        fputs(usage_text, stdout);
        return 0;
    }
    int learn = !strcmp(action, "learn"), encode = !strcmp(action, "encode"),
        decode = !strcmp(action, "decode");
    if (!learn && !encode && !decode) return usage_error("unknown action", action);

    int vocab = -1, min_freq = 1, as_ids = 0;
    s2s_tok_kind kind = S2S_TOK_BPE;
    const char *out = NULL, *tokfile = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
        char name[32];
        size_t nl = eq ? (size_t)(eq - a) : strlen(a);
        if (nl >= sizeof name) return usage_error("unknown option", a);
        memcpy(name, a, nl);
        name[nl] = '\0';
        int takes = !strcmp(name, "--vocab") || !strcmp(name, "--min-freq") ||
                    !strcmp(name, "--kind") || !strcmp(name, "-o") || !strcmp(name, "--output") ||
                    !strcmp(name, "-t") || !strcmp(name, "--tokenizer");
        if (takes) {
            if (eq) val = eq + 1;
            else if (i + 1 < argc) val = argv[++i];
            else return usage_error("option needs a value", name);
        } else if (eq) {
            return usage_error("option takes no value", a);
        }
        if (!strcmp(name, "-h") || !strcmp(name, "--help")) {
            fputs(usage_text, stdout);
            return 0;
        } else if (learn && !strcmp(name, "--vocab")) {
            if (parse_int(val, 0, 1 << 24, &vocab) != 0) return usage_error("bad --vocab", val);
        } else if (learn && !strcmp(name, "--min-freq")) {
            if (parse_int(val, 1, INT_MAX, &min_freq) != 0) return usage_error("bad --min-freq", val);
        } else if (learn && !strcmp(name, "--kind")) {
            kind = s2s_tok_kind_parse(val);
            if (!kind) return usage_error("bad --kind (bpe, char or symbol)", val);
        } else if (learn && (!strcmp(name, "-o") || !strcmp(name, "--output"))) {
            out = val;
        } else if (!learn && (!strcmp(name, "-t") || !strcmp(name, "--tokenizer"))) {
            tokfile = val;
        } else if (!learn && !strcmp(name, "--ids")) {
            as_ids = 1;
        } else {
            return usage_error("unknown option", a);
        }
    }
    if (learn) {
        if (vocab < 0) return usage_error("learn needs --vocab N", NULL);
        if (vocab > 0 && vocab <= S2S_NSPECIAL) return usage_error("--vocab must be 0 or above 4", NULL);
        if (!out) return usage_error("learn needs -o FILE", NULL);
        return cmd_learn(vocab, min_freq, kind, out);
    }
    if (!tokfile) return usage_error("needs -t FILE", NULL);
    s2s_tokenizer *t = load_tokenizer(tokfile);
    if (!t) return 1;
    int rc = encode ? cmd_encode(t, as_ids) : cmd_decode(t, as_ids);
    s2s_tok_free(t);
    return rc;
}
