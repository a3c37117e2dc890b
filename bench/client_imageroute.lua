--- bench/client_imageroute.lua: the imageroute column of `make bench` (one scenario per process,
-- so that bench/run.lua can measure this process's CPU and peak RSS on its own).
--
--    lua5.4 bench/client_imageroute.lua SCENARIO BASE_URL OUTDIR N CONC TEST_JSON [PARTIALS [gc]]
--
-- SCENARIO:
--
-- * `idle`: load imageroute (and build a route), do nothing: the baseline process.
-- * `batch`: N generate calls, CONC in flight, each image saved to OUTDIR. CONC = 1 is a plain
--   loop of `imageroute.generate` (what a sequential user writes); CONC > 1 is
--   `imageroute.batch(jobs, {max_in_flight = CONC, on_done = save})`. Nothing calls
--   `collectgarbage()`: old results are dropped as a normal program drops them.
-- * `workers`: as `batch`, but CONC coroutines under `imageroute.run`, each looping
--   generate -> save, so no result stays referenced after its save (batch keeps every result until
--   it returns).
-- * `stream`: N sequential streamed calls (`stream = true`, `partial_images = PARTIALS`); in
--   `on_partial` the delay is `socket.gettime()` minus the event's `server_time` (the server's
--   clock, stamped right before it writes the event; `image.event` holds the event's fields).
--
-- * `stall`: N calls, CONC in flight (CONC coroutines started with `imageroute.spawn`, each
--   looping generate -> count the image's length, then drop it), driven from a host-style loop
--   that times every step,
--   wall clock (socket.gettime) and CPU (os.clock). With flag `step`: `imageroute.step(0)` in a loop
--   with `socket.sleep(0.0005)` between steps; with flag `socket`: `on_socket`/`on_timer` and a
--   `socket.select` loop calling `socket_action(fd, what)` for each ready descriptor and
--   `timer_action()` when the timer is due, each call timed as one step. Prints `steps` (wall
--   seconds of each step), `step_cpu` (CPU seconds of each step) and `finishing` (wall seconds of
--   the steps in which a call finished, its coroutine resumed and the next call started).
-- * `fds`: as `batch` (N calls, CONC in flight), after opening descriptors on /dev/null until
--   this process has the number given by flag `fds=COUNT` open, so libcurl's sockets get numbers
--   above it. With flag `luv`, the calls run inside a coroutine on a luv loop
--   (`imageroute.loop.luv`), else the blocking `batch`. Prints `max_fd` (the highest socket number
--   imageroute watched, from `imageroute.fds()` in the batch's `on_progress`).
--
-- EXTRA (8th argument) is a comma-separated list of flags: `gc`: `collectgarbage()` runs after each
-- save (a variant: without it, old results are collected whenever Lua's own allocation pace
-- triggers a cycle); `drop`: `batch{keep_results = false}`; `file`: each job has `save_to` (the
-- image decoded straight into its file, no `image:save`), with `keep_results = false`; `step`,
-- `socket`, `fds=COUNT`, `luv`: see `stall` and `fds`.
--
-- TEST_JSON is sent as the `x-imageroute-test` header (the local server's behaviours).
-- Prints one JSON line: images, bytes (decoded bytes saved), wall (seconds from the first call to
-- the last save, process start-up excluded), save_s (seconds spent inside `image:save`, which
-- blocks the loop), delays (stream), hwm_kb (VmHWM at the end), errors.
-- @script client_imageroute

local socket = require("socket")
local cjson = require("cjson")
local imageroute = require("imageroute")

local scenario, base_url, outdir = arg[1], arg[2], arg[3]
local n, conc = tonumber(arg[4]) or 0, math.tointeger(tonumber(arg[5]) or 1)
local test_json, partials = arg[6] or "{}", tonumber(arg[7]) or 0
local flags = {}
for f in (arg[8] or ""):gmatch("[^,]+") do
  local k, v = f:match("^([^=]+)=(.*)$")
  if k then flags[k] = v else flags[f] = true end
end
local gc_each = flags.gc
assert(scenario and base_url and outdir, "usage: client_imageroute.lua SCENARIO BASE_URL OUTDIR N CONC TEST_JSON")

-- The official lane: the local server on loopback stands in for the official API.
local route = assert(imageroute.route{
  name = "bench", base_url = base_url, model = "gpt-image-1",
  headers = {["x-imageroute-test"] = test_json}, max_retries = 0,
})

--- VmHWM of this process, in kB.
local function hwm_kb()
  local f = io.open("/proc/self/status", "r")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmHWM:%s*(%d+)"))
end

local out = {images = 0, bytes = 0, errors = 0, delays = {}, save_s = 0}

--- Saves the first image of a result; counts it.
local function save(res, err, i)
  if not res then
    out.errors = out.errors + 1
    out.last_error = tostring(err)
    return
  end
  local img = res.images[1]
  local bytes
  if img.path then -- save_to: already in its file
    bytes = img.length
  else
    local t = socket.gettime()
    bytes = select(2, assert(img:save(string.format("%s/ir-%d.png", outdir, i))))
    out.save_s = out.save_s + (socket.gettime() - t)
  end
  out.images = out.images + 1
  out.bytes = out.bytes + bytes
  if gc_each then collectgarbage() end
end

local params = {prompt = "a lighthouse at dawn", size = "1024x1024", quality = "low"}

local t0 = socket.gettime()
if scenario == "idle" then
  out.wall = 0
elseif scenario == "batch" and conc == 1 then
  for i = 1, n do
    local res, err = imageroute.generate(route, params)
    save(res, err, i)
  end
elseif scenario == "batch" then
  local jobs = {}
  for i = 1, n do
    jobs[i] = {route = route, params = params,
      opts = flags.file and {save_to = string.format("%s/ir-%d.png", outdir, i)} or nil}
  end
  imageroute.batch(jobs, {max_in_flight = conc, keep_results = not (flags.drop or flags.file),
    on_done = function(i, res, err) save(res, err, i) end})
elseif scenario == "stall" then
  local steps, step_cpu, finishing = {}, {}, {}
  local next_i = 0
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      local res, err = imageroute.generate(route, params)
      if res then
        out.images = out.images + 1
        out.bytes = out.bytes + res.images[1].length
      else
        out.errors = out.errors + 1
        out.last_error = tostring(err)
      end
    end
  end
  local function timed(fn, ...)
    local done0 = out.images + out.errors
    local w0, c0 = socket.gettime(), os.clock()
    fn(...)
    step_cpu[#step_cpu + 1] = os.clock() - c0
    steps[#steps + 1] = socket.gettime() - w0
    if out.images + out.errors > done0 then finishing[#finishing + 1] = steps[#steps] end
  end
  if flags.socket then
    local watched, due = {}, nil -- fd -> what; the timer's due time (socket.gettime clock)
    imageroute.on_socket(function(fd, what) watched[fd] = what ~= "remove" and what or nil end)
    imageroute.on_timer(function(seconds) due = seconds and socket.gettime() + seconds end)
    for _ = 1, math.min(conc, n) do imageroute.spawn(worker) end
    while imageroute.pending() > 0 do
      local recvt, sendt = {}, {}
      for fd, what in pairs(watched) do
        local o = {getfd = function() return fd end, fd = fd}
        if what ~= "out" then recvt[#recvt + 1] = o end
        if what ~= "in" then sendt[#sendt + 1] = o end
      end
      local wait = due and math.max(0, due - socket.gettime()) or 1
      local r, w = socket.select(recvt, sendt, math.min(wait, 1))
      local ready = {}
      for _, o in ipairs(r) do ready[o.fd] = "in" end
      for _, o in ipairs(w) do ready[o.fd] = ready[o.fd] and "inout" or "out" end
      for fd, what in pairs(ready) do
        if watched[fd] then timed(imageroute.socket_action, fd, what) end
      end
      if due and socket.gettime() >= due then
        due = nil
        timed(imageroute.timer_action)
      end
    end
    imageroute.on_socket(nil)
    imageroute.on_timer(nil)
  else
    for _ = 1, math.min(conc, n) do imageroute.spawn(worker) end
    while imageroute.pending() > 0 do
      timed(imageroute.step, 0)
      socket.sleep(0.0005)
    end
  end
  out.steps, out.step_cpu, out.finishing = steps, step_cpu, finishing
elseif scenario == "fds" then
  local want = math.tointeger(tonumber(flags.fds)) or 10
  local files = {}
  local open_count = require("imageroute.sys").open_fds
  local have = open_count() or 0
  for k = 1, want - have do files[k] = assert(io.open("/dev/null", "rb")) end
  out.open_fds = open_count()
  out.max_fd = -1
  local jobs = {}
  for i = 1, n do jobs[i] = {route = route, params = params} end
  local function note_fds()
    local r, w = imageroute.fds()
    for _, fd in ipairs(r) do out.max_fd = math.max(out.max_fd, fd) end
    for _, fd in ipairs(w) do out.max_fd = math.max(out.max_fd, fd) end
  end
  t0 = socket.gettime()
  if flags.luv then
    local uv = require("luv")
    local handle = require("imageroute.loop.luv").attach()
    local finished = false
    coroutine.wrap(function()
      imageroute.batch(jobs, {max_in_flight = conc, keep_results = false, on_progress = note_fds,
        on_done = function(i, res, err) save(res, err, i) end})
      finished = true
      handle:detach()
    end)()
    uv.run()
    if not finished then -- the uv loop ran out of handles while the batch still waited
      out.errors = out.errors + 1
      out.last_error = string.format("uv.run() returned with the batch unfinished: %d of %d calls done, " ..
        "imageroute.pending() = %d", out.images, n, imageroute.pending())
      out.luv_unfinished = true
      local r, w, timeout = imageroute.fds() -- what the core still waits on, for the report
      out.left = {read = r, write = w, timeout = timeout, core_pending = require("imageroute.core").pending()}
      out.last_error = out.last_error .. ", core.pending() = " .. out.left.core_pending .. ", fds(): read {" ..
        table.concat(r, ",") .. "}, write {" .. table.concat(w, ",") .. "}, timeout " .. tostring(timeout)
    end
  else
    imageroute.batch(jobs, {max_in_flight = conc, keep_results = false, on_progress = note_fds,
      on_done = function(i, res, err) save(res, err, i) end})
  end
  for _, f in ipairs(files) do f:close() end
elseif scenario == "workers" then
  local next_i = 0
  local function worker()
    while next_i < n do
      next_i = next_i + 1
      local i = next_i
      local res, err = imageroute.generate(route, params)
      save(res, err, i)
    end
  end
  local fns = {}
  for k = 1, math.min(conc, n) do fns[k] = worker end
  imageroute.run(table.unpack(fns))
elseif scenario == "stream" then
  local sparams = {prompt = "a lighthouse at dawn", size = "1024x1024", quality = "low", stream = true,
    partial_images = partials}
  local opts = {on_partial = function(img)
    local now = socket.gettime()
    local st = img.event and img.event.server_time
    if st then out.delays[#out.delays + 1] = now - st else out.no_server_time = true end
  end}
  for i = 1, n do
    local res, err = imageroute.generate(route, sparams, opts)
    save(res, err, i)
  end
else
  error("unknown scenario " .. tostring(scenario))
end
out.wall = socket.gettime() - t0
out.hwm_kb = hwm_kb()
if #out.delays == 0 then out.delays = nil end
io.write(cjson.encode(out), "\n")
