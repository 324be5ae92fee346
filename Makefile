# ramp: build, run, test, bench.  `make help` lists the targets.
#
#   make            build bin/ramp (installs missing Debian packages first when root)
#   make run        the main job on the default model (MODEL=path to override)
#   make test       unit tests (Criterion) + end-to-end and multi-rank tests
#   make test SANITIZE=1   the same under ASan + UBSan (separate build directory)
#   make bench      throughput figures

SHARED   ?= ../shared
MODEL    ?= $(SHARED)/models/lite16/model-f32.gguf
TOKENIZER ?=

ifeq ($(SANITIZE),1)
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

PKGS     := openblas libprotobuf-c jansson libmicrohttpd libpcre2-8
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

CC       ?= gcc
CFLAGS   := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -fopenmp $(OPT) $(SANFLAGS) \
            -Imodel -Icoordinator -Iworker -Iexit -I$(BUILD)/proto -I/usr/include/libsvm \
            $(MPI_CFLAGS) $(PKG_CFLAGS)
LDLIBS   := $(PKG_LIBS) $(MPI_LIBS) -lsvm -lm -lpthread
LDFLAGS  := -fopenmp $(SANFLAGS)

PROTO_SRC := $(BUILD)/proto/ramp.pb-c.c
LIB_SRC  := $(wildcard model/*.c worker/*.c exit/*.c) $(filter-out coordinator/main.c,$(wildcard coordinator/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC)) $(BUILD)/obj/proto/ramp.pb-c.o
MAIN_OBJ := $(BUILD)/obj/coordinator/main.o
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))

.PHONY: all deps run test unit-test e2e-test bench clean help
all: $(BIN)

deps:
	@scripts/install-deps.sh

$(BUILD)/.deps-checked: scripts/install-deps.sh
	@scripts/install-deps.sh
	@mkdir -p $(BUILD) && touch $@

$(PROTO_SRC): proto/ramp.proto | $(BUILD)/.deps-checked
	@mkdir -p $(BUILD)/proto
	protoc-c --proto_path=proto --c_out=$(BUILD)/proto proto/ramp.proto

$(BUILD)/obj/%.o: %.c $(PROTO_SRC) | $(BUILD)/.deps-checked
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
	@RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) tests/run-e2e.sh

test: $(BIN) $(TEST_BIN)
	@$(MAKE) --no-print-directory unit-test e2e-test

bench: $(BIN)
	@RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) scripts/bench.sh

# make fuzz: every libFuzzer harness in tests/fuzz/ for FUZZ_SECONDS each (clang, ASan + UBSan;
# seeds generated from $(SHARED)); CI: make fuzz FUZZ_SECONDS=10. See tests/fuzz/run.sh.
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: $(BIN)
	@FUZZ_SECONDS=$(FUZZ_SECONDS) RAMP_SHARED=$(SHARED) RAMP_BIN=$(BIN) tests/fuzz/run.sh

clean:
	rm -rf build bin

help:
	@sed -n '1,8p' Makefile

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
