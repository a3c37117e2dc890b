#!/bin/bash
# Runs the busted specs under one Lua (Debian's /usr/bin/busted starts with `lua`, which is 5.1),
# then prints the plain "N passed, N failed" summary line. Extra arguments go to busted.
#
# SPEC_LUA: the interpreter (default lua5.4; `make spec LUA=lua5.3` / `make test-5.3` set lua5.3).
# SPEC_BUILD: the build directory holding its core (default build/ for 5.4, build-X.Y/ otherwise).
# SPEC_RUNNER prefixes the interpreter (make check-valgrind sets it to valgrind).
#
# Under another Lua than 5.4 the whole run is that Lua: the specs start `lua5.4` subprocesses by
# name (the CLI, the local server, small scripts), so a shim named lua5.4 that runs SPEC_LUA goes
# first on PATH, and every process loads the core from SPEC_BUILD; a preflight checks both.
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
lua=${SPEC_LUA:-lua5.4}
command -v "$lua" >/dev/null || { echo "spec: $lua is not installed (make deps)"; exit 1; }
ver=$("$lua" -e 'io.write((_VERSION:match("%d+%.%d+")))')
if [ "$ver" = 5.4 ]; then build=${SPEC_BUILD:-build}; else build=${SPEC_BUILD:-build-$ver}; fi
[ -e "$root/$build/imageroute/core.so" ] || { echo "spec: no core in $build/ (make build LUA=$lua)"; exit 1; }
# subprocesses started by the specs load the tree's modules too
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/$build/?.so;;"
# a stand-in API key for the specs: they assert it reaches the local server and nothing else
# (.busted sets the same one for a plain `busted`)
export IMAGEROUTE_TEST_KEY="sk-imageroute-test-KEY-0123456789abcdef"
if [ "$ver" != 5.4 ]; then
  mkdir -p "$root/$build/bin"
  lua_path=$(command -v "$lua")
  # shellcheck disable=SC2016
  printf '#!/bin/sh\n# spec.sh: this run is Lua %s; specs start lua5.4 by name\nexec "%s" "$@"\n' "$ver" "$lua_path" \
    > "$root/$build/bin/lua5.4"
  chmod +x "$root/$build/bin/lua5.4"
  export PATH="$root/$build/bin:$PATH"
  # bin/imageroute and bin/imageroute-localserver put $root/build/?.so first unless told otherwise
  export IMAGEROUTE_CPATH="$root/$build/?.so;"
  probe=$(lua5.4 -e 'require "imageroute.core"; io.write(_VERSION, " ", package.searchpath("imageroute.core", package.cpath))' 2>&1)
  if [ "$probe" != "Lua $ver $root/$build/imageroute/core.so" ]; then
    echo "spec: lua5.4 on PATH should be Lua $ver with the core of $build/, got: $probe"; exit 1
  fi
  echo "spec: every Lua process of this run is Lua $ver ($lua_path), core $build/imageroute/core.so"
fi
out=$(mktemp)
# --ignore-lua: .busted names `lua` for a plain `busted`; here the interpreter is chosen above.
# --cpath: .busted's build/?.so would otherwise come first for busted itself
cpath=()
[ "$build" != build ] && cpath=(--cpath="$root/$build/?.so")
# shellcheck disable=SC2086
${SPEC_RUNNER:-} "$lua" /usr/bin/busted --ignore-lua "${cpath[@]}" "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
line=$(grep -aE '^[0-9]+ success(es)? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -n 1)
rm -f "$out"
if [ -z "$line" ]; then echo "spec: busted printed no summary"; exit 1; fi
ok=$(echo "$line" | sed -E 's/^([0-9]+) success.*/\1/')
failed=$(echo "$line" | sed -E 's/.* ([0-9]+) failures? \/ ([0-9]+) errors?.*/\1 \2/' | awk '{print $1 + $2}')
pending=$(echo "$line" | sed -E 's/.* ([0-9]+) pending.*/\1/')
echo "spec: Lua $ver: $ok passed, $failed failed, $pending skipped"
[ "$failed" = 0 ] && [ "$ok" -gt 0 ] && [ "$status" = 0 ]
