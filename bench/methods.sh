#!/usr/bin/env bash
# bench/methods.sh - the four accelerations side by side on G2P: decoding speed of
# every model of a list on this machine, its test-set quality, the speed-up over the
# teacher, and a plot of quality against batch-1 latency with the Pareto front.
#
#   bash bench/methods.sh                          # bench/methods-g2p.txt -> bench/results-methods.md + .png
#   bash bench/methods.sh --quick                  # 40 / 128 words, only the first 4 models: a smoke test
#   bash bench/methods.sh --quality                # also (re)decode the whole test set for every row
#   bash bench/methods.sh --list L --out R.md      # another model list / output
#   REPEAT=3 bash bench/methods.sh                 # every cell 3 times (rows interleaved), keep the fastest
#
# The list has one row per line, `NAME|MODEL|FLAGS|GROUP` (FLAGS: extra decoding flags
# of `s2s translate` and bench_s2s, e.g. `--exit-threshold 0.9`; GROUP: teacher, hybrid,
# t2r, deed, nash, stack); `#` starts a comment; the first row is the baseline.
# Quality (WER/PER on all 5,226 test words, beam 5 and greedy) is read from
# bench/quality-g2p.tsv, which --quality rewrites with scripts/eval-g2p.sh (several at
# once); rows without a quality line are shown as "-".
# Speed: build/bench_s2s, 1 thread, the first N1 (300) test words at batch 1 and N32
# (1024) at batch 32, greedy and beam 5; latency = wall time per sentence at batch 1.
set -euo pipefail
cd "$(dirname "$0")/.."

CMDLINE="bash bench/methods.sh${*:+ $*}"
LIST=bench/methods-g2p.txt
OUT=bench/results-methods.md
QUAL=bench/quality-g2p.tsv
QUICK=0
QUALITY=0
THREADS=${THREADS:-1}
JOBS=${JOBS:-2}
REPEAT=${REPEAT:-1}
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --quality) QUALITY=1 ;;
        --list) LIST="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --qual) QUAL="$2"; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) echo "bench/methods.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$QUICK" = 1 ]; then N1=${N1:-40}; N32=${N32:-128}; else N1=${N1:-300}; N32=${N32:-1024}; fi
[ -f data/g2p/test.src ] || { echo "bench/methods.sh: data/g2p/test.src missing (run make data)" >&2; exit 1; }
[ -f "$LIST" ] || { echo "bench/methods.sh: no model list $LIST" >&2; exit 1; }

W=build/bench-methods
mkdir -p "$W"
echo "== build" >&2
bash scripts/install-deps.sh bench
make --no-print-directory build/s2s build/bench_s2s >&2

rows=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$LIST")
[ "$QUICK" = 1 ] && rows=$(echo "$rows" | head -n 4)
missing=0
while IFS='|' read -r name model flags group; do
    [ -f "$model" ] || { echo "bench/methods.sh: $name: no model file $model" >&2; missing=1; }
done <<< "$rows"
[ $missing = 0 ] || exit 1

# ---- quality: every row, greedy and beam 5, on the whole test set
if [ "$QUALITY" = 1 ]; then
    echo "== quality ($JOBS at once)" >&2
    q=$W/quality.tmp; : > "$q"
    while IFS='|' read -r name model flags group; do
        for mode in greedy beam5; do
            b=1; [ $mode = beam5 ] && b=5
            printf '%s\n' "EVAL_DIR=$W/eval bash scripts/eval-g2p.sh '$name@$mode' '$model' --beam $b --batch 32 $flags"
        done
    done <<< "$rows" | xargs -P "$JOBS" -I{} bash -c '{}' >> "$q"
    { echo "# name@mode	wer	per	decoder note (scripts/eval-g2p.sh; $(git rev-parse --short HEAD 2>/dev/null), $(date -u +%F))"
      sort "$q" | awk '{note=""; for (i = 6; i <= NF; i++) note = note " " $i; printf "%s\t%s\t%s\t%s\n", $1, $3, $5, note}'; } > "$QUAL"
    echo "wrote $QUAL" >&2
fi

# ---- speed
ids=$W/test.ids
first_model=$(echo "$rows" | head -n 1 | cut -d'|' -f2)
build/bench_s2s -m "$first_model" --dump-ids data/g2p/test.src --side src > "$ids"
head -n "$N1" "$ids" > "$W/b1.ids"
head -n "$N32" "$ids" > "$W/b32.ids"
res=$W/results.jsonl; : > "$res"
t0=$SECONDS
for rep in $(seq "$REPEAT"); do
    while IFS='|' read -r name model flags group; do
        echo "== $name (run $rep of $REPEAT)" >&2
        for b in 1 32; do
            # shellcheck disable=SC2086
            build/bench_s2s -m "$model" -i "$W/b$b.ids" --threads "$THREADS" --beam 5 --batch "$b" $flags \
                2> "$W/$name.b$b.err" | sed "s/^{/{\"name\": \"$name\", \"group\": \"$group\", /" >> "$res"
        done
    done <<< "$rows"
done
secs=$((SECONDS - t0))

# ---- table + plot
python3 - "$LIST" "$res" "$QUAL" "$OUT" "$CMDLINE" "$N1" "$N32" "$THREADS" "$secs" "$QUICK" "$REPEAT" <<'EOF'
import json, os, subprocess, sys
lst, res, qual, out, cmd, n1, n32, threads, secs, quick, repeat = sys.argv[1:]
rows = []
for l in open(lst):
    l = l.strip()
    if not l or l.startswith("#"): continue
    name, model, flags, group = (l.split("|") + ["", "", "", ""])[:4]
    rows.append((name, model, flags.strip(), group))
if quick == "1": rows = rows[:4]
speed = {}
for l in open(res):
    r = json.loads(l)
    k = (r["name"], r["mode"], r["batch"])
    if k not in speed or r["tok_per_s"] > speed[k]["tok_per_s"]: speed[k] = r  # fastest of the repeats
q = {}
if os.path.exists(qual):
    for l in open(qual):
        if l.startswith("#"): continue
        f = l.rstrip("\n").split("\t")
        q[f[0]] = (float(f[1]), float(f[2]), f[3].strip() if len(f) > 3 else "")
def tps(n, m, b):
    r = speed.get((n, m, b)); return r["tok_per_s"] if r else None
def lat(n):  # ms per sentence, greedy batch 1
    r = speed.get((n, "greedy", 1)); return 1000.0 * r["seconds"] / r["sentences"] if r else None
base = rows[0][0]
def fmt(x, f="%.0f"): return "-" if x is None else f % x
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
md = ["# The methods side by side: G2P (CMUdict), CPU decoding", "",
      "Written by `bench/methods.sh` (see its header for what is measured).", "",
      "- machine: %s, %s cores; %s thread(s)" % (cpu, sh("nproc"), threads),
      "- command: `%s`" % cmd, "- date: %s" % sh("date -u '+%F %H:%M UTC'"),
      "- commit: %s" % sh("git log -1 --format='%h %s' 2>/dev/null"),
      "- speed: `build/bench_s2s`, the first %s test words at batch 1 and %s at batch 32; tok/s = output tokens incl. </s> per second; latency = ms per word at greedy batch 1; each cell run %s time(s), rows interleaved, the fastest kept; the cells took %s s" % (n1, n32, repeat, secs),
      "- quality: all 5,226 test words (`%s`, written by `bench/methods.sh --quality`)" % qual, "",
      "| model | group | WER / PER greedy | WER / PER beam 5 | greedy b1 tok/s | speed-up | greedy b32 | beam5 b1 | beam5 b32 | latency ms | MB |",
      "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
pts = []
for name, model, flags, group in rows:
    g, b = q.get(name + "@greedy"), q.get(name + "@beam5")
    t1 = tps(name, "greedy", 1); tb = tps(base, "greedy", 1)
    su = t1 / tb if t1 and tb else None
    mb = os.path.getsize(model) / 1e6
    label = name + (" (`%s`)" % flags if flags else "")
    md.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %.1f |" % (
        label, group, "%.2f / %.2f" % g[:2] if g else "-", "%.2f / %.2f" % b[:2] if b else "-",
        fmt(t1), fmt(su, "%.2fx"), fmt(tps(name, "greedy", 32)), fmt(tps(name, "beam", 1)),
        fmt(tps(name, "beam", 32)), fmt(lat(name), "%.2f"), mb))
    if g and lat(name): pts.append((lat(name), g[0], name, group))
notes = [(n, q[n][2]) for n in sorted(q) if q[n][2]]
if notes:
    md += ["", "Decoder notes (last stderr line of the quality run, e.g. DEED's average exit layer):", ""]
    md += ["- %s: %s" % (n, t) for n, t in notes]
png = os.path.splitext(out)[0] + ".png"
if pts:
    pts.sort()
    front, best = [], 1e9
    for p in pts:
        if p[1] < best: front.append(p); best = p[1]
    dat = os.path.join(os.path.dirname(res), "plot")
    groups = sorted({p[3] for p in pts})
    with open(dat + ".pts", "w") as f:
        for gi, gr in enumerate(groups):
            f.write("# %s\n" % gr)
            for p in pts:
                if p[3] == gr: f.write("%f %f %s\n" % (p[0], p[1], p[2]))
            f.write("\n\n")
    with open(dat + ".front", "w") as f:
        for p in front: f.write("%f %f\n" % (p[0], p[1]))
    plots = ", ".join("'%s.pts' index %d using 1:2 with points pt 7 ps 1.3 lc %d title '%s', '' index %d using 1:2:3 with labels offset 0,0.8 font ',8' notitle" % (dat, i, i + 1, gr, i) for i, gr in enumerate(groups))
    gp = ("set terminal pngcairo size 1000,650; set output '%s'; set xlabel 'latency, ms per word (greedy, batch 1, %s thread)';"
          "set ylabel 'test WER %% (greedy)'; set grid; set key outside right; set title 'G2P: quality vs latency (Pareto front: line)';"
          "plot '%s.front' using 1:2 with lines lw 2 lc rgb '#888888' title 'Pareto front', %s") % (png, threads, dat, plots)
    r = subprocess.run(["gnuplot", "-e", gp], capture_output=True, text=True)
    if r.returncode == 0:
        md += ["", "![quality vs latency](%s)" % os.path.basename(png), "",
               "Pareto front (greedy WER vs latency): " + ", ".join(p[2] for p in front)]
    else:
        print("bench/methods.sh: gnuplot failed (%s): no plot" % r.stderr.strip()[:200], file=sys.stderr)
tmp = out + ".tmp"
open(tmp, "w").write("\n".join(md) + "\n")
os.replace(tmp, out)
print("\n".join(md))
EOF
