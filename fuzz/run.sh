#!/usr/bin/env bash
# fuzz/run.sh - build the libFuzzer harnesses (fuzz/fuzz_*.c) with clang
# (-fsanitize=fuzzer,address,undefined, against src/*.c directly: no OpenMP, no
# BLAS) into build-fuzz/, and run each for SECONDS on a scratch copy of its
# seed corpus (fuzz/corpus/<harness>/, never modified).
#
#   bash fuzz/run.sh [SECONDS] [HARNESS...]   default 60 s each, all four harnesses
#   bash fuzz/run.sh build                    only build
#   bash fuzz/run.sh seeds                    rewrite fuzz/corpus/ (fuzz/make_seeds.c)
#   make fuzz FUZZ_SECONDS=300                the same through make
#
# Prints the executions per harness (libFuzzer's "Done N runs in S second(s)")
# and exits 1 if a harness crashed, leaked, hit UB, ran out of memory or timed
# out; its input is saved under build-fuzz/crashes/ (reproduce:
# build-fuzz/fuzz_<harness> build-fuzz/crashes/<file>). Logs: build-fuzz/logs/.
# FUZZ_KEEP_CORPUS=1 starts from the corpus the last run grew (build-fuzz/work/)
# instead of the seeds alone. Installs clang and libclang-rt-14-dev with
# apt-get if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

die() { echo "fuzz/run.sh: $*" >&2; exit 1; }

ALL=(safetensors tokenizer config translate_lines)
MODE=run
SECONDS_EACH=60
HARNESSES=()
for a in "$@"; do
    case "$a" in
        build) MODE=build ;;
        seeds) MODE=seeds ;;
        safetensors|tokenizer|config|translate_lines) HARNESSES+=("$a") ;;
        *)
            [[ "$a" =~ ^[0-9]+$ ]] || die "usage: bash fuzz/run.sh [SECONDS] [safetensors|tokenizer|config|translate_lines...] | build | seeds"
            SECONDS_EACH=$a ;;
    esac
done
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=("${ALL[@]}")
[ "$SECONDS_EACH" -ge 1 ] || die "SECONDS must be at least 1"

# ---------------------------------------------------------------- toolchain
CC=${FUZZ_CC:-clang}
PKGS=(clang libclang-rt-14-dev)
if command -v dpkg-query >/dev/null 2>&1; then
    missing=()
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        SUDO=
        if [ "$(id -u)" -ne 0 ]; then
            command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null ||
                die "needs ${missing[*]}: run 'sudo apt-get install ${missing[*]}' (no root, no passwordless sudo)"
            SUDO=sudo
        fi
        echo "fuzz/run.sh: installing ${missing[*]}" >&2
        { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2 ||
            die "apt-get install ${missing[*]} failed"
    fi
fi
command -v "$CC" >/dev/null 2>&1 || die "no $CC: install clang and libclang-rt-14-dev (apt-get install clang libclang-rt-14-dev)"

B=build-fuzz
mkdir -p "$B/obj" "$B/logs" "$B/crashes"
echo '*' > "$B/.gitignore" # keep the build directory out of git status
probe="$B/probe"
printf '#include <stdint.h>\n#include <stddef.h>\nint LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }\n' > "$probe.c"
"$CC" -fsanitize=fuzzer,address,undefined "$probe.c" -o "$probe" >"$probe.log" 2>&1 ||
    die "$CC cannot build a libFuzzer program (-fsanitize=fuzzer,address,undefined): is libclang-rt-14-dev installed? ($(head -c 300 "$probe.log" | tr '\n' ' '))"

# ---------------------------------------------------------------- build
WARN="-Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas"
BASE="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer $WARN -Isrc -Iinclude -Isrc/cli -Ifuzz"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
CFLAGS="$BASE $SAN -fsanitize=fuzzer-no-link -fsanitize-coverage-ignorelist=fuzz/coverage_ignore.txt"
HDRS=$(ls src/*.h src/cli/*.h include/*.h fuzz/*.h)

# compile SRC to OBJ if OBJ is missing or older than SRC, a header or this script
compile() {
    local src=$1 obj=$2; shift 2
    local stale=0
    if [ ! -e "$obj" ] || [ "$src" -nt "$obj" ] || [ fuzz/run.sh -nt "$obj" ] || [ fuzz/coverage_ignore.txt -nt "$obj" ]; then stale=1; fi
    if [ $stale = 0 ]; then for h in $HDRS; do [ "$h" -nt "$obj" ] && { stale=1; break; }; done; fi
    [ $stale = 1 ] || return 0
    "$CC" $CFLAGS "$@" -c "$src" -o "$obj" || die "compiling $src failed"
}

build_lib() {
    local objs=()
    for s in src/*.c; do
        local o="$B/obj/$(basename "${s%.c}").o"
        compile "$s" "$o"
        objs+=("$o")
    done
    rm -f "$B/libs2s-fuzz.a"
    ar rcs "$B/libs2s-fuzz.a" "${objs[@]}"
    # `s2s train --config`: the CLI's option code (config harness only)
    compile src/cli/cmd_train.c "$B/obj/cli_cmd_train.o"
    compile src/cli/args.c "$B/obj/cli_args.o"
}

build_harness() {
    local h=$1 extra=() objs=()
    if [ "$h" = config ]; then extra=(-DS2S_FUZZ_CLI); objs=("$B/obj/cli_cmd_train.o" "$B/obj/cli_args.o"); fi
    "$CC" $BASE $SAN -fsanitize=fuzzer "${extra[@]}" "fuzz/fuzz_$h.c" "${objs[@]}" "$B/libs2s-fuzz.a" \
        -lm -lpthread -o "$B/fuzz_$h" || die "building fuzz/fuzz_$h.c failed"
}

if [ "$MODE" = seeds ]; then
    # plain ASan build of the seed writer (no fuzzer runtime)
    "$CC" $BASE $SAN fuzz/make_seeds.c src/*.c -lm -lpthread -o "$B/make_seeds" || die "building fuzz/make_seeds.c failed"
    rm -rf fuzz/corpus.new
    "$B/make_seeds" fuzz/corpus.new || die "make_seeds failed"
    rm -rf fuzz/corpus && mv fuzz/corpus.new fuzz/corpus
    echo "fuzz/run.sh: wrote fuzz/corpus ($(du -sk fuzz/corpus | cut -f1) KB, $(find fuzz/corpus -type f | wc -l) files)"
    exit 0
fi

echo "fuzz/run.sh: building with $("$CC" --version | head -1)"
build_lib
for h in "${HARNESSES[@]}"; do build_harness "$h"; done
if [ "$MODE" = build ]; then echo "fuzz/run.sh: built ${HARNESSES[*]/#/$B/fuzz_}"; exit 0; fi

# ---------------------------------------------------------------- run
max_len() {
    case $1 in
        safetensors) echo 32768 ;; # the seed models are 3..13 KB
        tokenizer) echo 8192 ;;
        config) echo 4096 ;;
        translate_lines) echo 4096 ;;
    esac
}

export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=0:detect_leaks=1:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fails=0
summary=()
for h in "${HARNESSES[@]}"; do
    work="$B/work/$h"
    [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ] || rm -rf "$work" # FUZZ_KEEP_CORPUS=1: go on from the last run's corpus
    mkdir -p "$work"
    if [ -d "fuzz/corpus/$h" ]; then cp -R "fuzz/corpus/$h/." "$work/"; fi
    dict=()
    if [ -f "fuzz/dict/$h.dict" ]; then dict=("-dict=fuzz/dict/$h.dict"); fi
    log="$B/logs/$h.log"
    echo "fuzz/run.sh: $h for ${SECONDS_EACH}s (log $log)"
    set +e
    # -close_fd_mask=3: the library's and the CLI's messages go nowhere;
    # libFuzzer and sanitizer reports still reach the log.
    "$B/fuzz_$h" -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$h")" -rss_limit_mb=2048 \
        -timeout=30 -print_final_stats=1 -close_fd_mask=3 -artifact_prefix="$B/crashes/$h-" \
        "${dict[@]}" "$work" >"$log" 2>&1
    rc=$?
    set -e
    runs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\1/p' "$log" | tail -1)
    secs=$(sed -n 's/^Done \([0-9]*\) runs in \([0-9]*\) second.*/\2/p' "$log" | tail -1)
    if [ -z "$runs" ]; then # a crash ends the run early: count from the stats lines
        runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -1)
    fi
    corpus=$(find "$work" -type f | wc -l)
    if [ $rc -ne 0 ]; then
        fails=$((fails + 1))
        art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        echo "fuzz/run.sh: $h FAILED (exit $rc); input: ${art:-none saved}; report:" >&2
        grep -m1 -E "ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|property failed|internal error|out-of-memory|timeout" "$log" >&2 || true
        summary+=("$(printf '%-16s %12s %8s  %s' "$h" "${runs:-?}" "${secs:-?}" "FAILED: ${art:-see $log}")")
    else
        summary+=("$(printf '%-16s %12s %8s  ok (corpus %d)' "$h" "${runs:-?}" "${secs:-?}" "$corpus")")
    fi
done
printf '%-16s %12s %8s  %s\n' harness executions seconds result
printf '%s\n' "${summary[@]}"
[ $fails -eq 0 ] || die "$fails harness(es) failed; inputs under $B/crashes/"
