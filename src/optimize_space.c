/* optimize_space.c - the search space of `s2s optimize` (optimize.h): the candidate
 * syntax ("nash n=2 t=0.3 + ssru layers=1"), canonical names and the default space. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "config.h"
#include "optimize.h"

const char s2s_opt_default_space[] =
    "# the default search space of s2s optimize (s2s optimize --help)\n"
    "nash n=2 t=0\n"
    "nash n=2 t=0.3\n"
    "nash n=1 t=0.3\n"
    "ssru layers=2\n"
    "ssru layers=1\n"
    "nash n=2 t=0.3 + ssru layers=1\n"
    "deed tau=0.6,0.8,0.9\n"
    "t2r k=32\n";

static const char *const method_names[] = {"nash", "ssru", "gru", "lstm", "deed", "t2r"};

static int parse_int(const char *v, long lo, long hi, int *out) {
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) return -1;
    *out = (int)x;
    return 0;
}

static int parse_float(const char *v, double lo, double hi, float *out) {
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi) return -1;
    *out = (float)x;
    return 0;
}

/* "0.6,0.8,0.9" -> s->tau; -1 + message */
static int parse_taus(s2s_opt_stage *s, char *v, char *msg, size_t mlen) {
    s->n_tau = 0;
    for (char *save = NULL, *tok = strtok_r(v, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        float t;
        if (parse_float(tok, 0, 1e30, &t)) { snprintf(msg, mlen, "tau: '%s' is not a threshold >= 0", tok); return -1; }
        if (s->n_tau == S2S_OPT_MAX_TAU) { snprintf(msg, mlen, "tau: more than %d thresholds", S2S_OPT_MAX_TAU); return -1; }
        for (int i = 0; i < s->n_tau; i++)
            if (s->tau[i] == t) { snprintf(msg, mlen, "tau: %g given twice", t); return -1; }
        s->tau[s->n_tau++] = t;
    }
    if (s->n_tau == 0) { snprintf(msg, mlen, "tau: no threshold given"); return -1; }
    return 0;
}

static void stage_name(s2s_opt_stage *s) {
    switch (s->method) {
    case S2S_OPT_NASH: snprintf(s->name, sizeof s->name, "nash-n%d-t%g", s->n, s->t); break;
    case S2S_OPT_RNN: snprintf(s->name, sizeof s->name, "%s-l%d%s", s->rnn, s->layers, s->ffn ? "" : "-noffn"); break;
    case S2S_OPT_DEED: snprintf(s->name, sizeof s->name, "deed-r%d", s->rank); break;
    default:
        if (s->map == S2S_T2R_MAP_ELU) snprintf(s->name, sizeof s->name, "t2r-elu");
        else snprintf(s->name, sizeof s->name, "t2r-k%d", s->k);
    }
}

/* One stage from its words (modified in place); -1 + message. */
static int parse_stage(s2s_opt_stage *s, char *text, char *msg, size_t mlen) {
    memset(s, 0, sizeof *s);
    s->n = 2; s->t = 0.3f; s->layers = 1; s->ffn = 1; s->rank = S2S_EXIT_RANK_DEFAULT;
    s->n_tau = 1; s->tau[0] = 0.8f; s->k = S2S_T2R_K_DEFAULT; s->map = S2S_T2R_MAP_RELU;
    char *save = NULL, *w = strtok_r(text, " \t\r", &save);
    if (!w) { snprintf(msg, mlen, "empty stage (a '+' with nothing on one side)"); return -1; }
    int m = -1;
    for (int i = 0; i < 6; i++) if (!strcmp(w, method_names[i])) m = i;
    if (m < 0) { snprintf(msg, mlen, "unknown method '%.40s' (nash, ssru, gru, lstm, deed or t2r)", w); return -1; }
    s->method = m == 0 ? S2S_OPT_NASH : m <= 3 ? S2S_OPT_RNN : m == 4 ? S2S_OPT_DEED : S2S_OPT_T2R;
    if (s->method == S2S_OPT_RNN) snprintf(s->rnn, sizeof s->rnn, "%s", w);
    const char *method = method_names[m];
    while ((w = strtok_r(NULL, " \t\r", &save)) != NULL) {
        char *eq = strchr(w, '=');
        if (!eq || eq == w || !eq[1]) { snprintf(msg, mlen, "%s: expected key=value, got '%.40s'", method, w); return -1; }
        *eq = '\0';
        const char *k = w;
        char *v = eq + 1;
        int bad = 0, known = 1;
        if (s->method == S2S_OPT_NASH && !strcmp(k, "n")) bad = parse_int(v, 1, S2S_MAX_LAYERS, &s->n);
        else if (s->method == S2S_OPT_NASH && !strcmp(k, "t")) bad = parse_float(v, 0, 0.99, &s->t);
        else if (s->method == S2S_OPT_RNN && !strcmp(k, "layers")) bad = parse_int(v, 1, S2S_MAX_LAYERS, &s->layers);
        else if (s->method == S2S_OPT_RNN && !strcmp(k, "ffn")) bad = parse_int(v, 0, 1, &s->ffn);
        else if (s->method == S2S_OPT_DEED && !strcmp(k, "rank")) bad = parse_int(v, 1, 65536, &s->rank);
        else if (s->method == S2S_OPT_DEED && !strcmp(k, "tau")) { if (parse_taus(s, v, msg, mlen)) return -1; }
        else if (s->method == S2S_OPT_T2R && !strcmp(k, "k")) bad = parse_int(v, 1, 4096, &s->k);
        else if (s->method == S2S_OPT_T2R && !strcmp(k, "map")) {
            if (!strcmp(v, "relu")) s->map = S2S_T2R_MAP_RELU;
            else if (!strcmp(v, "elu")) s->map = S2S_T2R_MAP_ELU;
            else bad = 1;
        } else known = 0;
        if (!known) {
            static const char *const keys[] = {"n, t", "layers, ffn", "tau, rank", "k, map"};
            snprintf(msg, mlen, "%s: unknown key '%.40s' (%s)", method, k, keys[s->method]);
            return -1;
        }
        if (bad) {
            static const char *const ranges[] = {"n: 1..256, t: 0..0.99", "layers: 1..256, ffn: 0 or 1",
                                                 "rank: 1..65536", "k: 1..4096, map: relu or elu"};
            snprintf(msg, mlen, "%s: bad value %s=%.40s (%s)", method, k, v, ranges[s->method]);
            return -1;
        }
    }
    stage_name(s);
    return 0;
}

/* One line (comment stripped, modified in place) -> c; -1 + message. */
static int parse_cand(s2s_opt_cand *c, char *line, char *msg, size_t mlen) {
    memset(c, 0, sizeof *c);
    char *parts[2];
    int np = 0;
    for (char *p = line; p; np++) {
        if (np == 2) { snprintf(msg, mlen, "a stack has at most two stages (NASH, then one other method)"); return -1; }
        parts[np] = p;
        if ((p = strchr(p, '+')) != NULL) *p++ = '\0';
    }
    for (int i = 0; i < np; i++)
        if (parse_stage(&c->st[i], parts[i], msg, mlen)) return -1;
    c->n_stages = np;
    if (np == 2 && (c->st[0].method != S2S_OPT_NASH || c->st[1].method == S2S_OPT_NASH)) {
        snprintf(msg, mlen, "'%s' on '%s': a stack is a NASH stage then one other method", c->st[1].name, c->st[0].name);
        return -1;
    }
    snprintf(c->name, sizeof c->name, "%s%s%s", c->st[0].name, np == 2 ? "+" : "", np == 2 ? c->st[1].name : "");
    return 0;
}

int s2s_opt_space_parse(const char *text, const char *where, s2s_opt_cand **cands, int *n, char *err,
                        size_t errlen) {
    *cands = NULL;
    *n = 0;
    char *buf = s2s_xstrdup(text);
    int cap = 0, rc = -1, lineno = 0;
    for (char *line = buf, *next; line; line = next) { /* by hand: strtok would skip empty lines */
        lineno++;
        char *nl = strchr(line, '\n');
        next = nl ? nl + 1 : NULL;
        if (nl) *nl = '\0';
        char *hash = strchr(line, '#');
        if (hash) *hash = '\0';
        while (isspace((unsigned char)*line)) line++;
        if (!*line) continue;
        if (*n == cap) { cap = cap ? 2 * cap : 16; *cands = s2s_xrealloc(*cands, (size_t)cap * sizeof **cands); }
        s2s_opt_cand *c = &(*cands)[*n];
        char msg[256];
        if (parse_cand(c, line, msg, sizeof msg)) { s2s_errf(err, errlen, "%s:%d: %s", where, lineno, msg); goto out; }
        c->line = lineno;
        for (int i = 0; i < *n; i++)
            if (!strcmp((*cands)[i].name, c->name)) {
                s2s_errf(err, errlen, "%s:%d: candidate '%s' is already on line %d", where, lineno, c->name, (*cands)[i].line);
                goto out;
            }
        (*n)++;
    }
    if (*n == 0) { s2s_errf(err, errlen, "%s: no candidate (one per line, e.g. 'nash n=2 t=0.3')", where); goto out; }
    rc = 0;
out:
    free(buf);
    if (rc) { free(*cands); *cands = NULL; *n = 0; }
    return rc;
}
