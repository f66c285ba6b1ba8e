# txmail - build, run, test.
#
#   make run     install what is missing, build, start `txmail run --dev`
#   make test    install what is missing, build, run unit + integration tests,
#                the short fault-injection run, the same suite built with
#                ASan+UBSan, then every fuzz target for 20 s
#   make bench   throughput through the dev sink
#   make valgrind  unit tests and two integration files under valgrind memcheck
#   make fuzz    libFuzzer targets (tests/fuzz), each FUZZ_SECONDS (60) long;
#                make fuzz-smoke: 20 s each
#   make faults  50,000 messages through kills, Redis restarts, SMTP and
#                webhook outages (fsync always, then everysec); docs/faults.md.
#                make faults-short: the 3,000-message version run by make test
#
# Packages are installed with apt-get when missing (as root); CI and new
# machines start bare.

CC      ?= cc
PYTHON  := /usr/bin/python3
BUILD   := build
WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wvla -Wundef -Wwrite-strings \
           -Wcast-align -Wnull-dereference -Wdouble-promotion -Wimplicit-fallthrough
CSTD    := -std=c17 -D_GNU_SOURCE
OPT     ?= -O2 -g
PKGS    := libmicrohttpd libcjson hiredis libcurl openssl
CFLAGS  := $(CSTD) $(WARN) $(OPT) -fno-strict-aliasing $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lresolv -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SMTP_SRC   := $(sort $(wildcard smtp/*.c))
SERVER_SRC := $(sort $(filter-out server/main.c,$(wildcard server/*.c)))
LIB_SRC    := $(SMTP_SRC) $(SERVER_SRC)
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))

DEB_PKGS := build-essential pkg-config libmicrohttpd-dev libssl-dev libcjson-dev \
            libhiredis-dev libcurl4-openssl-dev libcriterion-dev redis-server \
            python3 python3-aiosmtpd python3-pytest python3-pytest-xdist python3-yaml openssl curl \
            python3-dkim python3-nacl dnsmasq clang libclang-rt-14-dev valgrind wrk

.PHONY: all deps build asan run test unit unit-asan integration integration-asan bench clean spec-lint spec-tools \
        fuzz fuzz-smoke fuzz-build valgrind valgrind-smoke faults faults-short

all: build

# --- dependencies ---------------------------------------------------------
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing >/dev/null || exit 1; \
	  else \
	    echo "missing packages:$$missing (run as root, or: sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi
	@# node + npm for the spec tooling (tests/spec): checked by command, not by
	@# package name: a node from elsewhere (NodeSource's nodejs bundles npm and
	@# conflicts with Debian's npm package) is as good as Debian's 18.x.
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: nodejs npm"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null || exit 1; \
	  else \
	    echo "missing: node/npm (run as root, or: sudo apt-get install nodejs npm)"; exit 1; \
	  fi; \
	fi

# --- spec tooling ---------------------------------------------------------------
# @redocly/cli (lint) and ajv (tests/spec/validate.mjs, used by the integration
# tests) from tests/spec/package-lock.json into tests/spec/node_modules
# (gitignored); reinstalled when the lock file is newer than the install.
SPEC_TOOLS := tests/spec/node_modules/.package-lock.json

$(SPEC_TOOLS): tests/spec/package-lock.json tests/spec/package.json
	npm ci --prefix tests/spec --no-audit --no-fund --loglevel=error
	@touch $@

spec-tools: deps $(SPEC_TOOLS)

spec-lint: spec-tools
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true npx --prefix tests/spec redocly lint --config tests/spec/redocly.yaml api-spec/openapi.yaml

# --- build ------------------------------------------------------------------
build: $(BUILD)/txmail
asan: $(BUILD)/asan/txmail

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(SAN) -MMD -MP -c $< -o $@

$(BUILD)/libtxmail.a: $(LIB_SRC:%.c=$(BUILD)/%.o)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/asan/libtxmail.a: $(LIB_SRC:%.c=$(BUILD)/asan/%.o)
	@rm -f $@; ar rcs $@ $^

$(BUILD)/txmail: $(BUILD)/server/main.o $(BUILD)/libtxmail.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/asan/txmail: $(BUILD)/asan/server/main.o $(BUILD)/asan/libtxmail.a
	$(CC) $(CFLAGS) $(SAN) -o $@ $^ $(LDLIBS)

# Unit tests: one Criterion binary per tests/unit/test_<module>.c
TEST_CFLAGS := $(filter-out -Wmissing-prototypes,$(CFLAGS)) -Wno-missing-prototypes
$(BUILD)/tests/%: tests/unit/%.c $(BUILD)/libtxmail.a
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -o $@ $^ $(LDLIBS) -lcriterion
$(BUILD)/asan/tests/%: tests/unit/%.c $(BUILD)/asan/libtxmail.a
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) $(SAN) -o $@ $^ $(LDLIBS) -lcriterion

UNIT_BIN      := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
UNIT_BIN_ASAN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/asan/tests/%)

# --- run ----------------------------------------------------------------------
run: deps build
	./$(BUILD)/txmail run --dev

# --- tests ----------------------------------------------------------------
unit: deps $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2; done

unit-asan: deps $(UNIT_BIN_ASAN)
	@set -e; for t in $(UNIT_BIN_ASAN); do echo "== $$t (asan)"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t --jobs 2; done

# Integration tests run two at a time (pytest-xdist): most of their time is
# spent waiting on peers, and every test has its own ports and processes.
# PYTEST_JOBS=0 runs them one by one.
PYTEST_JOBS ?= 2
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider $(if $(filter-out 0,$(PYTEST_JOBS)),-n $(PYTEST_JOBS))

integration: deps build spec-tools
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/txmail $(PYTEST) tests/integration

integration-asan: deps asan spec-tools
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/asan/txmail TXMAIL_ASAN=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	$(PYTEST) tests/integration

test: deps
	$(MAKE) spec-lint
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) faults-short
	$(MAKE) unit-asan
	$(MAKE) integration-asan
	$(MAKE) -j2 fuzz-smoke
	$(MAKE) valgrind-smoke

# --- valgrind ---------------------------------------------------------------
# Unit binaries (non-ASan build, Criterion --jobs 1: its forked workers are
# followed) and test_delivery.py + test_bad_requests.py against
# build/txmail-valgrind, a wrapper that runs build/txmail under memcheck
# (TXMAIL_ASAN=1: the integration deadlines are scaled x3). One log per
# process in build/valgrind/ (-q: a log is written only on an error); any
# non-empty log, or an exit with --error-exitcode, fails the target.
# redis-server children are not traced. Not part of `make test`.
VALGRIND_DIR  := $(CURDIR)/$(BUILD)/valgrind
VALGRIND_OPTS := -q --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
                 --error-exitcode=9 --trace-children=yes --trace-children-skip='*redis-server*,*python3*,*/sh,*swaks*,*openssl' \
                 --num-callers=30
VALGRIND_IT   := tests/integration/test_delivery.py tests/integration/test_bad_requests.py

$(BUILD)/txmail-valgrind: $(BUILD)/txmail Makefile
	@printf '#!/bin/sh\n# build/txmail under valgrind memcheck (make valgrind)\nexec valgrind %s --log-file=%s/txmail.%%p.log %s "$$@"\n' \
	  "$(VALGRIND_OPTS)" "$(VALGRIND_DIR)" "$(CURDIR)/$(BUILD)/txmail" >$@
	@chmod +x $@

valgrind: deps $(UNIT_BIN) $(BUILD)/txmail-valgrind spec-tools
	@command -v valgrind >/dev/null || { echo "valgrind missing (apt-get install valgrind)"; exit 1; }
	@rm -rf $(VALGRIND_DIR); mkdir -p $(VALGRIND_DIR)
	@set -e; start=$$(date +%s); fail=0; \
	for t in $(UNIT_BIN); do echo "== $$t (valgrind)"; \
	  valgrind $(VALGRIND_OPTS) --log-file=$(VALGRIND_DIR)/unit-$$(basename $$t).%p.log \
	    $$t --jobs 1 || fail=1; done; \
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/txmail-valgrind TXMAIL_ASAN=1 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(VALGRIND_IT) || fail=1; \
	for f in $(VALGRIND_DIR)/*.log; do \
	  if [ -s "$$f" ]; then echo "--- valgrind report: $$f"; head -n 80 "$$f"; fail=1; fi; \
	done; \
	echo "valgrind: $$(( $$(date +%s) - start )) s"; \
	if [ $$fail != 0 ]; then echo "FAIL: valgrind (logs in $(VALGRIND_DIR))"; exit 1; fi

# --- fault injection ------------------------------------------------------------
# tests/faults/faults.py: a real stack (redis-server, txmail api + 2 workers,
# the SMTP peer with fault injection, the webhook receiver) under SIGKILLs,
# Redis kill/restart, SMTP 421/tarpit/mid-DATA drops and a webhook outage;
# prints accepted/delivered/failed/lost/duplicates/webhook lost/stuck and
# fails on any loss. Figures: $(BUILD)/faults-*.json.
FAULTS := $(PYTHON) tests/faults/faults.py --bin $(CURDIR)/$(BUILD)/txmail

faults: deps build
	$(FAULTS) --fsync always --min-kills 10 --json $(BUILD)/faults-always.json
	$(FAULTS) --fsync everysec --min-kills 10 --json $(BUILD)/faults-everysec.json

faults-short: deps build
	$(FAULTS) --messages 3000 --load-seconds 30 --kills 5 --min-kills 5 --redis-restarts 1 \
	  --storm-rounds 1 --webhook-down 10 --drain-seconds 90 --self-check --json $(BUILD)/faults-short.json

# The CI-sized part: the unit tests of the modules that parse untrusted
# input (requests, replies, DSNs, URLs, templates, MIME) under memcheck,
# which sees what ASan does not (reads of uninitialised memory). ~60 s on
# 2 cores; part of `make test`. The whole `make valgrind` takes ~10 min.
VALGRIND_SMOKE := validate mime reply template dsn config verp mx

valgrind-smoke: deps $(VALGRIND_SMOKE:%=$(BUILD)/tests/test_%)
	@command -v valgrind >/dev/null || { echo "valgrind missing (apt-get install valgrind)"; exit 1; }
	@rm -rf $(VALGRIND_DIR)-smoke; mkdir -p $(VALGRIND_DIR)-smoke
	@set -e; start=$$(date +%s); fail=0; \
	for n in $(VALGRIND_SMOKE); do t=$(BUILD)/tests/test_$$n; echo "== $$t (valgrind)"; \
	  valgrind $(VALGRIND_OPTS) --log-file=$(VALGRIND_DIR)-smoke/unit-$$n.%p.log $$t --jobs 2 >/dev/null || fail=1; done; \
	for f in $(VALGRIND_DIR)-smoke/*.log; do \
	  if [ -s "$$f" ]; then echo "--- valgrind report: $$f"; head -n 80 "$$f"; fail=1; fi; \
	done; \
	echo "valgrind-smoke: $$(( $$(date +%s) - start )) s"; \
	if [ $$fail != 0 ]; then echo "FAIL: valgrind-smoke (logs in $(VALGRIND_DIR)-smoke)"; exit 1; fi

bench: deps build
	$(PYTHON) tests/bench/bench.py --bin $(CURDIR)/$(BUILD)/txmail
	$(PYTHON) tests/bench/bench_api.py --bin $(CURDIR)/$(BUILD)/txmail

# --- fuzzing ----------------------------------------------------------------
# libFuzzer targets in tests/fuzz/fuzz_<name>.c, built with clang. The library
# is compiled with the project flags plus -fsanitize=fuzzer-no-link,address,
# undefined into its own archive (a target links only the objects it needs),
# with two clang-only warnings off that gcc does not raise on this code
# (-Wformat-nonliteral on vsnprintf wrappers, -Wstring-concatenation on
# "a" MACRO array items). Each run starts from a copy of
# tests/fuzz/corpus/<target> in build/fuzz/corpus-<target> (the committed
# seeds are never written) and fails on a crash, leak, UB, timeout
# (-timeout=5) or RSS over 1 GiB; the reproducer is left in
# build/fuzz/artifacts/. `make -j2 fuzz` runs two targets at a time.
FUZZ_CC      := clang
FUZZ_SECONDS ?= 60
FUZZ         := $(BUILD)/fuzz
FUZZ_TARGETS := $(sort $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz_*.c)))
FUZZ_LIB_SRC := $(LIB_SRC)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(CFLAGS) $(FUZZ_SAN) -Wno-format-nonliteral -Wno-string-concatenation

$(FUZZ)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ)/libtxmail-fuzz.a: $(FUZZ_LIB_SRC:%.c=$(FUZZ)/obj/%.o)
	@rm -f $@; ar rcs $@ $^

$(FUZZ)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ)/libtxmail-fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< $(FUZZ)/libtxmail-fuzz.a $(LDLIBS)

fuzz-build: deps $(FUZZ_TARGETS:%=$(FUZZ)/%)

fuzz-run-%: $(FUZZ)/%
	@rm -rf $(FUZZ)/corpus-$*; mkdir -p $(FUZZ)/artifacts; \
	cp -R tests/fuzz/corpus/$* $(FUZZ)/corpus-$*; \
	echo "== $* ($(FUZZ_SECONDS) s)"; \
	if ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	  $(FUZZ)/$* -max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=1024 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ)/artifacts/$*- \
	    $(FUZZ)/corpus-$* >$(FUZZ)/$*.log 2>&1; then \
	  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|^Done ' $(FUZZ)/$*.log | \
	    sed 's/^/   $* /'; \
	else \
	  tail -n 60 $(FUZZ)/$*.log; echo "FAIL: $* (log $(FUZZ)/$*.log)"; exit 1; \
	fi

fuzz: fuzz-build
	@$(MAKE) --no-print-directory -k $(FUZZ_TARGETS:%=fuzz-run-%)

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=20

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
