--- bench/run.lua: the benchmarks of issue 5 (`make bench`; not part of the tests).
--
-- Starts the bundled local server (spec/support/server.lua) on loopback, whose answer image is a
-- fixed ~3 MB incompressible PNG (behaviour `png_bytes`), and runs the same work with three
-- clients, side by side, each scenario in a process of its own:
--
-- * imageroute: bench/client_imageroute.lua (this source tree's build);
-- * openai-node: bench/client_node.mjs with the official SDK (npm `openai`, installed into
--   bench/node_modules by this script; skipped, with the reason, when node or npm is missing);
-- * curl: bench/client_curl.sh (`curl | jq | base64 -d`, `xargs -P` for concurrency).
--
-- Scenarios: `seq` 50 sequential generate calls, each decoded and saved; `batch` 64 calls with
-- 1 s server latency, 16 in flight; `mem16` / `mem1` one wave of 16 (resp. 1) calls with 1 s
-- latency, for peak memory per in-flight image; `idle` the baseline (a client that loads its
-- library and exits); `stream` 20 streamed calls with `partial_images = 3` and 50 ms between
-- events, for the delay from the server writing a partial-image event (it stamps `server_time`)
-- to the client's callback holding the decoded partial image. Plus imageroute-only variants:
-- `seq` with `collectgarbage()` after each save, and `batch` through `imageroute.run` workers.
--
-- Every client process runs under bench/measure.c (compiled here): fork/exec, wait4 rusage for
-- CPU (user + sys of the process and its waited-for children) and ru_maxrss (peak RSS = VmHWM),
-- and a 10 ms sampler summing Pss over the process tree (the figure used for curl, which is many
-- processes). Each scenario runs BENCH_REPEAT times (default 3), the clients interleaved, and
-- every figure is the median over the repeats. The libb64 floor is bench/b64floor.c (libb64 alone
-- on the server's base64, in memory), plus `core.b64decode` timed with os.clock.
--
-- Prints the table and writes it, with the machine, the date, the targets and the method, to
-- bench/RESULTS.md.
-- @script run

local socket = require("socket")
local cjson = require("cjson")

local root = debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]*$") or "."
package.path = root .. "/spec/?.lua;" .. package.path
local server_mod = require("support.server")
local core = require("imageroute.core")
local sys = require("imageroute.sys")

local LUA = arg[-1] or "lua5.4"
local PNG_BYTES = 3000000
local REPEAT = math.tointeger(tonumber(os.getenv("BENCH_REPEAT"))) or 3
local SAMPLE_MS = 10

-------------------------------------------------------------------------------------------------
-- helpers

local quote, read_file, write_file = sys.shell_quote, sys.read_file, sys.write_file

--- Runs a shell command; returns its stdout (trailing newline removed) and whether it succeeded.
local function sh(cmd)
  local p = io.popen(cmd .. " 2>/dev/null", "r")
  if not p then return nil, false end
  local out = p:read("a")
  local ok = p:close()
  return (out:gsub("%s+$", "")), ok
end

local function say(...)
  io.stderr:write(string.format(...), "\n")
end

local function median(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  if #t == 0 then return nil end
  table.sort(t)
  if #t % 2 == 1 then return t[(#t + 1) // 2] end
  return (t[#t // 2] + t[#t // 2 + 1]) / 2
end

local function percentile(list, p)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  if #t == 0 then return nil end
  table.sort(t)
  return t[math.max(1, math.ceil(p * #t))]
end

-------------------------------------------------------------------------------------------------
-- machine, tools

local tmp = assert(sh("mktemp -d /tmp/imageroute-bench.XXXXXX"))
assert(tmp ~= "", "mktemp failed")
-- removed however the run ends (a to-be-closed variable is closed on errors too)
local cleanup <close> = setmetatable({}, { -- luacheck: no unused
  __close = function() os.execute("rm -rf " .. quote(tmp)) end,
})

local machine = {
  date = os.date("!%Y-%m-%d %H:%M UTC"),
  nproc = sh("nproc"),
  uname = sh("uname -a"),
  cpu = (read_file("/proc/cpuinfo") or ""):match("model name%s*:%s*([^\n]+)") or "unknown",
  mem = (function()
    local kb = tonumber((read_file("/proc/meminfo") or ""):match("MemTotal:%s*(%d+)"))
    return kb and string.format("%.1f GiB", kb / 1048576) or "unknown"
  end)(),
  lua = _VERSION,
  curl = sh("curl --version | head -n 1 | cut -d' ' -f 1-2"),
  jq = sh("jq --version"),
  node = sh("node --version"),
  fs = sh("df -T " .. quote(tmp) .. " | awk 'NR == 2 {print $2}'"),
  load_start = (read_file("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)"),
}
do -- timings mean little on a busy machine: say so
  local l1, n = tonumber((machine.load_start or ""):match("^(%S+)")), tonumber(machine.nproc)
  if l1 and n and l1 > 0.5 * n then
    machine.busy = true
    say("bench: WARNING: load average %s on %d CPUs before the run: other processes compete, so wall " ..
      "times and delays will be inflated", machine.load_start, n)
  end
end

local cc = os.getenv("CC") or "cc"
local measure = tmp .. "/measure"
local floor_bin = tmp .. "/b64floor"
assert(os.execute(string.format("%s -O2 -o %s %s", cc, quote(measure), quote(root .. "/bench/measure.c"))),
  "cannot compile bench/measure.c")
assert(os.execute(string.format("%s -O2 -o %s %s -lb64", cc, quote(floor_bin), quote(root .. "/bench/b64floor.c"))),
  "cannot compile bench/b64floor.c")

-------------------------------------------------------------------------------------------------
-- the clients

local clients = {
  {name = "imageroute", argv = {"env", "OPENAI_API_KEY=bench", LUA, root .. "/bench/client_imageroute.lua"}},
}

do -- openai-node
  local why
  local major = tonumber((machine.node or ""):match("^v(%d+)"))
  if not major then why = "node is not installed"
  elseif not select(2, sh("npm --version")) then why = "npm is not installed"
  elseif major < 20 then why = "node " .. machine.node .. " is older than the SDK needs (20)"
  end
  local pkg = root .. "/bench/node_modules/openai/package.json"
  if not why and not read_file(pkg) then
    say("bench: installing the openai npm package into bench/ (npm install)")
    local ok = os.execute("cd " .. quote(root .. "/bench") ..
      " && npm install --no-audit --no-fund --no-save --loglevel=error >&2")
    if not ok or not read_file(pkg) then why = "npm install openai failed" end
  end
  if why then
    say("bench: skipping openai-node: %s", why)
    machine.openai_node = "skipped: " .. why
  else
    machine.openai_node = "openai " .. (cjson.decode(read_file(pkg)).version or "?")
    clients[#clients + 1] = {name = "openai-node", argv = {"node", root .. "/bench/client_node.mjs"}}
  end
end

do -- curl
  local missing = {}
  for _, tool in ipairs({"curl", "jq", "base64", "xargs", "bash"}) do
    if not select(2, sh("command -v " .. tool)) then missing[#missing + 1] = tool end
  end
  if #missing > 0 then
    machine.curl_column = "skipped: missing " .. table.concat(missing, ", ")
    say("bench: skipping curl: missing %s", table.concat(missing, ", "))
  else
    clients[#clients + 1] = {name = "curl", argv = {"bash", root .. "/bench/client_curl.sh"}}
  end
end

-------------------------------------------------------------------------------------------------
-- the server and the image

local server = server_mod.start{timeout = 10}
local TEST = cjson.encode({png_bytes = PNG_BYTES})
local status, body = server:request("POST", "/v1/images/generations", {prompt = "warm-up", model = "gpt-image-1"},
  {["x-imageroute-test"] = TEST})
assert(status == 200, "the local server did not answer the warm-up: " .. tostring(status))
local b64 = cjson.decode(body).data[1].b64_json
local image = assert(core.b64decode(b64))
local sizes = {json = #body, b64 = #b64, png = #image}
write_file(tmp .. "/image.b64", b64)
body, image = nil, nil -- luacheck: ignore
say("bench: response %d bytes of JSON, %d of base64, image %d bytes", sizes.json, sizes.b64, sizes.png)

-- the libb64 floor
local floor = cjson.decode((assert(sh(quote(floor_bin) .. " " .. quote(tmp .. "/image.b64") .. " 60"))))
local lua_decode
do
  local iters = 30
  core.b64decode(b64)
  local t0 = os.clock()
  for _ = 1, iters do core.b64decode(b64) end
  lua_decode = (os.clock() - t0) / iters
end
b64 = nil -- luacheck: ignore
collectgarbage()
say("bench: libb64 floor %.2f ms per image (median of %d), core.b64decode %.2f ms",
  floor.median * 1e3, floor.iterations, lua_decode * 1e3)
local node_decode -- Buffer.from(b64, "base64"), for comparison (not a floor of ours)
for _, c in ipairs(clients) do
  if c.name == "openai-node" then
    local out = sh(string.format("node %s b64 x %s 30 1", quote(root .. "/bench/client_node.mjs"),
      quote(tmp .. "/image.b64")))
    local ok, v = pcall(cjson.decode, out or "")
    if ok and type(v) == "table" then node_decode = v.mean end
  end
end

-------------------------------------------------------------------------------------------------
-- running

local run_id = 0

--- Runs one scenario of one client under measure; returns {m = measure's JSON, r = client's JSON}.
local function run_client(client, sc)
  run_id = run_id + 1
  local dir = string.format("%s/out-%d", tmp, run_id)
  local mfile, ofile, efile = dir .. ".measure", dir .. ".out", dir .. ".err"
  os.execute("mkdir -p " .. quote(dir))
  local args = {quote(measure), quote(mfile), tostring(SAMPLE_MS)}
  for _, a in ipairs(client.argv) do args[#args + 1] = quote(a) end
  for _, a in ipairs({sc.scenario, server.base_url, dir, sc.n, sc.conc, cjson.encode(sc.test or {}),
    sc.partials or 0, sc.extra or ""}) do
    args[#args + 1] = quote(a)
  end
  os.execute(table.concat(args, " ") .. " >" .. quote(ofile) .. " 2>" .. quote(efile))
  local m = read_file(mfile)
  local out = read_file(ofile) or ""
  local ok_r, r = pcall(cjson.decode, out:match("[^\n]*") or "")
  os.execute("rm -rf " .. quote(dir))
  if not m or not ok_r or type(r) ~= "table" then
    return nil, string.format("%s %s failed: %s %s", client.name, sc.name, out, read_file(efile) or "")
  end
  m = cjson.decode(m)
  if m.status ~= 0 or (r.errors or 0) > 0 or (sc.n > 0 and r.images ~= sc.n) then
    return nil, string.format("%s %s: exit %s, %s images of %d, %s errors: %s %s", client.name, sc.name,
      tostring(m.status), tostring(r.images), sc.n, tostring(r.errors), tostring(r.last_error),
      read_file(efile) or "")
  end
  return {m = m, r = r}
end

local PNG = {png_bytes = PNG_BYTES}
local PNG_1S = {png_bytes = PNG_BYTES, delay = 1}
local NO_CURL = {imageroute = true, ["openai-node"] = true}
local WIDE_REPEAT = math.min(REPEAT, math.tointeger(tonumber(os.getenv("BENCH_WIDE_REPEAT"))) or 1)
local SCENARIOS = {
  {name = "idle", scenario = "idle", n = 0, conc = 1, test = {}},
  {name = "seq", scenario = "batch", n = 50, conc = 1, test = {png_bytes = PNG_BYTES}},
  {name = "batch", scenario = "batch", n = 64, conc = 16, test = {png_bytes = PNG_BYTES, delay = 1}},
  {name = "mem1", scenario = "batch", n = 1, conc = 1, test = {png_bytes = PNG_BYTES, delay = 1}},
  {name = "mem16", scenario = "batch", n = 16, conc = 16, test = {png_bytes = PNG_BYTES, delay = 1}},
  -- issue 12 (not curl): 256 all in flight (imageroute: batch{keep_results = false}); host-loop
  -- stalls (imageroute: step(0) loop; openai-node: event-loop delay); 8 calls with 10 or 1,100
  -- descriptors open
  {name = "wide", scenario = "batch", n = 256, conc = 256, test = PNG_1S, extra = "drop", only = NO_CURL,
    repeats = WIDE_REPEAT},
  {name = "stall", scenario = "stall", n = 16, conc = 4, test = PNG, extra = "step", only = NO_CURL},
  {name = "fds10", scenario = "fds", n = 8, conc = 8, test = PNG_1S, extra = "fds=10", only = NO_CURL},
  {name = "fds1100", scenario = "fds", n = 8, conc = 8, test = PNG_1S, extra = "fds=1100", only = NO_CURL},
}
local STREAM = {name = "stream", scenario = "stream", n = 20, conc = 1, partials = 3,
  test = {png_bytes = PNG_BYTES, pace = 0.05}}
local EXTRAS = { -- imageroute only
  {name = "seq_gc", scenario = "batch", n = 50, conc = 1, test = {png_bytes = PNG_BYTES}, extra = "gc"},
  {name = "batch_workers", scenario = "workers", n = 64, conc = 16, test = {png_bytes = PNG_BYTES, delay = 1}},
  {name = "batch_drop", scenario = "batch", n = 64, conc = 16, test = PNG_1S, extra = "drop"},
  {name = "wide_file", scenario = "batch", n = 256, conc = 256, test = PNG_1S, extra = "file", repeats = WIDE_REPEAT},
  {name = "stall_socket", scenario = "stall", n = 16, conc = 4, test = PNG, extra = "socket"},
  {name = "fds10_luv", scenario = "fds", n = 8, conc = 8, test = PNG_1S, extra = "fds=10,luv"},
  {name = "fds1100_luv", scenario = "fds", n = 8, conc = 8, test = PNG_1S, extra = "fds=1100,luv"},
}
do -- BENCH_ONLY=name,name: only those scenarios (for working on the bench)
  local only = os.getenv("BENCH_ONLY")
  if only and only ~= "" then
    local keep = {}
    for name in only:gmatch("[^,]+") do keep[name] = true end
    local function filter(list)
      local out = {}
      for _, sc in ipairs(list) do if keep[sc.name] then out[#out + 1] = sc end end
      return out
    end
    SCENARIOS, EXTRAS = filter(SCENARIOS), filter(EXTRAS)
    if not keep.stream then STREAM = nil end
  end
end

local runs = {} -- runs[client][scenario] = list of {m, r}
local failures = {}
for _, c in ipairs(clients) do runs[c.name] = {} end

local function record(c, sc)
  local res, err = run_client(c, sc)
  runs[c.name][sc.name] = runs[c.name][sc.name] or {}
  if res then
    table.insert(runs[c.name][sc.name], res)
    say("bench: %-11s %-13s wall %6.2f s  cpu %5.2f s  maxrss %7.1f MB  tree pss %7.1f MB", c.name, sc.name,
      res.r.wall or res.m.wall, res.m.user + res.m.sys, res.m.maxrss_kb / 1024, res.m.tree_pss_kb / 1024)
  else
    failures[#failures + 1] = err
    say("bench: FAILED %s", err)
  end
end

local t_start = socket.gettime()
for rep = 1, REPEAT do
  say("bench: round %d of %d", rep, REPEAT)
  for _, sc in ipairs(SCENARIOS) do
    if rep <= (sc.repeats or REPEAT) then
      for _, c in ipairs(clients) do
        if not sc.only or sc.only[c.name] then record(c, sc) end
      end
    end
  end
end
if STREAM then
  for _, c in ipairs(clients) do record(c, STREAM) end
end
for _, sc in ipairs(EXTRAS) do
  for _ = 1, sc.repeats or REPEAT do record(clients[1], sc) end
end
server:stop()
if os.getenv("BENCH_DUMP") then write_file(os.getenv("BENCH_DUMP"), cjson.encode(runs)) end -- raw runs, as JSON
local bench_seconds = socket.gettime() - t_start
machine.load_end = (read_file("/proc/loadavg") or ""):match("^(%S+ %S+ %S+)")
do
  local l1, n = tonumber((machine.load_end or ""):match("^(%S+)")), tonumber(machine.nproc)
  if l1 and n and l1 > 0.5 * n + 1 then machine.busy = true end -- + 1: the bench's own client and server
end

-------------------------------------------------------------------------------------------------
-- figures

--- Median over the repeats of f(run) for client c, scenario s (nil when there is no run).
local function fig(c, s, f)
  local list = runs[c] and runs[c][s]
  if not list or #list == 0 then return nil end
  local vals = {}
  for _, run in ipairs(list) do vals[#vals + 1] = f(run) end
  return median(vals)
end

local function cpu(run) return run.m.user + run.m.sys end
--- Peak memory in kB: ru_maxrss for one-process clients, the sampled tree Pss for curl.
local function peak_for(c)
  if c == "curl" then return function(run) return run.m.tree_pss_kb end end
  return function(run) return run.m.maxrss_kb end
end
local function wall(run) return run.r.wall end
--- Largest f(run) over the repeats of client c, scenario s.
local function fig_max(c, s, f)
  local list = runs[c] and runs[c][s]
  if not list or #list == 0 then return nil end
  local m
  for _, run in ipairs(list) do
    local v = f(run)
    if v and (not m or v > m) then m = v end
  end
  return m
end
--- The step-time figures of a stall run: p(list) of field `key` (imageroute) or of the event-loop
-- delay histogram (openai-node, whose percentiles come from the client).
local function stall_fn(key, p)
  return function(run)
    local r = run.r
    if r.eld then
      if key ~= "steps" then return nil end
      return p == 0.5 and r.eld.p50 or p == 0.99 and r.eld.p99 or r.eld.max
    end
    return r[key] and percentile(r[key], p)
  end
end

local F = {} -- F[client] = {figure = value}
for _, c in ipairs(clients) do
  local n, peak = c.name, peak_for(c.name)
  local f = {}
  f.idle_cpu = fig(n, "idle", cpu)
  f.idle_peak = fig(n, "idle", peak)
  f.seq_wall = fig(n, "seq", wall)
  f.seq_cpu = fig(n, "seq", cpu)
  f.seq_cpu_img = f.seq_cpu and f.seq_cpu / 50
  f.seq_cpu_img_net = f.seq_cpu and f.idle_cpu and (f.seq_cpu - f.idle_cpu) / 50
  f.seq_peak = fig(n, "seq", peak)
  f.batch_wall = fig(n, "batch", wall)
  f.batch_ratio = f.batch_wall and f.batch_wall / 4
  f.batch_cpu_img = (function() local v = fig(n, "batch", cpu); return v and v / 64 end)()
  f.batch_peak = fig(n, "batch", peak)
  f.mem1_peak = fig(n, "mem1", peak)
  f.mem16_peak = fig(n, "mem16", peak)
  if f.idle_peak then
    f.mem1_ratio = f.mem1_peak and (f.mem1_peak - f.idle_peak) * 1024 / sizes.png
    f.mem16_ratio = f.mem16_peak and (f.mem16_peak - f.idle_peak) * 1024 / 16 / sizes.png
  end
  f.wide_wall = fig(n, "wide", wall)
  f.wide_peak = fig(n, "wide", peak)
  f.stall_p50 = fig(n, "stall", stall_fn("steps", 0.5))
  f.stall_p99 = fig(n, "stall", stall_fn("steps", 0.99))
  f.stall_max = fig_max(n, "stall", stall_fn("steps", 1))
  f.stall_wall = fig(n, "stall", wall)
  f.fds10_wall = fig(n, "fds10", wall)
  f.fds1100_wall = fig(n, "fds1100", wall)
  f.fds_ratio = f.fds10_wall and f.fds1100_wall and f.fds1100_wall / f.fds10_wall
  local stream = runs[n].stream and runs[n].stream[1]
  if stream and stream.r.delays then
    local d = stream.r.delays
    f.delay_n = #d
    f.delay_med = median(d)
    f.delay_p95 = percentile(d, 0.95)
    f.delay_max = percentile(d, 1)
    f.delay_over = 0
    for _, v in ipairs(d) do if v >= 0.005 then f.delay_over = f.delay_over + 1 end end
  end
  F[n] = f
end
local IR = F.imageroute
local extras = {
  seq_gc_peak = fig("imageroute", "seq_gc", peak_for("imageroute")),
  seq_gc_cpu_img = (function() local v = fig("imageroute", "seq_gc", cpu); return v and v / 50 end)(),
  workers_wall = fig("imageroute", "batch_workers", wall),
  workers_peak = fig("imageroute", "batch_workers", peak_for("imageroute")),
  seq_save = fig("imageroute", "seq", function(run) return run.r.save_s end),
  batch_save = fig("imageroute", "batch", function(run) return run.r.save_s end),
  drop_peak = fig("imageroute", "batch_drop", peak_for("imageroute")),
  drop_wall = fig("imageroute", "batch_drop", wall),
  file_peak = fig("imageroute", "wide_file", peak_for("imageroute")),
  file_wall = fig("imageroute", "wide_file", wall),
  fds10_luv = fig("imageroute", "fds10_luv", wall),
  fds1100_luv = fig("imageroute", "fds1100_luv", wall),
  max_fd_1100 = fig_max("imageroute", "fds1100", function(run) return run.r.max_fd end),
  max_fd_1100_luv = fig_max("imageroute", "fds1100_luv", function(run) return run.r.max_fd end),
  open_fds_1100 = fig("imageroute", "fds1100", function(run) return run.r.open_fds end),
  open_fds_10 = fig("imageroute", "fds10", function(run) return run.r.open_fds end),
  node_open_fds_10 = fig("openai-node", "fds10", function(run) return run.r.open_fds end),
  steps_n = fig("imageroute", "stall", function(run) return run.r.steps and #run.r.steps end),
  socket_steps_n = fig("imageroute", "stall_socket", function(run) return run.r.steps and #run.r.steps end),
}
-- the step-time figures, in seconds: [loop][figure]; loop "step" is the `stall` scenario
-- (step(0) and a sleep), "socket" is `stall_socket` (on_socket/on_timer and a select loop)
local stalls = {}
for loop, sname in pairs({step = "stall", socket = "stall_socket"}) do
  stalls[loop] = {
    wall_p50 = fig("imageroute", sname, stall_fn("steps", 0.5)),
    wall_p99 = fig("imageroute", sname, stall_fn("steps", 0.99)),
    wall_max = fig_max("imageroute", sname, stall_fn("steps", 1)),
    cpu_p50 = fig("imageroute", sname, stall_fn("step_cpu", 0.5)),
    cpu_p99 = fig("imageroute", sname, stall_fn("step_cpu", 0.99)),
    cpu_max = fig_max("imageroute", sname, stall_fn("step_cpu", 1)),
    fin_p50 = fig("imageroute", sname, stall_fn("finishing", 0.5)),
    fin_max = fig_max("imageroute", sname, stall_fn("finishing", 1)),
    total = fig("imageroute", sname, wall),
  }
end

-------------------------------------------------------------------------------------------------
-- the table

local ROWS = {
  {"1. 50 sequential: wall (s)", "seq_wall", 1, "%.2f"},
  {"1. 50 sequential: CPU (s)", "seq_cpu", 1, "%.2f"},
  {"1. CPU per image (ms)", "seq_cpu_img", 1e3, "%.1f"},
  {"1. CPU per image, start-up excluded (ms)", "seq_cpu_img_net", 1e3, "%.1f"},
  {"1. 50 sequential: peak RSS (MB)", "seq_peak", 1 / 1024, "%.1f"},
  {"2. 64 calls, 1 s latency, 16 in flight: wall (s)", "batch_wall", 1, "%.2f"},
  {"2. wall / ideal (4 s)", "batch_ratio", 1, "%.2f"},
  {"2. CPU per image (ms)", "batch_cpu_img", 1e3, "%.1f"},
  {"2. peak RSS (MB)", "batch_peak", 1 / 1024, "%.1f"},
  {"3. peak RSS, 16 images in flight (MB)", "mem16_peak", 1 / 1024, "%.1f"},
  {"3. peak RSS, 1 image in flight (MB)", "mem1_peak", 1 / 1024, "%.1f"},
  {"3. baseline: library loaded, idle (MB)", "idle_peak", 1 / 1024, "%.1f"},
  {"3. memory per in-flight image / image size, 16 in flight (x)", "mem16_ratio", 1, "%.2f"},
  {"3. memory per in-flight image / image size, 1 in flight (x)", "mem1_ratio", 1, "%.2f"},
  {"4. partial-image delay, median (ms)", "delay_med", 1e3, "%.2f"},
  {"4. partial-image delay, p95 (ms)", "delay_p95", 1e3, "%.2f"},
  {"4. partial-image delay, max (ms)", "delay_max", 1e3, "%.2f"},
  {"4. partial images measured", "delay_n", 1, "%d"},
  {"4. partial images 5 ms late or more", "delay_over", 1, "%d"},
  {"5. 256 calls, 1 s latency, all in flight: wall (s)", "wide_wall", 1, "%.2f"},
  {"5. 256 calls all in flight: peak RSS (MB)", "wide_peak", 1 / 1024, "%.1f"},
  {"6. host-loop stall, 16 x 3 MB calls, 4 in flight: p50 (ms)", "stall_p50", 1e3, "%.2f"},
  {"6. host-loop stall: p99 (ms)", "stall_p99", 1e3, "%.2f"},
  {"6. host-loop stall: max (ms)", "stall_max", 1e3, "%.2f"},
  {"6. the 16 calls: wall (s)", "stall_wall", 1, "%.2f"},
  {"7. 8 calls, 1 s latency, 10 descriptors open: wall (s)", "fds10_wall", 1, "%.2f"},
  {"7. the same, 1,100 descriptors open: wall (s)", "fds1100_wall", 1, "%.2f"},
  {"7. wall with 1,100 / wall with 10 (x)", "fds_ratio", 1, "%.2f"},
}

local function cell(v, scale, fmt)
  if v == nil then return "n/a" end
  if fmt == "%d" then return string.format(fmt, math.tointeger(v) or math.floor(v)) end
  return string.format(fmt, v * scale)
end

local function ratio(a, b)
  if not a or not b or b == 0 then return "" end
  return string.format("%.2fx", a / b)
end

local header = {"Figure", "imageroute"}
for k = 2, #clients do
  header[#header + 1] = clients[k].name
  header[#header + 1] = "/ imageroute"
end
local lines = {"| " .. table.concat(header, " | ") .. " |", "|" .. string.rep("---|", #header)}
for _, row in ipairs(ROWS) do
  local label, key, scale, fmt = row[1], row[2], row[3], row[4]
  local cells = {label, cell(IR[key], scale, fmt)}
  for k = 2, #clients do
    local v = F[clients[k].name][key]
    cells[#cells + 1] = cell(v, scale, fmt)
    cells[#cells + 1] = (key == "delay_n" or key == "delay_over" or key == "fds_ratio") and "" or ratio(v, IR[key])
  end
  lines[#lines + 1] = "| " .. table.concat(cells, " | ") .. " |"
end
local tbl = table.concat(lines, "\n")

local floor_lines = table.concat({
  "| Decode floor | ms per image | imageroute CPU per image / this |",
  "|---|---|---|",
  string.format("| libb64 alone (`bench/b64floor.c`, median of %d) | %.2f | %s (gross), %s (start-up excluded) |",
    floor.iterations, floor.median * 1e3, ratio(IR.seq_cpu_img, floor.median),
    ratio(IR.seq_cpu_img_net, floor.median)),
  string.format("| `core.b64decode` (libb64 + validation + one Lua string copy, os.clock) | %.2f | %s |",
    lua_decode * 1e3, ratio(IR.seq_cpu_img, lua_decode)),
  node_decode and string.format("| for comparison: node `Buffer.from(b64, \"base64\")` (process.cpuUsage) " ..
    "| %.2f | %s |", node_decode * 1e3, ratio(IR.seq_cpu_img, node_decode)) or nil,
}, "\n")

local function mb(kb) return kb and string.format("%.1f MB", kb / 1024) or "n/a" end
local extra_lines = table.concat({
  "| imageroute variant | figure |",
  "|---|---|",
  string.format("| 50 sequential, `collectgarbage()` after each save: peak RSS | %s (plain loop: %s) |",
    mb(extras.seq_gc_peak), mb(IR.seq_peak)),
  string.format("| 50 sequential, `collectgarbage()` after each save: CPU per image | %s ms |",
    extras.seq_gc_cpu_img and string.format("%.1f", extras.seq_gc_cpu_img * 1e3) or "n/a"),
  string.format("| 64 calls / 16 in flight through `imageroute.run` workers (no result kept): wall, peak RSS | " ..
    "%s s, %s (batch: %s) |", extras.workers_wall and string.format("%.2f", extras.workers_wall) or "n/a",
    mb(extras.workers_peak), mb(IR.batch_peak)),
  string.format("| time inside `image:save`, which blocks the loop: 50 sequential, 64 in batch | %s s, %s s |",
    extras.seq_save and string.format("%.2f", extras.seq_save) or "n/a",
    extras.batch_save and string.format("%.2f", extras.batch_save) or "n/a"),
  string.format("| one thread passing each wave's 16 images through libb64: 4 x (1 s + 16 x floor) | %.2f s (%.2fx " ..
    "the ideal) |", 4 * (1 + 16 * floor.median), (1 + 16 * floor.median)),
  string.format("| 64 calls / 16 in flight, `batch{keep_results = false}`, saved in `on_done`: wall, peak RSS | " ..
    "%s s, %s (keeping results: %s; openai-node: %s) |", cell(extras.drop_wall, 1, "%.2f"), mb(extras.drop_peak),
    mb(IR.batch_peak), mb(F["openai-node"] and F["openai-node"].batch_peak)),
  string.format("| 256 calls all in flight, `save_to` per job (decoded straight into files), `keep_results = " ..
    "false`: wall, peak RSS | %s s, %s (in memory, saved in `on_done`: %s) |", cell(extras.file_wall, 1, "%.2f"),
    mb(extras.file_peak), mb(IR.wide_peak)),
}, "\n")

local function ms(v) return cell(v, 1e3, "%.2f") end
local stall_lines = table.concat({
  "| imageroute host loop, 16 x 3 MB calls, 4 in flight | steps | step wall p50 / p99 / max (ms) | " ..
    "step CPU p50 / p99 / max (ms) | steps that finish a call: wall p50 / max (ms) | all 16 calls (s) |",
  "|---|---|---|---|---|---|",
  string.format("| `step(0)`, then `socket.sleep(0.0005)` | %s | %s / %s / %s | %s / %s / %s | %s / %s | %s |",
    cell(extras.steps_n, 1, "%d"), ms(stalls.step.wall_p50), ms(stalls.step.wall_p99), ms(stalls.step.wall_max),
    ms(stalls.step.cpu_p50), ms(stalls.step.cpu_p99), ms(stalls.step.cpu_max), ms(stalls.step.fin_p50),
    ms(stalls.step.fin_max), cell(stalls.step.total, 1, "%.2f")),
  string.format("| `on_socket`/`on_timer`, `socket.select`, `socket_action`/`timer_action` | %s | %s / %s / %s | " ..
    "%s / %s / %s | %s / %s | %s |", cell(extras.socket_steps_n, 1, "%d"), ms(stalls.socket.wall_p50),
    ms(stalls.socket.wall_p99), ms(stalls.socket.wall_max), ms(stalls.socket.cpu_p50), ms(stalls.socket.cpu_p99),
    ms(stalls.socket.cpu_max), ms(stalls.socket.fin_p50), ms(stalls.socket.fin_max),
    cell(stalls.socket.total, 1, "%.2f")),
  "",
  "| 8 calls, 1 s latency, imageroute | 10 descriptors open | 1,100 descriptors open | highest socket " ..
    "number watched (1,100 open) |",
  "|---|---|---|---|",
  string.format("| blocking `batch` (the core's own poll loop) | %s s | %s s | %s |", cell(IR.fds10_wall, 1, "%.2f"),
    cell(IR.fds1100_wall, 1, "%.2f"), cell(extras.max_fd_1100, 1, "%d")),
  string.format("| `batch` in a coroutine on a luv loop (`imageroute.loop.luv`) | %s s | %s s | %s |",
    cell(extras.fds10_luv, 1, "%.2f"), cell(extras.fds1100_luv, 1, "%.2f"), cell(extras.max_fd_1100_luv, 1, "%d")),
}, "\n")

io.write("\n", tbl, "\n\n", floor_lines, "\n\n", extra_lines, "\n\n", stall_lines, "\n\n")

-------------------------------------------------------------------------------------------------
-- targets

local node = F["openai-node"]
local function verdict(ok) if ok == nil then return "not measured" end return ok and "**met**" or "**not met**" end
local function lt(a, b) if a == nil or b == nil then return nil end return a <= b end
local targets = {
  string.format("- CPU per image at most 1/2 of openai-node's: %s (imageroute %s ms, openai-node %s ms: %s)",
    verdict(node and lt(IR.seq_cpu_img, node.seq_cpu_img and node.seq_cpu_img / 2)),
    cell(IR.seq_cpu_img, 1e3, "%.1f"), node and cell(node.seq_cpu_img, 1e3, "%.1f") or "n/a",
    node and ratio(IR.seq_cpu_img, node.seq_cpu_img) or "n/a"),
  string.format("- CPU per image at most 1.5x the libb64 floor: %s (%s ms against %.2f ms: %s; start-up " ..
    "excluded %s)", verdict(lt(IR.seq_cpu_img, 1.5 * floor.median)), cell(IR.seq_cpu_img, 1e3, "%.1f"),
    floor.median * 1e3, ratio(IR.seq_cpu_img, floor.median), ratio(IR.seq_cpu_img_net, floor.median)),
  string.format("- Batch wall within 1.1x of the ideal (4 s): %s (%s s: %sx)",
    verdict(lt(IR.batch_ratio, 1.1)), cell(IR.batch_wall, 1, "%.2f"), cell(IR.batch_ratio, 1, "%.2f")),
  string.format("- Peak RSS (16 in flight) at most half of openai-node's: %s (%s against %s: %s)",
    verdict(node and lt(IR.mem16_peak, node.mem16_peak and node.mem16_peak / 2)), mb(IR.mem16_peak),
    node and mb(node.mem16_peak) or "n/a", node and ratio(IR.mem16_peak, node.mem16_peak) or "n/a"),
  string.format("- Partial-image delay under 5 ms: %s (max %s ms, p95 %s ms, median %s ms over %s partial images)",
    verdict(IR.delay_max and IR.delay_max < 0.005), cell(IR.delay_max, 1e3, "%.2f"),
    cell(IR.delay_p95, 1e3, "%.2f"), cell(IR.delay_med, 1e3, "%.2f"), cell(IR.delay_n, 1, "%d")),
  string.format("- Memory per in-flight image at most 2.5x the decoded image: %s (16 in flight %sx, 1 in flight " ..
    "%sx of %d bytes)", verdict(lt(IR.mem16_ratio, 2.5) and lt(IR.mem1_ratio, 2.5)),
    cell(IR.mem16_ratio, 1, "%.2f"), cell(IR.mem1_ratio, 1, "%.2f"), sizes.png),
}
-- issue 12
local png_kb = sizes.png / 1024
local function mem_target(peak, in_flight)
  local limit = IR.idle_peak and IR.idle_peak + 1.2 * in_flight * png_kb
  return string.format("%s (%s against %s = idle %s + 1.2 x %d x %d bytes)", verdict(lt(peak, limit)), mb(peak),
    mb(limit), mb(IR.idle_peak), in_flight, sizes.png)
end
local function same_wall(a, b) -- "the same wall time": within 10 % (or 0.1 s) of the run with 10
  if not a or not b then return nil end
  return a <= math.max(1.1 * b, b + 0.1)
end
targets[#targets + 1] = "- Batch peak at most 1.2x the images in flight + the idle library: 64 calls / 16 " ..
  "in flight, " ..
  "`keep_results = false`: " .. mem_target(extras.drop_peak, 16) .. "; keeping the results: " ..
  mem_target(IR.batch_peak, 16) .. "; 256 all in flight, `keep_results = false`: " .. mem_target(IR.wide_peak, 256)
targets[#targets + 1] = string.format("- 256 in flight streamed to files (`save_to`) at most 64 MB: %s (%s)",
  verdict(lt(extras.file_peak, 64 * 1024)), mb(extras.file_peak))
targets[#targets + 1] = string.format("- Host-loop stall per step at most 1 ms p99: `step(0)` loop: wall %s, CPU %s " ..
  "(p99 %s ms wall, %s ms CPU; max %s / %s ms); `on_socket` loop: wall %s, CPU %s (p99 %s ms wall, %s ms CPU; " ..
  "max %s / %s ms); openai-node's event-loop delay p99 %s ms, max %s ms",
  verdict(lt(stalls.step.wall_p99, 0.001)), verdict(lt(stalls.step.cpu_p99, 0.001)), ms(stalls.step.wall_p99),
  ms(stalls.step.cpu_p99), ms(stalls.step.wall_max), ms(stalls.step.cpu_max),
  verdict(lt(stalls.socket.wall_p99, 0.001)), verdict(lt(stalls.socket.cpu_p99, 0.001)), ms(stalls.socket.wall_p99),
  ms(stalls.socket.cpu_p99), ms(stalls.socket.wall_max), ms(stalls.socket.cpu_max),
  node and ms(node.stall_p99) or "n/a", node and ms(node.stall_max) or "n/a")
targets[#targets + 1] = string.format("- 8 calls with 1,100 descriptors open in the same wall time as with 10 " ..
  "(within " ..
  "10 %% or 0.1 s): blocking `batch` %s (%s s against %s s), luv host %s (%s s against %s s)",
  verdict(same_wall(IR.fds1100_wall, IR.fds10_wall)), cell(IR.fds1100_wall, 1, "%.2f"), cell(IR.fds10_wall, 1, "%.2f"),
  verdict(same_wall(extras.fds1100_luv, extras.fds10_luv)), cell(extras.fds1100_luv, 1, "%.2f"),
  cell(extras.fds10_luv, 1, "%.2f"))
local targets_text = table.concat(targets, "\n")
io.write(targets_text, "\n")
if #failures > 0 then io.write("\nFailures:\n", table.concat(failures, "\n"), "\n") end

-------------------------------------------------------------------------------------------------
-- RESULTS.md

local md = {
  "# imageroute benchmarks (issues 5 and 12)",
  "",
  "Written by `make bench` (`bench/run.lua`); the latest run replaces this file.",
  "",
  "## Machine",
  "",
  string.format("- date: %s", machine.date),
  string.format("- `nproc`: %s; CPU: %s; memory: %s", machine.nproc, machine.cpu, machine.mem),
  string.format("- `uname -a`: `%s`", machine.uname),
  string.format("- %s, %s, %s, node %s (%s)", machine.lua, machine.curl, machine.jq,
    machine.node ~= "" and machine.node or "none", machine.openai_node or "?"),
  string.format("- image: %d bytes of PNG (incompressible), %d bytes of base64, %d bytes of JSON response; " ..
    "images saved under %s (file system `%s`)", sizes.png, sizes.b64, sizes.json, "/tmp", machine.fs),
  string.format("- %d repeats per scenario (medians), whole run %.0f s", REPEAT, bench_seconds),
  string.format("- load average (1, 5, 15 min) before the run: %s; after: %s%s", machine.load_start or "?",
    machine.load_end or "?", machine.busy and " (**busy machine**: other processes competed for the CPUs, so " ..
    "wall times and delays are inflated; memory and CPU-time figures hold better)" or ""),
  "",
  "## Results",
  "",
  "Ratios are the other client's figure divided by imageroute's (above 1: imageroute is lower).",
  "",
  tbl,
  "",
  floor_lines,
  "",
  extra_lines,
  "",
  stall_lines,
  "",
  "## Targets met?",
  "",
  targets_text,
  "",
  (#failures > 0 and ("## Failures\n\n```\n" .. table.concat(failures, "\n") .. "\n```\n\n") or "") ..
    "## How each figure was measured",
  "",
  "- The server is the bundled local server (`bin/imageroute-localserver`, one Lua process, started " ..
    "through `spec/support/server.lua`) on 127.0.0.1, answering with the same cached " ..
    string.format("%d-byte incompressible PNG (`x-imageroute-test: {\"png_bytes\": %d}`). ", sizes.png, PNG_BYTES) ..
    "It runs on the same machine as the clients and shares its CPUs with them.",
  "- Every client scenario is a process of its own, run by `bench/measure.c`: wall clock from fork to exit, " ..
    "CPU = user + sys from wait4(2) (the process and all its waited-for children), peak RSS = ru_maxrss " ..
    string.format("(VmHWM), and every %d ms the sum of Pss over the process tree. Peak RSS is ru_maxrss for ",
      SAMPLE_MS) ..
    "imageroute and openai-node (one process each) and the largest sampled tree Pss for curl (several processes " ..
    "per image; Pss counts shared libraries once).",
  "- Wall (scenarios 1 and 2) is measured inside each client from its first call to its last save, so process " ..
    "start-up is not in it; CPU and peak RSS are the whole process's, start-up included. \"Start-up excluded\" " ..
    "subtracts the idle client's CPU.",
  "- Every image is decoded and saved to its own file. imageroute: `image:save(path)` (temporary file, renamed " ..
    "into place; no fsync: `save` fsyncs only with `{durable = true}`); openai-node: " ..
    "`Buffer.from(b64_json, \"base64\")` then `fs.promises.writeFile` (no fsync); " ..
    "curl: `curl | jq -r .data[0].b64_json | base64 -d > file` (no fsync), `xargs -P 16` for concurrency.",
  "- imageroute: scenario 1 is a plain loop of `imageroute.generate`; 2 and 3 are `imageroute.batch(jobs, " ..
    "{max_in_flight = 16, on_done = save})`. No `collectgarbage()` anywhere except in the variant that says so. " ..
    "openai-node: `client.images.generate` in 16 async workers awaited with `Promise.all` (`maxRetries: 0`).",
  "- Memory per in-flight image = (peak RSS with 16 (or 1) calls in flight - peak RSS of the idle client) / " ..
    "16 (or 1) / decoded image size. The 16 calls of `mem16` all wait the same 1 s on the server, so their " ..
    "16 responses are received together. The idle client's peak includes heap that start-up used and freed, " ..
    "which a later image can reuse, so with 1 in flight the figure can come out a little under 1x.",
  "- Partial-image delay: 20 sequential streamed calls (`stream = true, partial_images = 3`, the server waiting " ..
    "50 ms between events); the server stamps `server_time` (socket.gettime()) into each event right before " ..
    "writing it; the client takes its clock when it holds the decoded partial image: imageroute at the start of " ..
    "`on_partial` (`socket.gettime() - image.event.server_time`), openai-node after `Buffer.from` of the event's " ..
    "`b64_json`, curl after `curl -N | jq --unbuffered | base64 -d` of the event (bash `$EPOCHREALTIME`). Same " ..
    "machine, same clock. The partial images are the server's small 64x64 PNGs; the final image is the 3 MB one. " ..
    "The delay includes the server's own time between stamping and writing (JSON encoding, scheduling).",
  "- libb64 floor: `bench/b64floor.c`, libb64's `base64_decode_block` over the server's base64 text already in " ..
    "memory into an allocated, touched buffer, CPU time (CLOCK_PROCESS_CPUTIME_ID) of each decode, median. " ..
    "`core.b64decode` adds imageroute's validation pass and one Lua string copy (os.clock over 30 calls).",
  "- Issue 12 scenarios (imageroute and openai-node; not curl). `wide`: 256 calls, 1 s server latency, all in " ..
    string.format("flight, %d repeat(s) (BENCH_WIDE_REPEAT); imageroute `batch(jobs, {max_in_flight = 256, ",
      WIDE_REPEAT) ..
    "keep_results = false, on_done = save})`, openai-node 256 async workers as in `batch`. `wide_file` (imageroute " ..
    "only): the same with `opts.save_to` per job (each image decoded into its file as the base64 arrives) instead " ..
    "of `image:save`. `batch_drop` (imageroute only): `batch` (64 / 16) with `keep_results = false`. The bundled " ..
    "server is one Lua process writing 256 x 4 MB through `socket.select`, so the 256 bodies arrive spread over " ..
    "its sending time, not all at once: the figure is the peak of this work, not of 256 bodies received at once.",
  "- Memory targets: the limit is the idle client's peak RSS + 1.2 x (calls in flight) x the decoded image size; " ..
    "the `save_to` target is 64 MB of peak RSS at 256 in flight.",
  "- Host-loop stall (`stall`, 16 calls of the 3 MB image, no server latency, 4 in flight, the image only " ..
    "counted and dropped, no file): imageroute starts 4 coroutines with `imageroute.spawn` (each looping " ..
    "generate) and drives them from a host-style loop that times each step with socket.gettime (wall) and " ..
    "os.clock (process CPU): `step(0)` then `socket.sleep(0.0005)`, until `pending()` is 0; or (`stall_socket`) " ..
    "`on_socket`/`on_timer` with a `socket.select` loop, each `socket_action`/`timer_action` call one step. " ..
    "p50 and p99 are over all the steps of a run, then the median over the repeats; max is the largest over all " ..
    "repeats. Wall per step includes preemption by other processes on a shared machine; CPU per step does not. " ..
    "openai-node: the same 16 calls, 4 at a time, each `b64_json` decoded with `Buffer.from`, with " ..
    "`perf_hooks.monitorEventLoopDelay({resolution: 1})` enabled from the first call to the last; a sample is " ..
    "the time between two runs of its 1 ms timer, so it includes that 1 ms.",
  "- Descriptors (`fds10`, `fds1100`): the client first opens /dev/null until it has that many descriptors open " ..
    "(its own at start-up included; node has ~20 at start-up), so libcurl's sockets are numbered above them, then " ..
    "runs 8 calls with 1 s latency all in flight: imageroute `batch` (the core's own poll loop), and, " ..
    "imageroute only, the same `batch` inside a coroutine on a luv loop (`imageroute.loop.luv`, `fds*_luv`); the " ..
    "highest socket number is read from `imageroute.fds()` in `on_progress`. Same wall time = within 10 % (or " ..
    "0.1 s) of the run with 10.",
  "",
}
write_file(root .. "/bench/RESULTS.md", table.concat(md, "\n"))
say("bench: wrote bench/RESULTS.md")
