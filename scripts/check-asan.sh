#!/bin/bash
# make check-asan: builds a second copy of the core with AddressSanitizer + UndefinedBehaviorSanitizer
# and the Lua stack-balance assertions of the reply walkers (-DIR_STACK_CHECK: an unbalanced walker
# aborts with its file and line) (build/asan/imageroute/core.so) and runs the whole busted suite against it. Fails on any failing
# spec and on any sanitizer report (ASan, UBSan or LeakSanitizer) from any lua5.4 process of the run.
#
# lua5.4 itself is not instrumented, so the ASan runtime is preloaded (LD_PRELOAD) into it, through a
# wrapper build/asan/bin/lua5.4 put first on PATH: every lua5.4 of the run (busted, the local server,
# `lua5.4 -e` and bin/imageroute children) runs under ASan with the ASan core, and the programs they
# start (sh, tr, openssl, ...) do not: a small preloaded library drops LD_PRELOAD from the
# environment once lua5.4 is loaded. Those programs are not ours, and under LeakSanitizer some of
# them (coreutils' tr and expr) report their own leaks at exit and fail.
# Every report goes to a file under the log directory, so a report from a child is not lost.
# LeakSanitizer runs at exit; scripts/lsan.supp lists (and justifies) the leaks that are not ours.
#
# Compiler: clang (with libclang-rt-14-dev for its runtime, installed here when run as root and
# missing), whose shared ASan runtime carries UBSan too, so UBSan reports also go to the log files;
# ASAN_CC=gcc uses gcc's libasan/libubsan instead (then UBSan reports go to stderr only, and one from
# a child whose stderr a spec discards is seen only through that child's failure).
# Environment: ASAN_CC, ASAN_KEEP_LOGS=1 keeps the log directory. Extra arguments go to busted.
set -u
cd "$(dirname "$0")/.." || exit 1
root=$(pwd)
build=build/asan
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
# the Lua stack-balance assertions around the reply walkers (src/xfer.h), for this build only
stack_check="-DIR_STACK_CHECK"

clang_runtime() { clang -print-file-name=libclang_rt.asan-x86_64.so 2>/dev/null; }
cc=${ASAN_CC:-}
if [ -z "$cc" ]; then
  if ! command -v clang >/dev/null 2>&1 || [ ! -e "$(clang_runtime)" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      echo "check-asan: installing clang libclang-rt-14-dev"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq && apt-get install -y -qq --no-install-recommends clang libclang-rt-14-dev >/dev/null
    fi
  fi
  if command -v clang >/dev/null 2>&1 && [ -e "$(clang_runtime)" ]; then cc=clang; else cc=gcc; fi
fi

case "$cc" in
  *clang*) runtime=$("$cc" -print-file-name=libclang_rt.asan-x86_64.so); san="$san -shared-libasan" ;;
  *)       runtime=$("$cc" -print-file-name=libasan.so) ;;
esac
if [ ! -e "$runtime" ]; then
  echo "check-asan: no ASan runtime for $cc ($runtime)" >&2
  exit 1
fi
runtime=$(readlink -f "$runtime")
lua_bin=$(command -v lua5.4) || { echo "check-asan: lua5.4 not found" >&2; exit 1; }

# the ordinary core too: bin/imageroute-localserver puts $root/build/?.so first on its cpath
make --no-print-directory build || exit 1
# a clean build every time, so a change of flags can never leave stale objects
rm -rf "$build"
echo "check-asan: building $build/imageroute/core.so with $cc $san"
# -z nodelete: lua_close dlcloses C modules before LeakSanitizer runs at exit; keeping core.so mapped
# lets a leak report name (and lsan.supp match) its functions instead of "<unknown module>"
make --no-print-directory BUILD="$build" CC="$cc" CFLAGS="-O1 -g $san $stack_check" LDFLAGS="$san -Wl,-z,nodelete" build \
  >/dev/null || exit 1

# the wrapper: lua5.4 under the ASan runtime, argv[0] kept (bin/imageroute re-runs its arg[-1]),
# plus noinherit.so, whose constructor removes LD_PRELOAD before lua5.4 can pass it on.
# LUA_INIT_5_4 reseeds math.random: Lua 5.4 seeds it from the time and the address of its state,
# which ASLR makes differ between processes, but ASan's allocator puts at the same address in every
# process, so lua5.4 processes started in the same second would draw the same numbers (the local
# server's request ids among them); $SRANDOM gives back the per-process entropy.
mkdir -p "$build/bin"
# shellcheck disable=SC2016
printf '%s\n' '#include <stdlib.h>' \
  '__attribute__((constructor)) static void noinherit(void) { unsetenv("LD_PRELOAD"); }' > "$build/noinherit.c"
"$cc" -shared -fPIC -O1 "$build/noinherit.c" -o "$build/noinherit.so" || exit 1
# shellcheck disable=SC2016
printf '#!/bin/bash\nLUA_INIT_5_4="math.randomseed($SRANDOM, $SRANDOM)" LD_PRELOAD="%s:%s" exec -a "$0" "%s" "$@"\n' \
  "$runtime" "$root/$build/noinherit.so" "$lua_bin" > "$build/bin/lua5.4"
chmod +x "$build/bin/lua5.4"

logs=$(mktemp -d)
trap '[ "${ASAN_KEEP_LOGS:-}" = 1 ] && echo "check-asan: logs kept in $logs" || rm -rf "$logs"' EXIT
common="print_stacktrace=1:log_path=$logs/report"
asan_opts="detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1"
asan_opts="$asan_opts:check_initialization_order=1:strict_string_checks=1:detect_odr_violation=0:$common"
lsan_opts="suppressions=$root/scripts/lsan.supp:print_suppressions=0:$common"
ubsan_opts="halt_on_error=1:$common"
run_env=(env "PATH=$root/$build/bin:$PATH" "ASAN_OPTIONS=$asan_opts" "LSAN_OPTIONS=$lsan_opts"
         "UBSAN_OPTIONS=$ubsan_opts" "LUA_CPATH=$root/$build/?.so;;" "IMAGEROUTE_CPATH=$root/$build/?.so;")

# preflight: lua5.4 must now be the wrapper, load the ASan core under the ASan runtime, and pass no
# preload on to what it starts
# shellcheck disable=SC2016
probe='require "imageroute.core"
local core, rt
for l in io.lines("/proc/self/maps") do
  core = core or l:match("(/%S*imageroute/core%.so)$")
  rt = rt or l:match("/%S*asan%S*%.so$")
end
print(core, rt ~= nil, io.popen("echo \"[$LD_PRELOAD]\""):read("l"))'
loaded=$("${run_env[@]}" lua5.4 -e "$probe" 2>&1)
if [ "$loaded" != "$root/$build/imageroute/core.so	true	[]" ]; then
  echo "check-asan: lua5.4 did not run with the ASan core and runtime alone: $loaded" >&2
  exit 1
fi

# SPEC_RUNNER prefixes the interpreter: env puts the wrapper first on PATH (spec.sh runs `lua5.4`)
# and sets the options and the cpath; --cpath overrides .busted's build/?.so for busted itself.
out=$(mktemp)
SPEC_RUNNER="${run_env[*]}" scripts/spec.sh --cpath="$root/$build/?.so" "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}

# (a leak found at exit ends the process before stdio is flushed: busted's summary line is then
# missing and spec.sh says so; the report below is the reason)
reports=0
for f in "$logs"/report.*; do
  [ -e "$f" ] || continue
  reports=$((reports + 1))
  echo "---- sanitizer report $(basename "$f")"
  cat "$f"
done
if grep -aqE 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|Leak|UndefinedBehavior)Sanitizer' "$out"; then
  reports=$((reports + 1))
fi
rm -f "$out"
echo "check-asan: $reports sanitizer report(s), specs exit $status"
[ "$reports" = 0 ] && [ "$status" = 0 ]
