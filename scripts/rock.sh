#!/bin/bash
# make rock: a source rock of this tree, build/rock/imageroute-scm-1.src.rock, for
# `luarocks install imageroute-scm-1.src.rock` (no rock server, no download: there is no public
# repository to point source.url at yet).
#
# The rock is what `luarocks pack` makes (a zip of the rockspec and the source archive its source.url
# names): rockspec/imageroute-scm-1.rockspec as it is, and imageroute-scm-1.tar.gz holding the files
# git tracks, as they are in the work tree (uncommitted edits included, untracked files not), under
# imageroute-scm-1/. File order, owners and times are fixed (times: the last commit's), so the same
# tree gives the same archive.
set -euo pipefail
cd "$(dirname "$0")/.."
name=imageroute-scm-1
out=build/rock
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "rock: needs a git checkout of imageroute" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out"
list="$out/files"
git ls-files -z | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done > "$list"
mtime=$(git log -1 --format=%ct 2>/dev/null || date +%s)
tar --null --no-recursion -T "$list" --sort=name --mtime="@$mtime" --owner=0 --group=0 --numeric-owner \
  --transform "s,^,$name/," -cf - | gzip -n -9 > "$out/$name.tar.gz"
files=$(tr -cd '\0' < "$list" | wc -c)
rm -f "$list"
cp rockspec/$name.rockspec "$out/"
luarocks --lua-version 5.4 lint "$out/$name.rockspec"
touch -d "@$mtime" "$out/$name.rockspec" "$out/$name.tar.gz"
(cd "$out" && TZ=UTC zip -q -X "$name.src.rock" "$name.rockspec" "$name.tar.gz")
echo "rock: $out/$name.src.rock ($(stat -c %s "$out/$name.src.rock") bytes, $files files)"
