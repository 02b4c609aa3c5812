#!/usr/bin/env bash
# bench/latency.sh - batch-1 greedy latency of the models of a bench/methods.sh list,
# robust to a noisy machine: every model runs REPS times, the order shuffled in every
# round, and the table gives the fastest and the median run of each, with the ratio to
# the first row (the baseline) for both.
#
#   bash bench/latency.sh [--list bench/latency-g2p.txt] [--reps 7] [--words 300] [--out bench/results-latency.md]
#                         [--src data/g2p/test.src]   (the inputs: the first WORDS lines of SRC)
#
# Raw JSON lines (bench_s2s, one per run) go next to the table (same name, .jsonl).
# BUILD (build): where bench_s2s is; built unless NO_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
LIST=bench/latency-g2p.txt REPS=7 WORDS=300 OUT=bench/results-latency.md SRC=data/g2p/test.src
while [ $# -gt 0 ]; do
    case "$1" in
        --list) LIST="$2"; shift ;;
        --reps) REPS="$2"; shift ;;
        --words) WORDS="$2"; shift ;;
        --out) OUT="$2"; shift ;;
        --src) SRC="$2"; shift ;;
        -h|--help) sed -n '2,/^set /{/^set /d;p}' "$0"; exit 0 ;;
        *) echo "bench/latency.sh: unknown option $1 (try --help)" >&2; exit 2 ;;
    esac
    shift
done
[ -f "$SRC" ] || { echo "bench/latency.sh: $SRC missing (run make data)" >&2; exit 1; }
BUILD=${BUILD:-build}
BIN=$BUILD/bench_s2s
if [ "${NO_BUILD:-0}" != 1 ]; then make --no-print-directory BUILD="$BUILD" "$BIN" >&2; fi
[ -x "$BIN" ] || { echo "bench/latency.sh: no $BIN (build it, or unset NO_BUILD)" >&2; exit 1; }
W=$BUILD/bench-latency
mkdir -p "$W" "$(dirname "$OUT")"
rows=$(grep -v -e '^[[:space:]]*#' -e '^[[:space:]]*$' "$LIST")
base=$(echo "$rows" | head -n 1 | cut -d'|' -f1)
"$BIN" -m "$(echo "$rows" | head -n 1 | cut -d'|' -f2)" --dump-ids "$SRC" --side src \
    --limit "$WORDS" > "$W/ids"
raw=${OUT%.md}.jsonl
: > "$raw.tmp"
t0=$SECONDS
for rep in $(seq "$REPS"); do
    echo "== round $rep of $REPS" >&2
    while IFS='|' read -r name model flags group; do
        # shellcheck disable=SC2086
        "$BIN" -m "$model" -i "$W/ids" --threads 1 --batch 1 $flags 2>/dev/null | grep '"greedy"' \
            | sed "s/^{/{\"name\": \"$name\", \"round\": $rep, /" >> "$raw.tmp"
    done < <(echo "$rows" | shuf)
done
mv "$raw.tmp" "$raw"
python3 - "$raw" "$OUT" "$base" "$LIST" "$REPS" "$WORDS" "$((SECONDS - t0))" "$SRC" <<'EOF'
import json, os, statistics, subprocess, sys
raw, out, base, lst, reps, words, secs, src = sys.argv[1:]
d, order = {}, []
for l in open(raw):
    r = json.loads(l)
    if r["name"] not in d: order.append(r["name"])
    d.setdefault(r["name"], []).append(1000.0 * r["seconds"] / r["sentences"])
names = [l.split("|")[0] for l in open(lst) if l.strip() and not l.lstrip().startswith("#")]
sh = lambda c: subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
bmin, bmed = min(d[base]), statistics.median(d[base])
md = ["# Batch-1 greedy latency, repeated", "",
      "Written by `bench/latency.sh` (its header says how). ms per input line (word or sentence), output incl. </s>; "
      "speed-up = baseline ms / model ms.", "",
      "- machine: %s, %s cores; 1 thread" % (sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(), sh("nproc")),
      "- command: `bash bench/latency.sh --list %s --reps %s --words %s --src %s`; %s s" % (lst, reps, words, src, secs),
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
