#!/usr/bin/env bash
# demo.sh - the main job (`make demo`): run every shipped G2P model in models/
# side by side on the CMUdict test set: quality (WER/PER), speed, speed-up.
# Installs what it needs (Debian packages) and prepares the data on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${S2S_BIN:-build/s2s}
THREADS=${THREADS:-1}
BATCH=${BATCH:-1}   # batch 1: the per-word latency the four methods cut (BATCH=32: throughput)
bash scripts/install-deps.sh build
[ -x "$BIN" ] || make --no-print-directory
if [ ! -f data/g2p/test.src ]; then
  echo "demo: preparing the G2P data (first run only)..." >&2
  bash scripts/prepare-data.sh g2p
fi
echo "== s2s: a few words with the default model =="
printf 'hello\nworld\ntransformer\ndecoding\n' | "$BIN" translate -q
echo
n=$(wc -l < data/g2p/test.src)
printf '== CMUdict test set (%s words), greedy, batch %s, %s thread(s), %s ==\n' "$n" "$BATCH" "$THREADS" "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
printf '%-46s %8s %10s %7s %7s %10s %8s\n' model "size MB" params "WER %" "PER %" "words/s" speed-up
base=""
seen=""
for m in models/g2p-teacher.safetensors models/g2p-*.safetensors; do
  [ -f "$m" ] || continue
  case " $seen " in *" $m "*) continue ;; esac
  seen="$seen $m"
  hyp=$(mktemp)
  log=$(mktemp)
  flags=""
  case "$m" in *deed*) flags="--exit-threshold 0.8" ;; esac  # DEED: early exit (docs/RESULTS.md)
  # shellcheck disable=SC2086
  "$BIN" translate -m "$m" --threads "$THREADS" --batch "$BATCH" $flags < data/g2p/test.src > "$hyp" 2> "$log"
  rate=$(sed -n 's/.* lines in \([0-9.]*\) s (\([0-9.]*\) lines\/s.*/\2/p' "$log")
  wer=$("$BIN" score --metric wer --ref data/g2p/test.tgt --hyp "$hyp" | awk '{print $3}')
  per=$("$BIN" score --metric per --ref data/g2p/test.tgt --hyp "$hyp" | awk '{print $3}')
  params=$("$BIN" info -m "$m" | awk '/^parameters:/{print $2}')
  size=$(awk -v b="$(stat -c %s "$m")" 'BEGIN{printf "%.1f", b/1e6}')
  [ -n "$base" ] || base=$rate
  up=$(awk -v a="$rate" -v b="$base" 'BEGIN{printf "%.2fx", a/b}')
  printf '%-46s %8s %10s %7s %7s %10s %8s\n' "$(basename "$m")${flags:+ (tau 0.8)}" "$size" "$params" "$wer" "$per" "$rate" "$up"
  rm -f "$hyp" "$log"
done
