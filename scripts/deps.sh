#!/bin/sh
# Installs the Debian packages imageroute needs to build, test and run its demo.
# As root it runs apt-get; otherwise it prints the one command to run.
# Usage: scripts/deps.sh [--check]   (--check: exit 1 if something is missing, install nothing)
set -eu
PKGS="liblua5.4-dev lua5.4 libcurl4-openssl-dev libssl-dev libb64-dev lua-cjson lua-busted lua-check lua-socket luarocks openssl"
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
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing
else
  echo "deps: missing Debian packages; run as root:" >&2
  echo "  apt-get install -y$missing" >&2
  exit 1
fi
