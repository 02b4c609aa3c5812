#!/usr/bin/env python3
"""report.py - tables, plots and the quality cache of the methods benchmark (standard library only).

    python3 bench/report.py quality-todo  --task T --list L --tsv Q --jobs-file J [--limit N] [--force]
    python3 bench/report.py quality-merge --task T --tsv Q --jobs-file J --results R
    python3 bench/report.py methods-md    --task T --list L --raw R.jsonl --qual Q --out R.md [run facts]
    python3 bench/report.py blocks        --dir D --out-dir B --doc-out docs/RESULTS.md [--task T ...]

quality-todo / quality-merge (bench/quality.sh): the quality cache. bench/quality-TASK.tsv has one
row per NAME@MODE (mode greedy or beam5): the two scores (G2P: WER, PER; Bible: BLEU, chrF2), the
decoder's last stderr line, and the cache key: sha256 of the model file (first 16 hex digits), the
decoding flags given to `s2s translate`, and sha256 of the test data scored (source + reference,
first 16 hex digits). quality-todo writes the rows of the list whose key has no row yet (any
name: a renamed row reuses the scores of the same model + flags) to the jobs file; quality-merge
adds the results and rewrites the file atomically, keeping every other row. Rows of older runs
without a key are shown in the tables but computed again by the next run.

methods-md (bench/methods.sh): the markdown page of one methods run (bench/results-methods.md) and
its plot. blocks (bench/report.sh): the generated blocks of docs/RESULTS.md, one file per block
(B/methods-g2p.md, B/methods-bible.md) and their plots (D/results-g2p.png, D/results-bible.png),
from the results files in D: results-methods[-bible].{md,jsonl} (bench/methods.sh),
results-latency[-bible].{md,jsonl} (bench/latency.sh), quality-TASK.tsv and, for G2P,
results-peers.md (bench/peers/run.sh: the CTranslate2 reference rows). A task whose speed
results are missing (or, for Bible, whose models are not all present) gets no block file.
"""
import argparse
import datetime
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from update_results import write_atomic  # noqa: E402  (temp file + rename, one copy for bench/)

TASKS = {
    "g2p": dict(src="data/g2p/test.src", ref="data/g2p/test.tgt", eval="scripts/eval-g2p.sh",
                metrics=("WER", "PER"), higher=False, unit="word", units="words", title="G2P (CMUdict)",
                list="bench/methods-g2p.txt", suffix="", block="methods-g2p", plot="results-g2p.png",
                qual="quality-g2p.tsv"),
    "bible": dict(src="data/bible/test.src", ref="data/bible/test.tgt", eval="scripts/eval-bible.sh",
                  metrics=("BLEU", "chrF2"), higher=True, unit="verse", units="verses", title="Bible EN->ES",
                  list="bench/latency-bible.txt", suffix="-bible", block="methods-bible",
                  plot="results-bible.png", qual="quality-bible.tsv"),
}
MODES = (("greedy", 1), ("beam5", 5))
EVAL_BATCH = 32


def die(msg):
    sys.exit("report.py: " + msg)


def warn(msg):
    print("report.py: " + msg, file=sys.stderr)


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


# ---- the model lists: NAME|MODEL|FLAGS|GROUP, '#' comments, the first row is the baseline

def read_list(path):
    rows = []
    for line in open(path, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, model, flags, group = (line.split("|") + ["", "", "", ""])[:4]
        rows.append(dict(name=name.strip(), model=model.strip(), flags=" ".join(flags.split()), group=group.strip()))
    if not rows:
        die("%s: no models" % path)
    return rows


_sha_cache = {}


def file_sha(path):
    if path not in _sha_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _sha_cache[path] = h.hexdigest()[:16]
    return _sha_cache[path]


def data_sha(task, limit=None):
    """sha256 of the scored test data: the first LIMIT (default all) lines of source and reference."""
    h = hashlib.sha256()
    for p in (TASKS[task]["src"], TASKS[task]["ref"]):
        if not os.path.exists(p):
            return None
        with open(p, "rb") as f:
            lines = f.read().splitlines(keepends=True)
        if limit:
            lines = lines[:limit]
        h.update(b"".join(lines))
        h.update(b"\0")
    return h.hexdigest()[:16]


def eval_flags(row, beam):
    return " ".join(("--beam %d --batch %d %s" % (beam, EVAL_BATCH, row["flags"])).split())


# ---- the quality file

QHEAD = "# name@mode\t%s\t%s\tdecoder note\tmodel sha256\tdecoding flags\ttest data sha256\tcomputed"


def read_quality(path):
    """-> (rows {key: dict}, order [key], comment lines)."""
    rows, order, comments = {}, [], []
    if not path or not os.path.exists(path):
        return rows, order, comments
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            continue
        if line.startswith("#"):
            comments.append(line)
            continue
        f = line.split("\t") + [""] * 8
        try:
            q = (float(f[1]), float(f[2]))
        except ValueError:
            warn("%s: unreadable line %r" % (path, line[:80]))
            continue
        rows[f[0]] = dict(key=f[0], q=q, note=f[3].strip(), sha=f[4].strip(), flags=f[5].strip(),
                          data=f[6].strip(), when=f[7].strip())
        if f[0] not in order:
            order.append(f[0])
    return rows, order, comments


def write_quality(path, task, rows, comments):
    m = TASKS[task]["metrics"]
    head = QHEAD % (m[0].lower(), m[1].lower())
    keep = [c for c in comments if not c.startswith("# name@mode\t%s\t%s\tdecoder note\tmodel sha256" % (
        m[0].lower(), m[1].lower()))]
    # an old header (no key columns) stays as a comment about the rows it described
    keep = [("# rows without a key (older runs; decoded again when a list names them): " + c[2:])
            if c.startswith("# name@mode") else c for c in keep]
    out = [head] + keep
    for k in sorted(rows):
        r = rows[k]
        out.append("\t".join([k, "%.4f" % r["q"][0], "%.4f" % r["q"][1], (" " + r["note"]) if r["note"] else "",
                              r["sha"], r["flags"], r["data"], r["when"]]).rstrip("\t"))
    write_atomic(path, "\n".join(out) + "\n")


def quality_todo(a):
    t = TASKS[a.task]
    rows = read_list(a.list)
    q, _, _ = read_quality(a.tsv)
    dsha = data_sha(a.task, a.limit)
    if dsha is None:
        die("%s or %s missing (make data)" % (t["src"], t["ref"]))
    by_key = {(r["sha"], r["flags"], r["data"]): r for r in q.values() if r["sha"]}
    jobs, hits = [], 0
    for row in rows:
        if not os.path.exists(row["model"]):
            warn("%s: no model file %s: no quality" % (row["name"], row["model"]))
            continue
        msha = file_sha(row["model"])
        for mode, beam in MODES:
            key = "%s@%s" % (row["name"], mode)
            fl = eval_flags(row, beam)
            hit = by_key.get((msha, fl, dsha))
            if hit and not a.force:
                hits += 1
                continue
            jobs.append("\t".join([key, row["model"], fl, msha, dsha]))
    write_atomic(a.jobs_file, "".join(j + "\n" for j in jobs))
    print("%d cached, %d to compute" % (hits, len(jobs)))


def quality_merge(a):
    q, _, comments = read_quality(a.tsv)
    jobs = {}
    for line in open(a.jobs_file, encoding="utf-8"):
        f = line.rstrip("\n").split("\t")
        if len(f) == 5:
            jobs[f[0]] = dict(model=f[1], flags=f[2], sha=f[3], data=f[4])
    when = "%s %s" % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
                      sh("git rev-parse --short HEAD 2>/dev/null") or "?")
    got = 0
    for line in open(a.results, encoding="utf-8"):
        # "NAME@MODE m1 V1 m2 V2 note" (a list's names may contain spaces: match the job keys)
        k = max((k for k in jobs if line.startswith(k + " ")), key=len, default=None)
        if k is None:
            if line.strip():
                warn("unexpected result line %r" % line[:100])
            continue
        f = line[len(k):].split()
        try:
            v = (float(f[1]), float(f[3]))
        except (ValueError, IndexError):
            warn("%s: no scores in %r" % (k, line[:100]))
            continue
        j = jobs[k]
        q[k] = dict(key=k, q=v, note=" ".join(f[4:]), sha=j["sha"], flags=j["flags"], data=j["data"], when=when)
        got += 1
    # a listed row whose key has a row under another name (a cache hit of quality-todo) gets a copy of it
    dsha = data_sha(a.task, a.limit)
    by_key = {(r["sha"], r["flags"], r["data"]): r for r in q.values() if r["sha"]}
    for row in (read_list(a.list) if a.list else []):
        if not os.path.exists(row["model"]):
            continue
        for mode, beam in MODES:
            k = "%s@%s" % (row["name"], mode)
            triple = (file_sha(row["model"]), eval_flags(row, beam), dsha)
            if triple in by_key and (k not in q or (q[k]["sha"], q[k]["flags"], q[k]["data"]) != triple):
                q[k] = dict(by_key[triple], key=k)
    missing = [k for k, j in sorted(jobs.items())
               if k not in q or (q[k]["sha"], q[k]["flags"], q[k]["data"]) != (j["sha"], j["flags"], j["data"])]
    write_quality(a.tsv, a.task, q, comments)
    print("%d computed, written to %s%s" % (got, a.tsv, "; failed: " + " ".join(missing) if missing else ""))
    return 1 if missing else 0


# ---- results of the speed scripts

def md_facts(path):
    """'- key: value' bullets of a results page's header (before its first table)."""
    facts = {}
    if not path or not os.path.exists(path):
        return facts
    for line in open(path, encoding="utf-8"):
        if line.startswith("|"):
            break
        m = re.match(r"^- ([A-Za-z0-9 ]+?): (.*)$", line.rstrip("\n"))
        if m:
            k, v = m.group(1).strip().lower(), m.group(2).strip()
            # bench/latency.sh: "- date: D; commit: C"
            if k == "date" and "; commit: " in v:
                v, c = v.split("; commit: ", 1)
                facts["commit"] = c
            facts[k] = v
    return facts


def read_speed(path):
    """fastest record per (name, mode, batch); also the repeat count per cell."""
    best, count = {}, {}
    if not os.path.exists(path):
        return None, None
    for line in open(path, encoding="utf-8"):
        if not line.startswith("{"):
            continue
        r = json.loads(line)
        k = (r.get("name"), r["mode"], r["batch"])
        count[k] = count.get(k, 0) + 1
        if k not in best or r["tok_per_s"] > best[k]["tok_per_s"]:
            best[k] = r
    return best, count


def read_latency(path):
    """ms per sentence of every run per name (greedy, batch 1)."""
    d = {}
    if not os.path.exists(path):
        return None
    for line in open(path, encoding="utf-8"):
        if line.startswith("{"):
            r = json.loads(line)
            d.setdefault(r["name"], []).append(1000.0 * r["seconds"] / r["sentences"])
    return d


def read_peers(path):
    """bench/results-peers.md: raw JSON lines, facts, identical-output counts."""
    if not os.path.exists(path):
        return None
    text = open(path, encoding="utf-8").read()
    recs = [json.loads(x) for x in re.findall(r"^(\{.*\})$", text, re.M)]
    if not recs:
        return None
    facts = md_facts(path)
    m = re.search(r"Greedy s2s fp32 = ct2 fp32 over all greedy cells: \*\*(\d+)/(\d+)", text)
    same = {"ct2-float32": (int(m.group(1)), int(m.group(2))) if m else None, "ct2-int8": None}
    # the int8 count: the last column of the main table, over its greedy rows
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and "identical s2s fp32 = ct2 int8" in line:
            hdr = [c.strip() for c in line.strip("|").split("|")]
            col = hdr.index("identical s2s fp32 = ct2 int8")
            s = n = 0
            for row in lines[i + 2:]:
                if not row.startswith("|"):
                    break
                c = [x.strip() for x in row.strip("|").split("|")]
                if c[0] == "greedy" and "/" in c[col]:
                    x, y = c[col].split("/")
                    s, n = s + int(x), n + int(y)
            same["ct2-int8"] = (s, n) if n else None
            break
    best = {}
    for r in recs:
        k = (r["variant"], r["mode"], r["batch"], r["threads"])
        if k not in best or r["tok_per_s"] > best[k]["tok_per_s"]:
            best[k] = r
    model = facts.get("model", "").split(":")[0].strip()
    v = re.search(r"^- CTranslate2 ([0-9][0-9.]*)", text, re.M)
    params = re.search(r": ([\d,]+) parameters", facts.get("model", ""))
    return dict(best=best, facts=facts, same=same, model=model, beam=max(r["beam"] for r in recs),
                version=v.group(1) if v else "",
                params=int(params.group(1).replace(",", "")) if params else None)


# ---- formatting

def fnum(x, f="%.0f"):
    return "-" if x is None else f % x


def ftps(x):
    return "-" if x is None else ("{:,.0f}".format(x) if x >= 100 else "%.1f" % x)


def q_cell(q):
    return "%.2f / %.2f" % q if q else "-"


def label(row, with_model=True):
    m = os.path.basename(row["model"])
    m = m[:-len(".safetensors")] if m.endswith(".safetensors") else m
    inner = []
    if with_model:
        inner.append("`%s`" % m)
    if row["flags"]:
        inner.append("`%s`" % row["flags"])
    return row["name"] + (" (%s)" % " ".join(inner) if inner else "")


def pareto(points, higher):
    """points: (latency, quality, name, group); -> the non-dominated ones, by latency."""
    front, best = [], None
    for p in sorted(points, key=lambda p: (p[0], -p[1] if higher else p[1])):
        if best is None or (p[1] > best if higher else p[1] < best):
            front.append(p)
            best = p[1]
    return front


def plot(png, points, front, task, xlabel, title, work):
    """gnuplot PNG: one colour per group, names beside the points, the front as a line. -> error or None."""
    t = TASKS[task]
    base = os.path.join(work, os.path.splitext(os.path.basename(png))[0])
    groups = []
    for p in points:
        if p[3] not in groups:
            groups.append(p[3])
    with open(base + ".pts", "w") as f:
        for gr in groups:
            f.write("# %s\n" % gr)
            for p in points:
                if p[3] == gr:
                    f.write("%f %f \"%s\"\n" % (p[0], p[1], p[2]))
            f.write("\n\n")
    with open(base + ".front", "w") as f:
        for p in front:
            f.write("%f %f\n" % (p[0], p[1]))
    pl = ["'%s.front' using 1:2 with linespoints lw 2 lc rgb '#999999' pt 6 ps 2.2 title 'Pareto front'" % base]
    for i, gr in enumerate(groups):
        pt = 5 if gr == "reference" else 7
        pl.append("'%s.pts' index %d using 1:2 with points pt %d ps 1.3 lc %d title '%s'" % (base, i, pt, i + 1, gr))
        pl.append("'' index %d using 1:2:3 with labels offset 0,0.9 font ',8' notitle" % i)
    gp = ("set terminal pngcairo size 1000,650; set output '%s'; set xlabel '%s'; "
          "set ylabel 'test %s (greedy, %s)'; set grid; set key outside right; set title '%s'; "
          "set offsets graph 0.05, graph 0.05, graph 0.08, graph 0.05; plot %s") % (
        png, xlabel, t["metrics"][0], "higher is better" if t["higher"] else "lower is better", title, ", ".join(pl))
    try:
        r = subprocess.run(["gnuplot", "-e", gp], capture_output=True, text=True)
    except FileNotFoundError:
        return "gnuplot not found (bash scripts/install-deps.sh bench)"
    return None if r.returncode == 0 else (r.stderr.strip()[:300] or "gnuplot failed")


class Table:
    """The methods table of one task from the speed, latency, quality and peers results."""

    def __init__(self, task, rows, speed, count, qual, qlimit=None, latency=None, peers=None, check_keys=True):
        self.t, self.task, self.rows = TASKS[task], task, rows
        self.speed, self.count, self.qual, self.latency, self.peers = speed, count or {}, qual, latency, peers
        self.dsha = data_sha(task, qlimit)
        self.check_keys = check_keys
        self.stale = []

    def quality(self, row, mode):
        r = self.qual.get("%s@%s" % (row["name"], mode))
        if not r:
            return None
        if r["sha"] and self.check_keys:  # a keyed row must match the model, flags and data of now
            beam = dict(MODES)[mode]
            if not os.path.exists(row["model"]) or (r["sha"], r["flags"], r["data"]) != (
                    file_sha(row["model"]), eval_flags(row, beam), self.dsha):
                self.stale.append(r["key"])
                return None
        return r["q"]

    def tps(self, name, mode, b):
        r = self.speed.get((name, mode, b))
        return r["tok_per_s"] if r else None

    def ms_single(self, name):
        r = self.speed.get((name, "greedy", 1))
        return 1000.0 * r["seconds"] / r["sentences"] if r else None

    def ms(self, name):
        """(latency ms, from latency.sh?)"""
        if self.latency and name in self.latency:
            return statistics.median(self.latency[name]), True
        return self.ms_single(name), False

    def build(self, with_model=True, peers_rows=True):
        t, base = self.t, self.rows[0]["name"]
        blat, bfrom = self.ms(base)
        bsingle = self.ms_single(base)
        m0, m1 = t["metrics"]
        hdr = ["model", "group", "%s / %s greedy" % (m0, m1), "beam 5", "tok/s greedy b1", "greedy b32",
               "beam 5 b1", "beam 5 b32", "latency ms/%s" % t["unit"], "speed-up", "MB"]
        out = ["| " + " | ".join(hdr) + " |", "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        points, dagger = [], False
        for row in self.rows:
            n = row["name"]
            g, b = self.quality(row, "greedy"), self.quality(row, "beam5")
            lat, from_lat = self.ms(n)
            if from_lat and bfrom:
                su = blat / lat
            else:  # both from the single-sitting methods run
                lat = self.ms_single(n)
                su = bsingle / lat if lat and bsingle else None
                if lat is not None and self.latency is not None:
                    dagger = True
            mark = "" if from_lat or self.latency is None or lat is None else " †"
            mb = os.path.getsize(row["model"]) / 1e6 if os.path.exists(row["model"]) else None
            out.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                label(row, with_model), row["group"], q_cell(g), q_cell(b),
                ftps(self.tps(n, "greedy", 1)), ftps(self.tps(n, "greedy", 32)), ftps(self.tps(n, "beam", 1)),
                ftps(self.tps(n, "beam", 32)), fnum(lat, "%.2f") + mark, fnum(su, "%.2fx") + mark,
                fnum(mb, "%.1f")))
            if g and lat and not mark:  # † rows (another run's latency) are not plotted
                points.append((lat, g[0], n, row["group"]))
        refs = []
        p = self.peers
        if peers_rows and p and p["model"] == self.rows[0]["model"]:
            s16 = p["best"].get(("s2s-fp16", "greedy", 1, 1))
            g = self.quality(self.rows[0], "greedy")
            for v, nm in (("ct2-float32", "CTranslate2 fp32"), ("ct2-int8", "CTranslate2 int8")):
                r1, r32 = p["best"].get((v, "greedy", 1, 1)), p["best"].get((v, "greedy", 32, 1))
                if not r1 and not r32:
                    continue
                bm1 = p["best"].get((v, "beam", 1, 1)) if p["beam"] == 5 else None
                bm32 = p["best"].get((v, "beam", 32, 1)) if p["beam"] == 5 else None
                lat = 1000.0 * r1["seconds"] / r1["sentences"] if r1 else None
                su = s16["seconds"] / s16["sentences"] * 1000.0 / lat if s16 and lat else None
                same = p["same"].get(v)
                qc = ("= teacher (%d/%d greedy lines identical)" % same if same and same[0] == same[1] else
                      "%d/%d greedy lines = teacher's" % same if same else "(teacher weights)")
                mb = p["params"] * 4 / 1e6 if p["params"] and v == "ct2-float32" else None
                out.append("| %s (reference, teacher weights) | reference | %s | - | %s | %s | %s | %s | %s ‡ | %s ‡ | %s |" % (
                    nm, qc, ftps(r1["tok_per_s"] if r1 else None), ftps(r32["tok_per_s"] if r32 else None),
                    ftps(bm1["tok_per_s"] if bm1 else None), ftps(bm32["tok_per_s"] if bm32 else None),
                    fnum(lat, "%.2f"), fnum(su, "%.2fx"), fnum(mb, "%.1f")))
                refs.append(v)
                if g and lat and same and same[0] == same[1]:
                    points.append((lat, g[0], nm, "reference"))
        for k in sorted(set(self.stale)):
            warn("quality row %s does not match the model/flags/data of now: not shown (rerun bench/quality.sh)" % k)
        return out, points, dagger, refs


def run_facts(facts):
    """`command`, date D, commit C (the commit's hash and whether the tree was modified, not its subject)."""
    out = []
    if facts.get("command"):
        out.append(facts["command"])
    if facts.get("date"):
        out.append("date " + facts["date"])
    c = facts.get("commit", "")
    if c:
        out.append("commit " + c.split()[0] + (" (working tree modified)" if "working tree modified" in c else ""))
    return ", ".join(out)


# ---- methods-md: the page of one bench/methods.sh run

def methods_md(a):
    t = TASKS[a.task]
    rows = read_list(a.list)
    speed, count = read_speed(a.raw)
    if speed is None:
        die("no %s" % a.raw)
    qual, _, _ = read_quality(a.qual)
    tab = Table(a.task, rows, speed, count, qual, qlimit=a.qlimit)
    lines, points, _, _ = tab.build(with_model=False, peers_rows=False)
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    scope = "the first %d test %s" % (a.qlimit, t["units"]) if a.qlimit else "all test %s" % t["units"]
    md = ["# The methods side by side: %s, CPU decoding" % t["title"], "",
          "Written by `bench/methods.sh` (see its header for what is measured).", "",
          "- machine: %s, %s cores; %s thread(s)" % (cpu, sh("nproc"), a.threads),
          "- command: `%s`" % a.cmd, "- date: %s" % sh("date -u '+%F %H:%M UTC'"),
          "- commit: %s" % sh("git log -1 --format='%h %s' 2>/dev/null"),
          "- speed: `%s`, the first %s test %s at batch 1 and %s at batch 32; tok/s = output tokens incl. </s> "
          "per second; latency = ms per %s at greedy batch 1; each cell run %s time(s), rows interleaved, the "
          "fastest kept; the cells took %s s" % (a.bin, a.n1, t["units"], a.n32, t["unit"], a.repeat, a.secs),
          "- quality: %s (`%s`, written by `bench/quality.sh`)" % (scope, a.qual), ""] + lines
    notes = [("%s@%s" % (r["name"], m), qual["%s@%s" % (r["name"], m)]["note"]) for r in rows for m, _ in MODES
             if "%s@%s" % (r["name"], m) in qual and qual["%s@%s" % (r["name"], m)]["note"]]
    if notes:
        md += ["", "Decoder notes (last stderr line of the quality run, e.g. DEED's average exit layer):", ""]
        md += ["- %s: %s" % (n, x) for n, x in notes]
    png = os.path.splitext(a.out)[0] + ".png"
    if points:
        front = pareto(points, t["higher"])
        err = plot(png, points, front, a.task, "latency, ms per %s (greedy, batch 1, %s thread)" % (t["unit"], a.threads),
                   "%s: quality vs latency (Pareto front: grey line)" % t["title"], a.work)
        if err:
            warn("no plot: %s" % err)
        else:
            md += ["", "![quality vs latency](%s)" % os.path.basename(png), "",
                   "Pareto front (greedy %s vs latency): %s" % (t["metrics"][0], ", ".join(p[2] for p in front))]
    write_atomic(a.out, "\n".join(md) + "\n")
    print("\n".join(md))


# ---- blocks: the generated parts of docs/RESULTS.md

def block(task, d, out_dir, doc_out, work, qlimit, cmd, list_path):
    t = TASKS[task]
    rows = read_list(list_path or t["list"])
    if task == "bible":
        missing = [r["model"] for r in rows if not os.path.exists(r["model"])]
        if missing:
            warn("%s: the Bible models are not all here (%s ...): block %s not generated"
                 % (list_path or t["list"], missing[0], t["block"]))
            return None
    sfx = t["suffix"]
    mpath, lpath = os.path.join(d, "results-methods%s" % sfx), os.path.join(d, "results-latency%s" % sfx)
    speed, count = read_speed(mpath + ".jsonl")
    if not speed:
        warn("%s.jsonl missing: block %s not generated (run bench/methods.sh%s)" % (
            mpath, t["block"], " --task bible" if task == "bible" else ""))
        return None
    names = {r["name"] for r in rows}
    if not names & {k[0] for k in speed}:
        warn("%s.jsonl has none of the models of the list: block %s not generated" % (mpath, t["block"]))
        return None
    latency = read_latency(lpath + ".jsonl")
    qpath = os.path.join(d, t["qual"])
    qual, _, _ = read_quality(qpath)
    peers = read_peers(os.path.join(d, "results-peers.md")) if task == "g2p" else None
    tab = Table(task, rows, speed, count, qual, qlimit=qlimit, latency=latency, peers=peers)
    lines, points, dagger, refs = tab.build()
    mf, lf = md_facts(mpath + ".md"), md_facts(lpath + ".md")
    pf = peers["facts"] if peers else {}
    rel = lambda p: os.path.relpath(os.path.abspath(p), os.path.dirname(os.path.abspath(doc_out)))
    nsrc = sum(1 for _ in open(t["src"], encoding="utf-8", errors="replace")) if os.path.exists(t["src"]) else None
    n1 = {r["sentences"] for k, r in speed.items() if k[2] == 1}
    n32 = {r["sentences"] for k, r in speed.items() if k[2] == 32}
    reps = sorted(set(count.values()))
    lat_runs = sorted({len(v) for v in latency.values()}) if latency else []
    lat_words = sorted({int(x) for x in re.findall(r"--words (\d+)", lf.get("command", ""))})
    m0 = t["metrics"][0]
    out = ["<!-- generated by bench/report.sh from the files named below; edit those scripts, not this block -->", ""]
    out += lines
    out.append("")
    plural = lambda xs, one: "%s %s%s" % ("/".join(map(str, xs)), one, "" if xs == [1] else "s")
    scope = ("the first %d test %s (quick run)" % (qlimit, t["units"]) if qlimit else
             "all %s test %s" % ("{:,}".format(nsrc) if nsrc else "", t["units"]))
    foot = ["- **%s / %s**: %s, `s2s translate --beam 1|5 --batch 32` then `s2s score` (`%s`, cached by "
            "model sha256 + flags + test data)." % (t["metrics"][0], t["metrics"][1], scope, qpath),
            "- **tok/s**: output tokens incl. </s> per second, 1 thread, the first %s test %s at batch 1 and %s "
            "at batch 32, the fastest of %s per cell (`%s.md`)." % (
                "/".join(map(str, sorted(n1))), t["units"], "/".join(map(str, sorted(n32))), plural(reps, "run"),
                mpath)]
    if latency:
        foot.append("- **latency**: median ms per %s of %s of `bench/latency.sh` (greedy, batch 1, "
                    "1 thread%s; every model once per round, in a shuffled order; `%s.md`); **speed-up** = the "
                    "first row's latency / the row's."
                    % (t["unit"], plural(lat_runs, "round"),
                       ", the first %s test %s" % (lat_words[0], t["units"]) if lat_words else "", lpath))
        if dagger:
            foot.append("- † not in that latency run: ms per %s at greedy batch 1 of the tok/s run, speed-up "
                        "against the first row in that run (not plotted)." % t["unit"])
    else:
        foot.append("- **latency**: ms per %s at greedy batch 1 of the tok/s run; **speed-up** = the first "
                    "row's latency / the row's." % t["unit"])
    if refs:
        foot.append("- ‡ CTranslate2 %s on the teacher's weights (`bench/peers/`, `%s`: the first %s test words "
                    "at batch 1 and %s at batch 32, 1 thread; beam %d there, so no beam-5 cells): a reference "
                    "point, not a method. Its speed-up is against s2s decoding the same teacher (fp16, as "
                    "shipped) in that run; its quality cell compares its greedy outputs with s2s fp32's, line "
                    "by line."
                    % (peers["version"], os.path.join(d, "results-peers.md"),
                       peers["best"].get(("ct2-float32", "greedy", 1, 1), {}).get("sentences", "?"),
                       peers["best"].get(("ct2-float32", "greedy", 32, 1), {}).get("sentences", "?"), peers["beam"]))
    foot.append("- **MB**: the model file%s. `-`: not measured in that run (or no quality row for it)."
                % (" (CTranslate2 fp32: 4 bytes per parameter, as exported)" if refs else ""))
    out += foot
    png = os.path.join(d, t["plot"])
    if points:
        s2s_pts = [p for p in points if p[3] != "reference"]
        front = pareto(s2s_pts, t["higher"])
        err = plot(png, points, front, task, "latency, ms per %s (greedy, batch 1, 1 thread)" % t["unit"],
                   "%s: test %s vs batch-1 latency (Pareto front of the s2s models: grey)" % (t["title"], m0), work)
        if err:
            warn("no plot for %s: %s" % (t["block"], err))
            out += ["", "(no plot: %s)" % err]
        else:
            out += ["", "![%s: quality vs latency](%s)" % (t["title"], rel(png)), "",
                    "Pareto front (greedy %s vs latency, s2s models): %s." % (m0, ", ".join(p[2] for p in front))]
    out += ["", "Runs:", ""]
    cpus = []
    for f in (mf, lf if latency else {}, pf if refs else {}):
        m = re.match(r"(.*?, \d+ cores)", f.get("machine", ""))
        if m and m.group(1) not in cpus:
            cpus.append(m.group(1))
    out.append("- machine: %s; 1 thread%s" % (" / ".join(cpus) or "?",
                                             "" if len(cpus) < 2 else " (the runs below were on different machines)"))
    out.append("- tok/s: %s" % run_facts(mf))
    if latency:
        out.append("- latency: %s" % run_facts(lf))
    if refs:
        out.append("- CTranslate2: %s" % run_facts(pf))
    head = sh("git rev-parse --short HEAD 2>/dev/null") or "?"
    if head != "?" and sh("git status --porcelain 2>/dev/null | head -n 1"):
        head += " (working tree modified)"
    out.append("- this block: `%s`, %s, commit %s" % (cmd, sh("date -u '+%F %H:%M UTC'"), head))
    path = os.path.join(out_dir, t["block"] + ".md")
    write_atomic(path, "\n".join(out) + "\n")
    return path


def blocks(a):
    os.makedirs(a.out_dir, exist_ok=True)
    os.makedirs(a.work, exist_ok=True)
    done = 0
    for task in a.task or ["g2p", "bible"]:
        lst = a.g2p_list if task == "g2p" else a.bible_list
        p = block(task, a.dir, a.out_dir, a.doc_out, a.work, a.qlimit if task == "g2p" else a.bible_qlimit,
                  a.cmd, lst)
        if p:
            print("report.py: wrote %s" % p)
            done += 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="sub", required=True)
    q = sp.add_parser("quality-todo")
    q.add_argument("--task", choices=TASKS, default="g2p")
    q.add_argument("--list", required=True)
    q.add_argument("--tsv", required=True)
    q.add_argument("--jobs-file", required=True)
    q.add_argument("--limit", type=int)
    q.add_argument("--force", action="store_true")
    q = sp.add_parser("quality-merge")
    q.add_argument("--task", choices=TASKS, default="g2p")
    q.add_argument("--list")
    q.add_argument("--tsv", required=True)
    q.add_argument("--jobs-file", required=True)
    q.add_argument("--results", required=True)
    q.add_argument("--limit", type=int)
    m = sp.add_parser("methods-md")
    m.add_argument("--task", choices=TASKS, default="g2p")
    m.add_argument("--list", required=True)
    m.add_argument("--raw", required=True)
    m.add_argument("--qual", required=True)
    m.add_argument("--qlimit", type=int)
    m.add_argument("--out", required=True)
    m.add_argument("--work", required=True)
    for k in ("cmd", "n1", "n32", "threads", "secs", "repeat", "bin"):
        m.add_argument("--" + k, default="?")
    b = sp.add_parser("blocks")
    b.add_argument("--dir", default="bench", help="where the results files are")
    b.add_argument("--out-dir", required=True, help="where the block files go")
    b.add_argument("--doc-out", default="docs/RESULTS.md", help="the file the blocks will be put in (for links)")
    b.add_argument("--work", required=True)
    b.add_argument("--task", action="append", choices=TASKS)
    b.add_argument("--qlimit", type=int, help="G2P quality on the first N test words (quick)")
    b.add_argument("--bible-qlimit", type=int)
    b.add_argument("--g2p-list")
    b.add_argument("--bible-list")
    b.add_argument("--cmd", default="bash bench/report.sh")
    a = ap.parse_args()
    if a.sub == "quality-todo":
        return quality_todo(a)
    if a.sub == "quality-merge":
        return quality_merge(a)
    if a.sub == "methods-md":
        return methods_md(a)
    return blocks(a)


if __name__ == "__main__":
    sys.exit(main() or 0)
