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
-- Buckets are shared by the routes of the same name, in the store `imageroute.state.default` (this
-- process). Tier-1 accounts get 5 images per minute on GPT image models (OpenAI API docs, Guides >
-- Rate limits, https://platform.openai.com/docs/guides/rate-limits, read 2026-12-01): set
-- `limits = {images_per_minute = 5}` and a parallel script waits instead of drowning in 429s.
-- @module imageroute.limits

local core = require "imageroute.core"
local state = require "imageroute.state"

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

--- Waits until the route's limits admit the call, then takes its share. Returns the seconds
-- waited (0 when none) and a release function to call with the outcome.
-- @tparam Route route
-- @tparam string kind
-- @tparam table params
-- @tparam function wait_until the scheduler's wait (`wait_until(is_ready)`)
-- @treturn number seconds waited
-- @treturn function release(res, err)
function M.before(route, kind, params, wait_until)
  local lim = route.limits
  if type(lim) ~= "table" then return 0, function() end end
  lim = assert(M.normalise(lim))
  local store, key = state.default, "route:" .. tostring(route.name)
  local n = images_asked(kind, params)
  local t0, waited = core.now(), false
  while true do
    local ok, wait = true, nil
    if lim.requests then ok, wait = store:room(key .. ":requests", lim.requests, lim.window, 1) end
    if ok and lim.images and n > 0 then ok, wait = store:room(key .. ":images", lim.images, lim.window, n) end
    if ok and lim.max_in_flight and not store:acquire(key .. ":slots", lim.max_in_flight) then
      ok, wait = false, nil -- a slot frees when a call ends: checked again at every loop tick
    end
    if ok then
      if lim.requests then store:take(key .. ":requests", lim.requests, lim.window, 1) end
      if lim.images and n > 0 then store:take(key .. ":images", lim.images, lim.window, n) end
      break
    end
    waited = true
    local until_t = wait and core.now() + wait
    if until_t then core.wake_at(until_t) end
    wait_until(function()
      if until_t then return core.now() >= until_t end
      return store:free_slots(key .. ":slots", lim.max_in_flight) > 0
    end)
  end
  local released = false
  return waited and core.now() - t0 or 0, function(_, err)
    if released then return end
    released = true
    if lim.max_in_flight then store:release(key .. ":slots") end
    if type(err) == "table" and err.status == 429 then
      local pause = tonumber(err.retry_after)
      local rl = type(err.rate_limit) == "table" and err.rate_limit or {}
      if not pause and rl.remaining_requests == 0 then pause = rl.reset_requests end
      if pause and pause > 0 then
        pause = math.min(pause, 600)
        store:pause(key .. ":requests", pause)
        store:pause(key .. ":images", pause)
      end
    end
  end
end

return M
