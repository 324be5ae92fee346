# tests/fuzz/fuzz.mk: the libFuzzer harnesses of tests/fuzz/, built with clang under ASan + UBSan.
# `make fuzz` runs tests/fuzz/run.sh, which builds through this file:
#   make -f tests/fuzz/fuzz.mk build/fuzz/bin/fuzz_gguf
# The library parts a parser needs (model/ and exit/, coordinator/cli.c, the OpenAI request code
# and the batch job's line format) are compiled with coverage instrumentation into build/fuzz/libramp-fuzz.a;
# each harness links only what it uses from it.

FUZZ_CC    ?= clang
FUZZ_BUILD := build/fuzz
FUZZ_SAN   := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_PKGS  := openblas jansson libpcre2-8
FUZZ_BASE_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -march=native -fopenmp -Wall -Wextra -Wno-unused-parameter \
               -Imodel -Iexit -Icoordinator -Itests -I/usr/include/libsvm $(shell pkg-config --cflags $(FUZZ_PKGS))
FUZZ_CFLAGS := $(FUZZ_BASE_CFLAGS) $(FUZZ_SAN)
FUZZ_LIBS  := $(shell pkg-config --libs $(FUZZ_PKGS)) -lsvm -lm -lpthread

# (openai_engine.c is left out: it needs the whole pipeline; the parsers are openai.c and batch_line.c)
FUZZ_LIB_SRC := $(wildcard model/*.c exit/*.c) coordinator/cli.c coordinator/openai.c coordinator/batch_line.c
FUZZ_LIB_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(FUZZ_LIB_SRC))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

# The SIMD kernels without UBSan: clang's UBSan takes minutes on each of those files at -O1
# (seconds without). No harness feeds them outside input (they see numbers, after the parsers), and
# tests/test_kernels.c compares them bit for bit with the portable kernels, which stay under UBSan.
$(FUZZ_BUILD)/obj/model/kernels_avx2.o $(FUZZ_BUILD)/obj/model/kernels_avx512.o: \
    FUZZ_CFLAGS := $(FUZZ_BASE_CFLAGS) -fsanitize=address -fno-omit-frame-pointer

$(FUZZ_BUILD)/libramp-fuzz.a: $(FUZZ_LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(FUZZ_BUILD)/bin/%: tests/fuzz/%.c tests/fuzz/fuzz.h $(FUZZ_BUILD)/libramp-fuzz.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< $(FUZZ_BUILD)/libramp-fuzz.a $(FUZZ_LIBS)

-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
