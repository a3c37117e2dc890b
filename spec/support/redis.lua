--- spec/support/redis.lua: a real redis-server for the specs, on a free loopback port.
--
--     local redis = require("support.redis")
--     local r = redis.start()          -- redis-server --port N --bind 127.0.0.1 --save '' --appendonly no
--     r.url                            -- "redis://127.0.0.1:N/0"
--     r:call("DBSIZE")                 -- a command from the spec (through imageroute.redis)
--     r:stop()                         -- by its pid
--
-- `redis.for_block()` gives a block its server, `redis.describe(name, fn)` is `describe` when one can
-- be started. `redis.available()` says whether redis-server and the C module imageroute.redis are there (the
-- specs that need them are pending otherwise, saying why). The server also stops by itself when
-- the process that started it is gone, so a spec that dies before `stop` leaves nothing behind.
-- @module support.redis

local socket = require("socket")

local M = {}

local function process_gone(pid)
  local f = io.open("/proc/" .. pid .. "/stat", "rb")
  if not f then return true end
  local stat = f:read("a")
  f:close()
  local st = stat:match("^%d+ %b() (%a)")
  return st == "Z" or st == "X"
end
M.process_gone = process_gone

local function own_pid()
  local f = io.open("/proc/self/stat", "rb")
  local stat = f and f:read("a")
  if f then f:close() end
  return stat and tonumber(stat:match("^(%d+)"))
end

--- A loopback port nothing listens on (just now).
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

--- Whether redis-server and imageroute.redis are installed; false and why otherwise.
function M.available()
  if not os.execute("command -v redis-server >/dev/null 2>&1") then return false, "redis-server is not installed" end
  local ok = pcall(require, "imageroute.redis")
  if not ok then return false, "the C module imageroute.redis (hiredis) is not built" end
  return true
end

local Redis = {}
Redis.__index = Redis

--- Starts redis-server on a free loopback port and waits (bounded) until it answers PING.
-- @tparam[opt] table opts `port` (default a free one), `timeout` (s, default 5)
function M.start(opts)
  opts = opts or {}
  local driver = require("imageroute.redis")
  for _ = 1, 5 do
    local port = opts.port or M.free_port()
    local log = os.tmpname()
    local cmd = ("redis-server --port %d --bind 127.0.0.1 --save '' --appendonly no --daemonize no " ..
      "--logfile '' </dev/null >%s 2>&1 & echo $!"):format(port, log)
    local p = assert(io.popen(cmd, "r"))
    local pid = tonumber(p:read("l"))
    p:close()
    assert(pid, "could not start redis-server")
    local owner = own_pid()
    if owner then -- stops it when the spec process is gone
      os.execute(("(while kill -0 %d 2>/dev/null && kill -0 %d 2>/dev/null; do sleep 1; done; kill %d 2>/dev/null) " ..
        ">/dev/null 2>&1 &"):format(owner, pid, pid))
    end
    local deadline = socket.gettime() + (opts.timeout or 5)
    while not process_gone(pid) and socket.gettime() < deadline do
      local c = driver.connect("127.0.0.1", port, 0.2, 0.2)
      if c then
        local ok, v = c:call("PING")
        if ok and v == "PONG" then
          local self = setmetatable({pid = pid, port = port, conn = c, log = log,
            url = ("redis://127.0.0.1:%d/0"):format(port)}, Redis)
          return self
        end
        c:close()
      end
      socket.sleep(0.02)
    end
    os.execute("kill " .. pid .. " 2>/dev/null")
    os.remove(log)
  end
  error("redis-server did not start")
end

--- `describe` when redis-server and imageroute.redis are here (see `available`), else a pending
-- block that says why.
-- @tparam string name
-- @tparam function fn the block
function M.describe(name, fn)
  local busted = require("busted")
  local ok, why = M.available()
  if ok then return busted.describe(name, fn) end
  busted.pending(name .. " (" .. why .. ")")
end

--- One redis-server for the enclosing `describe` block: started in the block's setup, stopped in
-- its teardown.
-- @tparam[opt] table opts the options of `start`
-- @return the server object (empty until the setup has run)
function M.for_block(opts)
  local busted = require("busted")
  local r = setmetatable({}, Redis)
  busted.setup(function()
    for k, v in pairs(M.start(opts)) do r[k] = v end
  end)
  busted.teardown(function() if r.pid then r:stop() end end)
  return r
end

--- One command from the spec: returns the value, raises on an error.
function Redis:call(...)
  local ok, v, kind = self.conn:call(...)
  if not ok then error(("redis %s: %s (%s)"):format(tostring((...)), tostring(v), tostring(kind))) end
  return v
end

--- Stops the server (SIGTERM, then SIGKILL after 5 s) by its pid. Idempotent.
function Redis:stop()
  if self.stopped then return end
  self.stopped = true
  self.conn:close()
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while not process_gone(self.pid) do
    if socket.gettime() > deadline then os.execute("kill -9 " .. self.pid .. " 2>/dev/null"); break end
    socket.sleep(0.01)
  end
  os.remove(self.log)
end

return M
