--- imageroute.state: where the client-side limits of routes live.
--
-- `imageroute.state.memory()` (the default) keeps them in this Lua state: every route of the same
-- name in the process shares one set of buckets. The interface is small so that a store shared by
-- several processes can stand in for it (a Redis-backed one is planned: see the README).
--
-- A bucket is a sliding window: `take(key, limit, window, n)` admits n units (requests or images)
-- when the window holds room for them, and otherwise says how long to wait. `pause(key, seconds)`
-- closes a bucket for everyone sharing it (a 429 whose `retry-after` says so). Slots count calls in
-- flight.
-- @module imageroute.state

local core = require "imageroute.core"

local M = {}

local Memory = {}
Memory.__index = Memory

--- A store in this Lua state.
-- @treturn table store with `take`, `pause`, `paused_until`, `acquire`, `release`
function M.memory()
  return setmetatable({windows = {}, pauses = {}, slots = {}}, Memory)
end

local function now() return core.now() end

--- Admits n units into the window of key when they fit.
-- @tparam string key the bucket
-- @tparam number limit units per window
-- @tparam number window seconds
-- @tparam[opt=1] number n units asked for (more than limit is admitted alone into an empty window)
-- @treturn boolean admitted
-- @treturn number|nil seconds to wait before asking again (when not admitted)
function Memory:take(key, limit, window, n)
  n = n or 1
  local t = now()
  local p = self.pauses[key]
  if p and p > t then return false, p - t end
  local w = self.windows[key]
  if not w then w = {}; self.windows[key] = w end
  local used, keep = 0, {}
  for _, e in ipairs(w) do
    if e.t > t - window then keep[#keep + 1] = e; used = used + e.n end
  end
  self.windows[key] = keep
  if used == 0 or used + n <= limit then
    keep[#keep + 1] = {t = t, n = n}
    return true
  end
  -- the oldest entries leave the window first: wait until enough of them have
  local free, wait = limit - used, window
  for _, e in ipairs(keep) do
    free = free + e.n
    if free >= n then wait = e.t + window - t; break end
  end
  return false, math.max(wait, 0.001)
end

--- Whether n units would be admitted now, without taking them (same answers as `take`).
-- @treturn boolean
-- @treturn number|nil seconds to wait
function Memory:room(key, limit, window, n)
  local ok, wait = self:take(key, limit, window, n)
  if ok then table.remove(self.windows[key]) end
  return ok, wait
end

--- How many in-flight slots of key are free under max.
-- @treturn integer
function Memory:free_slots(key, max)
  return max - (self.slots[key] or 0)
end

--- Closes the bucket for `seconds` (for everyone sharing it).
function Memory:pause(key, seconds)
  local u = now() + seconds
  if (self.pauses[key] or 0) < u then self.pauses[key] = u end
end

--- Takes one in-flight slot of key when fewer than max are taken.
-- @treturn boolean
function Memory:acquire(key, max)
  local n = self.slots[key] or 0
  if n >= max then return false end
  self.slots[key] = n + 1
  return true
end

--- Gives back a slot taken by `acquire`.
function Memory:release(key)
  local n = self.slots[key] or 0
  self.slots[key] = n > 0 and n - 1 or 0
end

M.default = M.memory()

return M
