# txmail - build, run, test.
#
#   make run     install what is missing, build, start `txmail run --dev`
#   make test    install what is missing, build, run unit + integration tests,
#                then the same suite built with ASan+UBSan
#   make bench   throughput through the dev sink
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
            python3 python3-aiosmtpd python3-pytest python3-yaml openssl curl \
            python3-dkim python3-nacl dnsmasq

.PHONY: all deps build asan run test unit unit-asan integration integration-asan bench clean spec-lint spec-tools

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

integration: deps build spec-tools
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/txmail $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

integration-asan: deps asan spec-tools
	TXMAIL_BIN=$(CURDIR)/$(BUILD)/asan/txmail TXMAIL_ASAN=1 \
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
	$(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

test: deps
	$(MAKE) spec-lint
	$(MAKE) unit
	$(MAKE) integration
	$(MAKE) unit-asan
	$(MAKE) integration-asan

bench: deps build
	$(PYTHON) tests/bench/bench.py --bin $(CURDIR)/$(BUILD)/txmail

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
