--- spec/support/server.lua: start and drive the bundled local server from busted specs.
--
--     local server = require "support.server"
--     local s = server.start()            -- lua5.4 bin/imageroute-localserver --port 0 ...
--     s.base_url                          -- "http://127.0.0.1:PORT/v1"
--     s:script({{status = 500}, {}})      -- queue behaviours, one per /v1 request
--     ... -- run the client against s.base_url
--     s:requests()                        -- what the server received
--     s:stop()
--
-- The server exits by itself when the process that started it is gone (--owner-pid), so a spec
-- that dies before `stop` leaves nothing behind.
-- @module support.server

local socket = require "socket"
local http = require "socket.http"
local ltn12 = require "ltn12"
local cjson = require "cjson"

local json = cjson.new()

local M = {}

-- Repository root, from this file's location (<root>/spec/support/server.lua).
local function repo_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$")
  return dir or "."
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function own_pid()
  local stat = read_file("/proc/self/stat")
  return stat and tonumber(stat:match("^(%d+)"))
end

local function process_gone(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return true end
  local st = stat:match("^%d+ %b() (%a)")
  return st == "Z" or st == "X"
end

local Server = {}
Server.__index = Server

--- Start a server in the background and wait (bounded) until it listens.
-- @tparam[opt] table opts `timeout` (s, default 5), `quiet` (default true), `host` (default
--   "127.0.0.1"), `lua` (interpreter, default "lua5.4")
-- @return server object; raises if the server did not come up in time
function M.start(opts)
  opts = opts or {}
  local root = repo_root()
  local host = opts.host or "127.0.0.1"
  local port_file = os.tmpname()
  local log_file = os.tmpname()
  os.remove(port_file)
  local args = {opts.lua or "lua5.4", root .. "/bin/imageroute-localserver", "--host", host, "--port", "0",
    "--port-file", port_file}
  local owner = own_pid()
  if owner then args[#args + 1] = "--owner-pid"; args[#args + 1] = tostring(owner) end
  if opts.quiet ~= false then args[#args + 1] = "--quiet" end
  for k, a in ipairs(args) do args[k] = shell_quote(a) end
  local cmd = table.concat(args, " ") .. " </dev/null >" .. shell_quote(log_file) .. " 2>&1 & echo $!"
  local p = assert(io.popen(cmd, "r"))
  local pid = tonumber(p:read("l"))
  p:close()
  assert(pid, "could not start the local server")
  local deadline = socket.gettime() + (opts.timeout or 5)
  local port
  repeat
    local text = read_file(port_file)
    port = text and tonumber(text:match("^(%d+)"))
    if not port then
      if process_gone(pid) or socket.gettime() > deadline then
        os.execute("kill " .. pid .. " 2>/dev/null")
        error("local server did not start: " .. (read_file(log_file) or "(no log)"))
      end
      socket.sleep(0.02)
    end
  until port
  os.remove(port_file)
  local self = setmetatable({pid = pid, port = port, host = host, log_file = log_file}, Server)
  self.root_url = "http://" .. host .. ":" .. port
  self.base_url = self.root_url .. "/v1"
  --- Absolute URL of `path` on this server ("/v1/images/generations" -> "http://127.0.0.1:P/v1/...").
  -- Works as `s.url(path)` and as `s:url(path)`.
  self.url = function(a, b)
    local path = (type(a) == "table") and b or a
    return self.root_url .. path
  end
  return self
end

--- One HTTP request to the server (luasocket; the connection is closed after it).
-- @tparam string method
-- @tparam string path e.g. "/__stats" or "/v1/images/generations"
-- @tparam[opt] string|table body a table is sent as JSON
-- @tparam[opt] table headers
-- @treturn integer|nil status (nil on a transport error)
-- @treturn string body (or the error message)
-- @treturn table response headers (lowercased names)
function Server:request(method, path, body, headers)
  local hdrs = {}
  for k, v in pairs(headers or {}) do hdrs[k:lower()] = v end
  if type(body) == "table" then
    body = json.encode(body)
    hdrs["content-type"] = hdrs["content-type"] or "application/json"
  end
  if body then hdrs["content-length"] = tostring(#body) end
  local out = {}
  local ok, status, rheaders = http.request({
    url = self.url(path), method = method, headers = hdrs,
    source = body and ltn12.source.string(body) or nil,
    sink = ltn12.sink.table(out),
  })
  if not ok then return nil, status end
  return status, table.concat(out), rheaders
end

local function control(self, method, path, body)
  local status, text = self:request(method, path, body)
  if status ~= 200 then
    error(string.format("%s %s failed: %s %s", method, path, tostring(status), tostring(text)), 3)
  end
  return json.decode(text)
end

--- Recorded /v1 requests (decoded JSON list, arrival order). See the server doc for the fields.
-- @tparam[opt] table opts `data = false` omits the parts' data_b64 (faster with big uploads)
function Server:requests(opts)
  local path = "/__requests"
  if opts and opts.data == false then path = path .. "?data=0" end
  local list = control(self, "GET", path)
  for _, r in ipairs(list) do
    -- cjson.null -> nil for the fields tests look at
    for _, k in ipairs({"json", "parts", "query", "body", "t_end", "status"}) do
      if r[k] == json.null then r[k] = nil end
    end
  end
  return list
end

--- Clear the request log, the behaviour queue and the counters.
function Server:reset()
  return control(self, "POST", "/__reset", "{}")
end

--- Append behaviours (a list of tables) to the queue; each /v1 request takes the next one.
-- @treturn table {queued = n}
function Server:script(list)
  local parts = {}
  for k, b in ipairs(list or {}) do
    parts[k] = next(b) == nil and "{}" or json.encode(b)
  end
  return control(self, "POST", "/__script", '{"queue":[' .. table.concat(parts, ",") .. "]}")
end

--- Counters: {requests, in_flight, max_in_flight, queued}.
function Server:stats()
  return control(self, "GET", "/__stats")
end

--- Server log (stderr/stdout of the process); empty with quiet.
function Server:log()
  return read_file(self.log_file) or ""
end

--- Stop the server: SIGTERM, wait (bounded) until it is gone, SIGKILL if needed. Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while not process_gone(self.pid) do
    if socket.gettime() > deadline then
      os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
      break
    end
    socket.sleep(0.01)
  end
  os.remove(self.log_file)
end

return M
