#!/bin/bash
# make fuzz: builds the libFuzzer harnesses in fuzz/ (clang, -fsanitize=fuzzer,address,undefined)
# and runs each for SECONDS (default 60) over its seed corpus fuzz/corpus/<harness>/.
# Usage: scripts/fuzz.sh [SECONDS] [harness ...]     (harnesses: sse b64 extract sniff walk redact)
#
# New corpus entries go to a temporary directory, never into the repo; a crash, leak, timeout or
# failed check stops the harness, leaves the input in build/fuzz/artifacts/ and fails the run.
# Prints the executions of each harness and a summary. As root it installs clang and libFuzzer
# (clang, libclang-rt-14-dev) when missing; otherwise it says what to install.
# Environment: FUZZ_JOBS (default 1) parallel harnesses; FUZZ_ARGS extra libFuzzer flags;
# FUZZ_KEEP_CORPUS=DIR keeps each harness's grown corpus in DIR/<harness>.
# FUZZ_OUT=DIR builds and logs there instead of build/fuzz.
set -u
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
secs=${1:-60}
[ -n "$secs" ] || secs=60
shift || true
harnesses=${*:-sse b64 extract sniff walk redact}
out=${FUZZ_OUT:-build/fuzz}
CC=${FUZZ_CC:-clang}

# ---- toolchain
need_pkgs=""
command -v "$CC" >/dev/null 2>&1 || need_pkgs="clang libclang-rt-14-dev"
if [ -z "$need_pkgs" ]; then
  probe=$(mktemp -d)
  printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n);\nint LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' > "$probe/p.c"
  "$CC" -fsanitize=fuzzer "$probe/p.c" -o "$probe/p" 2>/dev/null || need_pkgs="libclang-rt-14-dev"
  rm -rf "$probe"
fi
if [ -n "$need_pkgs" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "fuzz: installing $need_pkgs"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    apt-get update -qq && apt-get install -y -qq --no-install-recommends $need_pkgs >/dev/null || exit 1
  else
    echo "fuzz: needs clang with libFuzzer; run as root: apt-get install -y $need_pkgs" >&2
    exit 1
  fi
fi

# ---- build: the sources once (coverage-instrumented), then each harness. IR_STACK_CHECK turns on
# the Lua stack-balance assertions around the reply walkers (src/xfer.h).
san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
cflags="-g -O1 -std=c99 -Wall -Wextra -DIR_STACK_CHECK -I/usr/include/lua5.4 $(pkg-config --cflags libcurl 2>/dev/null)"
libs="$(pkg-config --libs libcurl 2>/dev/null || echo -lcurl) -lb64 -lcrypto -llua5.4"
mkdir -p "$out/obj" "$out/artifacts"
objs=""
for src in src/*.c; do
  o="$out/obj/$(basename "$src" .c).o"
  # shellcheck disable=SC2086
  if [ ! -e "$o" ] || [ "$src" -nt "$o" ] || [ src/ir.h -nt "$o" ] || [ src/xfer.h -nt "$o" ] || [ "$0" -nt "$o" ]; then
    $CC $cflags $san -fsanitize=fuzzer-no-link -c "$src" -o "$o" || exit 1
  fi
  objs="$objs $o"
done
for h in $harnesses; do
  [ -f "fuzz/fuzz_$h.c" ] || { echo "fuzz: no harness fuzz/fuzz_$h.c" >&2; exit 2; }
  hobjs=$objs
  # the SSE harness includes src/sse.c itself (to compare the parser's private state)
  [ "$h" = sse ] && hobjs=$(echo "$objs" | tr ' ' '\n' | grep -v '/sse\.o$' | tr '\n' ' ')
  echo "fuzz: building $out/fuzz_$h"
  # shellcheck disable=SC2086
  $CC $cflags $san -fsanitize=fuzzer -DFZ_LUA_DIR="\"$root/lua\"" "fuzz/fuzz_$h.c" $hobjs $libs -o "$out/fuzz_$h" || exit 1
done

# ---- run
max_len() {
  case "$1" in
    sniff) echo 4096 ;;
    *) echo 6144 ;;    # room for multi-KB base64 values cut into many chunks
  esac
}
run_one() {
  local h=$1 work log dict="" status execs t0=$SECONDS
  work=$(mktemp -d)
  log="$out/fuzz_$h.log"
  [ -f "fuzz/$h.dict" ] && dict="-dict=fuzz/$h.dict"
  # shellcheck disable=SC2086
  ASAN_OPTIONS="detect_leaks=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
    "$out/fuzz_$h" -max_total_time="$secs" -max_len="$(max_len "$h")" -timeout=20 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$root/$out/artifacts/$h-" $dict ${FUZZ_ARGS:-} \
    "$work" "fuzz/corpus/$h" > "$log" 2>&1
  status=$?
  t0=$((SECONDS - t0))
  execs=$(grep -a 'stat::number_of_executed_units' "$log" | tail -n 1 | awk '{print $2}')
  [ -n "$execs" ] || execs=$(grep -aoE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#')
  if [ -n "${FUZZ_KEEP_CORPUS:-}" ]; then
    mkdir -p "$FUZZ_KEEP_CORPUS/$h" && cp -n "$work"/* "$FUZZ_KEEP_CORPUS/$h/" 2>/dev/null
  fi
  rm -rf "$work"
  if [ "$status" = 0 ]; then
    echo "fuzz: $h: ${execs:-?} executions in ${t0}s, $(find "fuzz/corpus/$h" -type f | wc -l) seeds, no findings"
  else
    echo "fuzz: $h: FINDING after ${execs:-?} executions (exit $status); log $log, input in $out/artifacts/"
    tail -n 60 "$log"
  fi
  return "$status"
}

fail=0
jobs_max=${FUZZ_JOBS:-1}
if [ "$jobs_max" -gt 1 ]; then
  running=0
  for h in $harnesses; do
    if [ "$running" -ge "$jobs_max" ]; then wait -n || fail=1; running=$((running - 1)); fi
    run_one "$h" > "$out/fuzz_$h.summary" 2>&1 &
    running=$((running + 1))
  done
  while [ "$running" -gt 0 ]; do wait -n || fail=1; running=$((running - 1)); done
  for h in $harnesses; do cat "$out/fuzz_$h.summary"; done
else
  for h in $harnesses; do run_one "$h" || fail=1; done
fi
[ "$fail" = 0 ] && echo "fuzz: all harnesses ran without findings" || echo "fuzz: FINDINGS (see above)"
exit "$fail"
