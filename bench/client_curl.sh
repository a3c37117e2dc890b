#!/usr/bin/env bash
# bench/client_curl.sh: the `curl` command-line column of `make bench`, the same scenarios as
# bench/client_imageroute.lua, done the way a shell user does them:
#
#    bash bench/client_curl.sh SCENARIO BASE_URL OUTDIR N CONC TEST_JSON [PARTIALS]
#
# * `idle`: start bash and exit: the baseline.
# * `batch` / `workers`: N calls, CONC at a time with `xargs -P CONC`; each call is
#   `curl -sS --fail ... | jq -r '.data[0].b64_json' | base64 -d > OUTDIR/curl-I.png`
#   (one sh, one curl, one jq and one base64 process per image).
# * `stream`: N sequential calls with `stream: true, partial_images: PARTIALS`:
#   `curl -sSN ... | jq -Rr --unbuffered` (picks the `data:` lines of partial-image events and
#   prints `server_time b64`) `| while read ...` (base64 -d into a file, then the delay is
#   $EPOCHREALTIME minus server_time). `tee` keeps the stream in a file, from which the final image
#   goes through its own `jq | base64 -d` once the stream ends (bash's `read` of a 4 MB line
#   would take seconds).
#
# Prints one JSON line like the other clients (wall: seconds from the first call to the end).
set -euo pipefail

scenario=$1 base_url=$2 outdir=$3 n=${4:-0} conc=${5:-1} test_json=${6:-"{}"} partials=${7:-0}
export BASE_URL=$base_url OUTDIR=$outdir TEST_JSON=$test_json
export BODY='{"model":"gpt-image-1","prompt":"a lighthouse at dawn","size":"1024x1024","quality":"low"}'

hwm_kb() { awk '/^VmHWM:/ {print $2}' /proc/$$/status; }

one() { # one image: request, extract, decode, save
  curl -sS --fail -H "Authorization: Bearer bench" -H "Content-Type: application/json" \
    -H "x-imageroute-test: $TEST_JSON" -d "$BODY" "$BASE_URL/images/generations" |
    jq -r '.data[0].b64_json' | base64 -d > "$OUTDIR/curl-$1.png"
}
export -f one

t0=$EPOCHREALTIME
images=0 bytes=0 errors=0 delays=""
case $scenario in
idle) ;;
batch | workers)
  seq 1 "$n" | xargs -P "$conc" -I{} bash -c 'one {}' || errors=1
  ;;
stream)
  sbody='{"model":"gpt-image-1","prompt":"a lighthouse at dawn","size":"1024x1024","quality":"low","stream":true,"partial_images":'$partials'}'
  for i in $(seq 1 "$n"); do
    stream_file="$OUTDIR/curl-$i.sse"
    d=$(curl -sSN --fail -H "Authorization: Bearer bench" -H "Content-Type: application/json" \
      -H "x-imageroute-test: $TEST_JSON" -d "$sbody" "$BASE_URL/images/generations" | tee "$stream_file" |
      jq -Rr --unbuffered 'select(startswith("data: ")) | .[6:] | fromjson |
        select(.type | endswith(".partial_image")) | "\(.server_time) \(.b64_json)"' |
      while read -r st b64; do
        printf %s "$b64" | base64 -d > "$OUTDIR/curl-$i-partial.png"
        now=$EPOCHREALTIME
        awk -v a="$now" -v b="$st" 'BEGIN { printf "%.6f,", a - b }'
      done) || errors=$((errors + 1))
    jq -Rr 'select(startswith("data: ")) | .[6:] | fromjson | select(.type | endswith(".completed")) | .b64_json' \
      "$stream_file" | base64 -d > "$OUTDIR/curl-$i.png" || errors=$((errors + 1))
    rm -f "$stream_file"
    delays+=$d
  done
  ;;
*) echo "unknown scenario $scenario" >&2; exit 2 ;;
esac
t1=$EPOCHREALTIME
if [ "$scenario" != idle ]; then
  for f in "$OUTDIR"/curl-*.png; do
    case $f in *partial*) continue ;; esac
    [ -e "$f" ] || continue
    images=$((images + 1))
    bytes=$((bytes + $(stat -c %s "$f")))
  done
fi
wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.6f", b - a }')
printf '{"images":%d,"bytes":%d,"errors":%d,"wall":%s,"hwm_kb":%s%s}\n' "$images" "$bytes" "$errors" "$wall" \
  "$(hwm_kb)" "${delays:+,\"delays\":[${delays%,}]}"
