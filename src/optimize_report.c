/* optimize_report.c - the files `s2s optimize` keeps in OUT (optimize.h): results.tsv
 * (read back on resume, rewritten atomically), pareto.tsv, report.md, best.safetensors
 * and, when gnuplot is on PATH, pareto.png. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "io.h"
#include "json.h"
#include "metrics.h"
#include "optimize.h"
#include "pareto.h"

#define N_COLS 12
static const char header[] = "name\tmethod\ttau\tmetric\tquality\tdelta\tlatency_ms\tteacher_ms\tspeedup\tparams\tmb\tmodel\n";

static char *join(const char *dir, const char *file) {
    size_t n = strlen(dir) + strlen(file) + 2;
    char *p = s2s_xmalloc(n);
    snprintf(p, n, "%s/%s", dir, file);
    return p;
}

static int num(const char *s, double *out) {
    char *end;
    if (!strcmp(s, "-")) { *out = -1.0; return 0; }
    errno = 0;
    *out = strtod(s, &end);
    return errno || end == s || *end ? -1 : 0;
}

int s2s_opt_results_read(const char *path, s2s_opt_result **rows, int *n, char *err, size_t errlen) {
    *rows = NULL;
    *n = 0;
    if (access(path, F_OK) != 0) return 0;
    size_t nl = 0;
    char **lines = s2s_read_lines(path, &nl, err, errlen);
    if (!lines) return -1;
    int rc = -1;
    *rows = s2s_xcalloc(nl + 1, sizeof **rows);
    for (size_t i = 1; i < nl; i++) { /* line 0: the header */
        if (!lines[i][0]) continue;
        char *f[N_COLS], *p = lines[i];
        int k = 0;
        for (; k < N_COLS && p; k++) {
            f[k] = p;
            if ((p = strchr(p, '\t')) != NULL) *p++ = '\0';
        }
        s2s_opt_result *r = &(*rows)[*n];
        double params = 0;
        if (k != N_COLS || p || strlen(f[0]) >= sizeof r->name || strlen(f[1]) >= sizeof r->method ||
            strlen(f[11]) >= sizeof r->model || num(f[2], &r->tau) || num(f[4], &r->quality) || num(f[5], &r->delta) ||
            num(f[6], &r->ms) || num(f[7], &r->teacher_ms) || num(f[8], &r->speedup) || num(f[9], &params) ||
            num(f[10], &r->mb)) {
            s2s_errf(err, errlen, "%s:%zu: malformed result line (remove the line to redo that candidate's evaluation)", path, i + 1);
            goto out;
        }
        snprintf(r->name, sizeof r->name, "%s", f[0]);
        snprintf(r->method, sizeof r->method, "%s", f[1]);
        snprintf(r->model, sizeof r->model, "%s", f[11]);
        r->params = (long long)params;
        (*n)++;
    }
    rc = 0;
out:
    s2s_free_lines(lines, nl);
    if (rc) { free(*rows); *rows = NULL; *n = 0; }
    return rc;
}

static void put_row(s2s_strbuf *b, const s2s_opt_result *r, const char *metric) {
    char tau[32] = "-";
    if (r->tau >= 0) snprintf(tau, sizeof tau, "%g", r->tau);
    s2s_strbuf_appendf(b, "%s\t%s\t%s\t%s\t%.4f\t%+.4f\t%.6f\t%.6f\t%.4f\t%lld\t%.3f\t%s\n", r->name, r->method, tau, metric,
                       r->quality, r->delta, r->ms, r->teacher_ms, r->speedup, r->params, r->mb, r->model);
}

int s2s_opt_results_write(const char *path, const s2s_opt_result *rows, int n, const char *metric, char *err,
                          size_t errlen) {
    s2s_strbuf b;
    s2s_strbuf_init(&b);
    s2s_strbuf_puts(&b, header);
    for (int i = 0; i < n; i++) put_row(&b, &rows[i], metric);
    int rc = s2s_write_file_atomic(path, b.s, b.len, err, errlen);
    s2s_strbuf_free(&b);
    return rc;
}

double s2s_opt_loss(const s2s_opt_result *r, const char *metric) {
    return s2s_metric_higher_better(metric) ? -r->delta : r->delta;
}

/* latency relative to the teacher's, timed alongside */
static double rel_cost(const s2s_opt_result *r) { return r->teacher_ms > 0 ? r->ms / r->teacher_ms : NAN; }

int s2s_opt_best(const s2s_opt_result *rows, int n, const char *metric, float max_loss) {
    double *cost = s2s_xmalloc((size_t)(n + 1) * sizeof(double)), *loss = s2s_xmalloc((size_t)(n + 1) * sizeof(double));
    for (int i = 0; i < n; i++) {
        int teacher = !strcmp(rows[i].method, "teacher");
        cost[i] = teacher ? NAN : rel_cost(&rows[i]);
        loss[i] = s2s_opt_loss(&rows[i], metric);
    }
    int b = s2s_pareto_cheapest_within(cost, loss, n, max_loss, 1.0);
    free(cost); free(loss);
    return b;
}

/* Copy file src to dst atomically. */
static int copy_file(const char *src, const char *dst, char *err, size_t errlen) {
    FILE *f = fopen(src, "rb");
    if (!f) { s2s_errf(err, errlen, "cannot read %s: %s", src, strerror(errno)); return -1; }
    size_t cap = 1 << 20, n = 0, k;
    char *buf = s2s_xmalloc(cap);
    while ((k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) buf = s2s_xrealloc(buf, cap *= 2);
    }
    int bad = ferror(f);
    fclose(f);
    int rc = bad ? (s2s_errf(err, errlen, "cannot read %s", src), -1) : s2s_write_file_atomic(dst, buf, n, err, errlen);
    free(buf);
    return rc;
}

static void upper(char *dst, size_t n, const char *s) {
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) dst[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 'a' + 'A' : s[i]);
    dst[i] = '\0';
}

/* The gnuplot executable on PATH (malloc'd), or NULL. */
static char *find_gnuplot(void) {
    const char *path = getenv("PATH");
    if (!path || !*path) return NULL;
    char *dirs = s2s_xstrdup(path), *save = NULL, *found = NULL;
    for (char *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
        char *p = join(*d ? d : ".", "gnuplot");
        if (access(p, X_OK) == 0) found = p; else free(p);
    }
    free(dirs);
    return found;
}

/* OUT/pareto.png from the points (relative latency, quality), the front as a line.
 * Any failure is silent: the plot is a convenience. */
static void plot(const char *out, const s2s_opt_result *rows, int n, const int *front, const char *metric) {
    char *gp = find_gnuplot();
    if (!gp) return;
    char *dat = join(out, "pareto.dat"), *scr = join(out, "pareto.gp"), *tmp = join(out, "pareto.png.tmp");
    char *png = join(out, "pareto.png");
    FILE *f = fopen(dat, "w");
    if (!f) goto out;
    fprintf(f, "# relative_latency quality name (all rows)\n");
    for (int i = 0; i < n; i++) fprintf(f, "%.6f %.6f %s\n", rel_cost(&rows[i]), rows[i].quality, rows[i].name);
    fprintf(f, "\n\n# the Pareto front, by latency\n");
    int *order = s2s_xmalloc((size_t)(n + 1) * sizeof(int)), m = 0;
    for (int i = 0; i < n; i++) if (front[i]) order[m++] = i;
    for (int i = 1; i < m; i++) /* insertion sort by cost */
        for (int j = i; j > 0 && rel_cost(&rows[order[j]]) < rel_cost(&rows[order[j - 1]]); j--) {
            int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t;
        }
    for (int i = 0; i < m; i++) fprintf(f, "%.6f %.6f\n", rel_cost(&rows[order[i]]), rows[order[i]].quality);
    free(order);
    if (fclose(f) != 0) goto out;
    f = fopen(scr, "w");
    if (!f) goto out;
    char M[16], ylabel[64];
    upper(M, sizeof M, metric);
    snprintf(ylabel, sizeof ylabel, "dev %s (greedy; %s is better)", M, s2s_metric_higher_better(metric) ? "higher" : "lower");
    fprintf(f,
            "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) { set terminal pngcairo size 1000,650 } else { set terminal png size 1000,650 }\n"
            "set output 'pareto.png.tmp'\n"
            "set xlabel 'latency relative to the teacher (ms / teacher ms; batch 1, greedy, 1 CPU thread)'\n"
            "set ylabel '%s'\nset grid\nset key outside right\nset offsets graph 0.05, graph 0.05, graph 0.08, graph 0.05\n"
            "set title 's2s optimize: dev quality vs latency (line: Pareto front)'\n"
            "plot 'pareto.dat' index 1 using 1:2 with linespoints lw 2 pt 6 ps 2.4 lc rgb '#888888' title 'Pareto front', \\\n"
            "     'pareto.dat' index 0 using 1:2 with points pt 7 ps 1.3 title 'candidates', \\\n"
            "     'pareto.dat' index 0 using 1:2:3 with labels offset 0,0.8 font ',8' noenhanced notitle\n",
            ylabel);
    if (fclose(f) != 0) goto out;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) { dup2(null, 0); dup2(null, 1); dup2(null, 2); }
        if (chdir(out) == 0) execl(gp, "gnuplot", "pareto.gp", (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0 && access(tmp, F_OK) == 0)
        rename(tmp, png);
    else
        unlink(tmp);
out:
    free(gp); free(dat); free(scr); free(tmp); free(png);
}

static void fmt_params(char *buf, size_t n, long long p) {
    if (p >= 1000000) snprintf(buf, n, "%.2fM", (double)p / 1e6);
    else if (p >= 1000) snprintf(buf, n, "%.1fk", (double)p / 1e3);
    else snprintf(buf, n, "%lld", p);
}

int s2s_opt_report(const char *out_dir, const s2s_opt_result *rows, int n, const s2s_opt_report_info *in,
                   int *best_out, char *err, size_t errlen) {
    int rc = -1;
    double *cost = s2s_xmalloc((size_t)(n + 1) * sizeof(double)), *qual = s2s_xmalloc((size_t)(n + 1) * sizeof(double));
    int *front = s2s_xcalloc((size_t)n + 1, sizeof(int));
    for (int i = 0; i < n; i++) { cost[i] = rel_cost(&rows[i]); qual[i] = rows[i].quality; }
    int hb = s2s_metric_higher_better(in->metric);
    s2s_pareto_front(cost, qual, n, hb, front);
    int best = s2s_opt_best(rows, n, in->metric, in->max_loss);
    if (best_out) *best_out = best;
    char *p_pareto = join(out_dir, "pareto.tsv"), *p_report = join(out_dir, "report.md");
    char *p_best = join(out_dir, "best.safetensors"), *p_png = join(out_dir, "pareto.png");
    s2s_strbuf b;
    s2s_strbuf_init(&b);
    /* pareto.tsv: the front, fastest first */
    s2s_strbuf_puts(&b, header);
    int *order = s2s_xmalloc((size_t)(n + 1) * sizeof(int)), m = 0;
    for (int i = 0; i < n; i++) if (front[i]) order[m++] = i;
    for (int i = 1; i < m; i++)
        for (int j = i; j > 0 && cost[order[j]] < cost[order[j - 1]]; j--) { int t = order[j]; order[j] = order[j - 1]; order[j - 1] = t; }
    for (int i = 0; i < m; i++) put_row(&b, &rows[order[i]], in->metric);
    free(order);
    if (s2s_write_file_atomic(p_pareto, b.s, b.len, err, errlen) != 0) goto out;
    /* best.safetensors */
    if (best >= 0) {
        char *src = join(out_dir, rows[best].model);
        int c = copy_file(src, p_best, err, errlen);
        free(src);
        if (c != 0) goto out;
    } else if (unlink(p_best) != 0 && errno != ENOENT) {
        s2s_errf(err, errlen, "cannot remove %s: %s", p_best, strerror(errno));
        goto out;
    }
    plot(out_dir, rows, n, front, in->metric);
    /* report.md */
    char M[16];
    upper(M, sizeof M, in->metric);
    s2s_strbuf_clear(&b);
    s2s_strbuf_appendf(&b, "# s2s optimize: %s\n\n", in->teacher);
    s2s_strbuf_appendf(&b, "- data: `%s` (quality: greedy decoding of the first %d dev lines)\n", in->data, in->eval_lines);
    s2s_strbuf_appendf(&b, "- metric: dev %s, %s is better; delta = candidate - teacher; allowed loss (`--max-loss`): %g\n", M,
                       hb ? "higher" : "lower", in->max_loss);
    s2s_strbuf_appendf(&b, "- latency: ms per sentence at batch 1, greedy, 1 CPU thread, the first %d dev sentences, "
                           "best of %d runs, each candidate timed interleaved with the teacher in the same process; "
                           "speed-up = teacher ms / candidate ms\n", in->latency_lines, in->repeat);
    s2s_strbuf_appendf(&b, "- search space: %s; training budget %d steps per stage; models stored in %s\n", in->space_name,
                       in->steps, in->fp16 ? "fp16" : "fp32");
    s2s_strbuf_appendf(&b, "- progress: %d of %d candidates evaluated%s\n", in->done, in->total,
                       in->done < in->total ? " (run the same command again to continue)" : "");
    s2s_strbuf_puts(&b, "- Pareto (*): no other row is at least as good in both quality and latency relative to the "
                        "teacher and better in one\n\n");
    s2s_strbuf_appendf(&b, "| candidate | method | dev %s | delta | latency ms | speed-up | params | MB | Pareto |\n", M);
    s2s_strbuf_puts(&b, "|---|---|---:|---:|---:|---:|---:|---:|:-:|\n");
    for (int i = 0; i < n; i++) {
        const s2s_opt_result *r = &rows[i];
        char pp[32];
        fmt_params(pp, sizeof pp, r->params);
        s2s_strbuf_appendf(&b, "| %s%s%s | %s | %.2f | %+.2f | %.3f | %.2fx | %s | %.1f | %s%s |\n", i == best ? "**" : "",
                           r->name, i == best ? "**" : "", r->method, r->quality, r->delta, r->ms, r->speedup, pp, r->mb,
                           front[i] ? "*" : "", i == best ? " best" : "");
    }
    s2s_strbuf_puts(&b, "\n");
    if (best >= 0) {
        const s2s_opt_result *r = &rows[best];
        s2s_strbuf_appendf(&b, "**Fastest within a loss of %g: `%s`** (dev %s %.2f, %+.2f against the teacher; %.3f ms per sentence, "
                               "%.2fx the teacher's speed), copied to `best.safetensors` from `%s`.", in->max_loss, r->name, M,
                           r->quality, r->delta, r->ms, r->speedup, r->model);
        if (r->tau >= 0)
            s2s_strbuf_appendf(&b, " DEED early exit is a decoding flag: decode it with `s2s translate -m best.safetensors "
                                   "--exit-threshold %g`.", r->tau);
        s2s_strbuf_puts(&b, "\n");
    } else {
        s2s_strbuf_appendf(&b, "**No candidate within a loss of %g is faster than the teacher**: keep the teacher "
                               "(no `best.safetensors`).\n", in->max_loss);
    }
    if (access(p_png, F_OK) == 0) s2s_strbuf_puts(&b, "\n![dev quality vs latency](pareto.png)\n");
    if (s2s_write_file_atomic(p_report, b.s, b.len, err, errlen) != 0) goto out;
    rc = 0;
out:
    s2s_strbuf_free(&b);
    free(cost); free(qual); free(front);
    free(p_pareto); free(p_report); free(p_best); free(p_png);
    return rc;
}
