# imageroute: build, test, demo. `make help` lists the targets.
# LUA picks the Lua the core is built for and the specs run under: lua5.4 (default, into build/) or
# lua5.3 (into build-5.3/; `make test-5.3` = `make spec LUA=lua5.3`: that core and the whole suite under lua5.3)
LUA        ?= lua5.4
LUA_V      := $(patsubst lua%,%,$(notdir $(LUA)))
LUA_INC    ?= /usr/include/lua$(LUA_V)
CURL_CFLAGS := $(shell pkg-config --cflags libcurl 2>/dev/null)
CURL_LIBS   := $(shell pkg-config --libs libcurl 2>/dev/null || echo -lcurl)
CC         ?= cc
WARN        = -std=c99 -Wall -Wextra -Werror -pedantic -Wshadow -Wpointer-arith -Wcast-qual \
              -Wwrite-strings -Wmissing-prototypes
CFLAGS     ?= -O2 -g
ALL_CFLAGS  = $(CFLAGS) $(WARN) -fPIC -fvisibility=hidden -I$(LUA_INC) $(CURL_CFLAGS)
LDFLAGS    ?=
LIBS        = $(CURL_LIBS) -lb64 -lcrypto
ifeq ($(LUA_V),5.4)
BUILD      ?= build
else
BUILD      ?= build-$(LUA_V)
endif
SRCS        = $(wildcard src/*.c)
OBJS        = $(SRCS:src/%.c=$(BUILD)/obj/%.o)
CORE        = $(BUILD)/imageroute/core.so
# the optional Redis client of imageroute.state.redis (src/redis/, hiredis): built when pkg-config finds
# hiredis, or with WITH_REDIS=1 (fails without it); WITH_REDIS=0 never builds it
HIREDIS_OK := $(shell pkg-config --exists hiredis 2>/dev/null && echo 1 || echo 0)
WITH_REDIS ?= $(HIREDIS_OK)
REDIS_MOD   = $(BUILD)/imageroute/redis.so
ifeq ($(WITH_REDIS),1)
REDIS_TARGET = $(REDIS_MOD)
endif

export LUA_PATH  := $(CURDIR)/lua/?.lua;$(CURDIR)/lua/?/init.lua;;
export LUA_CPATH := $(CURDIR)/$(BUILD)/?.so;;

.PHONY: all deps build test test-5.3 lint spec demo demo-live contract rock rock-check clean help bench check-valgrind \
        check-asan fuzz soak doc

all: build

help:
	@echo "make demo   - install missing deps, build, run the examples against the local server (files in ./out/)"
	@echo "make test   - install missing deps, luacheck, build with -Werror, run all busted specs"
	@echo "make test-5.3 - build the core for Lua 5.3 (build-5.3/) and run all specs under lua5.3"
	@echo "make contract - run the contract suite against Steady serving the official OpenAPI spec"
	@echo "make rock   - a source rock of this tree: build/rock/imageroute-scm-1.src.rock"
	@echo "make rock-check - luarocks make into a scratch tree, a call from it, the rock installed, luarocks test"
	@echo "make demo-live - the quickstart against the real API (needs OPENAI_API_KEY)"
	@echo "make check-valgrind - all specs under valgrind memcheck"
	@echo "make check-asan - all specs against the core built with AddressSanitizer and UBSan"
	@echo "make fuzz   - libFuzzer harnesses for the C parsers (FUZZ_SECONDS each, default 60)"
	@echo "make doc    - the API reference (LDoc) into doc/"
	@echo "make bench  - benchmarks against the local server"

deps:
	@scripts/deps.sh

build: $(CORE) $(REDIS_TARGET)

$(REDIS_MOD): src/redis/redis.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(shell pkg-config --cflags hiredis 2>/dev/null) -shared $(LDFLAGS) -o $@ $< \
	  $(shell pkg-config --libs hiredis 2>/dev/null || echo -lhiredis)

$(BUILD)/obj/%.o: src/%.c src/ir.h src/xfer.h
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

$(CORE): $(OBJS)
	@mkdir -p $(dir $@)
	$(CC) -shared $(LDFLAGS) -o $@ $(OBJS) $(LIBS)

lint:
	luacheck --no-color -q lua spec examples bin/imageroute bin/imageroute-localserver scripts/*.lua $(wildcard bench/*.lua)

# SPEC_ARGS: extra busted arguments (a spec file, --filter=...)
spec: build
	SPEC_LUA=$(LUA) SPEC_BUILD=$(BUILD) scripts/spec.sh $(SPEC_ARGS)

test-5.3: deps
	$(MAKE) spec LUA=lua5.3

test: deps
	$(MAKE) lint
	$(MAKE) build
	$(MAKE) spec

# the Lua 5.3 core too: the demo runs the pandoc filter (pandoc embeds Lua 5.3)
demo: deps
	$(MAKE) build
	$(MAKE) build LUA=lua5.3
	scripts/demo.sh

demo-live: deps
	$(MAKE) build
	@test -n "$$OPENAI_API_KEY" || { echo "demo-live: set OPENAI_API_KEY"; exit 1; }
	mkdir -p out
	$(LUA) examples/quickstart.lua

contract: deps build
	scripts/contract.sh

rock: deps
	@scripts/rock.sh

rock-check: deps
	scripts/rock-check.sh

bench: deps build
	$(LUA) bench/run.lua
	$(LUA) bench/policy_overhead.lua

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
	rm -rf build build-5.3 out
