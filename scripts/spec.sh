#!/bin/bash
# Runs the busted specs with Lua 5.4 (Debian's /usr/bin/busted starts with `lua`, which is 5.1),
# then prints the plain "N passed, N failed" summary line. Extra arguments go to busted.
# SPEC_RUNNER prefixes the interpreter (make check-valgrind sets it to valgrind).
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
# subprocesses started by the specs load the tree's modules too
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/build/?.so;;"
# a stand-in API key for the specs: they assert it reaches the local server and nothing else
export IMAGEROUTE_TEST_KEY="sk-imageroute-test-KEY-0123456789abcdef"
out=$(mktemp)
# shellcheck disable=SC2086
${SPEC_RUNNER:-} lua5.4 /usr/bin/busted "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
line=$(grep -aE '^[0-9]+ successes? / [0-9]+ failures? / [0-9]+ errors? / [0-9]+ pending' "$out" | tail -n 1)
rm -f "$out"
if [ -z "$line" ]; then echo "spec: busted printed no summary"; exit 1; fi
ok=$(echo "$line" | sed -E 's/^([0-9]+) success.*/\1/')
failed=$(echo "$line" | sed -E 's/.* ([0-9]+) failures? \/ ([0-9]+) errors?.*/\1 \2/' | awk '{print $1 + $2}')
pending=$(echo "$line" | sed -E 's/.* ([0-9]+) pending.*/\1/')
echo "spec: $ok passed, $failed failed, $pending skipped"
[ "$failed" = 0 ] && [ "$ok" -gt 0 ] && [ "$status" = 0 ]
