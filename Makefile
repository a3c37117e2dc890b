# imageroute: build, test, demo. `make help` lists the targets.
LUA        ?= lua5.4
LUA_INC    ?= /usr/include/lua5.4
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
CC         ?= cc
WARN        = -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wpointer-arith -Wcast-qual \
              -Wwrite-strings -Wmissing-prototypes
CFLAGS     ?= -O2 -g
ALL_CFLAGS  = $(CFLAGS) $(WARN) -fPIC -I$(LUA_INC) $(CURL_CFLAGS)
LDFLAGS    ?=
LIBS        = $(CURL_LIBS) -lb64 -lcrypto
BUILD      ?= build
SRCS        = $(wildcard src/*.c)
OBJS        = $(SRCS:src/%.c=$(BUILD)/obj/%.o)
CORE        = $(BUILD)/imageroute/core.so

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps build test lint spec demo demo-live contract rock-check clean help bench check-valgrind check-asan fuzz soak doc

all: build

help:
	@echo "make demo   - install missing deps, build, run the examples against the local server (files in ./out/)"
	@echo "make test   - install missing deps, luacheck, build with -Werror, run all busted specs"
	@echo "make contract - run the contract suite against Steady serving the official OpenAPI spec"
	@echo "make demo-live - the quickstart against the real API (needs OPENAI_API_KEY)"
	@echo "make check-valgrind - all specs under valgrind memcheck"
	@echo "make check-asan - all specs against the core built with AddressSanitizer and UBSan"
	@echo "make fuzz   - libFuzzer harnesses for the C parsers (FUZZ_SECONDS each, default 60)"
	@echo "make doc    - the API reference (LDoc) into doc/"
	@echo "make bench  - benchmarks against the local server"

deps:
	@scripts/deps.sh

build: $(CORE)

$(BUILD)/obj/%.o: src/%.c src/ir.h src/xfer.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

lint:
	luacheck --no-color -q lua spec examples bin/imageroute bin/imageroute-localserver scripts/*.lua $(wildcard bench/*.lua)

spec: build
	scripts/spec.sh

test: deps
	$(MAKE) lint
	$(MAKE) build
	$(MAKE) spec

demo: deps
	$(MAKE) build
	scripts/demo.sh

demo-live: deps
	$(MAKE) build
	@test -n "$$OPENAI_API_KEY" || { echo "demo-live: set OPENAI_API_KEY"; exit 1; }
	mkdir -p out
	$(LUA) examples/quickstart.lua

contract: deps build
	scripts/contract.sh

rock-check: deps
	scripts/rock-check.sh

bench: deps build
	$(LUA) bench/run.lua

check-valgrind: deps build
	@command -v valgrind >/dev/null || { echo "check-valgrind: valgrind is not installed (apt-get install valgrind)"; exit 1; }
	SPEC_RUNNER="valgrind --leak-check=full --errors-for-leak-kinds=definite --error-exitcode=9 -q" scripts/spec.sh

doc: deps
	@rm -rf doc
	@out=$$(ldoc . 2>&1); echo "$$out"; \
	  if echo "$$out" | grep -v -e '^reading configuration' -e '^output written' | grep -q .; then \
	    echo "doc: LDoc printed warnings"; exit 1; fi

check-asan: deps
	scripts/check-asan.sh

fuzz: deps
	scripts/fuzz.sh $(FUZZ_SECONDS)

soak: deps build
	$(LUA) scripts/soak.lua $(SOAK_CALLS)

clean:
	rm -rf $(BUILD) out
