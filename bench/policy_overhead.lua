--- bench/policy_overhead.lua: what the client-side limits and budgets cost per call, with the
-- memory store and with Redis (`make bench` runs it after bench/run.lua; alone:
-- `lua5.4 bench/policy_overhead.lua`, with LUA_PATH/LUA_CPATH as the Makefile sets them).
--
-- Starts the bundled local server and a redis-server (on free loopback ports; the Redis part is
-- skipped, with the reason, when redis-server or the C module imageroute.redis is missing) and
-- measures, per call:
--
-- * `policy`: the policy steps alone, without HTTP: the route's limits admitting the call
--   (`limits.before`: windows of requests and images and an in-flight slot) and releasing it, and
--   a budget reserving the worst case and settling it (`reserve` + `settle`, which also tells what
--   is left, as a call does), POLICY_CALLS times in a row;
-- * `call`: whole generate calls against the local server, one after another, CALLS times each,
--   on a route without limits or budget, one with both in memory and one with both in Redis (the
--   three interleaved); the overhead is the difference of the median latencies;
-- * the store's own figures: calls made to Redis and the longest one (the most a store call held
--   the loop).
--
-- The limits are large (nothing waits): the figures are the bookkeeping, not waiting.
-- @script policy_overhead

local root = debug.getinfo(1, "S").source:match("^@(.*)/bench/[^/]*$") or "."
package.path = root .. "/spec/?.lua;" .. package.path
local imageroute = require("imageroute")
local core = require("imageroute.core")
local limits = require("imageroute.limits")
local server_mod = require("support.server")
local redis_mod = require("support.redis")

local POLICY_CALLS = math.tointeger(tonumber(os.getenv("BENCH_POLICY_CALLS"))) or 2000
local CALLS = math.tointeger(tonumber(os.getenv("BENCH_POLICY_HTTP_CALLS"))) or 200

local function median(t)
  table.sort(t)
  local n = #t
  if n == 0 then return 0 end
  return n % 2 == 1 and t[(n + 1) // 2] or (t[n // 2] + t[n // 2 + 1]) / 2
end

local function us(s) return ("%.1f us"):format(s * 1e6) end

local s = server_mod.start()
local r
local ok_redis, why = redis_mod.available()
if ok_redis then r = redis_mod.start() end

local LIMITS = {requests = 1000000, images = 1000000, window = 60, max_in_flight = 1000}
local params = {prompt = "a fox", size = "1024x1024", quality = "low"}
local function route(name, store, b)
  return assert(imageroute.route{name = name, base_url = s.base_url, model = "gpt-image-1",
    api_key = "sk-bench-0123456789", -- the local server takes any key
    limits = store and LIMITS or nil, state = store, budget = b})
end

local function policy_steps(label, store)
  local b = assert(imageroute.budget{name = "bench-" .. label, usd = 1e9, state = store ~= imageroute.state.default
    and store or nil})
  local rt = route("bench-policy-" .. label, store, b)
  local function wait_until(is_ready) repeat core.step(0.01) until is_ready() end
  local t0 = core.now()
  for _ = 1, POLICY_CALLS do
    local _, release, _, err = limits.before(rt, "generate", params, wait_until)
    assert(not err, err and err.message)
    local res = assert(b:reserve("generate", rt, params))
    local _, left = b:settle(res, {cost = {amount = 0.011, currency = "USD"}})
    assert(left, "settle tells what is left")
    release({}, nil)
  end
  return (core.now() - t0) / POLICY_CALLS
end

local function call_route(label, store)
  local b = store and assert(imageroute.budget{name = "bench-call-" .. label, usd = 1e9,
    state = store ~= imageroute.state.default and store or nil}) or nil
  local rt = route("bench-call-" .. label, store, b)
  for _ = 1, 10 do assert(imageroute.generate(rt, params, {log = false})) end -- warm up
  return rt
end

-- the variants' calls interleaved (one of each in turn), so that the server's and the machine's
-- drifts fall on all of them alike; the median latency of each
local function calls(variants)
  local lat = {}
  for i = 1, CALLS do
    for k, rt in ipairs(variants) do
      local t0 = core.now()
      assert(imageroute.generate(rt, params, {log = false}))
      lat[k] = lat[k] or {}
      lat[k][i] = core.now() - t0
    end
  end
  local out = {}
  for k in ipairs(variants) do out[k] = median(lat[k]) end
  return out
end

local rows = {}
local mem = imageroute.state.default
local p_mem = policy_steps("memory", mem)
rows[#rows + 1] = ("policy steps per call, memory store:      %s"):format(us(p_mem))
local store
if r then
  store = assert(imageroute.state.redis{url = r.url})
  local p_redis = policy_steps("redis", store)
  rows[#rows + 1] = ("policy steps per call, Redis store:       %s (%d store calls, longest %.2f ms, %d over 5 ms)")
    :format(us(p_redis), store.stats.calls, store.stats.max_seconds * 1000, store.stats.over_5ms)
end
local variants = {call_route("none", nil), call_route("memory", mem)}
if r then variants[3] = call_route("redis", store) end
local before, over_before = store and store.stats.calls, store and store.stats.over_5ms
if store then store.stats.max_seconds = 0 end
local med = calls(variants)
rows[#rows + 1] = ("generate call (local server), median:     %s without limits or budget"):format(us(med[1]))
rows[#rows + 1] = ("  with limits + budget in memory:         %s (overhead %s)"):format(us(med[2]), us(med[2] - med[1]))
if r then
  rows[#rows + 1] = ("  with limits + budget in Redis:          %s (overhead %s; %.1f store calls per call, " ..
    "longest %.2f ms, %d over 5 ms)"):format(us(med[3]), us(med[3] - med[1]), (store.stats.calls - before) / CALLS,
    store.stats.max_seconds * 1000, store.stats.over_5ms - over_before)
else
  rows[#rows + 1] = "  Redis: skipped (" .. tostring(why) .. ")"
end

print(("policy overhead (%d policy iterations, %d calls per variant, Lua %s)"):format(POLICY_CALLS, CALLS,
  _VERSION:match("%d+%.%d+")))
for _, l in ipairs(rows) do print(l) end
if r then r:stop() end
s:stop()
