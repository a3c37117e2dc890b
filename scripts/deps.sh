#!/bin/sh
# Installs the Debian packages imageroute needs to build, test and run its demo.
# As root it runs apt-get; otherwise it prints the one command to run.
# Usage: scripts/deps.sh [--check]   (--check: exit 1 if something is missing, install nothing)
set -eu
# build and run: the C core's libraries, Lua 5.4, lua-cjson, luasocket (the local server), argparse (the CLI)
PKGS="liblua5.4-dev lua5.4 libcurl4-openssl-dev libssl-dev libb64-dev lua-cjson lua-socket lua-argparse luarocks"
# tests, docs and checks: busted, luacheck, LDoc (+ discount for its Markdown), openssl (the TLS spec),
# chromium (the comparison report is opened in a headless browser), valgrind (make check-valgrind),
# clang with its runtime (make check-asan, make fuzz: AddressSanitizer, UBSan, libFuzzer)
PKGS="$PKGS lua-busted lua-check lua-ldoc lua-discount openssl chromium valgrind clang libclang-rt-14-dev"
# Lua 5.3 (make test-5.3: the core built against 5.3, the whole suite under lua5.3; Debian's lua-cjson,
# lua-socket, lua-argparse and busted install for 5.3 too) and pandoc, whose embedded Lua is 5.3
# (make pandoc-example: examples/pandoc-images.lua)
PKGS="$PKGS liblua5.3-dev lua5.3 pandoc"
# host event loops the adapters are tested in (imageroute.loop.cqueues with a lua-http server,
# imageroute.loop.luv), and the network-namespace tools of the download-policy spec (ip, unshare)
PKGS="$PKGS lua-cqueues lua-luv lua-http iproute2 util-linux"
# the optional Redis state store (imageroute.state.redis): hiredis for its C module, redis-server for its specs
PKGS="$PKGS libhiredis-dev redis-server"
missing=""
for p in $PKGS; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done
[ -z "$missing" ] && exit 0
if [ "${1:-}" = "--check" ]; then
  echo "missing:$missing"; exit 1
fi
if [ "$(id -u)" = 0 ]; then
  echo "deps: installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    echo "deps: apt-get failed" >&2
    exit 1
  fi
  rm -f "$log"
  echo "deps: installed$missing"
else
  echo "deps: missing Debian packages; run as root:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
