#!/bin/sh
# The main job: start the bundled local server, run the examples against it, stop the server.
# Images land in ./out/. Called by `make demo` after the build.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;"
export LUA_CPATH="$root/build/?.so;;"
portfile=$(mktemp)
lua5.4 bin/imageroute-localserver --port 0 --port-file "$portfile" --quiet &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$portfile"' EXIT INT TERM
i=0
while [ ! -s "$portfile" ]; do
  i=$((i + 1))
  [ $i -gt 100 ] && { echo "demo: the local server did not start" >&2; exit 1; }
  sleep 0.05
done
port=$(cat "$portfile")
echo "demo: local server on http://127.0.0.1:$port/v1"
export OPENAI_BASE_URL="http://127.0.0.1:$port/v1"
mkdir -p out
for ex in ${DEMO_EXAMPLES:-quickstart assistant_flow provider_chat compare}; do
  echo "== examples/$ex.lua"
  lua5.4 "examples/$ex.lua"
done
echo "demo: files in ./out/:"
ls -l out
