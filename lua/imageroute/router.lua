--- imageroute.router: an explicit fallback across routes.
--
--    local r = imageroute.router{name = "images", routes = {official, gateway},
--      fallback_on = {"server_error", "rate_limit"}}
--    local res = assert(imageroute.generate(r, {prompt = "a fox"}))
--    print(res.route, table.concat(res.fallback_from, ","))   --> acme-chat  official
--
-- A router is usable wherever a route is: `generate`, `edit`, `respond`, `batch` jobs, flows, and
-- routes files (an entry with `routes = {"name", ...}` declares one). It tries its routes in order
-- and moves to the next one only on the outcome classes listed in `fallback_on` (default all four):
--
-- * `"rate_limit"`: HTTP 429, after the route's own retries;
-- * `"server_error"`: HTTP 5xx;
-- * `"timeout"`, `"connection"`: the transport (`err.kind`).
--
-- It never falls back on what another route would refuse too, or must not be asked to do: a
-- validation or stop-rule refusal, a contract gate, a moderation block, an authentication or
-- verification error (401, 403), any other 4xx, or a reply without an image. A target that fails
-- its own gates or stop rules for the call is skipped, with the reason, before anything is sent.
-- The result (or the final error) names the route that served it (`route`), the router
-- (`router`), the routes tried before it in order (`fallback_from`) and why each one was left
-- (`fallback_log`: `{route =, reason =, message =}` per route tried or skipped); `cost` adds up
-- the costs of every route tried. Every call-log line carries `router`, and the lines of a route
-- tried after another carry `fallback_reason`.
--
-- The route guides this follows keep provider-specific value "as a provider fallback, not as an
-- official claim": a router makes that explicit, and each of its routes keeps its own contract.
-- @module imageroute.router

local core = require("imageroute.core")
local policy = require("imageroute.policy")
local contract = require("imageroute.contract")

local M = {}

local CLASSES = {rate_limit = true, server_error = true, timeout = true, connection = true}
local MODERATION_CODES = {moderation_blocked = true, content_policy_violation = true, content_filter = true}

local Router = {}
Router.__index = Router
Router.__name = "imageroute.Router"
function Router.__tostring(r) return ("imageroute.Router(%s: %d routes)"):format(r.name, #r.routes) end

--- The acceptance report of a router: one row per target, in order, with that route's own
-- decision (`route:check()`) and the scale rule (a router is automated scale-up). Same shape as a
-- route's report; `allowed` is true when at least one target may serve calls.
-- @treturn table `{route =, lane = "router", host =, rows = {{gate =, status =, reason =}, ...},
--   ok =, allowed =, reason =}`
-- @tparam[opt] table opts as for `route:check` (`live = true`: each target's live rows too, in
--   `targets[i]`, and a target whose live rows fail counts as not passing)
function Router:check(opts)
  local rows, any, all = {}, false, true
  local targets = {}
  for i, r in ipairs(self.routes) do
    local rep = r:check(opts)
    targets[i] = rep
    if rep.live_ok == false then
      local bad = {}
      for _, row in ipairs(rep.rows) do
        if row.gate:find("^live") and row.status ~= "pass" then bad[#bad + 1] = row.reason end
      end
      rep.reason = tostring(rep.reason or "allowed") .. "; live: " .. table.concat(bad, "; ")
    end
    local ok, why = rep.allowed, rep.reason
    if ok then
      local sok, serr = contract.scale_allowed(r)
      if not sok then ok, why = false, serr.message end
    end
    local live_ok = rep.live_ok ~= false
    rows[#rows + 1] = {gate = ("%d. %s"):format(i, r.name), status = ok and live_ok and "pass" or "fail",
      reason = ("%s route on %s: %s"):format(tostring(r.lane), tostring(r.host),
        tostring((ok and not live_ok and rep.reason) or why or "allowed"))}
    any, all = any or ok, all and ok and live_ok
  end
  local on = {}
  for c in pairs(self.fallback_on) do on[#on + 1] = c end
  table.sort(on)
  local live_ok
  if type(opts) == "table" and opts.live then
    live_ok = true
    for _, rep in ipairs(targets) do live_ok = live_ok and rep.live_ok ~= false end
  end
  return {route = self.name, lane = "router", host = "-", rows = rows, ok = all, allowed = any,
    reason = ("falls back on %s"):format(table.concat(on, ", ")), targets = targets, live_ok = live_ok}
end

--- True when v is a Router.
-- @param v any value
-- @treturn boolean
function M.is_router(v)
  return getmetatable(v) == Router
end

--- Builds a router.
-- @tparam table config `name` (string, default "router"), `routes` (list of Route, tried in order,
--   at least one), `fallback_on` (list of `"rate_limit"` | `"server_error"` | `"timeout"` |
--   `"connection"`; default all four)
-- @treturn Router|nil the router
-- @treturn[2] table a `validation` error with `field`
function M.new(config)
  if type(config) ~= "table" then error("router: a table expected", 2) end
  local function bad(field, msg) return nil, core.error("validation", msg, {field = field}) end
  local name = config.name or "router"
  if type(name) ~= "string" or name == "" then return bad("name", "router field 'name' must be a string") end
  if type(config.routes) ~= "table" or #config.routes == 0 then
    return bad("routes", "router '" .. name .. "' needs routes = {route, ...} (at least one)")
  end
  local routes = {}
  for i, r in ipairs(config.routes) do
    if not core.is_route(r) then
      return bad("routes", ("router '%s': routes[%d] is not a Route (routers do not nest)"):format(name, i))
    end
    routes[i] = r
  end
  local on = {}
  local list = config.fallback_on or {"rate_limit", "server_error", "timeout", "connection"}
  if type(list) ~= "table" then return bad("fallback_on", "router field 'fallback_on' must be a list") end
  for _, c in ipairs(list) do
    if not CLASSES[c] then
      return bad("fallback_on", ("router '%s': unknown fallback_on class '%s' (rate_limit | server_error | " ..
        "timeout | connection)"):format(name, tostring(c)))
    end
    on[c] = true
  end
  for k in pairs(config) do
    if k ~= "name" and k ~= "routes" and k ~= "fallback_on" and k ~= "description" and k ~= "budget" then
      return bad(k, ("unknown router field '%s'"):format(tostring(k)))
    end
  end
  return setmetatable({name = name, routes = routes, fallback_on = on, description = config.description,
    budget = config.budget}, Router)
end

--- The outcome class of an error, when a fallback may follow it.
-- @tparam table err
-- @treturn string|nil `"rate_limit"`, `"server_error"`, `"timeout"`, `"connection"`, or nil
-- @treturn string|nil why there is no fallback (when the class is nil)
function M.outcome_class(err)
  if type(err) ~= "table" then return nil, "no error" end
  if err.kind == "validation" or err.kind == "route" or err.kind == "io" then return nil, "refused before sending" end
  if MODERATION_CODES[err.code] or err.type == "image_generation_user_error" then return nil, "moderation" end
  local st = math.tointeger(err.status)
  if st == 401 or st == 403 then return nil, "authentication or verification" end
  if st == 429 then return "rate_limit" end
  if st and st >= 500 then return "server_error" end
  if st and st >= 400 then return nil, "the request was refused (HTTP " .. st .. ")" end
  if err.kind == "timeout" then return "timeout" end
  if err.kind == "connection" then return "connection" end
  return nil, err.kind == "decode" and "the reply held no usable image" or "not a fallback class"
end

local function copy(t)
  local o = {}
  for k, v in pairs(t or {}) do o[k] = v end
  return o
end

-- Adds the costs of the routes left behind to the cost of the outcome that ends the call.
local function add_costs(target, left)
  if #left == 0 or type(target.cost) ~= "table" then return end
  local c = copy(target.cost)
  local known, unknown = c.amount or c.known_amount or 0, c.amount == nil
  local parts = {{route = target.route, amount = c.amount}}
  for _, l in ipairs(left) do
    local a = l.cost and (l.cost.amount or l.cost.known_amount)
    if l.cost and l.cost.currency and c.currency and l.cost.currency ~= c.currency then unknown = true end
    if l.cost and l.cost.amount == nil and (l.cost.max_amount or 0) > 0 then unknown = true end
    known = known + (a or 0)
    parts[#parts + 1] = {route = l.route, amount = l.cost and l.cost.amount}
  end
  if unknown then c.amount, c.known_amount = nil, known else c.amount = known end
  c.routes = parts
  target.cost = c
end

--- Runs one call through the router (imageroute.generate/edit/respond call this for a Router).
-- @tparam string kind "generate" | "edit" | "respond"
-- @tparam function fn the single-route call, `fn(route, params, opts)`
-- @tparam Router router
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn table|nil result
-- @treturn[2] table error
function M.call(kind, fn, router, params, opts)
  local tried, log, left = {}, {}, {}
  local reason, last_err, first_refusal
  for i, route in ipairs(router.routes) do
    local o = copy(opts)
    o.router, o.fallback_reason = router.name, reason
    if router.budget then o.budget = router.budget end
    local ok, refusal = contract.scale_allowed(route) -- a router is automated scale-up
    if ok then ok, refusal = policy.before(kind, route, params, o) end
    if not ok then
      log[#log + 1] = {route = route.name, reason = "skipped", message = tostring(refusal)}
      first_refusal = first_refusal or refusal
    else
      local res, err = fn(route, params, o)
      if res then
        res.router, res.fallback_from, res.fallback_log = router.name, tried, log
        add_costs(res, left)
        return res
      end
      local class, why = M.outcome_class(err)
      local last = i == #router.routes
      if not class or not router.fallback_on[class] or last then
        err.router, err.fallback_from, err.fallback_log = router.name, tried, log
        if class and not router.fallback_on[class] then
          err.fallback_stopped = ("'%s' is not in fallback_on"):format(class)
        elseif not class then
          err.fallback_stopped = why
        end
        add_costs(err, left)
        return nil, err
      end
      tried[#tried + 1] = route.name
      log[#log + 1] = {route = route.name, reason = class, message = tostring(err)}
      left[#left + 1] = {route = route.name, cost = err.cost}
      reason, last_err = class, err
    end
  end
  if last_err then -- the routes after it were all skipped: the last real failure is the answer
    table.remove(left)
    last_err.router, last_err.fallback_from, last_err.fallback_log = router.name, tried, log
    add_costs(last_err, left)
    return nil, last_err
  end
  if first_refusal then -- every route refused the call before sending: the first one says why
    local _, err = policy.after(kind, router.routes[1], params, opts, nil, first_refusal)
    err.router, err.fallback_from, err.fallback_log = router.name, tried, log
    return nil, err
  end
  return nil, core.error("route", ("router '%s': no route can serve this call (%s)"):format(router.name,
    #log > 0 and log[#log].message or "no routes"), {router = router.name, fallback_from = tried,
    fallback_log = log, code = "no_route"})
end

return M
