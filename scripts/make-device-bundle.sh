#!/usr/bin/env bash
# make-device-bundle.sh - build what scripts/device-gpu.sh runs on a rented GPU
# machine (which has the CUDA driver and toolkit but none of our Debian libraries):
#   build-dev/{s2s,s2s_tests,bench_s2s}  CUDA build, portable AVX2 (x86-64-v3)
#   build-dev/bundle.tar.xz             OpenBLAS (OpenMP), libgomp, libgfortran,
#                                       Criterion and the libraries they load
#   build-dev/data.tar.xz               the prepared G2P data (make data first)
#   build-dev/bin/                      the three binaries, stripped (the working tree
#                                       that travels is limited to 64 MiB)
# Pass to the device's `run` as carry: build-dev/bin build-dev/bundle.tar.xz
# build-dev/data.tar.xz
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh test
make --no-print-directory CUDA=1 MARCH=x86-64-v3 BUILD=build-dev build-dev/s2s build-dev/s2s_tests build-dev/bench_s2s
tmp=$(mktemp -d)
libs() { ldd "$1" | awk '/=>/{print $3}' | grep -v -E '/(libc|libm|libpthread|libdl|librt|libresolv)\.so|/cuda|libcublas|libcudart|libstdc\+\+|libgcc_s'; }
for l in $(libs build-dev/s2s_tests) $(libs /usr/lib/x86_64-linux-gnu/libcriterion.so.3); do cp -L "$l" "$tmp/"; done
tar cJf build-dev/bundle.tar.xz -C "$tmp" .
rm -rf "$tmp"
mkdir -p build-dev/bin
for b in s2s s2s_tests bench_s2s; do strip -o build-dev/bin/$b build-dev/$b; done
tar cJf build-dev/data.tar.xz data/g2p/train.src data/g2p/train.tgt data/g2p/dev.src data/g2p/dev.tgt \
    data/g2p/test.src data/g2p/test.tgt $(ls data/g2p/train.kd.tgt 2>/dev/null)
ls -la build-dev/bundle.tar.xz build-dev/data.tar.xz build-dev/bin
