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
-- With `gc` as the 8th argument, `collectgarbage()` runs after each save (a variant: without it, old
-- results are collected whenever Lua's own allocation pace triggers a cycle).
--
-- TEST_JSON is sent as the `x-imageroute-test` header (the local server's behaviours).
-- Prints one JSON line: images, bytes (decoded bytes saved), wall (seconds from the first call to
-- the last save, process start-up excluded), save_s (seconds spent inside `image:save`, which
-- blocks the loop), delays (stream), hwm_kb (VmHWM at the end), errors.
-- @script client_imageroute

local socket = require "socket"
local cjson = require "cjson"
local imageroute = require "imageroute"

local scenario, base_url, outdir = arg[1], arg[2], arg[3]
local n, conc = tonumber(arg[4]) or 0, math.tointeger(tonumber(arg[5]) or 1)
local test_json, partials = arg[6] or "{}", tonumber(arg[7]) or 0
local gc_each = arg[8] == "gc"
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
  local t = socket.gettime()
  local _, bytes = assert(img:save(string.format("%s/ir-%d.png", outdir, i)))
  out.save_s = out.save_s + (socket.gettime() - t)
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
  for i = 1, n do jobs[i] = {route = route, params = params} end
  imageroute.batch(jobs, {max_in_flight = conc, on_done = function(i, res, err) save(res, err, i) end})
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
