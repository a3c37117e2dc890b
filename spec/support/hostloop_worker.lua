-- spec/support/hostloop_worker.lua: one process of spec/state_hostloop_spec.lua, so that each host
-- loop library is loaded once in a process of its own (luv cannot be loaded again into a Lua state
-- after an earlier copy was collected, as busted's insulation of spec files does).
--   lua5.4 spec/support/hostloop_worker.lua LOOP MODE BASE_URL REDIS_URL ...
-- LOOP: cqueues | luv (prints "skip WHY" when the library is missing)
-- MODE lease  BASE REDIS TTL HOLD: one call on a route of max_in_flight = 1 whose limits live in
--             Redis with lease_ttl TTL, held by the local server for HOLD s, made from a coroutine
--             of the host loop and driven by it alone; meanwhile every 0.1 s a second store (its
--             own connection) reads the free slots: "sample T FREE" (T: seconds since the call began)
--             and at the end "end T FREE_AFTER ok|err MESSAGE"
-- MODE window BASE REDIS WINDOW TTL: two calls in a row on a route of 1 request per WINDOW s and
--             max_in_flight = 1 (in Redis, lease_ttl TTL) from a host coroutine: "window WALL
--             LIMIT_WAIT1 LIMIT_WAIT2 ok|err MESSAGE"
-- MODE background BASE - FAST SLOW: two background-mode calls at once (imageroute.batch, in a host
--             coroutine), polled every FAST s and every SLOW s, the local server answering the fast
--             one after 1 in_progress poll and the slow one after 3: "background WALL STATUS1 STATUS2"
--             (the slow call's wake-up is asked while the fast one's, earlier, is pending)
-- Every run has a guard (HOLD or WINDOW + 10 s) that stops the loop: "guard" when it fired.
local imageroute = require("imageroute")
local core = require("imageroute.core")

local loop_name, mode, base, redis_url = arg[1], arg[2], arg[3], arg[4]
local ok_lib, lib = pcall(require, loop_name)
if not ok_lib then
  print("skip " .. loop_name .. " is not installed: " .. tostring(lib):match("^[^\n]*"))
  os.exit(0)
end

local function route_of(fields)
  fields.base_url, fields.model, fields.api_key, fields.max_retries = base, "gpt-image-1", "sk-hostloop-test", 0
  fields.timeout = 30
  return assert(imageroute.route(fields))
end

local out = {}
local function say(fmt, ...) out[#out + 1] = fmt:format(...) end

-- the work, each step a function run in a host coroutine; sample() (lease mode) runs every 0.1 s
local work, sample, guard_s
if mode == "lease" then
  local ttl, hold = tonumber(arg[5]), tonumber(arg[6])
  local store = assert(imageroute.state.redis{url = redis_url, lease_ttl = ttl})
  local checker = assert(imageroute.state.redis{url = redis_url})
  local key = "route:hostloop-lease"
  local route = route_of{name = "hostloop-lease", state = store, limits = {max_in_flight = 1},
    headers = {["x-imageroute-test"] = require("imageroute.json").encode({delay = hold})}}
  local t0
  function sample()
    if t0 then say("sample %.3f %s", core.now() - t0, tostring(checker:free_slots(key, 1))) end
  end
  function work()
    t0 = core.now()
    local res, err = imageroute.generate(route, {prompt = "held by the server"})
    local t = core.now() - t0
    say("end %.3f %s %s %s", t, tostring(checker:free_slots(key, 1)), res and "ok" or "err", tostring(err))
  end
  guard_s = hold + 10
elseif mode == "window" then
  local window = tonumber(arg[5])
  local store = assert(imageroute.state.redis{url = redis_url, lease_ttl = tonumber(arg[6])})
  local route = route_of{name = "hostloop-window", state = store,
    limits = {requests = 1, window = window, max_in_flight = 1}}
  function work()
    local t0 = core.now()
    local r1, e1 = imageroute.generate(route, {prompt = "first"})
    local r2, e2
    if r1 then r2, e2 = imageroute.generate(route, {prompt = "second"}) end
    local wall = core.now() - t0
    say("window %.3f %s %s %s %s", wall, tostring(r1 and r1.limit_wait or 0), tostring(r2 and r2.limit_wait or 0),
      (r1 and r2) and "ok" or "err", tostring(e1 or e2))
  end
  guard_s = window + 10
elseif mode == "background" then
  local fast, slow = tonumber(arg[5]), tonumber(arg[6])
  local function bg_route(name, polls)
    return assert(imageroute.route{name = name, shape = "responses", model = "gpt-5", image_model = "gpt-image-2",
      base_url = base, api_key = "sk-hostloop-test", max_retries = 0, timeout = 30,
      headers = {["x-imageroute-test"] = require("imageroute.json").encode({background_polls = polls})}})
  end
  local params = {input = "draw", tool_choice = "image_generation", background = true}
  local jobs = {
    {call = "respond", route = bg_route("bg-fast", 1), params = params, opts = {poll_interval = fast}},
    {call = "respond", route = bg_route("bg-slow", 3), params = params, opts = {poll_interval = slow}},
  }
  function work()
    local t0 = core.now()
    local results = imageroute.batch(jobs, {max_in_flight = 2})
    local function status(r) return r.ok and r.result.status or tostring(r.error and r.error.code) end
    say("background %.3f %s %s", core.now() - t0, status(results[1]), status(results[2]))
  end
  guard_s = 15
else
  error("mode lease | window | background expected")
end

local done = false
if loop_name == "cqueues" then
  local cqueues = lib
  local cq = cqueues.new()
  local handle = require("imageroute.loop.cqueues").attach(cq)
  cq:wrap(function() work(); done = true; handle:detach() end)
  cq:wrap(function() -- the sampler, and the guard
    local t0 = cqueues.monotime()
    while not done do
      if cqueues.monotime() - t0 > guard_s then say("guard"); handle:detach(); break end
      if sample then sample() end
      cqueues.sleep(0.1)
    end
  end)
  assert(cq:loop())
elseif loop_name == "luv" then
  local uv = lib
  local handle = require("imageroute.loop.luv").attach()
  local sampler, guard = uv.new_timer(), uv.new_timer()
  local function stop()
    for _, t in ipairs{sampler, guard} do if not t:is_closing() then t:stop(); t:close() end end
    handle:detach()
  end
  if sample then sampler:start(0, 100, sample) end
  guard:start(math.floor(guard_s * 1000), 0, function() say("guard"); stop() end)
  coroutine.wrap(function() work(); stop() end)()
  uv.run()
else
  error("loop cqueues | luv expected")
end
for _, l in ipairs(out) do print(l) end
