--- imageroute.limits: client-side rate limits of a route, so that calls wait instead of being sent
-- into a 429.
--
-- Route field `limits` (checked when the route is built):
--
-- * `{requests_per_minute =, images_per_minute =, max_in_flight =}`, or
-- * `{requests =, images =, window = seconds, max_in_flight =}` (short windows for tests).
--
-- Before a call is sent it takes one request and its images (`n`, 1 by default) from the route's
-- buckets, and an in-flight slot; when they do not fit, the call waits: inside a flow it yields to
-- the loop (other calls go on), in a host's coroutine it waits through the host, elsewhere it steps
-- the loop; it never sleeps the thread while other work could run. A 429 that carries
-- `retry-after` (or a rate-limit reset) pauses the route's buckets for every call sharing them.
-- Buckets are shared by the routes of the same name, in the store the route's `state` field names
-- (`imageroute.state.default`, this process, without one; a Redis store shares them across processes
-- and machines: see `imageroute.state`). Tier-1 accounts get 5 images per minute on GPT image models
-- (OpenAI API docs, Guides > Rate limits, https://platform.openai.com/docs/guides/rate-limits, read 2026-12-01): set
-- `limits = {images_per_minute = 5}` and a parallel script waits instead of drowning in 429s.
-- @module imageroute.limits

local core = require("imageroute.core")
local state = require("imageroute.state")

local M = {}

local function posint(v)
  return type(v) == "number" and v > 0 and v == math.floor(v) and v < 1e12
end

--- Checks a `limits` table; returns the normalised form or nil and a message.
-- @tparam table t
-- @treturn table|nil `{requests =, images =, window =, max_in_flight =}`
-- @treturn string|nil what is wrong
function M.normalise(t)
  if type(t) ~= "table" then return nil, "route field 'limits' must be a table" end
  local out = {window = 60}
  for k, v in pairs(t) do
    if k == "requests_per_minute" or k == "requests" then
      if not posint(v) then return nil, "limits." .. k .. " must be a positive integer" end
      out.requests = v
    elseif k == "images_per_minute" or k == "images" then
      if not posint(v) then return nil, "limits." .. k .. " must be a positive integer" end
      out.images = v
    elseif k == "max_in_flight" then
      if not posint(v) then return nil, "limits.max_in_flight must be a positive integer" end
      out.max_in_flight = v
    elseif k == "window" then
      if type(v) ~= "number" or v ~= v or v <= 0 or v > 86400 then
        return nil, "limits.window must be seconds in (0, 86400]"
      end
    else
      return nil, "unknown limits field '" .. tostring(k) .. "'"
    end
  end
  if t.window then
    if t.requests_per_minute or t.images_per_minute then
      return nil, "limits: give requests/images with window, or requests_per_minute/images_per_minute, not both"
    end
    out.window = t.window
  end
  return out
end

local function images_asked(kind, params)
  if kind == "api" then return 0 end -- a generic API request (imageroute.api) makes no image
  if kind == "respond" then return 1 end
  local n = type(params) == "table" and math.tointeger(params.n) or 1
  return (n and n > 0) and n or 1
end

--- The store of a route's limits (its `state` field; `imageroute.state.default` without one).
-- @treturn table|nil store
-- @treturn[2] table error
function M.store(route)
  return state.resolve(route.state)
end

-- How often a call that waits for an in-flight slot held in another process asks again (seconds).
M.SLOT_POLL = 0.05

--- Waits until the route's limits admit the call, then takes its share: one request and its
-- images from the windows, and an in-flight slot (a lease renewed while the call runs, every
-- third of the store's `lease_ttl`, from the loop's timer or a host loop's: cqueues, luv). Returns
-- the seconds waited (0 when none), a release function to call with the outcome, and a keep-alive
-- function to call while the call runs (it renews the lease when due). When the store fails, the
-- call is refused (third value nil, fourth the `state` error) unless the route says
-- `on_state_error = "local"`: then the process's memory store serves this call, and `fallback` (in
-- the keep-alive's table) says why.
-- @tparam Route route
-- @tparam string kind
-- @tparam table params
-- @tparam function wait_until the scheduler's wait (`wait_until(is_ready)`)
-- @tparam[opt] number deadline seconds the call may take in all (its `deadline`): a wait that would
--   pass it refuses the call instead (`timeout` error, `code = "deadline_exceeded"`, nothing sent)
-- @treturn number seconds waited
-- @treturn function release(res, err)
-- @treturn function|nil keepalive() (nil when refused)
-- @treturn[2] table error (`kind = "state"`) when refused
-- @treturn string|nil why the local store served the call (on_state_error = "local")
function M.before(route, kind, params, wait_until, deadline)
  local lim = route.limits
  if type(lim) ~= "table" then return 0, function() end, function() end end
  lim = assert(M.normalise(lim))
  local key = "route:" .. tostring(route.name)
  local store, serr = M.store(route)
  local fallback
  local function on_error(e)
    if route.on_state_error ~= "local" then return e end
    fallback = tostring(e and e.message or e) .. "; served from this process's memory store (on_state_error = local)"
    io.stderr:write("imageroute: route '", tostring(route.name), "': ", fallback, "\n")
    store = state.default
  end
  if not store then
    local e = on_error(serr)
    if e then return 0, function() end, nil, e end
  end
  local n = images_asked(kind, params)
  local ttl = store.lease_ttl or 10
  local t0, waited, lease = core.now(), false
  while true do
    local ok, wait = store:admit(key, lim, n, ttl)
    if ok == nil then
      local e = on_error(wait)
      if e then return 0, function() end, nil, e end
    elseif ok then
      lease = wait
      break
    else
      waited = true
      local slot = wait == nil -- waiting for an in-flight slot to free (else for a window to move on)
      if slot and store.kind ~= "memory" then wait = M.SLOT_POLL end
      local now = core.now()
      local end_t = deadline and t0 + deadline
      if end_t and (now >= end_t or (not slot and now + wait > end_t)) then -- it would pass the deadline
        return 0, function() end, nil, core.error("timeout", string.format(
          "route '%s': its client-side limits would hold the call past its deadline of %g s (waited %.3f s)",
          tostring(route.name), deadline, now - t0), {code = "deadline_exceeded", route = route.name,
          limit_wait = now - t0, attempts = 0})
      end
      local until_t = wait and now + wait
      -- the loop keeps one wake-up time, the earliest asked; once it fired, a later one asked before
      -- it is gone: each check that keeps waiting asks for this wait's own again
      local function wake()
        if until_t then core.wake_at(until_t) end
        if end_t then core.wake_at(end_t) end
      end
      wake()
      local s = store
      wait_until(function()
        local t = core.now()
        if end_t and t >= end_t then return true end
        if until_t and t >= until_t then return true end
        if not until_t and (s:free_slots(key, lim.max_in_flight) or 1) > 0 then return true end
        wake()
        return false
      end)
    end
  end
  local held = store
  local next_renew = lease and core.now() + ttl / 3
  if next_renew then core.wake_at(next_renew) end
  local function keepalive()
    if not next_renew then return end
    if core.now() < next_renew then core.wake_at(next_renew); return end -- asked again: see wake() above
    held:renew(key, lease, ttl) -- a failure is left to the lease's TTL
    next_renew = core.now() + ttl / 3
    core.wake_at(next_renew)
  end
  local released = false
  return waited and core.now() - t0 or 0, function(_, err)
    if released then return end
    released = true
    next_renew = nil
    if lim.max_in_flight then held:release(key, lease) end
    if type(err) == "table" and err.status == 429 then
      local pause = tonumber(err.retry_after)
      local rl = type(err.rate_limit) == "table" and err.rate_limit or {}
      if not pause and rl.remaining_requests == 0 then pause = rl.reset_requests end
      if pause and pause > 0 then
        held:pause(key, math.min(pause, 600))
      end
    end
  end, keepalive, nil, fallback
end

return M
