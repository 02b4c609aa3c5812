#!/usr/bin/env python3
"""report.py - the table of bench/peers/run.sh (called by it; reads its environment).

Reads $W/results.jsonl (JSON lines of bench_s2s and ct2_bench.py, each tagged with a
"variant": s2s-fp32, ct2-float32, ct2-int8, s2s-fp16) and the output ids in $W/out/, prints
the tables and writes $OUT (markdown): tok/s per cell and variant, s2s fp32 / ct2 fp32,
identical outputs (s2s fp32 vs ct2 fp32, greedy and beam), thread scaling, the issue's
target, the first differing lines, machine, commit, versions and the raw JSON lines.
With CHECK=1 (run.sh --check) it exits 1 unless every greedy s2s fp32 line equals ct2 fp32's.
"""
import datetime
import json
import os
import sys

E = os.environ
W = E["W"]
VARIANTS = ["s2s-fp32", "ct2-float32", "ct2-int8", "s2s-fp16"]
NAMES = {"s2s-fp32": "s2s fp32", "ct2-float32": "ct2 fp32", "ct2-int8": "ct2 int8", "s2s-fp16": "s2s fp16"}

recs = [json.loads(x) for x in open(E["RES"]) if x.startswith("{")]
if not recs:
    sys.exit("report.py: no measurements in %s" % E["RES"])
by = {}
for r in recs:  # with --repeat, keep the fastest run of each cell
    key = (r["variant"], r["mode"], r["batch"], r["beam"], r["threads"])
    if key not in by or r["tok_per_s"] > by[key]["tok_per_s"]:
        by[key] = r
variants = [v for v in VARIANTS if any(k[0] == v for k in by)]
cells = sorted({k[1:] for k in by}, key=lambda c: (c[0] != "greedy", c[1], c[3]))
info = [json.loads(x) for x in open(os.path.join(W, "info.jsonl"))]
blas, cfg = info[0], info[1]
export = json.load(open(os.path.join(W, "ct2", "s2s_export.json"), encoding="utf-8"))
tgt_pieces = export["tgt_pieces"]


def ids_file(variant, mode, b, t):
    return os.path.join(W, "out", "%s-%s-b%d-t%d.ids" % (variant, mode, b, t))


def read_lines(p):
    return open(p).read().splitlines() if os.path.exists(p) else None


def same(v1, v2, mode, b, t):
    a, c = read_lines(ids_file(v1, mode, b, t)), read_lines(ids_file(v2, mode, b, t))
    if a is None or c is None:
        return None
    return sum(x == y for x, y in zip(a, c)), max(len(a), len(c))


def fmt(x):
    return "%.0f" % x if x >= 100 else "%.1f" % x


def share(s):
    return "-" if s is None else "%d/%d" % s


def tps(v, c):
    r = by.get((v,) + c)
    return r["tok_per_s"] if r else None


rows = []
for c in cells:
    mode, b, k, t = c
    row = [mode, str(b), str(k), str(t)]
    for v in variants:
        x = tps(v, c)
        row.append(fmt(x) if x else "n/a")
    s, q = tps("s2s-fp32", c), tps("ct2-float32", c)
    row.append("%.2f" % (s / q) if s and q else "n/a")
    row.append(share(same("s2s-fp32", "ct2-float32", mode, b, t)))
    if "ct2-int8" in variants:
        row.append(share(same("s2s-fp32", "ct2-int8", mode, b, t)))
    rows.append(row)
hdr = ["mode", "batch", "beam", "threads"] + ["%s tok/s" % NAMES[v] for v in variants] + \
      ["s2s fp32 / ct2 fp32", "identical s2s fp32 = ct2 fp32"] + \
      (["identical s2s fp32 = ct2 int8"] if "ct2-int8" in variants else [])

# thread scaling: tok/s at the largest thread count / at 1 thread
ths = sorted({c[3] for c in cells})
scal = []
if len(ths) > 1 and ths[0] == 1:
    for mode, b, k in sorted({c[:3] for c in cells}, key=lambda c: (c[0] != "greedy", c[1])):
        row = [mode, str(b), str(k)]
        for v in variants:
            r1, rn = tps(v, (mode, b, k, 1)), tps(v, (mode, b, k, ths[-1]))
            row.append("%.2f%s" % (rn / r1, "" if rn > r1 else " (not faster)") if r1 and rn else "n/a")
        scal.append(row)


def table(h, rs):
    w = [max(len(h[i]), *(len(r[i]) for r in rs)) for i in range(len(h))]
    line = lambda r: "| " + " | ".join(x.ljust(w[i]) if i < 1 else x.rjust(w[i]) for i, x in enumerate(r)) + " |"
    sep = "|" + "|".join(":" + "-" * (x + 1) if i < 1 else "-" * (x + 1) + ":" for i, x in enumerate(w)) + "|"
    return "\n".join([line(h), sep] + [line(r) for r in rs])


t1 = table(hdr, rows)
t2 = table(["mode", "batch", "beam"] + ["%s %d/1 threads" % (NAMES[v], ths[-1]) for v in variants], scal) if scal else ""

# the target: s2s fp32 at least as fast as CTranslate2 fp32 in every cell
slow = [c for c in cells if tps("s2s-fp32", c) and tps("ct2-float32", c) and tps("s2s-fp32", c) < tps("ct2-float32", c)]
target = "**met** in every cell" if not slow else "**not met** in %d of %d cells: %s" % (
    len(slow), len(cells), ", ".join("%s b%d t%d" % (c[0], c[1], c[3]) for c in slow))

# greedy identity over all greedy cells (each cell decodes its own first N lines)
g_same = g_all = 0
diffs = []
src_text = open(os.path.join(E["G2P"], "test.src"), encoding="utf-8", errors="replace").read().splitlines()
for c in cells:
    if c[0] != "greedy":
        continue
    s = same("s2s-fp32", "ct2-float32", "greedy", c[1], c[3])
    if s is None:
        continue
    g_same += s[0]
    g_all += s[1]
    a = read_lines(ids_file("s2s-fp32", "greedy", c[1], c[3]))
    q = read_lines(ids_file("ct2-float32", "greedy", c[1], c[3]))
    for i, (x, y) in enumerate(zip(a, q)):
        if x != y and len(diffs) < 10:
            dec = lambda ids: " ".join(tgt_pieces[int(z)] for z in ids.split())
            diffs.append("- greedy b%d t%d line %d `%s`: s2s `%s`, ct2 `%s`" % (
                c[1], c[3], i + 1, src_text[i].split("\t")[0] if i < len(src_text) else "?", dec(x), dec(y)))

print()
print(t1)
if t2:
    print()
    print(t2)
print("\ngreedy s2s fp32 = ct2 fp32: %d/%d lines (%.2f%%); target s2s fp32 >= ct2 fp32: %s"
      % (g_same, g_all, 100.0 * g_same / max(g_all, 1), target.replace("*", "")))

try:
    import ctranslate2
    ct2v = ctranslate2.__version__
except ImportError:
    ct2v = "?"
import numpy
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import s2s_ckpt  # noqa: E402
model_desc = "%s: %s parameters, D=%d H=%d F=%d, %d+%d layers, vocab %d/%d, max_len %d, stored %s" % (
    E["MODEL"], format(cfg["params"], ","), cfg["d_model"], cfg["n_heads"], cfg["d_ff"], cfg["enc_layers"],
    cfg["dec_layers"], cfg["src_vocab"], cfg["tgt_vocab"], cfg["max_len"], "/".join(s2s_ckpt.tensor_dtypes(E["MODEL"])))
busy = float(E["LOAD0"].split()[0]) > 0.5  # before the run: other processes' load
warn = ("**The machine was busy** (load average %s before the run, %s after): other processes took "
        "cores, so these timings are not reliable (an OpenMP team of T threads waits at every barrier for a "
        "descheduled thread: the T > 1 cells suffer most). Rerun on a quiet machine." % (E["LOAD0"], E["LOAD1"])
        if busy else "")
md = ["# s2s vs CTranslate2: CPU decoding on the same weights\n",
      "Written by `bench/peers/run.sh` (bench/peers/README.md: how the model is exported and what is measured).\n",
      "- command: `%s`%s" % (E["CMDLINE"], " (REPEAT=%s: fastest of %s runs per cell)" % (E["REPEAT"], E["REPEAT"])
                             if E["REPEAT"] != "1" else ""),
      "- date: %s" % datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
      "- commit: %s" % E["COMMIT"],
      "- machine: %s, %s cores (nproc); threads %s; load average %s before, %s after; run took %s s"
      % (E["CPU"], E["NPROC"], E["THREADS"], E["LOAD0"], E["LOAD1"], E["ELAPSED"]),
      "- s2s: %s; OpenMP %d; OpenBLAS package %s (`%s`); threads: `--threads T` (s2s_threads: OpenMP and "
      "OpenBLAS share one pool) and OMP_NUM_THREADS=T" % (E["CCV"], blas["openmp"], E["OBV"], blas["blas"]),
      "- CTranslate2 %s (PyPI wheel, numpy %s, %s): `Translator(device=\"cpu\", intra_threads=T, inter_threads=1)`, "
      "OMP_NUM_THREADS=T" % (ct2v, numpy.__version__, sys.version.split()[0]),
      "- model: %s; s2s fp32 runs `s2s convert --fp32` of it (no fp16 copy: fp32 kernels everywhere), CTranslate2 "
      "the export of that file (`bench/peers/export_ct2.py`, float32; int8 = compute_type int8 on the same "
      "directory); s2s fp16 runs `s2s convert --fp16` of it" % model_desc,
      "- data: the first %s lines of %s/test.src at batch 32 and the first %s at batch 1, tokenized by s2s "
      "(`bench_s2s --dump-ids`); CTranslate2's side tokenizes the text itself and checks it gets the same ids"
      % (E["N32"], E["G2P"], E["N1"]),
      "- decoding: batches of consecutive lines (one `translate_batch` call per batch), greedy and beam %s, "
      "length penalty 1, length limit %s generated tokens incl. </s>, min length 0; tokens/s = generated "
      "tokens incl. </s> / wall time of the whole run after a warm-up on the first max(batch, 4) lines"
      % (E["BEAM"], E["MAXLEN"]),
      ""] + ([warn, ""] if warn else []) + [
      t1,
      "",
      "`identical`: lines whose output ids are the same in that cell. Greedy s2s fp32 = ct2 fp32 over all "
      "greedy cells: **%d/%d (%.2f%%)**." % (g_same, g_all, 100.0 * g_same / max(g_all, 1)),
      "",
      "Target (issue 9): s2s fp32 at least as fast as CTranslate2 fp32 on the teacher: %s." % target]
if diffs:
    md += ["", "First greedy lines where s2s fp32 and ct2 fp32 differ:", ""] + diffs
if t2:
    md += ["", "Thread scaling (tok/s with %d threads / with 1 thread):\n" % ths[-1], t2]
md += ["", "<details><summary>raw measurements (JSON lines)</summary>\n", "```"]
md += [json.dumps(r) for r in recs]
md += ["```\n</details>"]
tmp = E["OUT"] + ".tmp.%d" % os.getpid()
with open(tmp, "w") as f:
    f.write("\n".join(md) + "\n")
os.replace(tmp, E["OUT"])
print("\nwrote %s" % E["OUT"])
if E.get("CHECK") == "1" and (g_all == 0 or g_same != g_all):
    sys.exit("report.py: --check: %d of %d greedy lines differ between s2s fp32 and ct2 fp32" % (g_all - g_same, g_all))
