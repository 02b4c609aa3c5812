#!/usr/bin/env bash
# bench/latency.sh - batch-1 greedy latency of the models of a bench/methods.sh list,
# robust to a noisy machine: every model runs REPS times, the order shuffled in every
# round, and the table gives the fastest and the median run of each, with the ratio to
# the first row (the baseline) for both.
#
#   bash bench/latency.sh [--list bench/latency-g2p.txt] [--reps 7] [--words 300] [--out bench/results-latency.md]
#
# Raw JSON lines (bench_s2s, one per run) go next to the table (same name, .jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=bench/latency-g2p.txt REPS=7 WORDS=300 OUT=bench/results-latency.md
while [ $# -gt 0 ]; do
    case "$1" in
        --list) LIST="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --words) WORDS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        -h|--help) sed -n 2,10p "$0"; exit 0 ;;
        *) echo "bench/latency.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -f data/g2p/test.src ] || { echo "bench/latency.sh: data/g2p/test.src missing (run make data)" >&2; exit 1; }
make --no-print-directory build/bench_s2s >&2
W=build/bench-latency
mkdir -p "$W"
rows=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$LIST")
base=$(echo "$rows" | head -n 1 | cut -d'|' -f1)
build/bench_s2s -m "$(echo "$rows" | head -n 1 | cut -d'|' -f2)" --dump-ids data/g2p/test.src --side src \
    --limit "$WORDS" > "$W/ids"
raw=${OUT%.md}.jsonl
: > "$raw.tmp"
t0=$SECONDS
for rep in $(seq "$REPS"); do
    echo "== round $rep of $REPS" >&2
    while IFS='|' read -r name model flags group; do
        # shellcheck disable=SC2086
        build/bench_s2s -m "$model" -i "$W/ids" --threads 1 --batch 1 $flags 2>/dev/null | grep '"greedy"' \
            | sed "s/^{/{\"name\": \"$name\", \"round\": $rep, /" >> "$raw.tmp"
    done < <(echo "$rows" | shuf)
done
mv "$raw.tmp" "$raw"
python3 - "$raw" "$OUT" "$base" "$LIST" "$REPS" "$WORDS" "$((SECONDS - t0))" <<'EOF'
import json, os, statistics, subprocess, sys
raw, out, base, lst, reps, words, secs = sys.argv[1:]
d, order = {}, []
for l in open(raw):
    r = json.loads(l)
    if r["name"] not in d: order.append(r["name"])
    d.setdefault(r["name"], []).append(1000.0 * r["seconds"] / r["sentences"])
names = [l.split("|")[0] for l in open(lst) if l.strip() and not l.lstrip().startswith("#")]
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
bmin, bmed = min(d[base]), statistics.median(d[base])
md = ["# Batch-1 greedy latency, repeated", "",
      "Written by `bench/latency.sh` (its header says how). ms per word, output incl. </s>; "
      "speed-up = baseline ms / model ms.", "",
      "- machine: %s, %s cores; 1 thread" % (sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(), sh("nproc")),
      "- command: `bash bench/latency.sh --list %s --reps %s --words %s`; %s s" % (lst, reps, words, secs),
      "- date: %s; commit: %s" % (sh("date -u '+%F %H:%M UTC'"), sh("git log -1 --format=%h")), "",
      "| model | fastest ms | median ms | speed-up (fastest) | speed-up (median) | latency change (median) | all runs |",
      "|---|---:|---:|---:|---:|---:|---|"]
for n in names:
    if n not in d: continue
    v = d[n]; mn, me = min(v), statistics.median(v)
    md.append("| %s | %.2f | %.2f | %.2fx | %.2fx | %+.0f %% | %s |" % (
        n, mn, me, bmin / mn, bmed / me, 100.0 * (me / bmed - 1.0), " ".join("%.2f" % x for x in v)))
open(out + ".tmp", "w").write("\n".join(md) + "\n")
os.replace(out + ".tmp", out)
print("\n".join(md))
EOF
