# ramp: build, run, test, bench.  `make help` lists the targets.
#
#   make            build bin/ramp (installs missing Debian packages first when root)
#   make run        the main job on the default model (MODEL=path to override)
#   make test       unit tests (Criterion) + end-to-end and multi-rank tests
#   make test SANITIZE=1   the same under ASan + UBSan (separate build directory)
#   make test-programs     only build the unit test programs (CI builds them with -j2)
#   make bench      throughput figures (engine, pipeline, early exit; serving side by side with llama-server)
#   make deps       only install the missing Debian packages (scripts/install-deps.sh)
#   make clean      remove build/ and bin/

SHARED   ?= ../shared
MODEL    ?= $(SHARED)/models/lite16/model-f32.gguf
TOKENIZER ?=
# The dependency installer that runs before anything is built (the fresh_build test swaps in a stub).
INSTALL_DEPS ?= scripts/install-deps.sh

# --- Two passes: install first, then discover the flags and build -----------------------------
# The compiler flags come from `mpicc --showme` and `pkg-config`, and $(shell ...) runs those
# while make *reads* this file, before any recipe. On a fresh machine that is before the
# installer has put Open MPI there, so the first `make` compiled without mpi.h. Hence:
#   pass 1 (RAMP_DEPS_READY unset): run $(INSTALL_DEPS), then re-run make with the same goals
#          and RAMP_DEPS_READY=1 (MAKEFLAGS passes on -j and SANITIZE=/MODEL=/... as given);
#          it discovers nothing and builds nothing itself;
#   pass 2 (RAMP_DEPS_READY=1): discovers the flags and does the work (everything below).
# `make clean` and `make help` need no packages and skip pass 1. Recursive makes from recipes
# (e.g. `test`) inherit RAMP_DEPS_READY=1 and do not run the installer again.
ifneq ($(RAMP_DEPS_READY),1)
ifneq ($(filter-out clean help,$(or $(MAKECMDGOALS),all)),)
RAMP_PASS := install
endif
endif

ifeq ($(RAMP_PASS),install)
.DEFAULT_GOAL := install-then-make
.PHONY: install-then-make $(MAKECMDGOALS)
install-then-make:
	@$(INSTALL_DEPS)
	@$(MAKE) --no-print-directory RAMP_DEPS_READY=1 $(MAKECMDGOALS)
# Every goal named on the command line is made by the second pass above.
ifneq ($(MAKECMDGOALS),)
$(MAKECMDGOALS): install-then-make ; @:
endif

else # ----- clean and help (either pass) ------------------------------------------------------
.PHONY: clean help
clean:
	rm -rf build bin

help:
	@sed -n '/^$$/q;p' Makefile
endif

ifeq ($(RAMP_DEPS_READY),1) # ----- pass 2: the build ------------------------------------------
# The generated protobuf files come from one rule with two targets (&:, GNU make 4.3 and later;
# Debian 12 has 4.3): an older make would read '&' as a file name and build wrongly.
ifeq ($(filter grouped-target,$(.FEATURES)),)
$(error GNU make $(MAKE_VERSION) is too old: ramp's Makefile needs GNU make 4.3 or later (Debian 12 and later have it))
endif
.DEFAULT_GOAL := all

ifeq ($(SANITIZE),1)
# Under the sanitizers the end-to-end sections that exercise ramp's own code run; those that test
# scripts and daemons around it (plots, the Slurm cluster, the fresh-machine build) run once, in
# the release pass: keeps CI (.ci/run: both passes) within its time on 2 cores.
E2E_SECTIONS ?= reference pretokenizers iq4 qwen3 phi3 granite gemma gemma2 gemma3 head_size split_files corrupt untrusted multirank stage_memory failure exit batch serve
BUILD    := build/sanitize
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      := -O1 -g
else
BUILD    := build/release
SANFLAGS :=
# 256-bit vectors even where the CPU has 512-bit ones: the short vector loops here (the exit
# SVM, norms, attention) run between scalar work, and each cold start of 512-bit units runs at
# a fraction of their speed (measured: the exit SVM, 0.85 s with 512-bit vectors, 0.095 s with 256).
OPT      := -O3 -march=native -mprefer-vector-width=256 -g
endif
BIN      := $(BUILD)/bin/ramp

# Flag discovery, now that the installer has run. A command that fails stops make here with
# what is missing, instead of a compiler error about mpi.h or cblas.h much later.
PKGS       := openblas libprotobuf-c jansson libmicrohttpd libpcre2-8
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
mpi_status := $(.SHELLSTATUS)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
ifneq ($(mpi_status)$(.SHELLSTATUS),00)
ifeq ($(shell command -v mpicc 2>/dev/null),)
$(error mpicc not found: ramp needs Open MPI (Debian packages openmpi-bin libopenmpi-dev; $(INSTALL_DEPS) installs them when run as root))
else
$(error `mpicc --showme:compile` / `--showme:link` failed: $(shell command -v mpicc 2>/dev/null) is not Open MPI's compiler wrapper or is broken; ramp needs Open MPI (Debian packages openmpi-bin libopenmpi-dev))
endif
endif
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
pkg_status := $(.SHELLSTATUS)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
ifneq ($(pkg_status)$(.SHELLSTATUS),00)
ifeq ($(shell command -v pkg-config 2>/dev/null),)
$(error pkg-config not found: ramp needs it to find $(PKGS) (Debian package pkg-config; $(INSTALL_DEPS) installs it when run as root))
else
$(error pkg-config does not know: $(shell for p in $(PKGS); do pkg-config --exists $$p 2>/dev/null || printf '%s ' $$p; done)(Debian packages libopenblas-dev libprotobuf-c-dev libjansson-dev libmicrohttpd-dev libpcre2-dev; $(INSTALL_DEPS) installs them when run as root))
endif
endif

CC       ?= gcc
CFLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp $(OPT) $(SANFLAGS) \
            -Imodel -Icoordinator -Iworker -Iexit -I$(BUILD)/proto -I/usr/include/libsvm \
            $(MPI_CFLAGS) $(PKG_CFLAGS)
LDLIBS   := $(PKG_LIBS) $(MPI_LIBS) -lsvm -lm -lpthread
ifeq ($(SANITIZE),1)
# The SIMD kernel files without UBSan: its checks in their unrolled tiles take GCC four to more
# than eight minutes per file (37-71 s without). Their values are compared bit for bit with the
# portable kernels, which stay under UBSan, in tests/test_kernels.c; ASan stays on.
$(BUILD)/obj/model/kernels_avx2.o $(BUILD)/obj/model/kernels_avx512.o: CFLAGS += -fno-sanitize=undefined
endif
# --as-needed: libraries nothing calls are not loaded. ramp's own kernels do every product, and a
# loaded OpenBLAS starts a thread that spins ~0.1 s of a core at every process start.
LDFLAGS  := -fopenmp $(SANFLAGS) -Wl,--as-needed

PROTO_SRC := $(BUILD)/proto/ramp.pb-c.c
PROTO_HDR := $(BUILD)/proto/ramp.pb-c.h
LIB_SRC  := $(wildcard model/*.c worker/*.c exit/*.c) $(filter-out coordinator/main.c,$(wildcard coordinator/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/proto/ramp.pb-c.o
MAIN_OBJ := $(BUILD)/obj/coordinator/main.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

.PHONY: all deps run test unit-test e2e-test test-programs bench
all: $(BIN)

# The unit test programs alone (so CI can build them with -j2; `make test` runs them one by one).
test-programs: $(TEST_BIN)

# The packages were installed by pass 1; nothing is left to do.
deps:
	@:

$(PROTO_SRC) $(PROTO_HDR) &: proto/ramp.proto
	@mkdir -p $(BUILD)/proto
	protoc-c --proto_path=proto --c_out=$(BUILD)/proto proto/ramp.proto

# The generated header exists before anything compiles (order-only: a clean build has no .d
# files yet); after that each object's .d names the headers it really includes, so a change to
# proto/ramp.proto recompiles the files that include ramp.pb-c.h and not, say, the kernels.
$(BUILD)/obj/%.o: %.c | $(PROTO_SRC) $(PROTO_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/proto/ramp.pb-c.o: $(PROTO_SRC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/libramp.a: $(LIB_OBJ)
	ar rcs $@ $^

$(BIN): $(MAIN_OBJ) $(BUILD)/libramp.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
	@# bin/ramp is the release build; a sanitizer build stays under build/sanitize
	@if [ -z "$(SANITIZE)" ]; then mkdir -p bin && ln -sf ../$(BIN) bin/ramp; fi

$(BUILD)/tests/%: tests/%.c $(BUILD)/libramp.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(BUILD)/libramp.a $(LDFLAGS) $(LDLIBS) -lcriterion

run: $(BIN)
	@RAMP_SHARED=$(SHARED) TOKENIZER=$(TOKENIZER) scripts/run.sh "$(BIN)" "$(MODEL)"

unit-test: $(TEST_BIN)
	@status=0; for t in $(TEST_BIN); do \
	  RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) $$t --jobs=2 || status=1; done; exit $$status

e2e-test: $(BIN)
	@RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) tests/run-e2e.sh $(E2E_SECTIONS)

test: $(BIN) $(TEST_BIN)
	@$(MAKE) --no-print-directory unit-test e2e-test

bench: $(BIN)
	@status=0; RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) scripts/bench.sh || status=1; \
	RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) scripts/bench-serve.sh || status=1; exit $$status

# make fuzz: every libFuzzer harness in tests/fuzz/ for FUZZ_SECONDS each (clang, ASan + UBSan;
# seeds generated from $(SHARED)); CI: make fuzz FUZZ_SECONDS=10. See tests/fuzz/run.sh.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: $(BIN)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) tests/fuzz/run.sh

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
endif
