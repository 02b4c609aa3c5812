# Makefile - builds libs2s (build/libs2s.a), the CLI (build/s2s) and the tests.
#   make            build ./build/s2s
#   make test       run the unit/gradient/end-to-end tests (Criterion)
#   make SAN=1 test the same under AddressSanitizer + UBSan (build dir build-san/)
#   make data       prepare data/ from Debian packages (scripts/prepare-data.sh)
#   make bench      run the CPU benchmarks and regenerate the tables of docs/RESULTS.md (bench/report.sh;
#                   BENCH_ARGS=--quick: a one-minute check that writes to $(BUILD)/bench-quick/ only)
#   make bench-gpu  the GPU benchmark against PyTorch (bench/gpu.sh: needs a GPU and python3 with CUDA torch)
#   make bench-peers  CPU decoding against CTranslate2 on the same weights (bench/peers/run.sh; venv .venv-peers)
#   make demo       the main job: run the shipped models side by side
#   make fuzz       libFuzzer harnesses, FUZZ_SECONDS each; make tsan: thread-safety under TSan
# Switches: V=1 (echo commands), SAN=1, OPENMP=0, NATIVE=0 (no -march), MARCH=x86-64-v3 (portable AVX2 build), DEBUG=1,
#   CUDA=1/0 (default: 1 when nvcc is found and SAN=0; the GPU backend, src/*.cu),
#   CUDA_ARCH (default 80 90: sm_80 and sm_90 machine code plus compute_90 PTX).
CC      ?= cc
SAN     ?= 0
NVCC    ?= $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
ifeq ($(SAN),1)
CUDA    ?= 0
else ifneq ($(NVCC),)
CUDA    ?= 1
else
CUDA    ?= 0
endif
CUDA_ARCH ?= 80 90
# V=1 prints every compiler command
V       ?= 0
Q       := $(if $(filter 1,$(V)),,@)
OPENMP  ?= 1
NATIVE  ?= 1
MARCH   ?= native
DEBUG   ?= 0

ifeq ($(SAN),1)
BUILD   ?= build-san
else
BUILD   ?= build
endif

OPT     := -O2
ifeq ($(DEBUG),1)
OPT     := -O0 -g
endif
CFLAGS  := -std=c11 -D_GNU_SOURCE $(OPT) -g -Wall -Wextra -Wno-unused-parameter -Werror=implicit-function-declaration -fno-math-errno -Isrc -Iinclude
ifeq ($(NATIVE),1)
CFLAGS  += -march=$(MARCH)
endif
LDLIBS  := -lm

# OpenBLAS: prefer Debian's OpenMP build (shares OpenMP's thread pool, see README).
BLAS_INC := $(firstword $(wildcard /usr/include/x86_64-linux-gnu/openblas-openmp /usr/include/openblas))
BLAS_LIB := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/openblas-openmp /usr/lib/openblas-openmp))
ifneq ($(BLAS_INC),)
CFLAGS  += -I$(BLAS_INC) -DS2S_HAVE_BLAS=1
LDLIBS  += -L$(BLAS_LIB) -Wl,-rpath,$(BLAS_LIB) -lopenblas
endif
ifeq ($(OPENMP),1)
CFLAGS  += -fopenmp
LDLIBS  += -fopenmp
endif
ifeq ($(SAN),1)
CFLAGS  += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDLIBS  += -fsanitize=address,undefined
endif

ifeq ($(CUDA),1)
CUDA_HOME := $(patsubst %/bin/nvcc,%,$(NVCC))
CFLAGS  += -DS2S_CUDA=1 -I$(CUDA_HOME)/include
LDLIBS  += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcudart -lstdc++
NVFLAGS := -O3 -std=c++17 -DS2S_CUDA=1 -Isrc -Iinclude -Xcompiler -fPIC,-Wall \
           $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
           -gencode arch=compute_$(lastword $(CUDA_ARCH)),code=compute_$(lastword $(CUDA_ARCH))
CU_SRC  := $(sort $(wildcard src/*.cu))
endif

LIB_SRC  := $(sort $(wildcard src/*.c))
CLI_SRC  := $(sort $(wildcard src/cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
LIB_OBJ  := $(LIB_SRC:src/%.c=$(BUILD)/obj/%.o) $(CU_SRC:src/%.cu=$(BUILD)/obj/%.cu.o)
CLI_OBJ  := $(CLI_SRC:src/cli/%.c=$(BUILD)/obj/cli/%.o)
TEST_OBJ := $(TEST_SRC:tests/%.c=$(BUILD)/obj/tests/%.o)

.PHONY: all test check-deps data bench bench-gpu bench-peers demo fuzz tsan clean
all: $(BUILD)/s2s

check-deps:
	@bash scripts/install-deps.sh build

$(BUILD)/obj/%.o: src/%.c $(wildcard src/*.h include/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/obj/%.cu.o: src/%.cu $(wildcard src/*.h include/*.h)
	@mkdir -p $(dir $@)
	@echo "  NVCC $@"
	$(Q)$(NVCC) $(NVFLAGS) -c $< -o $@
$(BUILD)/obj/cli/%.o: src/cli/%.c $(wildcard src/*.h src/cli/*.h include/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -Isrc/cli -c $< -o $@
$(BUILD)/obj/tests/%.o: tests/%.c $(wildcard src/*.h tests/*.h include/*.h)
	@mkdir -p $(dir $@)
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -Itests -c $< -o $@

$(BUILD)/libs2s.a: $(LIB_OBJ)
	@mkdir -p $(dir $@)
	@echo "  AR $@"
	$(Q)rm -f $@ && ar rcs $@ $^

$(BUILD)/s2s: $(CLI_OBJ) $(BUILD)/libs2s.a
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libs2s.a $(LDLIBS)

$(BUILD)/bench_s2s: bench/bench_s2s.c $(BUILD)/libs2s.a $(wildcard src/*.h include/*.h)
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -o $@ bench/bench_s2s.c $(BUILD)/libs2s.a $(LDLIBS)

$(BUILD)/step_cost: bench/step_cost.c $(BUILD)/libs2s.a $(wildcard src/*.h include/*.h)
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -o $@ bench/step_cost.c $(BUILD)/libs2s.a $(LDLIBS)

$(BUILD)/s2s_tests: $(TEST_OBJ) $(BUILD)/libs2s.a
	@echo "  CC $@"
	$(Q)$(CC) $(CFLAGS) -o $@ $(TEST_OBJ) $(BUILD)/libs2s.a $(LDLIBS) -lcriterion

# Tests run from the repo root (they read tests/data/ and models/); the CLI tests use $(BUILD)/s2s.
test:
	@bash scripts/install-deps.sh test
	@$(MAKE) --no-print-directory $(BUILD)/s2s $(BUILD)/s2s_tests
	S2S_BIN=$(BUILD)/s2s LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp ./$(BUILD)/s2s_tests $(TEST_ARGS)
	@if command -v python3 >/dev/null; then python3 bench/update_results.py --self-test; \
	 else echo "bench/update_results.py --self-test: skipped (no python3)"; fi

data:
	@bash scripts/prepare-data.sh

# install first, then build in a sub-make (which sees the freshly installed BLAS); bench/report.sh runs
# every CPU benchmark and regenerates the tables and plots of docs/RESULTS.md (bench/README.md);
# BENCH_ARGS=--quick: tiny subsets (about a minute), written only to $(BUILD)/bench-quick/, no PyTorch
# or CTranslate2 installed (used where present)
bench:
	@$(if $(findstring --quick,$(BENCH_ARGS)),true,bash scripts/install-deps.sh torch)
	@bash scripts/install-deps.sh bench
	@$(MAKE) --no-print-directory $(BUILD)/s2s $(BUILD)/bench_s2s $(BUILD)/libs2s.a
	@NO_BUILD=1 BUILD=$(BUILD) bash bench/report.sh $(BENCH_ARGS)

bench-gpu:
	@$(MAKE) --no-print-directory CUDA=1 $(BUILD)/bench_s2s
	@BIN=$(BUILD)/bench_s2s bash bench/gpu.sh

# the venv first (scripts/install-deps.sh peers), then the binaries, then the run
bench-peers:
	@bash scripts/install-deps.sh peers
	@$(MAKE) --no-print-directory $(BUILD)/bench_s2s $(BUILD)/s2s
	@NO_BUILD=1 BUILD=$(BUILD) bash bench/peers/run.sh $(PEERS_ARGS)

demo:
	@bash scripts/install-deps.sh build
	@$(MAKE) --no-print-directory $(BUILD)/s2s
	@S2S_BIN=$(BUILD)/s2s bash scripts/demo.sh

# libFuzzer harnesses (clang): FUZZ_SECONDS per harness (fuzz/run.sh)
FUZZ_SECONDS ?= 60
fuzz:
	@bash fuzz/run.sh $(FUZZ_SECONDS)

# the API thread-safety test under ThreadSanitizer (tests/tsan.sh)
tsan:
	@bash tests/tsan.sh

clean:
	rm -rf build build-san build-nocuda
