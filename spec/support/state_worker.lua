-- spec/support/state_worker.lua: one process of the shared-state specs (spec/state_redis_spec.lua).
--   lua5.4 spec/support/state_worker.lua MODE BASE_URL STATE ...
-- MODE limit  BASE STATE N WINDOW COUNT: COUNT calls, one after another, on a route limited to N
--             requests per WINDOW seconds, its limits in STATE (a redis:// URL or "memory")
-- MODE budget BASE STATE USD COUNT: COUNT calls of a flat 0.10 USD provider route under a budget
--             of USD per run, kept in STATE
-- MODE hold   BASE STATE TTL: one slow call holding the only in-flight slot (lease TTL seconds)
-- Prints one line per call ("ok" or "err KIND CODE"), then "stats CALLS MAX_MS TOTAL_MS" (the store's
-- calls: how many, the longest, all of them together).
local imageroute = require("imageroute")
local fx = require("support.fixtures")

local mode, base, st = arg[1], arg[2], arg[3]
local s = {base_url = base}
local store = st
if st:match("^redis://") then
  -- what is shared is checked here, not the store's timeouts: 0.5 s instead of the default 50 ms, so
  -- four processes on a loaded machine are not refused a call for a slow answer
  store = assert(imageroute.state.redis{url = st, lease_ttl = mode == "hold" and tonumber(arg[4]) or nil,
    timeout = 0.5, connect_timeout = 0.5})
end
local route, b
if mode == "limit" then
  route = fx.route(s, {name = "shared-limit", state = store,
    limits = {requests = tonumber(arg[4]), window = tonumber(arg[5])}})
elseif mode == "budget" then
  b = assert(imageroute.budget{name = "shared-budget", usd = tonumber(arg[4]), state = store})
  route = fx.route(s, {name = "shared-flat", lane = "provider", provider = "acme", accepted = "test", budget = b,
    billing = {unit = "call", price = 0.10, currency = "USD", source = "test", date = "2026-12-01"}})
elseif mode == "hold" then
  route = fx.behaving(s, {delay = 30}, {name = "leased", state = store, timeout = 60, limits = {max_in_flight = 1}})
end
local count = tonumber(arg[mode == "limit" and 6 or 5]) or 1
for _ = 1, count do
  local res, err = imageroute.generate(route, {prompt = "a fox"})
  if res then print("ok") else print(("err %s %s"):format(err.kind, tostring(err.code))) end
  io.stdout:flush()
end
local stats = type(store) == "table" and store.stats or imageroute.state.default.stats
print(("stats %d %.3f %.3f"):format(stats.calls, stats.max_seconds * 1000, stats.seconds * 1000))
