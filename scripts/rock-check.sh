#!/bin/sh
# Installs the rock into a scratch tree with `luarocks make` and loads it from there, outside the
# source tree, the way a user's project would.
set -eu
cd "$(dirname "$0")/.."
tree=$(mktemp -d)
work=$(mktemp -d)
trap 'rm -rf "$tree" "$work"' EXIT
# build from a copy: the builtin backend leaves objects beside the sources
cp -r src lua bin rockspec "$work"/
cd "$work"
# Debian puts curl/curl.h under the multiarch include directory
curl_inc=/usr/include
ma=$(cc -print-multiarch 2>/dev/null || true)
[ -n "$ma" ] && [ -f "/usr/include/$ma/curl/curl.h" ] && curl_inc="/usr/include/$ma"
luarocks --lua-version 5.4 make --tree "$tree" --deps-mode=none rockspec/imageroute-scm-1.rockspec \
  CURL_INCDIR="$curl_inc" >"$tree.log" 2>&1 \
  || { cat "$tree.log"; rm -f "$tree.log"; exit 1; }
rm -f "$tree.log"
eval "$(luarocks --lua-version 5.4 --tree "$tree" path)"
cd /
lua5.4 -e 'local ir = require "imageroute"; assert(package.searchpath("imageroute.core", package.cpath):find("'"$tree"'", 1, true), "core not from the tree"); print("rock-check: imageroute " .. ir._VERSION .. " loads from " .. package.searchpath("imageroute", package.path))'
