#!/bin/sh
# The contract suite: every request shape imageroute sends goes to Steady serving OpenAI's official
# OpenAPI spec, which answers 400 to any request that does not match it.
# Skipped, with the reason printed, where node/npm or the spec is missing. The spec is looked for
# at OPENAI_SPEC, else beside the checkout (../shared/reference/), else beside the main checkout of
# a git worktree.
set -eu
cd "$(dirname "$0")/.."
root=$(pwd)
spec="${OPENAI_SPEC:-$root/../shared/reference/openai-openapi.yaml}"
if [ -z "${OPENAI_SPEC:-}" ] && [ ! -f "$spec" ]; then
  # a git worktree: the spec beside the main checkout
  common=$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || true)
  if [ -n "$common" ] && [ -f "$common/../../shared/reference/openai-openapi.yaml" ]; then
    spec="$common/../../shared/reference/openai-openapi.yaml"
  fi
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "contract: SKIPPED: node/npm is not installed"; exit 0
fi
if [ ! -f "$spec" ]; then
  echo "contract: SKIPPED: the OpenAPI spec is not at $spec (set OPENAI_SPEC)"; exit 0
fi
cd spec/contract
if [ ! -x node_modules/.bin/steady ]; then
  npm install --no-audit --no-fund --loglevel=error >/dev/null
fi
port=$(lua5.4 -e 'local s = require("socket").bind("127.0.0.1", 0); local _, p = s:getsockname(); s:close(); print(p)')
log=$(mktemp)
node_modules/.bin/steady -p "$port" --host 127.0.0.1 --validator-form-array-format=brackets \
  --log-format text "$spec" >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -f "$log"' EXIT INT TERM
i=0
# ready when the port accepts a connection (the log's wording differs between its output formats)
until lua5.4 -e 'os.exit(require("socket").connect("127.0.0.1", '"$port"') and 0 or 1)' 2>/dev/null; do
  i=$((i + 1))
  if [ $i -gt 300 ] || ! kill -0 $pid 2>/dev/null; then echo "contract: Steady did not start:"; cat "$log"; exit 1; fi
  sleep 0.1
done
cd "$root"
export STEADY_URL="http://127.0.0.1:$port"
export LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;$root/spec/?.lua;;"
export LUA_CPATH="$root/build/?.so;;"
export IMAGEROUTE_CONTRACT_KEY="sk-contract-test"
lua5.4 /usr/bin/busted --pattern=_contract%.lua$ spec/contract
