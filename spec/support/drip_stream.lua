--- spec/support/drip_stream.lua: a one-connection event-stream server on loopback that shows
-- whether its client hung up, for the specs of transfers stopped mid-stream (a callback that
-- raises, a cancel).
--
--     local drip = require("support.drip_stream")
--     local d = drip.start{head = "event: ...\ndata: ...\n\n", seconds = 8}
--     d.base_url                      -- "http://127.0.0.1:PORT/v1"
--     ... -- a streamed call against d.base_url
--     local how, after = d:outcome(3) -- "dropped", seconds after the head was sent | "finished" | nil
--
-- The child (lua5.4 running this file) accepts one connection, reads the request, answers 200
-- text/event-stream with `head` (the first events), then writes an SSE comment line every 50 ms
-- for `seconds` seconds. It watches the socket between writes: when the client closes it (or a
-- write fails) it records "dropped <seconds since the head>" and exits; if it gets to the end it
-- records "finished". Only 127.0.0.1, port chosen by the system.
-- @module support.drip_stream

local socket = require("socket")
local process = require("imageroute.localserver.process")
local sys = require("imageroute.sys")

local M = {}

local read_file, write_file = sys.read_file, sys.write_file

--- The child's side: serve one connection (run as `lua5.4 drip_stream.lua CONFIG`).
local function serve(config_path)
  local cfg = dofile(config_path)
  local server = assert(socket.bind("127.0.0.1", 0))
  local _, port = server:getsockname()
  write_file(cfg.port_file .. ".tmp", tostring(port))
  os.rename(cfg.port_file .. ".tmp", cfg.port_file)
  server:settimeout(10)
  local c = server:accept()
  if not c then return end
  c:settimeout(5)
  local len = 0
  repeat -- the request head, then its body (Content-Length)
    local line = c:receive("*l")
    if not line then return end
    local n = line:lower():match("^content%-length:%s*(%d+)")
    if n then len = tonumber(n) end
  until line == ""
  if len > 0 then c:receive(len) end
  c:send("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nx-request-id: req_drip\r\n" ..
    "connection: close\r\n\r\n" .. cfg.head)
  local t0 = socket.gettime()
  c:settimeout(0)
  while socket.gettime() - t0 < cfg.seconds do
    socket.sleep(0.05)
    local ok = c:send(": keep-alive\n")
    local _, err = c:receive(1)
    if not ok or err == "closed" then
      write_file(cfg.result_file, ("dropped %.3f"):format(socket.gettime() - t0))
      c:close()
      return
    end
  end
  write_file(cfg.result_file, "finished")
  c:close()
end

local Drip = {}
Drip.__index = Drip

--- Starts the child and waits (bounded) for its port.
-- @tparam table opts `head` (string: the events sent first), `seconds` (how long to drip after them)
function M.start(opts)
  local base = os.tmpname()
  local self = setmetatable({config = base, port_file = base .. ".port", result_file = base .. ".result"}, Drip)
  write_file(base, ("return {head = %q, seconds = %s, port_file = %q, result_file = %q}"):format(
    opts.head, tostring(opts.seconds or 8), self.port_file, self.result_file))
  local src = debug.getinfo(1, "S").source:sub(2)
  self.pid = assert(process.spawn({"lua5.4", src, base}), "drip_stream did not start")
  self.port = assert(process.wait_port(self.pid, self.port_file, 5), "drip_stream did not start")
  self.base_url = "http://127.0.0.1:" .. self.port .. "/v1"
  return self
end

--- Waits at most `timeout` seconds for the child's verdict.
-- @treturn string|nil "dropped" | "finished" | nil (no verdict in time)
-- @treturn number|nil for "dropped": seconds between the head and the hang-up
function Drip:outcome(timeout)
  local deadline = socket.gettime() + (timeout or 3)
  repeat
    local r = read_file(self.result_file)
    if r then
      local how, after = r:match("^(%a+) ?([%d%.]*)")
      return how, tonumber(after)
    end
    socket.sleep(0.02)
  until socket.gettime() > deadline
  return nil
end

--- Stops the child (if still running) and removes its files.
function Drip:stop()
  if self.pid then process.stop(self.pid) end
  for _, f in ipairs{self.config, self.port_file, self.result_file} do os.remove(f) end
end

if arg and arg[0] and arg[0]:match("drip_stream%.lua$") and arg[1] then
  serve(arg[1])
else
  return M
end
