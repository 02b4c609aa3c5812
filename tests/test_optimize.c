/* test_optimize.c - `s2s optimize` (optimize.h, pareto.h): the Pareto front and the
 * cheapest-within-a-loss pick as pure functions (hand cases and a brute-force property
 * check), the search-space syntax (names, stacks, errors with line numbers),
 * results.tsv round trips, and the command end to end on a tiny teacher with a
 * three-candidate space (NASH, NASH + SSRU reusing it, DEED at two thresholds) and a
 * handful of steps: stopped after one candidate and resumed, the files consistent
 * (front non-dominated, best within --max-loss or absent with a message), re-picked
 * with another --max-loss without training, a lost result re-measured without
 * retraining, changed settings refused; a failing candidate reported while the others
 * go on; bad flags and missing files give one-line errors. Uses the binary in $S2S_BIN
 * for the CLI cases. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "model.h"
#include "optimize.h"
#include "pareto.h"
#include "test_util.h"

/* ------------------------------------------------------ Pareto front */

Test(optimize, pareto_front_hand_cases) {
    /* lower quality is better (WER) */
    double cost[] = {1.0, 0.5, 0.8, 0.3, 2.0, NAN, 0.8};
    double wer[] = {30, 31, 30, 35, 29, 10, 30};
    int on[7];
    int n = s2s_pareto_front(cost, wer, 7, 0, on);
    int want[] = {0, 1, 1, 1, 1, 0, 1}; /* 0: beaten by 2 (cheaper, same WER); 5: NaN; 2 and 6 equal: both stay */
    for (int i = 0; i < 7; i++) cr_assert_eq(on[i], want[i], "point %d", i);
    cr_assert_eq(n, 5);
    /* higher quality is better (BLEU): the same points mirrored */
    double bleu[] = {-30, -31, -30, -35, -29, -10, -30};
    cr_assert_eq(s2s_pareto_front(cost, bleu, 7, 1, on), 5);
    for (int i = 0; i < 7; i++) cr_assert_eq(on[i], want[i], "bleu point %d", i);
    /* one point; none */
    cr_assert_eq(s2s_pareto_front(cost, wer, 1, 0, on), 1);
    cr_assert_eq(s2s_pareto_front(cost, wer, 0, 0, on), 0);
}

Test(optimize, pareto_front_is_exactly_the_non_dominated_set) {
    uint64_t rng = 7;
    double cost[40], q[40];
    int on[40];
    for (int trial = 0; trial < 200; trial++) {
        int n = 1 + (int)(s2s_rng_next(&rng) % 40), hb = trial & 1;
        for (int i = 0; i < n; i++) { /* coarse grid: many ties */
            cost[i] = (double)(s2s_rng_next(&rng) % 8);
            q[i] = (double)(s2s_rng_next(&rng) % 8);
        }
        int count = s2s_pareto_front(cost, q, n, hb, on), c2 = 0;
        for (int i = 0; i < n; i++) {
            int dominated = 0;
            for (int j = 0; j < n; j++) {
                int qge = hb ? q[j] >= q[i] : q[j] <= q[i], qgt = hb ? q[j] > q[i] : q[j] < q[i];
                if (cost[j] <= cost[i] && qge && (cost[j] < cost[i] || qgt)) dominated = 1;
            }
            cr_assert_eq(on[i], !dominated, "trial %d point %d", trial, i);
            c2 += on[i];
        }
        cr_assert_eq(count, c2);
        cr_assert(count >= 1);
    }
}

Test(optimize, cheapest_within_a_loss) {
    double cost[] = {0.9, 0.4, 0.5, 0.4, 1.2, NAN};
    double loss[] = {0.0, 2.0, 0.5, 0.3, -1.0, 0.0};
    cr_assert_eq(s2s_pareto_cheapest_within(cost, loss, 6, 1.0, 1.0), 3); /* 1 is too lossy; 3 beats 2; tie at 0.4 */
    cr_assert_eq(s2s_pareto_cheapest_within(cost, loss, 6, 2.0, 1.0), 3); /* tie 1 vs 3 at 0.4: the smaller loss */
    cr_assert_eq(s2s_pareto_cheapest_within(cost, loss, 6, 0.1, 1.0), 0);
    cr_assert_eq(s2s_pareto_cheapest_within(cost, loss, 6, 0.1, 0.8), -1); /* 0 is not below max_cost */
    cr_assert_eq(s2s_pareto_cheapest_within(cost, loss, 6, -2.0, 10.0), -1);
    cr_assert_eq(s2s_pareto_cheapest_within(cost, loss, 6, -1.0, 10.0), 4);
}

/* ------------------------------------------------------ search space */

Test(optimize, space_syntax_names_and_defaults) {
    s2s_opt_cand *c;
    int n;
    char err[256];
    cr_assert_eq(s2s_opt_space_parse(s2s_opt_default_space, "default", &c, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 8);
    cr_assert_str_eq(c[0].name, "nash-n2-t0");
    cr_assert_str_eq(c[5].name, "nash-n2-t0.3+ssru-l1");
    cr_assert_eq(c[5].n_stages, 2);
    cr_assert_str_eq(c[5].st[0].name, "nash-n2-t0.3");
    cr_assert_str_eq(c[6].name, "deed-r64");
    cr_assert_eq(c[6].st[0].n_tau, 3);
    cr_assert_str_eq(c[7].name, "t2r-k32");
    free(c);
    const char *text = "# comment\n\n  gru layers=2 ffn=0   # trailing comment\n"
                       "lstm\nt2r map=elu\r\nnash n=3 t=0.5 + deed tau=0.7,1.5 rank=16\nnash+t2r k=8\n";
    cr_assert_eq(s2s_opt_space_parse(text, "s.txt", &c, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(c[0].name, "gru-l2-noffn");
    cr_assert_eq(c[0].line, 3);
    cr_assert_str_eq(c[1].name, "lstm-l1");
    cr_assert_str_eq(c[2].name, "t2r-elu");
    cr_assert_eq(c[2].st[0].map, S2S_T2R_MAP_ELU);
    cr_assert_str_eq(c[3].name, "nash-n3-t0.5+deed-r16");
    cr_assert(c[3].st[1].n_tau == 2 && c[3].st[1].tau[1] == 1.5f);
    cr_assert_str_eq(c[4].name, "nash-n2-t0.3+t2r-k8"); /* defaults n=2 t=0.3 */
    free(c);
    static const struct { const char *text, *msg; } bad[] = {
        {"nash\nfoo n=1\n", "s.txt:2: unknown method 'foo'"},
        {"nash n=0\n", "s.txt:1: nash: bad value n=0"},
        {"nash m=1\n", "s.txt:1: nash: unknown key 'm' (n, t)"},
        {"ssru layers\n", "expected key=value"},
        {"ssru ffn=2\n", "bad value ffn=2"},
        {"deed tau=0.5,x\n", "tau: 'x'"},
        {"deed tau=0.5,0.5\n", "given twice"},
        {"t2r map=tanh\n", "bad value map=tanh"},
        {"ssru + nash\n", "a stack is a NASH stage then one other method"},
        {"nash + nash\n", "a stack is a NASH stage then one other method"},
        {"nash + ssru + deed\n", "at most two stages"},
        {"nash +\n", "empty stage"},
        {"ssru\n# x\nssru layers=1\n", "s.txt:3: candidate 'ssru-l1' is already on line 1"},
        {"# nothing\n\n", "s.txt: no candidate"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_neq(s2s_opt_space_parse(bad[i].text, "s.txt", &c, &n, err, sizeof err), 0, "%s", bad[i].text);
        cr_assert(strstr(err, bad[i].msg), "%s: %s", bad[i].text, err);
        cr_assert_null(c);
    }
}

Test(optimize, results_tsv_round_trip_and_errors) {
    char *dir = tu_tmpdir(), *p = tu_path(dir, "results.tsv"), err[256];
    s2s_opt_result r[2];
    r[0] = (s2s_opt_result){"teacher", "teacher", -1, 30.5, 0, 8.25, 8.25, 1, 11083008, 22.189, "/m/t.safetensors"};
    r[1] = (s2s_opt_result){"deed-r64@0.8", "deed", 0.8, 31.25, 0.75, 4.5, 8.5, 8.5 / 4.5, 11200000, 22.5, "cand/deed-r64/final.safetensors"};
    cr_assert_eq(s2s_opt_results_write(p, r, 2, "wer", err, sizeof err), 0, "%s", err);
    s2s_opt_result *back;
    int n;
    cr_assert_eq(s2s_opt_results_read(p, &back, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(back[1].name, "deed-r64@0.8");
    cr_assert_str_eq(back[1].model, "cand/deed-r64/final.safetensors");
    cr_assert(fabs(back[1].tau - 0.8) < 1e-9 && back[0].tau == -1.0);
    cr_assert(fabs(back[1].delta - 0.75) < 1e-9 && back[1].params == 11200000);
    cr_assert(fabs(s2s_opt_loss(&back[1], "wer") - 0.75) < 1e-9 && fabs(s2s_opt_loss(&back[1], "bleu") + 0.75) < 1e-9);
    cr_assert_eq(s2s_opt_best(back, 2, "wer", 1.0f), 1);
    cr_assert_eq(s2s_opt_best(back, 2, "wer", 0.5f), -1);
    free(back);
    char *missing = tu_path(dir, "none.tsv");
    cr_assert_eq(s2s_opt_results_read(missing, &back, &n, err, sizeof err), 0);
    cr_assert_eq(n, 0);
    free(missing);
    tu_write(p, "name\theader\nteacher\tteacher\t-\twer\t30\n");
    cr_assert_neq(s2s_opt_results_read(p, &back, &n, err, sizeof err), 0);
    cr_assert(strstr(err, "results.tsv:2: malformed"), "%s", err);
    tu_rmrf(dir); free(dir); free(p);
}

/* ------------------------------------------------------ s2s optimize */

typedef struct { char *dir, *teacher, *out, *space; } opt_fx;

static opt_fx make_fx(void) {
    opt_fx f;
    f.dir = tu_tmpdir();
    f.teacher = tu_path(f.dir, "teacher.safetensors");
    f.out = tu_path(f.dir, "out");
    f.space = tu_path(f.dir, "space.txt");
    s2s_config c;
    s2s_config_default(&c);
    c.d_model = 16; c.n_heads = 2; c.d_ff = 24; c.enc_layers = 1; c.dec_layers = 3; c.max_len = 24;
    s2s_model *m = tu_model_for(c, 31);
    char err[256];
    cr_assert_eq(s2s_model_save(m, f.teacher, NULL, 0, NULL, 0, 0, err, sizeof err), 0, "%s", err);
    s2s_model_free(m);
    tu_write_reverse_task(f.dir, "train", 30, 5);
    tu_write_reverse_task(f.dir, "dev", 6, 6);
    tu_write(f.space, "# three candidates\nnash n=2 t=0.3\nnash n=2 t=0.3 + ssru layers=1\ndeed tau=0.5,2 rank=4\n");
    return f;
}

static void free_fx(opt_fx *f) { tu_rmrf(f->dir); free(f->dir); free(f->teacher); free(f->out); free(f->space); }

/* The command line of a run (malloc'd): fixed options, then extra. */
static char *cmdline(const opt_fx *f, const char *extra) {
    char *c;
    cr_assert(asprintf(&c, "%s optimize -m %s --data %s -o %s --space %s --steps 4 --tokens-per-batch 200 --latency-lines 3 "
                           "--repeat 1 --threads 1 %s", tu_bin(), f->teacher, f->dir, f->out, f->space, extra) > 0);
    return c;
}

static int run_opt(const opt_fx *f, const char *extra, char **out) {
    char *c = cmdline(f, extra);
    int st = tu_run(c, out);
    free(c);
    return st;
}

static char *slurp(const char *path) {
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    char *s = calloc(1, 1 << 20);
    size_t n = fread(s, 1, (1 << 20) - 1, fp);
    s[n] = '\0';
    fclose(fp);
    return s;
}

static long fsize(const char *p) { struct stat sb; return stat(p, &sb) == 0 ? (long)sb.st_size : -1; }

/* results.tsv, pareto.tsv, report.md and best.safetensors agree with each other. */
static void check_outputs(const opt_fx *f, float max_loss, int want_rows) {
    char err[256], *p_res = tu_path(f->out, "results.tsv"), *p_par = tu_path(f->out, "pareto.tsv");
    char *p_rep = tu_path(f->out, "report.md"), *p_best = tu_path(f->out, "best.safetensors");
    s2s_opt_result *rows, *front;
    int n, nf;
    cr_assert_eq(s2s_opt_results_read(p_res, &rows, &n, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, want_rows);
    cr_assert_str_eq(rows[0].name, "teacher");
    cr_assert(rows[0].delta == 0 && rows[0].speedup == 1);
    for (int i = 0; i < n; i++) {
        cr_assert(rows[i].quality >= 0 && rows[i].quality <= 100 && rows[i].ms > 0 && rows[i].teacher_ms > 0, "%s", rows[i].name);
        cr_assert(fabs(rows[i].delta - (rows[i].quality - rows[0].quality)) < 1e-3, "%s", rows[i].name);
        cr_assert(fabs(rows[i].speedup - rows[i].teacher_ms / rows[i].ms) < 1e-2 * rows[i].speedup, "%s", rows[i].name);
        cr_assert(rows[i].params > 0 && rows[i].mb > 0, "%s", rows[i].name);
        if (i > 0) {
            char *mp = tu_path(f->out, rows[i].model);
            cr_assert(fsize(mp) > 0, "%s", mp);
            free(mp);
        }
    }
    /* the front: exactly the non-dominated rows (WER: lower is better; cost: ms / teacher ms) */
    cr_assert_eq(s2s_opt_results_read(p_par, &front, &nf, err, sizeof err), 0, "%s", err);
    cr_assert(nf >= 1);
    for (int i = 0; i < n; i++) {
        int dominated = 0, listed = 0;
        double ci = rows[i].ms / rows[i].teacher_ms;
        for (int j = 0; j < n; j++) {
            double cj = rows[j].ms / rows[j].teacher_ms;
            if (cj <= ci && rows[j].quality <= rows[i].quality && (cj < ci || rows[j].quality < rows[i].quality)) dominated = 1;
        }
        for (int k = 0; k < nf; k++) listed += !strcmp(front[k].name, rows[i].name);
        cr_assert_eq(listed, !dominated, "%s: on pareto.tsv %d, dominated %d", rows[i].name, listed, dominated);
    }
    char *rep = slurp(p_rep);
    for (int i = 0; i < n; i++) cr_assert(strstr(rep, rows[i].name), "report lacks %s", rows[i].name);
    int b = s2s_opt_best(rows, n, "wer", max_loss);
    if (b >= 0) {
        cr_assert(rows[b].delta <= max_loss && rows[b].speedup > 1.0);
        for (int i = 1; i < n; i++)
            if (rows[i].delta <= max_loss) cr_assert(rows[i].ms / rows[i].teacher_ms >= rows[b].ms / rows[b].teacher_ms);
        char *mp = tu_path(f->out, rows[b].model);
        cr_assert_eq(fsize(p_best), fsize(mp));
        free(mp);
        char want[256];
        snprintf(want, sizeof want, "**Fastest within a loss of %g: `%s`**", max_loss, rows[b].name);
        cr_assert(strstr(rep, want), "%s\n%s", want, rep);
        if (rows[b].tau >= 0) cr_assert(strstr(rep, "--exit-threshold"), "%s", rep);
    } else {
        cr_assert_eq(fsize(p_best), -1, "best.safetensors without a best row");
        cr_assert(strstr(rep, "No candidate within a loss of"), "%s", rep);
    }
    free(rep); free(rows); free(front);
    free(p_res); free(p_par); free(p_rep); free(p_best);
}

Test(optimize, cli_stop_resume_consistent_outputs) {
    opt_fx f = make_fx();
    char *out = NULL, *p_res = tu_path(f.out, "results.tsv");
    /* run 1: the teacher and the first candidate, then a stop */
    int st = run_opt(&f, "--stop-after 1", &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "[1/3] nash-n2-t0.3: stage nash-n2-t0.3 on the teacher"), "%s", out);
    cr_assert(strstr(out, "stopping after 1 candidate (--stop-after)"), "%s", out);
    cr_assert_null(strstr(out, "[2/3]"), "%s", out);
    free(out);
    check_outputs(&f, 1.0f, 2);
    char *first = slurp(p_res);
    char *rep = tu_path(f.out, "report.md"), *r = slurp(rep);
    cr_assert(strstr(r, "1 of 3 candidates evaluated"), "%s", r);
    free(r);
    /* run 2: the same command resumes, skips the measured candidate and reuses the NASH stage */
    st = run_opt(&f, "", &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "[1/3] nash-n2-t0.3: measured already"), "%s", out);
    cr_assert(strstr(out, "[2/3] nash-n2-t0.3+ssru-l1: stage nash-n2-t0.3 done"), "%s", out);
    cr_assert(strstr(out, "stage ssru-l1 on nash-n2-t0.3"), "%s", out);
    cr_assert(strstr(out, "distilled targets"), "%s", out);
    cr_assert(strstr(out, "[3/3] deed-r4 at --exit-threshold 0.5") && strstr(out, "[3/3] deed-r4 at --exit-threshold 2"), "%s", out);
    cr_assert_null(strstr(out, "teacher: measuring"), "%s", out);
    free(out);
    char *second = slurp(p_res);
    cr_assert_eq(strncmp(first, second, strlen(first)), 0, "the rows of run 1 changed:\n%s\n%s", first, second);
    free(first); free(second);
    check_outputs(&f, 1.0f, 5);
    r = slurp(rep);
    cr_assert(strstr(r, "3 of 3 candidates evaluated"), "%s", r);
    free(r);
    char *kd = tu_path(f.out, "kd/train.kd.tgt");
    cr_assert(fsize(kd) > 0);
    free(kd);
    /* another --max-loss re-picks the best from the results, without training or timing */
    st = run_opt(&f, "--max-loss 1000", &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "[3/3] deed-r4: measured already"), "%s", out);
    cr_assert_null(strstr(out, " on the teacher"), "%s", out);
    free(out);
    check_outputs(&f, 1000.0f, 5);
    /* a lost result row is measured again from the trained stage (no training) */
    char *all = slurp(p_res), *cut = strstr(all, "\ndeed-r4@2\t");
    cr_assert_not_null(cut);
    char *eol = strchr(cut + 1, '\n');
    memmove(cut + 1, eol + 1, strlen(eol + 1) + 1);
    tu_write(p_res, all);
    free(all);
    st = run_opt(&f, "", &out);
    cr_assert_eq(st, 0, "%s", out);
    cr_assert(strstr(out, "[3/3] deed-r4: stage deed-r4 done"), "%s", out);
    cr_assert(strstr(out, "[3/3] deed-r4 at --exit-threshold 2:"), "%s", out);
    cr_assert_null(strstr(out, "exit-threshold 0.5:"), "%s", out);
    free(out);
    check_outputs(&f, 1.0f, 5);
    /* other settings in the same OUT are refused */
    st = run_opt(&f, "--steps 5", &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "was made with 'steps = 4', this run has 'steps = 5'"), "%s", out);
    cr_assert(strncmp(out, "s2s optimize: ", 14) == 0 && strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
    free(out);
    free(p_res); free(rep);
    free_fx(&f);
}

Test(optimize, cli_bad_flags_and_files_give_one_line_errors) {
    opt_fx f = make_fx();
    char *bad_space = tu_path(f.dir, "bad.txt");
    tu_write(bad_space, "nash\nfoo n=1\n");
    char space_arg[512];
    snprintf(space_arg, sizeof space_arg, "-m T --data D -o O --space %s", bad_space);
    static const struct { const char *args, *msg; } cases[] = {
        {"", "need -m TEACHER, --data DIR and -o OUT"},
        {"-m T --data D", "need -m TEACHER, --data DIR and -o OUT"},
        {"-m T --data D -o O --max-loss -1", "--max-loss"},
        {"-m T --data D -o O --max-loss x", "--max-loss: expected a number"},
        {"-m T --data D -o O --steps 0", "--steps"},
        {"-m T --data D -o O --repeat", "--repeat needs a value"},
        {"-m T --data D -o O --metric foo", "--metric must be wer, per, bleu or chrf"},
        {"-m T --data D -o O --init X", "--init is set by optimize itself"},
        {"-m T --data D -o O --decoder ssru", "--decoder is set by optimize itself"},
        {"-m T --data D -o O --bogus 1", "unknown option '--bogus'"},
        {"-m T --data D -o O --lr 0", "--lr"},
        {"-m T --data D -o O stray", "unexpected argument 'stray'"},
        {"-m T --data D -o O --space /nonexistent/space.txt", "--space"},
        {NULL, "bad.txt:2: unknown method 'foo'"},
    };
    char cmd[4096], *out = NULL;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *args = cases[i].args ? cases[i].args : space_arg;
        snprintf(cmd, sizeof cmd, "%s optimize %s", tu_bin(), args);
        int st = tu_run(cmd, &out);
        cr_assert_eq(st, 2, "%s: status %d: %s", args, st, out);
        cr_assert(strstr(out, cases[i].msg), "%s: %s", args, out);
        cr_assert(strncmp(out, "s2s optimize: ", 14) == 0 && strchr(out, '\n') == out + strlen(out) - 1, "%s: %s", args, out);
        free(out);
    }
    /* runtime errors (status 1): a missing or unreadable teacher, a missing data file */
    char *corrupt = tu_path(f.dir, "corrupt.safetensors"), *dev = tu_path(f.dir, "dev.tgt");
    tu_write(corrupt, "this is not a model");
    const char *teachers[] = {"nope.safetensors", "corrupt.safetensors"};
    for (int k = 0; k < 3; k++) {
        if (k == 2) cr_assert_eq(remove(dev), 0);
        snprintf(cmd, sizeof cmd, "%s optimize -m %s/%s --data %s -o %s", tu_bin(), f.dir, k < 2 ? teachers[k] : "teacher.safetensors",
                 f.dir, f.out);
        int st = tu_run(cmd, &out);
        cr_assert_eq(st, 1, "%s: %s", cmd, out);
        cr_assert(strstr(out, k < 2 ? teachers[k] : "dev.tgt"), "%s", out);
        cr_assert(strncmp(out, "s2s optimize: ", 14) == 0 && strchr(out, '\n') == out + strlen(out) - 1, "%s", out);
        free(out);
    }
    free(corrupt); free(dev); free(bad_space);
    free_fx(&f);
}

Test(optimize, cli_failed_candidate_does_not_stop_the_search) {
    opt_fx f = make_fx();
    tu_write(f.space, "nash n=2 t=0\ndeed tau=0.9 rank=4\n");
    char *cand = tu_path(f.out, "cand"), *block = tu_path(f.out, "cand/nash-n2-t0"), *out = NULL;
    cr_assert_eq(mkdir(f.out, 0755), 0);
    cr_assert_eq(mkdir(cand, 0755), 0);
    tu_write(block, "a file where the stage's directory goes\n");
    int st = run_opt(&f, "", &out);
    cr_assert_eq(st, 1, "%s", out);
    cr_assert(strstr(out, "[1/2] nash-n2-t0: FAILED: stage nash-n2-t0: "), "%s", out);
    cr_assert(strstr(out, "[2/2] deed-r4 at --exit-threshold 0.9: dev wer"), "%s", out);
    const char *last = out + strlen(out) - 2;
    while (last > out && last[-1] != '\n') last--;
    cr_assert(strstr(last, "s2s optimize: 1 candidate failed (FAILED lines above)"), "%s", out);
    free(out);
    check_outputs(&f, 1.0f, 2);
    free(cand); free(block);
    free_fx(&f);
}
