--- imageroute.state: where the client-side limits of routes and the accounts of budgets live.
--
-- A route's limits (`limits`) and a budget's account live in a store, named by the route's or the
-- budget's `state` field:
--
-- * `imageroute.state.memory()`: in this Lua state (one process). The default: routes without
--   `state` share `imageroute.state.default`; a budget without `state` keeps its account in a
--   memory store of its own (a `"run"` budget lasts as long as the budget object).
-- * `imageroute.state.redis{url = "redis://[user:password@]host[:port][/db]"}`: in a Redis server,
--   shared by every process on every machine that names the same server and database. It needs
--   the optional C module `imageroute.redis` (hiredis; built by `make` when hiredis is found, or
--   from `rockspec/imageroute-redis-scm-1.rockspec`). `rediss://` (TLS) is refused: hiredis 0.14
--   has no TLS. Admissions into rate-limit windows and budget reservations are atomic Redis-side
--   Lua scripts (EVALSHA, EVAL when the server lost the script); in-flight slots are leases with a
--   TTL (`lease_ttl`, default 10 s) renewed while the call runs, so the slots of a process that
--   crashed come free within `lease_ttl`; windows and pauses use the server's clock (`TIME`), so
--   machines whose clocks disagree still share one window. A `"run"` budget lasts in Redis until
--   `budget:reset()`; `"day"` and `"month"` accounts expire a while after their period.
-- * A URL string stands for the store: `"memory"` (the default store) or a `redis://` URL (one
--   store per distinct URL and process, so routes naming the same URL share one connection).
--
-- Every store call is a short blocking exchange (a fraction of a millisecond on a quiet host),
-- bounded by `connect_timeout` (default 0.05 s) and `timeout` (default 0.05 s, each command:
-- tighter ones refuse calls spuriously on a loaded host); after a failed connect the store does not try
-- again for `reconnect_interval` (default 1 s) and fails at once meanwhile, so an unreachable
-- store never stalls the loop for longer than one timeout per interval. `store.stats` counts the
-- calls and their time (`calls`, `seconds`, `max_seconds`, `over_5ms`: calls longer than 5 ms,
-- `errors`).
--
-- A store that cannot be reached (or answers with an error) returns `nil, err` with
-- `err.kind = "state"` and `err.code = "state_unreachable"` (connect, I/O or timeout) or
-- `"state_error"` (the server refused a command: authentication, a wrong database, a key holding
-- another type...); `err.store` is the store's URL without its password. A call is then refused with
-- that error, and nothing is sent, unless its route says `on_state_error = "local"`: then the
-- process's memory store stands in for that call and the result (and the call log) carry
-- `state_fallback` (why).
--
-- The interface a store offers (both kinds; `nil, err` on a store failure):
--
-- * `admit(key, lim, n, lease_ttl)`: atomically admits one call of `n` images (0: none) into the buckets of
--   `key` (`lim = {requests =, images =, window = seconds, max_in_flight =}`, each optional) and
--   takes an in-flight slot when `max_in_flight` is set. Returns `true, lease` (the lease id, a
--   string, or nil without `max_in_flight`), or `false, wait`: the seconds after which asking again
--   may succeed (`nil`: waiting for a slot to free, see `free_slots`).
-- * `renew(key, lease, ttl)`, `release(key, lease)`: keeps a lease alive, gives it back.
-- * `free_slots(key, max)`: how many slots are free (integer).
-- * `pause(key, seconds)`: closes the buckets of key for everyone sharing them (a 429).
-- * `reserve(account, usd, amount, ttl)`: atomically adds `amount` (USD) to the reserved sum of a
--   budget account when `spent + reserved + amount <= usd`; returns `true, left` or `false, left`
--   (left in USD before the reservation). `ttl` (seconds, or nil) is how long the account lives.
-- * `settle(account, reserved, charged)`: moves a reservation out and `charged` (USD) into spent.
-- * `account(account)`: `{spent =, reserved =}` (USD). `reset(account)`: clears the account.
-- * `kind` (`"memory"` | `"redis"`), `url` (without password), `id` (unique in the process: what a
--   route built with this store keeps in its `state` field), `stats`.
-- @module imageroute.state

local core = require "imageroute.core"

local M = {}

local function now() return core.now() end

local function new_stats() return {calls = 0, seconds = 0, max_seconds = 0, over_5ms = 0, errors = 0} end

-- every store by its id (a route keeps the id of its store: route fields are copied, stores are not)
local by_id, next_id = {}, 0
local function register(store, base)
  next_id = next_id + 1
  store.id = ("%s#%d"):format(base, next_id)
  by_id[store.id] = store
  return store
end

-- ---------------------------------------------------------------------------------------------
-- memory

local Memory = {}
Memory.__index = Memory
Memory.__name = "imageroute.MemoryStore"
function Memory.__tostring() return "imageroute.state.memory()" end

--- A store in this Lua state.
-- @treturn table store (see the interface above)
function M.memory()
  return register(setmetatable({kind = "memory", url = "memory", windows = {}, pauses = {}, slots = {},
    accounts = {}, next_lease = 0, stats = new_stats()}, Memory), "memory")
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
  return true
end

function Memory:account(account)
  local a = acct(self, account)
  return {spent = a.spent, reserved = a.reserved}
end

function Memory:reset(account)
  self.accounts[account] = nil
  return true
end

-- ---------------------------------------------------------------------------------------------
-- redis

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
  -- KEYS: account. ARGV: reserved, charged
  settle = [[
local spent = tonumber(redis.call('HGET', KEYS[1], 'spent') or '0')
local res = tonumber(redis.call('HGET', KEYS[1], 'reserved') or '0')
res = res - tonumber(ARGV[1])
if res < 1e-12 then res = 0 end
redis.call('HSET', KEYS[1], 'reserved', tostring(res), 'spent', tostring(spent + tonumber(ARGV[2])))
return 1
]],
}

--- Parses a Redis URL: `redis://[user:password@]host[:port][/db]` (an IPv6 address in brackets).
-- @tparam string url
-- @treturn table|nil `{host =, port =, db =, user =, password =}` (port 6379, db 0 by default)
-- @treturn[2] string what is wrong
function M.parse_url(url)
  if type(url) ~= "string" then return nil, "a redis:// URL expected" end
  if url:match("^rediss://") then
    return nil, "rediss:// (Redis over TLS) is not supported: the hiredis this module uses has no TLS; " ..
      "use redis:// on a trusted network or a TLS tunnel to a local port"
  end
  local rest = url:match("^redis://(.*)$")
  if not rest then return nil, "a Redis URL starts with redis:// (got " .. url:sub(1, 40) .. ")" end
  if rest:find("[%s%c]") then return nil, "the Redis URL holds spaces or control characters" end
  local out = {port = 6379, db = 0}
  local auth, hostpart = rest:match("^(.*)@([^@]*)$")
  if not auth then hostpart = rest end
  if auth then
    local u, p = auth:match("^([^:]*):(.*)$")
    if u then out.user, out.password = u ~= "" and u or nil, p else out.password = auth end
    local function unesc(s) return s and (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end)) end
    out.user, out.password = unesc(out.user), unesc(out.password)
    if out.password == "" then out.password = nil end
  end
  local hp, path = hostpart:match("^([^/?#]*)(.*)$")
  if path ~= "" then
    local db = path:match("^/(%d*)$")
    if not db then return nil, "the Redis URL's path must be /DB (a database number), got " .. path:sub(1, 20) end
    if db ~= "" then out.db = tonumber(db) end
  end
  local host, port = hp:match("^%[([%x:%.]+)%](.*)$")
  if not host then host, port = hp:match("^([^:%[%]]*)(.*)$") end
  if not host or host == "" then return nil, "the Redis URL names no host" end
  if port ~= "" then
    local p = port:match("^:(%d+)$")
    if not p or tonumber(p) < 1 or tonumber(p) > 65535 then return nil, "the Redis URL's port must be 1-65535" end
    out.port = tonumber(p)
  end
  if out.db > 1e6 then return nil, "the Redis URL's database number is out of range" end
  out.host = host
  return out
end

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

--- A store in a Redis server, shared by every process that names it.
-- @tparam table config `url` (`redis://[user:password@]host[:port][/db]`, required), `connect_timeout`
--   (seconds, default 0.05), `timeout` (seconds per command, default 0.05), `reconnect_interval`
--   (seconds, default 1), `lease_ttl` (seconds, default 10: how long an in-flight slot outlives a
--   process that stopped renewing it), `prefix` (key prefix, default `"imageroute:"`)
-- @treturn table|nil store (see the interface above); no connection is made until the first call
-- @treturn[2] table a `validation` error (`field = "url"`: a bad URL, `rediss://`) or, when the C
--   module `imageroute.redis` is not installed, `kind = "state"`, `code = "redis_unavailable"`
function M.redis(config)
  if type(config) ~= "table" then error("state.redis: a table expected", 2) end
  local u, msg = M.parse_url(config.url)
  if not u then return nil, core.error("validation", "state.redis: " .. msg, {field = "url"}) end
  for k in pairs(config) do
    if k ~= "url" and k ~= "connect_timeout" and k ~= "timeout" and k ~= "reconnect_interval" and
      k ~= "lease_ttl" and k ~= "prefix" then
      return nil, core.error("validation", "state.redis: unknown field '" .. tostring(k) .. "'", {field = k})
    end
  end
  local function secs(k, def, hi)
    local v = config[k]
    if v == nil then return def end
    if type(v) ~= "number" or v ~= v or v <= 0 or v > hi then return nil end
    return v
  end
  local s = setmetatable({kind = "redis", host = u.host, port = u.port, db = u.db,
    connect_timeout = secs("connect_timeout", 0.05, 60), timeout = secs("timeout", 0.05, 60),
    reconnect_interval = secs("reconnect_interval", 1, 3600), lease_ttl = secs("lease_ttl", 10, 86400),
    prefix = config.prefix or "imageroute:", sha = {}, stats = new_stats()}, Redis)
  for _, k in ipairs{"connect_timeout", "timeout", "reconnect_interval", "lease_ttl"} do
    if not s[k] then
      return nil, core.error("validation", "state.redis: " .. k .. " must be a positive number of seconds", {field = k})
    end
  end
  if type(s.prefix) ~= "string" then return nil, core.error("validation", "state.redis: prefix must be a string") end
  -- the password lives apart from the printed fields
  s.secret = setmetatable({user = u.user, password = u.password}, {__tostring = function() return "(secret)" end})
  s.url = ("redis://%s%s:%d/%d"):format(u.user and (u.user .. "@") or "", u.host:find(":") and
    ("[" .. u.host .. "]") or u.host, u.port, u.db)
  local ok, driver = pcall(require, "imageroute.redis")
  if not ok then
    return nil, core.error("state", "state.redis: the C module imageroute.redis (hiredis) is not installed: " ..
      "build it with make (needs libhiredis-dev) or luarocks make rockspec/imageroute-redis-scm-1.rockspec",
      {code = "redis_unavailable"})
  end
  s.driver = driver
  return register(s, s.url)
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
  return true
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

-- ---------------------------------------------------------------------------------------------

--- True when v is a store.
function M.is_store(v)
  local mt = getmetatable(v)
  return mt == Memory or mt == Redis
end

--- The default store of this process (routes without `state`).
M.default = M.memory()

local by_url = {}

--- The store a `state` field names: a store as is (or its `id`, which a route keeps), `nil` or
-- `"memory"` the default store, a `redis://` URL the Redis store of that URL (one per URL in this
-- process).
-- @param v a store, a URL string or nil
-- @treturn table|nil store
-- @treturn[2] table error (`validation`, or `state` / `redis_unavailable`)
function M.resolve(v)
  if v == nil or v == "memory" then return M.default end
  if M.is_store(v) then return v end
  if type(v) == "string" and by_id[v] then return by_id[v] end
  if type(v) == "string" then
    if not by_url[v] then
      local s, err = M.redis{url = v}
      if not s then return nil, err end
      by_url[v] = s
    end
    return by_url[v]
  end
  return nil, core.error("validation", "a state store (imageroute.state.memory() / .redis{...}) or its URL expected",
    {field = "state"})
end

return M
