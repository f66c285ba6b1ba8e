# txmail - build, run, test.
#
#   make run     install what building and running need (deps-run), build,
#                start `txmail run --dev`
#   make test    install the test toolchain too (deps-test), build, run unit +
#                integration tests, the short fault-injection run, the same
#                suite built with ASan+UBSan, every fuzz target for 20 s and
#                the parsers' unit tests under valgrind
#   make build   build/txmail only: no apt; the -dev packages must be there
#   make bench   the performance table of issue 13 (tests/bench/suite.py;
#                BENCH_ARGS=--quick for a short run); installs postfix for
#                smtp-sink without starting a mail system
#   make valgrind  unit tests and two integration files under valgrind memcheck
#   make fuzz    libFuzzer targets (tests/fuzz), each FUZZ_SECONDS (60) long;
#                make fuzz-smoke: 20 s each
#   make faults  50,000 messages through kills, Redis restarts, SMTP and
#                webhook outages (fsync always, then everysec, then on a
#                Sentinel group, the restarts failovers); docs/faults.md.
#                make faults-short: the 3,000-message version run by make test
#                (on TXMAIL_PARTITIONS=4; and a 2,000-message one on Sentinel)
#
# Packages are installed with apt-get when missing (as root; otherwise the
# missing ones are listed): `make deps-run` (RUN_PKGS: compiler, -dev
# libraries, redis-server, curl) for `make run`, `make deps-test` (= `make
# deps`: RUN_PKGS + TEST_PKGS + node/npm) for every test, bench and fuzz
# target. CI and new machines start bare; tests/bare/bare.sh proves both
# commands on a debootstrap chroot.
#
# Two phases: the compile flags come from pkg-config, which make reads when
# it parses this file, so nothing may be compiled in the make that installed
# the -dev packages. Each target that installs (run, test, unit, ...) runs
# its deps-* step and then re-enters make for do-<target> (the same work
# without apt) in a fresh parse, pkg-config read after the install; the
# rules that compile run only in that second make. `make build` (and every file
# target) is the second phase alone, so a machine that has everything builds
# without apt, and a missing -dev package is a clear error, never a link
# without flags.

CC      ?= cc
PYTHON  := /usr/bin/python3
BUILD   := build
WARN    := -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wstrict-prototypes \
           -Wmissing-prototypes -Wformat=2 -Wvla -Wundef -Wwrite-strings \
           -Wcast-align -Wnull-dereference -Wdouble-promotion -Wimplicit-fallthrough
CSTD    := -std=c17 -D_GNU_SOURCE
OPT     ?= -O2 -g
# The one version (VERSION): the binary, `txmail version`, the webhook
# User-Agent; api-spec/openapi.yaml and the Dockerfile label are checked
# against it by tests/integration/test_version.py.
VERSION := $(shell cat VERSION)
PKGS    := libmicrohttpd libcjson hiredis libcurl openssl
PKGS_OK := $(shell pkg-config --exists $(PKGS) 2>/dev/null && echo yes)
CFLAGS  := $(CSTD) $(WARN) $(OPT) -fno-strict-aliasing -DTXMAIL_VERSION='"$(VERSION)"' \
           -I$(BUILD)/gen \
           $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDLIBS  := $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lresolv -lpthread -lm
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined

SMTP_SRC   := $(sort $(wildcard smtp/*.c))
SERVER_SRC := $(sort $(filter-out server/main.c,$(wildcard server/*.c)))
LIB_SRC    := $(SMTP_SRC) $(SERVER_SRC)
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))

# What `make run` needs: a C compiler (gcc, libc6-dev; make itself is
# there already), pkg-config and the -dev libraries to build; redis-server for
# the embedded Redis of `txmail run` (server/embed.c runs it; it is the only
# program txmail starts); curl for the line the dev server prints.
RUN_PKGS  := gcc libc6-dev pkg-config libmicrohttpd-dev libssl-dev libcjson-dev \
             libhiredis-dev libcurl4-openssl-dev redis-server curl
# What the test, bench and fuzz targets add: Criterion (unit), python3 and
# its test packages (pytest, xdist, aiosmtpd peers, yaml for the spec, dkim +
# nacl to verify signatures), openssl (test certificates), dnsmasq (the DNS
# of test_mx / test_dkim / test_relay_dns), clang + its runtime (fuzz),
# valgrind, wrk (bench_api; redis-benchmark comes with redis-server);
# unshare/mount/getent (test_relay_dns) are in every Debian (util-linux,
# mount, libc-bin) and listed to say so; golang-go, php-cli and php-curl run
# README.md's client examples (test_readme_snippets); chromium (test_dashboard,
# driven by playwright-core from tests/ui); prometheus for promtool and
# prometheus itself (test_metrics_names checks a live scrape; test_deploy the
# alert rules and the dashboard's queries), docker-compose (test_deploy:
# deploy/docker-compose.yml), swaks (test_submission: a real SMTP submission
# client, STARTTLS + AUTH and a pipelined session) with libnet-ssleay-perl (its
# TLS: only Recommended, so --no-install-recommends leaves swaks without TLS;
# the bare-machine run found it). node/npm, kubectl: see deps-test.
TEST_PKGS := libcriterion-dev python3 python3-aiosmtpd python3-pytest python3-pytest-xdist \
             python3-yaml python3-dkim python3-nacl openssl dnsmasq clang libclang-rt-14-dev \
             valgrind wrk util-linux mount libc-bin golang-go php-cli php-curl chromium prometheus \
             docker-compose swaks libnet-ssleay-perl

# Targets that install first and then re-enter make as do-<target> (see the
# top of this file); do-<target> alone is the same without apt.
RUN_GOALS  := run
TEST_GOALS := test unit unit-asan integration integration-asan spec-tools spec-lint \
              bench valgrind valgrind-smoke faults faults-short fuzz fuzz-smoke fuzz-build

.PHONY: all deps deps-run deps-test deps-bench pkg-check build asan image clean $(RUN_GOALS) $(TEST_GOALS) \
        $(addprefix do-,$(RUN_GOALS) $(TEST_GOALS)) do-test-build do-test-fuzz-smoke do-test-serial

all: build

$(RUN_GOALS): deps-run
	@$(MAKE) --no-print-directory do-$@
$(TEST_GOALS): deps-test
	@$(MAKE) --no-print-directory do-$@

# --- dependencies ---------------------------------------------------------
# apt_install: install those of $(1) that dpkg does not list as installed.
define apt_install
	@missing=""; for p in $(1); do \
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
endef

deps-run:
	$(call apt_install,$(RUN_PKGS))

deps: deps-test
deps-test:
	$(call apt_install,$(RUN_PKGS) $(TEST_PKGS))
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
	@# kubectl (test_deploy: kubectl kustomize deploy/k8s), by command too: a
	@# kubectl from elsewhere (Google's kubectl package) conflicts with Debian's
	@# kubernetes-client, whose 1.20 is enough.
	@if ! command -v kubectl >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing: kubernetes-client"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get update -qq && apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null || exit 1; \
	  else \
	    echo "missing: kubectl (run as root, or: sudo apt-get install kubernetes-client)"; exit 1; \
	  fi; \
	fi

# --- spec tooling ---------------------------------------------------------------
# @redocly/cli (lint), ajv (tests/spec/validate.mjs, used by the integration
# tests) and standardwebhooks (README.md's Node webhook receiver, run by
# test_readme_snippets) from tests/spec/package-lock.json into tests/spec/node_modules
# (gitignored); reinstalled when the lock file is newer than the install.
SPEC_TOOLS := tests/spec/node_modules/.package-lock.json

$(SPEC_TOOLS): tests/spec/package-lock.json tests/spec/package.json
	npm ci --prefix tests/spec --no-audit --no-fund --loglevel=error
	@touch $@

# playwright-core (tests/ui/dashboard.mjs drives Debian's chromium; it
# downloads no browser) from tests/ui/package-lock.json, the same way.
UI_TOOLS := tests/ui/node_modules/.package-lock.json

$(UI_TOOLS): tests/ui/package-lock.json tests/ui/package.json
	npm ci --prefix tests/ui --no-audit --no-fund --loglevel=error
	@touch $@

do-spec-tools: $(SPEC_TOOLS) $(UI_TOOLS)

do-spec-lint: do-spec-tools
	REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true npx --prefix tests/spec redocly lint --config tests/spec/redocly.yaml api-spec/openapi.yaml

# --- build ------------------------------------------------------------------
build: $(BUILD)/txmail
asan: $(BUILD)/asan/txmail

# Every compile checks first that pkg-config found the libraries: without
# them CFLAGS and LDLIBS are empty and the link fails far from the cause.
pkg-check:
ifneq ($(PKGS_OK),yes)
	@echo "pkg-config does not find: $(PKGS)"; \
	 echo "install the -dev packages with 'make deps-run' (as root), or use 'make run' / 'make test'"; exit 1
endif

# The Lua scripts: each server/lua/<name>.lua (a script; lib/*.lua are
# pieces they `-- @include`) becomes `static const char store_lua_<name>[]`
# in $(BUILD)/gen/store_lua.h, written by server/lua/luagen.c (compiled
# here first, with the compiler alone: nothing else is needed). The store
# file holding the script table includes "store_lua.h", found through
# -I$(BUILD)/gen; every server/store*.c object (of each build: plain, asan,
# fuzz) depends on the header, so editing a .lua file rebuilds them. The
# header also depends on the directory, so adding, removing or renaming a
# script regenerates it. Generated, never in git.
LUA_SRC := $(sort $(wildcard server/lua/*.lua))
LUA_LIB := $(sort $(wildcard server/lua/lib/*.lua))
LUA_GEN := $(BUILD)/gen/store_lua.h
STORE_OBJ := $(patsubst %.c,%.o,$(sort $(wildcard server/store*.c)))

$(BUILD)/gen/luagen: server/lua/luagen.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) -o $@ $<

$(LUA_GEN): $(BUILD)/gen/luagen $(LUA_SRC) $(LUA_LIB) server/lua server/lua/lib
	$(BUILD)/gen/luagen $@ $(LUA_SRC)

$(addprefix $(BUILD)/,$(STORE_OBJ)) $(addprefix $(BUILD)/asan/,$(STORE_OBJ)): $(LUA_GEN)

# The operator pages: every server/ui/NAME.{html,js,css,svg} becomes one
# entry of the asset table in $(BUILD)/gen/ui_assets.h, written by
# server/ui/uigen.c (built like luagen: the compiler alone). Only
# server/dashboard.c includes it; editing, adding or removing a file
# regenerates it. Generated, never in git.
UI_SRC := $(sort $(wildcard server/ui/*.html server/ui/*.js server/ui/*.css server/ui/*.svg))
UI_GEN := $(BUILD)/gen/ui_assets.h

$(BUILD)/gen/uigen: server/ui/uigen.c
	@mkdir -p $(dir $@)
	$(CC) $(CSTD) $(WARN) $(OPT) -o $@ $<

$(UI_GEN): $(BUILD)/gen/uigen $(UI_SRC) server/ui
	$(BUILD)/gen/uigen $@ $(UI_SRC)

$(BUILD)/server/dashboard.o $(BUILD)/asan/server/dashboard.o: $(UI_GEN)

# VERSION is compiled in (-DTXMAIL_VERSION): every object depends on it.
$(BUILD)/%.o: %.c VERSION | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/%.o: %.c VERSION | pkg-check
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
do-run: build
	./$(BUILD)/txmail run --dev

# --- tests ----------------------------------------------------------------
do-unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t --jobs 2; done

do-unit-asan: $(UNIT_BIN_ASAN)
	@set -e; for t in $(UNIT_BIN_ASAN); do echo "== $$t (asan)"; \
	  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 $$t --jobs 2; done

# Integration tests run two at a time (pytest-xdist): most of their time is
# spent waiting on peers, and every test has its own ports and processes.
# PYTEST_JOBS=0 runs them one by one. --durations: the slowest tests close
# each run's output (make test: build/phases/integration*.log), where the
# time of the longest lanes goes.
PYTEST_JOBS ?= 2
PYTEST := $(PYTHON) -m pytest -q -p no:cacheprovider --durations=15 $(if $(filter-out 0,$(PYTEST_JOBS)),-n $(PYTEST_JOBS))

do-integration: build do-spec-tools
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/txmail $(PYTEST) tests/integration

do-integration-asan: asan do-spec-tools
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/asan/txmail TXMAIL_ASAN=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	$(PYTEST) tests/integration

# make test runs its phases through tests/phases.sh: each phase's output in
# build/phases/<phase>.log, a "phase X: N s (cpu, load)" line after each and
# a table at the end. First everything the phases run is compiled with both
# cores (test-build: the binary, its ASan build, the unit test binaries of
# both, the fuzz targets); then lanes side by side, as the integration passes
# spend most of their time waiting on peers and deadlines (~0.35 core each),
# and so do the unit passes (redis-server, SMTP peers, timeouts: ~0.4 core),
# while valgrind-smoke and fuzz-smoke are CPU-bound:
#   - integration-asan
#   - integration, then faults-short (also mostly waiting)
#   - spec-lint, valgrind-smoke, fuzz-smoke (last: by then the integration
#     lanes have usually ended and the fuzzers get both cores for their 20 s)
#   - unit
#   - unit-asan
# Nothing is linked while the lanes run, so no test can execute a binary
# that is being written ("Text file busy"). The unit and fuzz binaries were
# built in the CPU-bound lane before, under nice beside the integration
# lanes: on a machine busy with other work that lane got a fraction of a
# core, and it was the longest (make test 968 s, its builds 551 s of it);
# with both cores before the lanes they take ~100 CPU-s more of test-build.
# The CPU-bound ones run under nice -n 10 (phases.sh "nice:"): the processes
# of the waiting phases get the CPU at once when they wake, so their
# deadlines see the same latency as when they run alone.
PHASES := MAKE="$(MAKE)" tests/phases.sh

do-test:
	@$(PHASES) test-build \
	  'integration-asan+integration,faults-short+spec-lint,nice:valgrind-smoke,nice:test-fuzz-smoke+unit+unit-asan'

do-test-build:
	@$(MAKE) --no-print-directory -j2 build asan do-spec-tools $(UNIT_BIN) $(UNIT_BIN_ASAN) $(VG_PRELOAD) do-fuzz-build

do-test-fuzz-smoke:
	@$(MAKE) --no-print-directory -j2 do-fuzz-smoke

# The same phases one after the other (the arrangement before the lanes),
# to compare: make do-test-serial.
do-test-serial:
	@$(PHASES) test-build spec-lint unit integration faults-short unit-asan \
	  integration-asan test-fuzz-smoke valgrind-smoke

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
                 --num-callers=30 --read-inline-info=no --vgdb=no
VALGRIND_IT   := tests/integration/test_delivery.py tests/integration/test_bad_requests.py
# Each Criterion test is a fresh exec of its binary, so valgrind's start is
# paid once per test (~1.5 CPU-s, most of valgrind-smoke's time), and most of
# it went to what is not the test's: inlined frames of libc6-dbg's debug info
# (--read-inline-info=no: error reports lose inlined frames, not errors),
# the embedded gdbserver (--vgdb=no) and libgit2 parsing the CA bundle
# ($(VG_PRELOAD), see tests/unit/vg_no_ca_bundle.c): ~0.9 CPU-s a test.
VG_PRELOAD    := $(BUILD)/tests/vg_no_ca_bundle.so

$(VG_PRELOAD): tests/unit/vg_no_ca_bundle.c
	@mkdir -p $(dir $@)
	$(CC) $(TEST_CFLAGS) -shared -fPIC -o $@ $<

$(BUILD)/txmail-valgrind: $(BUILD)/txmail Makefile
	@printf '#!/bin/sh\n# build/txmail under valgrind memcheck (make valgrind)\nexec valgrind %s --log-file=%s/txmail.%%p.log %s "$$@"\n' \
	  "$(VALGRIND_OPTS)" "$(VALGRIND_DIR)" "$(CURDIR)/$(BUILD)/txmail" >$@
	@chmod +x $@

do-valgrind: $(UNIT_BIN) $(VG_PRELOAD) $(BUILD)/txmail-valgrind do-spec-tools
	@command -v valgrind >/dev/null || { echo "valgrind missing (apt-get install valgrind)"; exit 1; }
	@rm -rf $(VALGRIND_DIR); mkdir -p $(VALGRIND_DIR)
	@set -e; start=$$(date +%s); fail=0; \
	for t in $(UNIT_BIN); do echo "== $$t (valgrind)"; \
	  LD_PRELOAD=$(CURDIR)/$(VG_PRELOAD) valgrind $(VALGRIND_OPTS) --log-file=$(VALGRIND_DIR)/unit-$$(basename $$t).%p.log \
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
# Redis kill/restart (--redis sentinel: primary kill + failover), SMTP
# 421/tarpit/mid-DATA drops and a webhook outage;
# prints accepted/delivered/failed/lost/duplicates/webhook lost/stuck and
# fails on any loss. Figures: $(BUILD)/faults-*.json.
FAULTS := $(PYTHON) tests/faults/faults.py --bin $(CURDIR)/$(BUILD)/txmail

do-faults: build
	$(FAULTS) --fsync always --min-kills 10 --json $(BUILD)/faults-always.json
	$(FAULTS) --fsync everysec --min-kills 10 --json $(BUILD)/faults-everysec.json
	$(FAULTS) --redis sentinel --messages 20000 --min-kills 10 --json $(BUILD)/faults-sentinel.json
	$(FAULTS) --redis cluster --partitions 6 --messages 20000 --min-kills 10 --redis-restarts 3 \
	  --json $(BUILD)/faults-cluster.json

do-faults-short: build
	$(FAULTS) --partitions 4 --messages 3000 --load-seconds 30 --kills 5 --min-kills 5 --redis-restarts 1 \
	  --storm-rounds 1 --webhook-down 10 --drain-seconds 90 --self-check --json $(BUILD)/faults-short.json
	$(FAULTS) --redis sentinel --messages 2000 --load-seconds 20 --kills 3 --min-kills 3 --redis-restarts 1 \
	  --storm-rounds 1 --webhook-down 5 --drain-seconds 60 --json $(BUILD)/faults-short-sentinel.json

# The CI-sized part: the unit tests of the modules that parse untrusted
# input (requests, replies, retry hints, DSNs, URLs, templates, MIME, log lines) under memcheck,
# which sees what ASan does not (reads of uninitialised memory), two
# binaries at a time, the longest first (validate ~37 s, mime ~35 s, config
# ~26 s, the rest 3-11 s each: each prints its time): ~70 s on 2 cores;
# part of `make test`. The whole `make valgrind` takes ~10 min.
VALGRIND_SMOKE := validate mime config log verp mx reply dsn template retry_hint submit_msg

do-valgrind-smoke: $(VALGRIND_SMOKE:%=$(BUILD)/tests/test_%) $(VG_PRELOAD)
	@command -v valgrind >/dev/null || { echo "valgrind missing (apt-get install valgrind)"; exit 1; }
	@rm -rf $(VALGRIND_DIR)-smoke; mkdir -p $(VALGRIND_DIR)-smoke
	@set -e; start=$$(date +%s); fail=0; \
	printf '%s\n' $(VALGRIND_SMOKE) | xargs -P 2 -I{} sh -c 's=$$(date +%s); echo "== $(BUILD)/tests/test_{} (valgrind)"; \
	  LD_PRELOAD=$(CURDIR)/$(VG_PRELOAD) valgrind $(VALGRIND_OPTS) --log-file=$(VALGRIND_DIR)-smoke/unit-{}.%p.log $(BUILD)/tests/test_{} --jobs 2 \
	    >/dev/null || { echo "FAIL: $(BUILD)/tests/test_{} under valgrind"; exit 1; }; \
	  echo "   test_{}: $$(( $$(date +%s) - s )) s"' || fail=1; \
	for f in $(VALGRIND_DIR)-smoke/*.log; do \
	  if [ -s "$$f" ]; then echo "--- valgrind report: $$f"; head -n 80 "$$f"; fail=1; fi; \
	done; \
	echo "valgrind-smoke: $$(( $$(date +%s) - start )) s"; \
	if [ $$fail != 0 ]; then echo "FAIL: valgrind-smoke (logs in $(VALGRIND_DIR)-smoke)"; exit 1; fi

# --- bench --------------------------------------------------------------------
# tests/bench/suite.py: one table (figure, value, same-run reference, ratio,
# goal, met) for issue 13's goals - end to end with receipts (wrk -> txmail
# -> Postfix's smtp-sink -> webhooks at build/bench/whrecv), accept alone,
# the lone verification code's latency, Redis cost, RSS with a backlog - on
# its own redis-server with deploy/redis.conf, everything on loopback and
# cleaned up after. BENCH_ARGS passes options (--quick: a short run;
# --messages N; --markdown FILE). Not part of make test. bench.py and
# bench_api.py (each with --callgrind N) stay runnable on their own. Then
# tests/bench/redis_cost.py (about 40 s on a quiet box): Redis commands,
# CPU, network, AOF and memory per message of a split api + worker stack,
# 1 and 3 recipients, the figures docs/scaling.md sizes Redis from;
# REDIS_COST_ARGS passes its options (--messages N, --replicas N, --json).
# Last, bench_api.py --replica (about 25 s): the accept rate and p99 with
# TXMAIL_REDIS_MIN_REPLICAS=1 against 0 on one primary and its replica.
#
# smtp-sink and smtp-source come with the postfix package, which the bench
# installs itself (deps-bench, as root) without configuring or starting a
# mail system: debconf answers "No configuration", a policy-rc.d (when the
# machine has none) refuses every service start during the install, and a
# postfix master found running afterwards is stopped and disabled.
BENCH_PKGS := postfix
BENCH_ARGS ?=
REDIS_COST_ARGS ?=

bench: deps-bench
deps-bench: deps-test
	@if ! dpkg-query -W -f='$${Status}' postfix 2>/dev/null | grep -q 'install ok installed'; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing: postfix (smtp-sink; run as root, or: sudo apt-get install postfix)"; exit 1; fi; \
	  echo "installing: postfix (smtp-sink, smtp-source; no mail system is configured or started)"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections; \
	  own=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; own=1; fi; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $(BENCH_PKGS) >/dev/null; rc=$$?; \
	  [ -n "$$own" ] && rm -f /usr/sbin/policy-rc.d; \
	  [ $$rc = 0 ] || exit 1; \
	fi
	@if postfix status >/dev/null 2>&1; then echo "stopping the postfix daemon the package started"; postfix stop >/dev/null 2>&1; fi; \
	if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled postfix >/dev/null 2>&1; then systemctl disable --now postfix >/dev/null 2>&1 || true; fi; \
	if command -v update-rc.d >/dev/null 2>&1 && ls /etc/rc2.d/S*postfix >/dev/null 2>&1; then update-rc.d postfix disable >/dev/null 2>&1 || true; fi

WHRECV := $(BUILD)/bench/whrecv

$(WHRECV): tests/bench/whrecv.c | pkg-check
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LDLIBS)

do-bench: build $(WHRECV)
	$(PYTHON) tests/bench/suite.py --bin $(CURDIR)/$(BUILD)/txmail --whrecv $(CURDIR)/$(WHRECV) $(BENCH_ARGS)
	$(PYTHON) tests/bench/redis_cost.py --bin $(CURDIR)/$(BUILD)/txmail --whrecv $(CURDIR)/$(WHRECV) $(REDIS_COST_ARGS)
	$(PYTHON) tests/bench/bench_search.py --bin $(CURDIR)/$(BUILD)/txmail $(SEARCH_BENCH_ARGS)
	cd tests/bench && $(PYTHON) bench_api.py --bin $(CURDIR)/$(BUILD)/txmail --replica -d 5

# --- fuzzing ----------------------------------------------------------------
# libFuzzer targets in tests/fuzz/fuzz_<name>.c, built with clang. The library
# is compiled with the project flags plus -fsanitize=fuzzer-no-link,address,
# undefined into its own archive (a target links only the objects it needs),
# of the files the targets reach (FUZZ_LIB_SRC: 22 of the ~60; compiling
# the other 44 as well took ~25 s of CPU in make test, two thirds of the
# fuzz build, for objects no target linked; a new target that needs
# another file fails to link with an undefined reference naming what is
# missing: add its file here),
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
FUZZ_LIB_SRC := $(addprefix server/,cidr.c config_parse.c dsn.c etag.c hash.c log.c mailparse.c store_cluster_map.c \
                  store_sentinel.c submit_msg.c submit_proto.c template.c \
                  util.c validate.c validate_addr.c validate_scan.c verp.c webhook_event.c) \
                $(addprefix smtp/,mime.c mx.c reply.c retry.c retry_hint.c)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS  := $(CFLAGS) $(FUZZ_SAN) -Wno-format-nonliteral -Wno-string-concatenation

$(FUZZ)/obj/%.o: %.c VERSION | pkg-check
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(addprefix $(FUZZ)/obj/,$(STORE_OBJ)): $(LUA_GEN)
$(FUZZ)/obj/server/dashboard.o: $(UI_GEN)

$(FUZZ)/libtxmail-fuzz.a: $(FUZZ_LIB_SRC:%.c=$(FUZZ)/obj/%.o)
	@rm -f $@; ar rcs $@ $^

$(FUZZ)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ)/libtxmail-fuzz.a
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -MMD -MP -MF $@.d -o $@ $< $(FUZZ)/libtxmail-fuzz.a $(LDLIBS)

do-fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ)/%)

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

do-fuzz: do-fuzz-build
	@$(MAKE) --no-print-directory -k $(FUZZ_TARGETS:%=fuzz-run-%)

do-fuzz-smoke:
	@$(MAKE) --no-print-directory do-fuzz FUZZ_SECONDS=20

# The container image, labelled with VERSION (the Dockerfile checks the
# label against the binary it builds). Needs a docker engine; not in make test.
image:
	docker build --build-arg TXMAIL_VERSION=$(VERSION) -t txmail:$(VERSION) -t txmail:local .

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
