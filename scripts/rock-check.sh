#!/bin/bash
# make rock-check: the LuaRocks installs as a user makes them, with no extra variables, then a real
# call from each installed tree against the bundled local server (loopback, started and stopped by
# its pid), then `luarocks test`:
#   1. make rock: build/rock/imageroute-scm-1.src.rock from this tree;
#   2. `luarocks --lua-version 5.4 make --tree T --deps-mode=none rockspec/imageroute-scm-1.rockspec`
#      in the files the rock ships (its archive unpacked in a scratch directory);
#      and again where curl/curl.h is in the default path /usr/include (a private mount namespace
#      moves it there from Debian's /usr/include/<multiarch>; skipped unless root);
#   3. `luarocks --lua-version 5.3 install --tree T53 --deps-mode=none imageroute-scm-1.src.rock`;
#   4. for each tree: its own imageroute-localserver, then scripts/rock-call.lua under that Lua with
#      `luarocks path --tree` (generate n = 2, save, read back, check the request the server got),
#      and the installed `imageroute --version`;
#   5. `luarocks --lua-version 5.4 test` in the unpacked files (the whole suite; ROCK_CHECK_TEST=0
#      skips it, ROCK_CHECK_TEST_ARGS are passed to busted, e.g. a spec file).
# The dependencies come from Debian (lua-cjson, lua-socket, lua-argparse): Debian's luarocks
# defaults to Lua 5.1 and no rock server is reachable, hence --lua-version and --deps-mode=none.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
name=imageroute-scm-1
scratch=$(mktemp -d)
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap cleanup EXIT INT TERM
t0=$SECONDS
step() { echo "rock-check: $* ($((SECONDS - t0)) s)"; }
quiet() { # runs "$@" with its output kept in a log, shown only when it fails
  local log="$scratch/log"
  if ! "$@" >"$log" 2>&1; then cat "$log"; echo "rock-check: FAILED: $*" >&2; exit 1; fi
}

scripts/rock.sh
rock="$root/build/rock/$name.src.rock"
mkdir -p "$scratch/src" "$scratch/out-5.4" "$scratch/out-5.3"
tar -xzf "build/rock/$name.tar.gz" -C "$scratch/src"
src="$scratch/src/$name"

# no CURL_INCDIR or any other variable: the rockspec checks libraries and the compiler finds headers
step "luarocks --lua-version 5.4 make --tree T --deps-mode=none rockspec/$name.rockspec"
(cd "$src" && quiet luarocks --lua-version 5.4 make --tree "$scratch/T" --deps-mode=none "rockspec/$name.rockspec")
rm -f "$src"/src/*.o "$src"/imageroute/core.so   # the builtin backend builds beside the sources
# the same on a system whose curl header is in the default path (/usr/include/curl, as outside
# Debian): in a private mount namespace, /usr/include gets curl/ and loses its multiarch copy
ma=$(cc -print-multiarch 2>/dev/null || true)
if [ -n "$ma" ] && [ -f "/usr/include/$ma/curl/curl.h" ] && [ "$(id -u)" = 0 ] && command -v unshare >/dev/null; then
  step "luarocks --lua-version 5.4 make with curl/curl.h in /usr/include instead of /usr/include/$ma"
  ovl="$scratch/ovl"
  mkdir -p "$ovl/upper/curl" "$ovl/work" "$ovl/empty"
  cp "/usr/include/$ma/curl/"*.h "$ovl/upper/curl/"
  # shellcheck disable=SC2016
  (cd "$src" && quiet unshare -m bash -c 'set -e
    mount -t overlay overlay -o "lowerdir=/usr/include,upperdir=$1/upper,workdir=$1/work" /usr/include
    mount --bind "$1/empty" "/usr/include/$2/curl"
    test -f /usr/include/curl/curl.h && test ! -e "/usr/include/$2/curl/curl.h"
    echo "#include <curl/curl.h>" | cc -E -x c - | grep -q ""/usr/include/curl/curl.h""
    luarocks --lua-version 5.4 make --tree "$3" --deps-mode=none rockspec/imageroute-scm-1.rockspec' \
    _ "$ovl" "$ma" "$scratch/T-default")
  rm -f "$src"/src/*.o "$src"/imageroute/core.so
  LUA_CPATH="$scratch/T-default/lib/lua/5.4/?.so;;" lua5.4 -e 'require "imageroute.core"' \
    || { echo "rock-check: FAILED: the core built with the header in /usr/include does not load" >&2; exit 1; }
else
  step "SKIPPED: the build with curl/curl.h in /usr/include (needs root, unshare and Debian's multiarch header)"
fi
step "luarocks --lua-version 5.3 install --tree T53 --deps-mode=none $name.src.rock"
(cd "$scratch" && quiet luarocks --lua-version 5.3 install --tree "$scratch/T53" --deps-mode=none "$rock")

call_from() { # call_from LUAVERSION TREE
  local v=$1 tree=$2 portfile="$scratch/port-$1"
  (
    eval "$(luarocks --lua-version "$v" --tree "$tree" path)"
    export ROCK_CHECK_KEY="sk-rock-check-0123456789"
    cd "$scratch"
    # the installed server, on loopback; --owner-pid: it also exits if this script dies first
    "$tree/bin/imageroute-localserver" --host 127.0.0.1 --port 0 --port-file "$portfile" --owner-pid $$ \
      --quiet </dev/null >"$scratch/server-$v.log" 2>&1 &
    server=$!
    trap 'kill $server 2>/dev/null || true' EXIT
    i=0
    until [ -s "$portfile" ]; do
      i=$((i + 1))
      if [ $i -gt 200 ] || ! kill -0 "$server" 2>/dev/null; then
        echo "rock-check: the installed local server did not start:"; cat "$scratch/server-$v.log"; exit 1
      fi
      sleep 0.05
    done
    "lua$v" "$root/scripts/rock-call.lua" "$tree" "http://127.0.0.1:$(cat "$portfile")/v1" "$scratch/out-$v"
    # the installed command (LuaRocks' wrapper runs it with this Lua)
    cli=$("$tree/bin/imageroute" --version 2>&1) || { echo "rock-check: FAILED: imageroute --version: $cli"; exit 1; }
    case "$cli" in imageroute\ [0-9]*) echo "rock-check: $tree/bin/imageroute --version: $cli" ;;
      *) echo "rock-check: FAILED: imageroute --version printed: $cli"; exit 1 ;; esac
    kill "$server"
    wait "$server" 2>/dev/null || true
  )
}
step "a call from T (Lua 5.4)"
call_from 5.4 "$scratch/T"
step "a call from T53 (Lua 5.3)"
call_from 5.3 "$scratch/T53"

if [ "${ROCK_CHECK_TEST:-1}" != 0 ]; then
  step "luarocks --lua-version 5.4 test rockspec/$name.rockspec ${ROCK_CHECK_TEST_ARGS:-}"
  # shellcheck disable=SC2086
  if (cd "$src" && luarocks --lua-version 5.4 test "rockspec/$name.rockspec" -- ${ROCK_CHECK_TEST_ARGS:-}) >"$scratch/test.log" 2>&1; then
    grep -a '^spec:' "$scratch/test.log"
  else
    tail -n 80 "$scratch/test.log"; echo "rock-check: FAILED: luarocks test" >&2; exit 1
  fi
fi
step "every check passed"
