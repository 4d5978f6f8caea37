# herald — one Makefile. `make run` and `make test` are all a newcomer needs.
#   make / make build   release binary build/release/herald
#   make run            install what is missing, build, start herald with embedded defaults
#   make test           install what is missing, build with ASan+UBSan, run every test
#   make fuzz           run each libFuzzer target for FUZZ_SECONDS (default 60)
#   make bench          benchmarks against ws, Socket.IO and nchan (bench/README.md)

CC       ?= cc
PKGS     := openssl zlib jansson libjwt hiredis sqlite3
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
BASE_CFLAGS = -std=c11 -D_GNU_SOURCE $(WARN) -Isrc -MMD -MP $(PKG_CFLAGS)
LDLIBS   = $(PKG_LIBS) -lhttp_parser -lpthread -lm

REL      := build/release
TST      := build/test
REL_CFLAGS := -O2 -g
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
TST_CFLAGS := -O1 -g $(SAN)

SRC      := $(shell find src -name '*.c' | sort)
LIB_SRC  := $(filter-out src/main.c,$(SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(TST)/unit/%)
FUZZ_SRC := $(sort $(wildcard fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
BENCH_SRC := $(sort $(wildcard bench/*.c))

.PHONY: all build run test unit e2e fuzz fuzz-corpus bench deps deps-test clean
.SECONDARY:
all build: $(REL)/herald

$(REL)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(REL_CFLAGS) -c $< -o $@
$(TST)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(BASE_CFLAGS) $(TST_CFLAGS) -c $< -o $@

$(REL)/herald: $(SRC:%.c=$(REL)/%.o)
	$(CC) $(REL_CFLAGS) -o $@ $^ $(LDLIBS)
$(TST)/herald: $(SRC:%.c=$(TST)/%.o)
	$(CC) $(TST_CFLAGS) -o $@ $^ $(LDLIBS)
$(TST)/unit/%: $(TST)/tests/unit/%.o $(LIB_SRC:%.c=$(TST)/%.o)
	@mkdir -p $(@D)
	$(CC) $(TST_CFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# libFuzzer targets: clang; the library is compiled once (instrumented, without
# libFuzzer's main) and linked into each target.
FUZZ_CFLAGS := -std=c11 -D_GNU_SOURCE -g -O1 -Isrc -MMD -MP $(PKG_CFLAGS)
FUZZ_OBJ := $(LIB_SRC:%.c=build/fuzz-obj/%.o)
build/fuzz-obj/%.o: %.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@
build/fuzz/%: fuzz/%.c $(FUZZ_OBJ)
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

# The load generator has its own client-side WebSocket framing (bench/wsclient.c):
# a benchmark client sharing the server's codec would share its bugs.
build/bench/loadgen: $(BENCH_SRC) $(wildcard bench/*.h) src/core/err.c src/core/err.h
	@mkdir -p $(@D)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -O2 -g -Isrc -o $@ $(BENCH_SRC) src/core/err.c -ljansson -lm

deps:
	@scripts/deps.sh build
deps-test:
	@scripts/deps.sh test

run: deps
	@$(MAKE) --no-print-directory -j$(JOBS) $(REL)/herald
	$(REL)/herald serve $(ARGS)

# Every test: unit tests (cmocka), fuzz targets over their corpora, then end-to-end
# tests against the sanitized binary with real third-party clients. One summary line.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
test: deps-test
	@$(MAKE) --no-print-directory -j$(JOBS) $(TST)/herald $(UNIT_BIN) $(REL)/herald $(FUZZ_BIN)
	@scripts/run-tests.sh

unit: $(UNIT_BIN)
	@for t in $(UNIT_BIN); do $$t || exit 1; done

FUZZ_SECONDS ?= 60
fuzz: $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do n=$$(basename $$f); mkdir -p fuzz/corpus/$$n build/fuzz-corpus/$$n fuzz/artifacts; \
	  echo "fuzz: $$n for $(FUZZ_SECONDS)s (new inputs in build/fuzz-corpus/$$n)"; \
	  $$f -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=fuzz/artifacts/ build/fuzz-corpus/$$n fuzz/corpus/$$n >build/fuzz-$$n.log 2>&1 \
	  || { tail -30 build/fuzz-$$n.log; exit 1; }; done; echo "fuzz: no crash"

# Dependencies first (a fresh machine has no compiler). herald is measured when it
# builds; otherwise the peers are, and the table says herald was not built.
bench:
	@scripts/deps.sh bench
	@$(MAKE) --no-print-directory build/bench/loadgen
	@$(MAKE) --no-print-directory $(REL)/herald || echo "bench: herald does not build; measuring the peers only" >&2
	@bench/run.sh
	@bench/extras.sh

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
