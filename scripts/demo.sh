#!/bin/sh
# The main job: start the bundled local server, run the examples against it, stop the server.
# Images land in ./out/. Called by `make demo` after the build (of the Lua 5.4 and 5.3 cores).
# DEMO_EXAMPLES: the Lua examples to run; DEMO_PANDOC=0 skips the pandoc filter (out/pandoc-notes.html).
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
export IMAGEROUTE_POLL=0.1   # examples/tool_loop.lua: background polls 0.1 s apart on the local server
for ex in ${DEMO_EXAMPLES:-quickstart assistant_flow tool_loop provider_chat compare}; do
  echo "== examples/$ex.lua"
  lua5.4 "examples/$ex.lua"
done
# the pandoc filter (pandoc embeds Lua 5.3, so the 5.3 core: `make demo` builds it), run from out/
if [ "${DEMO_PANDOC:-1}" = 1 ]; then
  echo "== examples/pandoc-images.lua (pandoc $(pandoc --version | head -n 1 | cut -d' ' -f2), Lua 5.3)"
  [ -e "$root/build-5.3/imageroute/core.so" ] || { echo "demo: no Lua 5.3 core (make build LUA=lua5.3)" >&2; exit 1; }
  rm -rf out/pandoc-images   # its names hash the route, whose base_url (the port) changes every run
  (cd out && LUA_CPATH="$root/build-5.3/?.so;;" IMAGEROUTE_IMAGE_DIR=pandoc-images \
    pandoc --standalone --lua-filter "$root/examples/pandoc-images.lua" "$root/examples/pandoc-notes.md" \
    -o pandoc-notes.html)
  echo "demo: out/pandoc-notes.html shows $(grep -o 'src="pandoc-images/[^"]*\.png"' out/pandoc-notes.html | wc -l) generated images"
fi
echo "demo: files in ./out/:"
ls -l out
