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
-- * `settle(account, reserved, charged)`: atomically moves a reservation out and `charged` (USD)
--   into spent; returns the account as settled, `{spent =, reserved =}` (USD), so that what is left
--   is known without another store call.
-- * `account(account)`: `{spent =, reserved =}` (USD). `reset(account)`: clears the account.
-- * `kind` (`"memory"` | `"redis"`), `url` (without password), `id` (unique in the process: what a
--   route built with this store keeps in its `state` field), `stats`.
-- @module imageroute.state

local core = require("imageroute.core")
local memory = require("imageroute.state.memory")
local redis = require("imageroute.state.redis")

local M = {}

local function new_stats() return {calls = 0, seconds = 0, max_seconds = 0, over_5ms = 0, errors = 0} end

-- every store by its id (a route keeps the id of its store: route fields are copied, stores are not)
local by_id, next_id = {}, 0
local function register(store, base)
  next_id = next_id + 1
  store.id = ("%s#%d"):format(base, next_id)
  by_id[store.id] = store
  return store
end

--- A store in this Lua state.
-- @treturn table store (see the interface above)
function M.memory()
  return register(memory.new(new_stats()), "memory")
end

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
  local s = redis.new({kind = "redis", host = u.host, port = u.port, db = u.db,
    connect_timeout = secs("connect_timeout", 0.05, 60), timeout = secs("timeout", 0.05, 60),
    reconnect_interval = secs("reconnect_interval", 1, 3600), lease_ttl = secs("lease_ttl", 10, 86400),
    prefix = config.prefix or "imageroute:", sha = {}, stats = new_stats()})
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
-- ---------------------------------------------------------------------------------------------

--- True when v is a store.
function M.is_store(v)
  local mt = getmetatable(v)
  return mt == memory.Store or mt == redis.Store
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
