--- imageroute.state.memory: the store in this Lua state (`imageroute.state.memory()`).
--
-- The interface it offers is documented in `imageroute.state`; build one with `imageroute.state.memory()`.
-- @module imageroute.state.memory

local core = require("imageroute.core")

local M = {}

local function now() return core.now() end

local Memory = {}
Memory.__index = Memory
Memory.__name = "imageroute.MemoryStore"
function Memory.__tostring() return "imageroute.state.memory()" end

--- A memory store, not yet registered (`imageroute.state.memory()` registers it).
-- @tparam table stats the counters the store keeps (`store.stats`)
-- @treturn table store
function M.new(stats)
  return setmetatable({kind = "memory", url = "memory", windows = {}, pauses = {}, slots = {},
    accounts = {}, next_lease = 0, stats = stats}, Memory)
end

-- the window of key at time t, entries older than the window dropped: a queue
-- {first =, last =, used =, [i] = {t =, n =}} (used: the units it holds)
local function window_of(self, key, window, t)
  local w = self.windows[key]
  if not w then w = {first = 1, last = 0, used = 0}; self.windows[key] = w end
  while w.first <= w.last and w[w.first].t <= t - window do
    w.used = w.used - w[w.first].n
    w[w.first] = nil
    w.first = w.first + 1
  end
  return w
end

-- 0 when n units fit into the window, else the seconds until they would
local function room(self, key, limit, window, n, t)
  local w = window_of(self, key, window, t)
  if w.used == 0 or w.used + n <= limit then return 0 end
  local free = limit - w.used
  for i = w.first, w.last do
    free = free + w[i].n
    if free >= n then return math.max(w[i].t + window - t, 0.001) end
  end
  return window
end

local function add(self, key, t, n)
  local w = self.windows[key]
  w.last = w.last + 1
  w[w.last] = {t = t, n = n}
  w.used = w.used + n
end

function Memory:admit(key, lim, n)
  local t = now()
  local p = self.pauses[key]
  if p and p > t then return false, p - t end
  local w = lim.window or 60
  if lim.requests then
    local wait = room(self, key .. ":requests", lim.requests, w, 1, t)
    if wait > 0 then return false, wait end
  end
  local images = lim.images and n > 0 -- a call that makes no image (imageroute.api) takes none
  if images then
    local wait = room(self, key .. ":images", lim.images, w, n, t)
    if wait > 0 then return false, wait end
  end
  local lease
  if lim.max_in_flight then
    local used = self.slots[key] or 0
    if used >= lim.max_in_flight then return false, nil end
    self.slots[key] = used + 1
    self.next_lease = self.next_lease + 1
    lease = tostring(self.next_lease)
  end
  if lim.requests then add(self, key .. ":requests", t, 1) end
  if images then add(self, key .. ":images", t, n) end
  return true, lease
end

function Memory.renew() return true end

function Memory:release(key)
  local n = self.slots[key] or 0
  self.slots[key] = n > 0 and n - 1 or 0
  return true
end

function Memory:free_slots(key, max)
  return max - (self.slots[key] or 0)
end

function Memory:pause(key, seconds)
  local u = now() + seconds
  if (self.pauses[key] or 0) < u then self.pauses[key] = u end
  return true
end

local function acct(self, account)
  local a = self.accounts[account]
  if not a then a = {spent = 0, reserved = 0}; self.accounts[account] = a end
  return a
end

function Memory:reserve(account, usd, amount)
  local a = acct(self, account)
  local left = usd - a.spent - a.reserved
  if amount > left + 1e-12 then return false, left end
  a.reserved = a.reserved + amount
  return true, left
end

function Memory:settle(account, reserved, charged)
  local a = acct(self, account)
  a.reserved = math.max(0, a.reserved - reserved)
  a.spent = a.spent + charged
  return {spent = a.spent, reserved = a.reserved}
end

function Memory:account(account)
  local a = acct(self, account)
  return {spent = a.spent, reserved = a.reserved}
end

function Memory:reset(account)
  self.accounts[account] = nil
  return true
end

--- The metatable of memory stores (what `imageroute.state.is_store` checks).
M.Store = Memory

return M
