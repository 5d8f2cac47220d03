# dapipe: build, test, demo, bench, install.
#   make            build every filter into bin/
#   make check      build and run all tests (summary line at the end)
#   make check-san  the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make demo       set up, build and run the adaptation demo on samples/
#   make bench      benchmarks, written to BENCHMARKS.md
#   make install PREFIX=/usr/local
PREFIX ?= /usr/local
CC ?= cc
OPT ?= -O2
CFLAGS ?= $(OPT) -g
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wno-unused-parameter -Icommon \
          $(shell pkg-config --cflags openblas 2>/dev/null || echo -I/usr/include/x86_64-linux-gnu/openblas-pthread)
# Speed that leaves results unchanged: sqrtf inlines (no errno), and GCC vectorises
# loops with the cost model of -O3 (the optimiser's pass over 5 M parameters).
# Never -Ofast or -ffast-math.
ALL_CFLAGS += -fno-math-errno $(shell $(CC) -Werror -fvect-cost-model=dynamic -x c -c /dev/null -o /dev/null 2>/dev/null && echo -fvect-cost-model=dynamic)
# OpenBLAS linked explicitly (the machine may also have the reference BLAS).
BLAS_LIBS = $(shell pkg-config --libs openblas 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/openblas-pthread -lopenblas)
LDLIBS = $(BLAS_LIBS) -Wl,-rpath,$(patsubst -L%,%,$(filter -L%,$(BLAS_LIBS))) -lcsv -lmsgpackc -lpng -ljpeg -lz -lpthread -lm
# HDF5 (ARCHS4 input, common/h5.c): Debian's serial build.
ALL_CFLAGS += $(shell pkg-config --cflags hdf5 2>/dev/null || echo -I/usr/include/hdf5/serial)
LDLIBS += $(shell pkg-config --libs hdf5 2>/dev/null || echo -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5)
BUILD ?= build
BIN ?= bin

FILTERS = $(patsubst filters/%.c,%,$(wildcard filters/*.c))
COMMON_SRC = $(wildcard common/*.c)
COMMON_OBJ = $(patsubst common/%.c,$(BUILD)/common/%.o,$(COMMON_SRC))
UNIT_SRC = $(wildcard tests/unit/*.c)
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
TOOLS_SRC = $(wildcard samples/*.c)
TOOLS_BIN = $(patsubst samples/%.c,$(BIN)/%,$(TOOLS_SRC))

all: $(addprefix $(BIN)/,$(FILTERS)) $(TOOLS_BIN)

$(BUILD)/common/%.o: common/%.c $(wildcard common/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(BUILD)/libdapipe.a: $(COMMON_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN)/%: filters/%.c $(BUILD)/libdapipe.a $(wildcard common/*.h)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libdapipe.a $(LDLIBS)

$(BIN)/%: samples/%.c $(BUILD)/libdapipe.a $(wildcard common/*.h)
	@mkdir -p $(BIN)
	$(CC) $(ALL_CFLAGS) $< -o $@ $(BUILD)/libdapipe.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libdapipe.a $(wildcard common/*.h) $(wildcard tests/unit/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests/unit $< -o $@ $(BUILD)/libdapipe.a $(LDLIBS)

tests: all $(UNIT_BIN)

check: setup tests
	@BIN=$(abspath $(BIN)) UNITS=$(abspath $(BUILD)/tests) sh tests/run.sh

# The whole suite under ASan + UBSan, built apart in build-san/ and bin-san/.
check-san:
	$(MAKE) BUILD=build-san BIN=bin-san OPT=-O1 \
	  CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  check-san-run

check-san-run: tests
	@ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	  BIN=$(abspath $(BIN)) UNITS=$(abspath $(BUILD)/tests) SANITIZE=1 sh tests/run.sh

# libFuzzer harnesses (clang), each for the given seconds; fails on any crash or leak.
fuzz:
	sh tests/fuzz/run.sh 60

fuzz-quick:
	sh tests/fuzz/run.sh 10

setup:
	sh ./setup.sh

demo: setup all
	sh pipelines/demo

bench: all
	BIN=$(BIN) sh tests/bench.sh

install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/dapipe
	cp $(addprefix $(BIN)/,$(FILTERS)) $(DESTDIR)$(PREFIX)/bin/
	cp -R pipelines docs $(DESTDIR)$(PREFIX)/share/dapipe/

clean:
	rm -rf build build-san bin bin-san

.PHONY: all tests check check-san check-san-run fuzz fuzz-quick setup demo bench install clean
.SECONDARY:
