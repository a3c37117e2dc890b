--- spec/support/server.lua: start and drive the bundled local server from busted specs.
--
--     local server = require("support.server")
--     local s = server.start()            -- lua5.4 bin/imageroute-localserver --port 0 ...
--     s.base_url                          -- "http://127.0.0.1:PORT/v1"
--     s:script({{status = 500}, {}})      -- queue behaviours, one per /v1 request
--     ... -- run the client against s.base_url
--     s:requests()                        -- what the server received
--     s:stop()                            -- and s:log(): from imageroute.localserver.process
--
-- The server exits by itself when the process that started it is gone (--owner-pid), so a spec
-- that dies before `stop` leaves nothing behind.
-- @module support.server

local http = require("socket.http")
local ltn12 = require("ltn12")
local cjson = require("cjson")
local process = require("imageroute.localserver.process")
local sys = require("imageroute.sys")

local json = cjson.new()

local M = {}

-- Repository root, from this file's location (<root>/spec/support/server.lua).
local function repo_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$")
  return dir or "."
end

-- The server object: process.Server (pid, port, base_url, stop, log) plus the methods below.
local Server = setmetatable({}, {__index = process.Server})
Server.__index = Server

--- Start a server in the background and wait (bounded) until it listens.
-- @tparam[opt] table opts `timeout` (s, default 5), `quiet` (default true), `host` (default
--   "127.0.0.1"), `lua` (interpreter, default "lua5.4")
-- @tparam[opt] table into the table to make the server object (default a new one)
-- @return server object; raises if the server did not come up in time
function M.start(opts, into)
  opts = opts or {}
  local started, why, log = process.start{script = repo_root() .. "/bin/imageroute-localserver",
    lua = opts.lua or "lua5.4", host = opts.host, quiet = opts.quiet, timeout = opts.timeout or 5}
  assert(why ~= "spawn", "could not start the local server")
  if not started then error("local server did not start: " .. (log ~= "" and log or "(no log)")) end
  local self = into or {}
  for k, v in pairs(started) do self[k] = v end
  setmetatable(self, Server)
  --- Absolute URL of `path` on this server ("/v1/images/generations" -> "http://127.0.0.1:P/v1/...").
  -- Works as `s.url(path)` and as `s:url(path)`.
  self.url = function(a, b)
    local path = (type(a) == "table") and b or a
    return self.root_url .. path
  end
  return self
end

--- One server for the enclosing `describe` block: started in the block's setup, reset before each
-- test, stopped in its teardown; with `dir`, also a scratch directory, removed in the teardown.
--
--     describe("...", function()
--       local s, dir = server.for_block{dir = true}   -- s is filled in when the block's setup runs
--
-- @tparam[opt] table opts the options of `start`, `dir` (true: make the scratch directory) and
--   `reset` (false: no reset before each test)
-- @return the server object (empty until the setup has run)
-- @treturn string|nil the scratch directory
function M.for_block(opts)
  opts = opts or {}
  local busted = require("busted")
  local s, dir = {}, nil
  if opts.dir then
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. sys.shell_quote(dir)))
  end
  busted.setup(function() M.start(opts, s) end)
  busted.teardown(function()
    if s.stop then s:stop() end
    if dir then os.execute("rm -rf " .. sys.shell_quote(dir)) end
  end)
  if opts.reset ~= false then busted.before_each(function() s:reset() end) end
  return s, dir
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

return M
