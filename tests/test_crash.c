/* test_crash.c - crash-safe training. `s2s train` (the CLI in $S2S_BIN, run as a
 * child process) is killed with SIGKILL at many points of a small reverse-string
 * run, including deterministically inside a checkpoint write (the writer's test
 * hook S2S_DEBUG_SAVE_DELAY_MS, src/safetensors.c), and stopped with SIGINT and
 * SIGTERM. After every stop the checkpoints on disk are either absent or whole
 * (they load), stale temporary files do not break the next start (which removes
 * them), and rerunning the same command until it finishes gives the same last
 * and best weights, bit for bit, as an uninterrupted run. A last test does the
 * same in-process through s2s_train (the library must leave the caller's signal
 * handlers as they were and be callable again after an interrupt).
 *
 * Kill points are tied to progress (the "step N/" log line, a temporary file
 * appearing), not to wall-clock time, so the test means the same on a loaded
 * machine and under AddressSanitizer. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "model.h"
#include "safetensors.h"
#include "test_util.h"
#include "train.h"

extern char **environ;

/* ------------------------------------------------------------ the command */

#define MAX_STEPS 40
#define EVAL_EVERY 4

typedef struct {
    char *dir, *out;     /* task directory; output directory (dir/<name>) */
    char *argv[64];
    char *owned[8];      /* strings argv points into */
} cmdline;

/* `s2s train` on dir/{train,dev}.{src,tgt} into dir/<name>: a tiny model, one
 * thread, a checkpoint every EVAL_EVERY steps, a log line every step. */
static void cmd_make(cmdline *c, const char *dir, const char *name) {
    memset(c, 0, sizeof *c);
    c->dir = strdup(dir);
    c->out = tu_path(dir, name);
    const char *files[4] = {"train.src", "train.tgt", "dev.src", "dev.tgt"};
    for (int i = 0; i < 4; i++) c->owned[i] = tu_path(dir, files[i]);
    char steps[16], every[16];
    snprintf(steps, sizeof steps, "%d", MAX_STEPS);
    snprintf(every, sizeof every, "%d", EVAL_EVERY);
    const char *a[] = {tu_bin(), "train", "--train-src", c->owned[0], "--train-tgt", c->owned[1],
                       "--dev-src", c->owned[2], "--dev-tgt", c->owned[3], "-o", c->out,
                       "--d-model", "32", "--heads", "2", "--ff", "64", "--enc-layers", "1",
                       "--dec-layers", "1", "--max-len", "32", "--lr", "3e-3", "--warmup", "20",
                       "--dropout", "0.1", "--tokens-per-batch", "300", "--max-steps", steps,
                       "--eval-every", every, "--metric", "loss", "--threads", "1",
                       "--log-every", "1", NULL};
    int n = 0;
    for (; a[n]; n++) c->argv[n] = strdup(a[n]);
    c->argv[n] = NULL;
}

static void cmd_free(cmdline *c) {
    for (int i = 0; c->argv[i]; i++) free(c->argv[i]);
    for (int i = 0; i < 8; i++) free(c->owned[i]);
    free(c->dir); free(c->out);
}

/* ------------------------------------------------------------ stop points */

enum { AT_NONE, AT_STEP, AT_TMP };

typedef struct {
    int at;           /* AT_STEP: once the log line "step <step>/" is out;
                         AT_TMP: while "<file>.tmp.*" exists in the output directory */
    int step;
    const char *file; /* AT_TMP: "last.safetensors" or "best.safetensors" */
    int need_target;  /* AT_TMP: only once <file> itself exists (an older copy to protect) */
    int delay_us;     /* wait this long after the trigger before signalling */
    int sig;          /* SIGKILL, SIGINT or SIGTERM */
    int save_delay_ms;/* S2S_DEBUG_SAVE_DELAY_MS for this run (0: unset) */
} stop_point;

typedef struct {
    int status;       /* exit status, or 128 + signal */
    int fired;        /* the trigger happened and the signal was sent */
    pid_t pid;
    char *log;        /* stdout + stderr */
    long tmp_size;    /* AT_TMP: size of the temporary file when the signal was sent */
    char tmp_name[256];
} run_result;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The first "<file>.tmp.*" in dir (name into buf); 0 if none. */
static int find_tmp(const char *dir, const char *file, char *buf, size_t n) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char prefix[128];
    snprintf(prefix, sizeof prefix, "%s.tmp.", file);
    struct dirent *e;
    int found = 0;
    while (!found && (e = readdir(d)) != NULL)
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) { snprintf(buf, n, "%s", e->d_name); found = 1; }
    closedir(d);
    return found;
}

/* Count entries of dir whose name contains sub (and, if pid > 0, ".tmp.<pid>."). */
static int count_names(const char *dir, const char *sub, long pid) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char pidpart[40];
    snprintf(pidpart, sizeof pidpart, ".tmp.%ld.", pid);
    struct dirent *e;
    int k = 0;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, sub) && (pid <= 0 || strstr(e->d_name, pidpart))) k++;
    closedir(d);
    return k;
}

static int file_exists(const char *dir, const char *file) {
    char *p = tu_path(dir, file);
    int ok = access(p, F_OK) == 0;
    free(p);
    return ok;
}

static long file_size(const char *dir, const char *file) {
    char *p = tu_path(dir, file);
    struct stat sb;
    long s = stat(p, &sb) == 0 ? (long)sb.st_size : -1;
    free(p);
    return s;
}

/* Run the command once, stopping it at sp (NULL: let it finish). 45 s at most. */
static run_result run_cmd(const cmdline *c, const stop_point *sp) {
    run_result r;
    memset(&r, 0, sizeof r);
    r.tmp_size = -1;
    /* the environment, with S2S_DEBUG_SAVE_DELAY_MS set only when asked for */
    int ne = 0;
    while (environ[ne]) ne++;
    char **envp = calloc((size_t)ne + 2, sizeof *envp), delay[64];
    int k = 0;
    for (int i = 0; i < ne; i++)
        if (strncmp(environ[i], "S2S_DEBUG_SAVE_DELAY_MS=", 24) != 0) envp[k++] = environ[i];
    if (sp && sp->save_delay_ms > 0) {
        snprintf(delay, sizeof delay, "S2S_DEBUG_SAVE_DELAY_MS=%d", sp->save_delay_ms);
        envp[k++] = delay;
    }
    envp[k] = NULL;
    int p[2];
    cr_assert_eq(pipe(p), 0);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execve(c->argv[0], c->argv, envp);
        _exit(127);
    }
    free(envp);
    close(p[1]);
    fcntl(p[0], F_SETFL, O_NONBLOCK);
    r.pid = pid;
    size_t cap = 1 << 14, n = 0;
    r.log = malloc(cap);
    r.log[0] = '\0';
    char needle[32] = "";
    if (sp && sp->at == AT_STEP) snprintf(needle, sizeof needle, "\nstep %d/", sp->step);
    double t0 = now_s();
    int eof = 0, timed_out = 0;
    while (!eof) {
        struct pollfd pf = {p[0], POLLIN, 0};
        poll(&pf, 1, sp && sp->at == AT_TMP && !r.fired ? 1 : 20);
        for (;;) {
            if (cap - n < 4096) { cap *= 2; r.log = realloc(r.log, cap); }
            ssize_t got = read(p[0], r.log + n, cap - n - 1);
            if (got > 0) { n += (size_t)got; r.log[n] = '\0'; continue; }
            if (got == 0) eof = 1;
            break; /* EOF, or EAGAIN: nothing more for now */
        }
        if (sp && !r.fired && !eof) {
            int hit = 0;
            if (sp->at == AT_STEP) hit = strstr(r.log, needle) != NULL;
            if (sp->at == AT_TMP && find_tmp(c->out, sp->file, r.tmp_name, sizeof r.tmp_name))
                hit = (!sp->need_target || file_exists(c->out, sp->file)) &&
                      file_size(c->out, r.tmp_name) > 0; /* opened and begun, not yet renamed */
            if (hit) {
                if (sp->delay_us > 0) usleep((useconds_t)sp->delay_us);
                if (sp->at == AT_TMP) r.tmp_size = file_size(c->out, r.tmp_name);
                kill(pid, sp->sig);
                r.fired = 1;
            }
        }
        if (!timed_out && now_s() - t0 > 45) {
            kill(pid, SIGKILL);
            timed_out = 1;
            cr_log_error("run timed out: %s", r.log);
        }
    }
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    return r;
}

/* ------------------------------------------------------------ checks */

/* The step recorded in a checkpoint's trainer state, -1 without one. */
static long trainer_step(const char *path) {
    char err[512];
    s2s_st_file *f = s2s_st_open(path, err, sizeof err);
    if (!f) return -1;
    const char *st = s2s_st_meta(f, "s2s.trainer");
    const char *s = st ? strstr(st, "\"step\":") : NULL;
    long step = s ? atol(s + 7) : -1;
    s2s_st_close(f);
    return step;
}

/* last.safetensors and best.safetensors are absent or whole; returns the step
 * of last (0 when absent). */
static long check_whole(const char *out, const char *when) {
    char err[512];
    long step = 0;
    const char *files[2] = {"last.safetensors", "best.safetensors"};
    for (int i = 0; i < 2; i++) {
        char *p = tu_path(out, files[i]);
        if (access(p, F_OK) == 0) {
            s2s_model *m = s2s_model_load(p, 1, err, sizeof err);
            cr_assert_not_null(m, "%s: %s does not load: %s", when, files[i], err);
            s2s_model_free(m);
            if (i == 0) {
                step = trainer_step(p);
                cr_assert(step > 0 && step <= MAX_STEPS, "%s: last.safetensors has no trainer state", when);
            }
        }
        free(p);
    }
    return step;
}

static int same_weights(const char *dir_a, const char *dir_b, const char *file) {
    char err[512];
    char *a = tu_path(dir_a, file), *b = tu_path(dir_b, file);
    s2s_model *x = s2s_model_load(a, 1, err, sizeof err);
    cr_assert_not_null(x, "%s", err);
    s2s_model *y = s2s_model_load(b, 1, err, sizeof err);
    cr_assert_not_null(y, "%s", err);
    int same = x->n_params == y->n_params;
    for (int i = 0; same && i < x->n_params; i++)
        same = x->params[i].t->n == y->params[i].t->n &&
               memcmp(x->params[i].t->data, y->params[i].t->data, x->params[i].t->n * sizeof(float)) == 0;
    s2s_model_free(x);
    s2s_model_free(y);
    free(a); free(b);
    return same;
}

/* A fresh task directory with the data and an uninterrupted reference run in ref/. */
static char *setup_task(cmdline *ref) {
    char *dir = tu_tmpdir();
    cr_assert_not_null(dir);
    tu_write_reverse_task(dir, "train", 300, 3);
    tu_write_reverse_task(dir, "dev", 20, 4);
    cmd_make(ref, dir, "ref");
    run_result r = run_cmd(ref, NULL);
    cr_assert_eq(r.status, 0, "reference run failed (%d): %s", r.status, r.log);
    char *last = tu_path(ref->out, "last.safetensors");
    cr_assert_eq(trainer_step(last), MAX_STEPS);
    free(last);
    free(r.log);
    return dir;
}

/* Rerun c (no stop) until it finishes; then its weights equal ref's, and no
 * temporary checkpoint files are left. */
static void finish_and_compare(const cmdline *c, const cmdline *ref) {
    long from = check_whole(c->out, "before the final run");
    run_result r = run_cmd(c, NULL);
    cr_assert_eq(r.status, 0, "final run failed (%d): %s", r.status, r.log);
    if (from > 0) {
        char want[64];
        snprintf(want, sizeof want, "resuming at step %ld", from);
        cr_assert(strstr(r.log, want), "final run should say '%s': %s", want, r.log);
    }
    free(r.log);
    cr_assert_eq(check_whole(c->out, "after the final run"), MAX_STEPS);
    cr_assert(same_weights(ref->out, c->out, "last.safetensors"),
              "last.safetensors differs from the uninterrupted run's");
    cr_assert(same_weights(ref->out, c->out, "best.safetensors"),
              "best.safetensors differs from the uninterrupted run's");
    cr_assert_eq(count_names(c->out, ".safetensors.tmp.", 0), 0, "temporary checkpoint files left behind");
}

/* ------------------------------------------------------------ tests */

/* SIGKILL right after a step's log line (often inside the evaluation and the two
 * checkpoint writes that follow every EVAL_EVERY-th step), at growing steps;
 * every run resumes from the last checkpoint of the previous one. */
Test(crash, sigkill_at_many_points_resumes_bit_exact, .timeout = 60) {
    cmdline ref, c;
    char *dir = setup_task(&ref);
    cmd_make(&c, dir, "run");
    static const stop_point pts[] = {
        {AT_STEP, 1, NULL, 0, 0, SIGKILL, 0},     /* before the first checkpoint */
        {AT_STEP, 4, NULL, 0, 0, SIGKILL, 0},     /* eval step: in the eval or the writes */
        {AT_STEP, 7, NULL, 0, 700, SIGKILL, 0},
        {AT_STEP, 12, NULL, 0, 0, SIGKILL, 0},
        /* inside the save of best (writer paused 300 ms): a writer that wrote in
         * place would leave a truncated best.safetensors here (tried) */
        {AT_STEP, 16, NULL, 0, 150000, SIGKILL, 300},
        {AT_STEP, 20, NULL, 0, 300, SIGKILL, 0},
        {AT_STEP, 26, NULL, 0, 1200, SIGKILL, 0},
        {AT_STEP, 32, NULL, 0, 0, SIGKILL, 0},
        {AT_STEP, 36, NULL, 0, 100, SIGKILL, 0},
        {AT_STEP, 39, NULL, 0, 500, SIGKILL, 0},
    };
    int fired = 0;
    for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
        long from = check_whole(c.out, "before a run");
        if (from >= pts[i].step) continue; /* the last kill landed later than planned */
        run_result r = run_cmd(&c, &pts[i]);
        cr_assert(r.fired, "stop point %zu (step %d) never came (status %d): %s", i, pts[i].step, r.status, r.log);
        cr_assert_eq(r.status, 128 + SIGKILL, "status %d: %s", r.status, r.log);
        char when[64];
        snprintf(when, sizeof when, "after SIGKILL at step %d", pts[i].step);
        long at = check_whole(c.out, when);
        cr_log_info("SIGKILL after step %d: last.safetensors at step %ld", pts[i].step, at);
        fired++;
        free(r.log);
    }
    cr_assert(fired >= 6, "only %d of the kills landed", fired);
    finish_and_compare(&c, &ref);
    cmd_free(&c); cmd_free(&ref);
    tu_rmrf(dir);
    free(dir);
}

/* SIGKILL inside checkpoint writes, made deterministic by the writer's test hook
 * (S2S_DEBUG_SAVE_DELAY_MS: the temporary file stays half-written that long):
 * the first write of best.safetensors (nothing on disk yet), then a write of
 * last.safetensors over an older one. The older file stays whole, the stale
 * temporary files do not disturb the next start, which removes them (and only
 * them), and the result is still the uninterrupted run's. */
Test(crash, sigkill_inside_checkpoint_write, .timeout = 60) {
    cmdline ref, c;
    char *dir = setup_task(&ref);
    cmd_make(&c, dir, "run");
    long full_best = file_size(ref.out, "best.safetensors"), full_last = file_size(ref.out, "last.safetensors");

    /* 1: inside the very first checkpoint write */
    stop_point p1 = {AT_TMP, 0, "best.safetensors", 0, 0, SIGKILL, 300};
    run_result r1 = run_cmd(&c, &p1);
    cr_assert(r1.fired && r1.status == 128 + SIGKILL, "status %d: %s", r1.status, r1.log);
    cr_assert(r1.tmp_size >= 8 && r1.tmp_size < full_best, "killed outside the write? %s has %ld of %ld bytes",
              r1.tmp_name, r1.tmp_size, full_best);
    cr_assert(!file_exists(c.out, "best.safetensors") && !file_exists(c.out, "last.safetensors"));
    cr_assert_eq(count_names(c.out, ".tmp.", r1.pid), 1, "the killed writer's temporary file should be there");
    check_whole(c.out, "killed in the first write");

    /* 2: inside a write of last.safetensors while an older one exists */
    stop_point p2 = {AT_TMP, 0, "last.safetensors", 1, 0, SIGKILL, 300};
    run_result r2 = run_cmd(&c, &p2);
    cr_assert(r2.fired && r2.status == 128 + SIGKILL, "status %d: %s", r2.status, r2.log);
    cr_assert(strstr(r2.log, "starting at step 0"), "a stale temporary file is not a checkpoint: %s", r2.log);
    cr_assert(r2.tmp_size >= 8 && r2.tmp_size < full_last, "%s has %ld of %ld bytes", r2.tmp_name, r2.tmp_size,
              full_last);
    cr_assert_eq(count_names(c.out, ".tmp.", r1.pid), 0, "the next start should remove stale temporary files");
    long at = check_whole(c.out, "killed in a write of last.safetensors");
    cr_assert(at == EVAL_EVERY, "last.safetensors should still be the step-%d one, is step %ld", EVAL_EVERY, at);

    /* stale files of a writer that no longer runs, and files that are not ours */
    const char *junk[] = {"last.safetensors.tmp.999999999.0", "best.safetensors.tmp.999999999.3",
                          "notes.tmp.1", "last.safetensors.bak"};
    for (int i = 0; i < 4; i++) {
        char *p = tu_path(c.out, junk[i]);
        tu_write(p, "{garbage");
        free(p);
    }
    finish_and_compare(&c, &ref);
    cr_assert(file_exists(c.out, "notes.tmp.1") && file_exists(c.out, "last.safetensors.bak"),
              "only the checkpoints' own temporary files may be removed");
    free(r1.log); free(r2.log);
    cmd_free(&c); cmd_free(&ref);
    tu_rmrf(dir);
    free(dir);
}

/* A stop requested with SIGINT or SIGTERM: last.safetensors saved at the current
 * step, a one-line message, exit status 2 (train.h); also when the signal
 * arrives in the middle of a checkpoint write. Resuming gives the uninterrupted
 * run's weights. */
Test(crash, sigint_sigterm_save_and_exit_2, .timeout = 60) {
    cmdline ref, c;
    char *dir = setup_task(&ref);
    cmd_make(&c, dir, "run");
    static const stop_point pts[] = {
        {AT_STEP, 6, NULL, 0, 0, SIGINT, 0},
        {AT_STEP, 13, NULL, 0, 500, SIGTERM, 0},
        {AT_TMP, 0, "last.safetensors", 1, 0, SIGTERM, 300}, /* inside a checkpoint write */
        {AT_STEP, 30, NULL, 0, 0, SIGINT, 0},
    };
    for (size_t i = 0; i < sizeof pts / sizeof pts[0]; i++) {
        long from = check_whole(c.out, "before a run");
        if (pts[i].at == AT_STEP && from >= pts[i].step) continue;
        run_result r = run_cmd(&c, &pts[i]);
        cr_assert(r.fired, "stop point %zu never came (status %d): %s", i, r.status, r.log);
        cr_assert_eq(r.status, 2, "%s should give status 2, got %d: %s", strsignal(pts[i].sig), r.status, r.log);
        const char *msg = strstr(r.log, "s2s train: interrupted at step ");
        cr_assert_not_null(msg, "no interrupt message: %s", r.log);
        long step = atol(msg + 31);
        const char *eol = strchr(msg, '\n');
        cr_assert(eol && strstr(msg, "saved") && strstr(msg, "saved") < eol, "message: %s", msg);
        long at = check_whole(c.out, "after an interrupt");
        cr_assert_eq(at, step, "message says step %ld, last.safetensors has step %ld", step, at);
        if (pts[i].at == AT_STEP) cr_assert(step >= pts[i].step, "saved step %ld < %d", step, pts[i].step);
        else cr_assert_eq(step % EVAL_EVERY, 0, "a stop inside a write stops right after that checkpoint");
        cr_assert_eq(count_names(c.out, ".tmp.", 0), 0, "a clean stop leaves no temporary files");
        cr_log_info("%s: saved at step %ld", strsignal(pts[i].sig), step);
        free(r.log);
    }
    finish_and_compare(&c, &ref);
    cmd_free(&c); cmd_free(&ref);
    tu_rmrf(dir);
    free(dir);
}

/* ------------------------------------------------- in-process (the library) */

static volatile sig_atomic_t host_sigints;
static void host_handler(int sig) { (void)sig; host_sigints++; }

typedef struct {
    const char *log;
    int step;
    volatile int sent;
} poker;

/* Wait for "step <n>/" in train.log, then send this process SIGINT. */
static void *poke(void *arg) {
    poker *pk = arg;
    char needle[32];
    snprintf(needle, sizeof needle, "step %d/", pk->step);
    for (int tries = 0; tries < 60000 && !pk->sent; tries++) {
        FILE *f = fopen(pk->log, "r");
        char line[512];
        while (f && !pk->sent && fgets(line, sizeof line, f))
            if (strncmp(line, needle, strlen(needle)) == 0) {
                kill(getpid(), SIGINT);
                pk->sent = 1;
            }
        if (f) fclose(f);
        usleep(1000);
    }
    return NULL;
}

static void lib_opts(s2s_train_opts *o, const cmdline *c) {
    s2s_train_opts_default(o);
    o->train_src = c->owned[0]; o->train_tgt = c->owned[1];
    o->dev_src = c->owned[2]; o->dev_tgt = c->owned[3];
    o->out_dir = c->out;
    o->model.d_model = 32; o->model.n_heads = 2; o->model.d_ff = 64;
    o->model.enc_layers = 1; o->model.dec_layers = 1; o->model.max_len = 32;
    o->lr = 3e-3f; o->warmup = 20; o->dropout = 0.1f;
    o->tokens_per_batch = 300;
    o->max_steps = MAX_STEPS * 3 / 2; o->eval_every = EVAL_EVERY;
    o->metric = "loss"; o->threads = 1; o->log_every = 1;
    o->quiet = getenv("S2S_TEST_VERBOSE") == NULL;
}

/* s2s_train interrupted by SIGINT returns 2, puts the caller's SIGINT handler
 * back, and a second call resumes and finishes like an uninterrupted call. */
Test(crash, library_interrupt_restores_handler_and_resumes, .timeout = 60) {
    char *dir = tu_tmpdir();
    tu_write_reverse_task(dir, "train", 300, 3);
    tu_write_reverse_task(dir, "dev", 20, 4);
    cmdline ca, cb;
    cmd_make(&ca, dir, "a");
    cmd_make(&cb, dir, "b");
    char err[512];
    s2s_train_opts a, b;
    lib_opts(&a, &ca);
    lib_opts(&b, &cb);
    cr_assert_eq(s2s_train(&a, err, sizeof err), 0, "%s", err);

    struct sigaction host, now;
    memset(&host, 0, sizeof host);
    host.sa_handler = host_handler;
    sigemptyset(&host.sa_mask);
    cr_assert_eq(sigaction(SIGINT, &host, NULL), 0);
    char *logp = tu_path(cb.out, "train.log");
    poker pk = {logp, 5, 0};
    pthread_t th;
    pthread_create(&th, NULL, poke, &pk);
    int rc = s2s_train(&b, err, sizeof err);
    pk.sent = 1; /* stops the poker if it never fired */
    pthread_join(th, NULL);
    cr_assert_eq(rc, 2, "s2s_train should report the interrupt (2), got %d: %s", rc, err);
    cr_assert_eq(host_sigints, 0, "the SIGINT went to the host's handler, not s2s_train's");
    cr_assert_eq(sigaction(SIGINT, NULL, &now), 0);
    cr_assert(now.sa_handler == host_handler, "s2s_train must restore the caller's SIGINT handler");
    long at = check_whole(cb.out, "after the interrupt");
    cr_assert(at >= 5 && at < b.max_steps, "interrupted at step %ld", at);

    rc = s2s_train(&b, err, sizeof err);
    cr_assert_eq(rc, 0, "the second call should resume and finish, returned %d: %s", rc, rc == 1 ? err : "");
    char *lb = tu_path(cb.out, "last.safetensors");
    cr_assert_eq(trainer_step(lb), b.max_steps, "the second call stopped early");
    cr_assert(same_weights(ca.out, cb.out, "last.safetensors"));
    cr_assert(same_weights(ca.out, cb.out, "best.safetensors"));
    signal(SIGINT, SIG_DFL);
    free(lb); free(logp);
    cmd_free(&ca); cmd_free(&cb);
    tu_rmrf(dir);
    free(dir);
}
