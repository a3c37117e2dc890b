--- imageroute.state.redis: the store in a Redis server (`imageroute.state.redis{url = ...}`).
--
-- The interface it offers, its timeouts and its errors are documented in `imageroute.state`; build one
-- with `imageroute.state.redis{...}`, which checks the configuration and parses the URL.
-- @module imageroute.state.redis

local core = require("imageroute.core")

local M = {}

local function now() return core.now() end

-- The Redis-side scripts. Times are the server's (TIME, seconds with microseconds). Window
-- entries are sorted-set members "<id>:<units>" scored by their time; slots are members "<lease>"
-- scored by their expiry. Numbers go back as strings (a Lua number in a reply is truncated).
local SCRIPTS = {
  -- KEYS: requests, images, slots, pause. ARGV: requests limit (0 none), images limit (0 none),
  -- window s, n, max_in_flight (0 none), id, lease ttl s
  admit = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local p = tonumber(redis.call('GET', KEYS[4]) or '0')
if p > now then return {0, tostring(p - now)} end
local window, n = tonumber(ARGV[3]), tonumber(ARGV[4])
local function units(m) return tonumber(string.match(m, ':(%d+)$')) or 1 end
local function room(key, limit, want)
  local sum = key .. ':sum'
  local gone = redis.call('ZRANGEBYSCORE', key, '-inf', now - window)
  local used = tonumber(redis.call('GET', sum) or '0')
  if #gone > 0 then
    for _, m in ipairs(gone) do used = used - units(m) end
    redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  end
  if used < 0 or redis.call('EXISTS', key) == 0 then used = 0 end
  redis.call('SET', sum, used, 'PX', math.ceil(window * 1000) + 1000)
  if used == 0 or used + want <= limit then return 0 end
  local es = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  local free = limit - used
  for i = 1, #es, 2 do
    free = free + units(es[i])
    if free >= want then return math.max(tonumber(es[i + 1]) + window - now, 0.001) end
  end
  return window
end
local rl, il, mx = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[5])
if rl > 0 then local w = room(KEYS[1], rl, 1); if w > 0 then return {0, tostring(w)} end end
if il > 0 then local w = room(KEYS[2], il, n); if w > 0 then return {0, tostring(w)} end end
local ms = math.ceil(window * 1000) + 1000
if mx > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  if redis.call('ZCARD', KEYS[3]) >= mx then return {0, ''} end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[7]), ARGV[6])
  redis.call('PEXPIRE', KEYS[3], math.ceil(tonumber(ARGV[7]) * 1000) + 1000)
end
local function add(key, units)
  redis.call('ZADD', key, now, ARGV[6] .. ':' .. units)
  redis.call('PEXPIRE', key, ms)
  redis.call('SET', key .. ':sum', redis.call('INCRBY', key .. ':sum', units), 'PX', ms)
end
if rl > 0 then add(KEYS[1], 1) end
if il > 0 then add(KEYS[2], n) end
return {1, ''}
]],
  -- KEYS: slots. ARGV: lease, ttl s. 1 when renewed, 0 when the lease had expired (taken again)
  renew = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local had = redis.call('ZSCORE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2]) * 1000) + 1000)
if had and tonumber(had) > now then return 1 end
return 0
]],
  -- KEYS: slots. ARGV: max. Free slots (expired leases dropped)
  free = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return tonumber(ARGV[1]) - redis.call('ZCARD', KEYS[1])
]],
  -- KEYS: pause. ARGV: seconds
  pause = [[
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local u = now + tonumber(ARGV[1])
if tonumber(redis.call('GET', KEYS[1]) or '0') < u then
  redis.call('SET', KEYS[1], tostring(u), 'PX', math.ceil(tonumber(ARGV[1]) * 1000) + 1000)
end
return 1
]],
  -- KEYS: account. ARGV: usd, amount, ttl s (0 none)
  reserve = [[
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local res = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
local left = tonumber(ARGV[1]) - spent - res
if tonumber(ARGV[2]) > left + 1e-12 then return {0, tostring(left)} end
redis.call('HSET', KEYS[1], 'reserved', tostring(res + tonumber(ARGV[2])))
if tonumber(ARGV[3]) > 0 then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return {1, tostring(left)}
]],
  -- KEYS: account. ARGV: reserved, charged. The account as settled, {spent, reserved} (the strings
  -- stored: what HMGET would read back), so that the caller needs no second read
  settle = [[
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local res = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
res = res - tonumber(ARGV[1])
if res < 1e-12 then res = 0 end
local s, r = tostring(spent + tonumber(ARGV[2])), tostring(res)
redis.call('HSET', KEYS[1], 'reserved', r, 'spent', s)
return {s, r}
]],
}

local Redis = {}
Redis.__index = Redis
Redis.__name = "imageroute.RedisStore"
function Redis.__tostring(s) return ("imageroute.state.redis{url = %q}"):format(s.url) end

local function state_error(self, code, msg)
  self.stats.errors = self.stats.errors + 1
  return nil, core.error("state", ("state store %s: %s"):format(self.url, msg),
    {code = code, store = self.url, fix = code == "state_unreachable" and
      "start the Redis server (or fix the URL), or set the route's on_state_error = \"local\"" or nil})
end

-- a connection, logged in and on its database; nil, err when it cannot be had
local function connection(self)
  if self.conn and not self.conn:closed() then return self.conn end
  self.conn = nil
  local t = now()
  if self.failed_at and t - self.failed_at < self.reconnect_interval then
    return state_error(self, "state_unreachable", self.failed_msg .. " (not retried for " ..
      self.reconnect_interval .. " s)")
  end
  local c, msg = self.driver.connect(self.host, self.port, self.connect_timeout, self.timeout)
  local function fail(code, m)
    if c then c:close() end
    self.failed_at, self.failed_msg = now(), m
    return state_error(self, code, m)
  end
  if not c then return fail("state_unreachable", msg) end
  local secret = self.secret
  if secret.password then
    local ok, e, ekind
    if secret.user then ok, e, ekind = c:call("AUTH", secret.user, secret.password)
    else ok, e, ekind = c:call("AUTH", secret.password) end
    if not ok then return fail(ekind == "io" and "state_unreachable" or "state_error", "AUTH: " .. tostring(e)) end
  end
  if self.db ~= 0 then
    local ok, e, ekind = c:call("SELECT", self.db)
    if not ok then return fail(ekind == "io" and "state_unreachable" or "state_error", "SELECT: " .. tostring(e)) end
  end
  self.failed_at = nil
  self.conn = c
  return c
end

-- one command, timed; true, value | nil, err. A connection the server closed is tried again once.
local function command(self, ...)
  local t0 = now()
  local ok, v, ekind
  for try = 1, 2 do
    local c, cerr = connection(self)
    if not c then ok, v = nil, cerr; break end
    ok, v, ekind = c:call(...)
    if ok or ekind ~= "io" then break end
    self.conn = nil
    local closed = tostring(v):find("closed the connection", 1, true) or tostring(v):find("reset by peer", 1, true)
    if try == 2 or not closed then break end
  end
  local dt = now() - t0
  local st = self.stats
  st.calls, st.seconds = st.calls + 1, st.seconds + dt
  if dt > st.max_seconds then st.max_seconds = dt end
  if dt > 0.005 then st.over_5ms = st.over_5ms + 1 end
  if ok then return true, v end
  if type(v) == "table" then return nil, v end
  if ekind == "io" then return state_error(self, "state_unreachable", tostring(v)) end
  return state_error(self, "state_error", tostring(v))
end

-- runs a script by its digest, loading it when the server does not know it
local function script(self, name, keys, ...)
  local sha = self.sha[name]
  local args = {#keys}
  for _, k in ipairs(keys) do args[#args + 1] = k end
  for i = 1, select("#", ...) do args[#args + 1] = (select(i, ...)) end
  if sha then
    local ok, v = command(self, "EVALSHA", sha, table.unpack(args))
    if ok or not tostring(v.message):find("NOSCRIPT", 1, true) then
      if ok then return true, v end
      return nil, v
    end
  end
  local ok, v = command(self, "SCRIPT", "LOAD", SCRIPTS[name])
  if not ok then return nil, v end
  self.sha[name] = v
  return command(self, "EVALSHA", v, table.unpack(args))
end

local lease_seq = 0
local function new_lease()
  lease_seq = lease_seq + 1
  return ("%x-%x-%x"):format(math.floor(core.now() * 1e6) % 0x100000000, math.random(0, 0x7fffffff), lease_seq)
end

--- A Redis store from checked fields (`imageroute.state.redis{...}` builds them).
-- @tparam table fields `kind`, `host`, `port`, `db`, the timeouts (seconds), `prefix`, `sha`, `stats`
-- @treturn table store (not yet connected)
function M.new(fields)
  return setmetatable(fields, Redis)
end

function Redis:admit(key, lim, n, lease_ttl)
  local p = self.prefix .. key
  local lease = new_lease()
  local ok, v = script(self, "admit", {p .. ":requests", p .. ":images", p .. ":slots", p .. ":pause"},
    lim.requests or 0, n > 0 and lim.images or 0, lim.window or 60, n, lim.max_in_flight or 0, lease,
    lease_ttl or self.lease_ttl)
  if not ok then return nil, v end
  if v[1] == 1 then return true, lim.max_in_flight and lease or nil end
  if v[2] == "" then return false, nil end
  return false, tonumber(v[2])
end

function Redis:renew(key, lease, ttl)
  local ok, v = script(self, "renew", {self.prefix .. key .. ":slots"}, lease, ttl or self.lease_ttl)
  if not ok then return nil, v end
  return true, v == 1
end

function Redis:release(key, lease)
  if not lease then return true end
  local ok, v = command(self, "ZREM", self.prefix .. key .. ":slots", lease)
  if not ok then return nil, v end
  return true
end

function Redis:free_slots(key, max)
  local ok, v = script(self, "free", {self.prefix .. key .. ":slots"}, max)
  if not ok then return nil, v end
  return v
end

function Redis:pause(key, seconds)
  local ok, v = script(self, "pause", {self.prefix .. key .. ":pause"}, seconds)
  if not ok then return nil, v end
  return true
end

function Redis:reserve(account, usd, amount, ttl)
  local ok, v = script(self, "reserve", {self.prefix .. account}, ("%.17g"):format(usd), ("%.17g"):format(amount),
    ttl and math.ceil(ttl) or 0)
  if not ok then return nil, v end
  return v[1] == 1, tonumber(v[2])
end

function Redis:settle(account, reserved, charged)
  local ok, v = script(self, "settle", {self.prefix .. account}, ("%.17g"):format(reserved), ("%.17g"):format(charged))
  if not ok then return nil, v end
  return {spent = tonumber(v[1]) or 0, reserved = tonumber(v[2]) or 0}
end

function Redis:account(account)
  local ok, v = command(self, "HMGET", self.prefix .. account, "spent", "reserved")
  if not ok then return nil, v end
  return {spent = tonumber(v[1]) or 0, reserved = tonumber(v[2]) or 0}
end

function Redis:reset(account)
  local ok, v = command(self, "DEL", self.prefix .. account)
  if not ok then return nil, v end
  return true
end

--- Closes the store's connection (the next call opens one again).
function Redis:close()
  if self.conn then self.conn:close(); self.conn = nil end
end

--- The metatable of Redis stores (what `imageroute.state.is_store` checks).
M.Store = Redis

return M
