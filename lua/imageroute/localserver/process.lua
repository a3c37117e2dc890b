--- imageroute.localserver.process: the bundled local server (or another small loopback server) in a
-- process of its own, for the command line (`imageroute --local`), the specs and the benchmarks.
--
--    local process = require("imageroute.localserver.process")
--    local s = assert(process.start())   -- a free loopback port; s.port, s.base_url ("http://127.0.0.1:P/v1")
--    ...
--    s:stop()                            -- SIGTERM, a bounded wait, SIGKILL if needed
--
-- The server is told this process's pid (`owner_pid`), so it exits by itself when the process that
-- started it is gone, even if `stop` is never called. The port comes back through a port file the
-- server writes (atomically) once it listens, so when `start` returns the server accepts
-- connections. Linux only (/proc).
-- @module imageroute.localserver.process

local socket = require("socket")
local sys = require("imageroute.sys")

local format, concat = string.format, table.concat
local type, tostring, tonumber, ipairs, setmetatable, rawget = type, tostring, tonumber, ipairs, setmetatable, rawget

local M = {}

--- True when process `pid` is gone (no /proc entry, or a zombie): `imageroute.sys.process_gone`.
M.gone = sys.process_gone
local gone, read_file, shell_quote, own_pid = sys.process_gone, sys.read_file, sys.shell_quote, sys.own_pid

--- The Lua interpreter running this process (the lowest `arg` index), else "lua5.4".
-- @treturn string
function M.interpreter()
  local a = rawget(_G, "arg")
  local lua
  if type(a) == "table" then
    local i = -1
    while a[i] ~= nil do lua = a[i]; i = i - 1 end
  end
  if type(lua) ~= "string" or not lua:match("lua[%d.]*$") then lua = "lua5.4" end
  return lua
end

--- Run a command in the background, standard input from /dev/null.
-- @tparam {string,...} words the command and its arguments (each quoted for the shell here)
-- @tparam[opt] string output the file that receives standard output and error (default /dev/null)
-- @treturn integer|nil the pid, or nil when the shell could not start it
function M.spawn(words, output)
  local quoted = {}
  for k, w in ipairs(words) do quoted[k] = shell_quote(w) end
  local cmd = concat(quoted, " ") .. " </dev/null >" .. shell_quote(output or "/dev/null") .. " 2>&1 & echo $!"
  local p = io.popen(cmd, "r")
  local pid = p and tonumber(p:read("l"))
  if p then p:close() end
  return pid
end

--- Wait (bounded) until a started server has written its port into a file.
-- @tparam integer pid the server's process (waiting stops when it is gone)
-- @tparam string file where the port appears
-- @tparam[opt] number timeout seconds (default 10)
-- @tparam[opt] string pattern Lua pattern capturing the port in the file's text (default "^(%d+)")
-- @treturn[1] integer the port
-- @treturn[2] nil
-- @treturn[2] string "exited" (the process is gone) or "timeout"
function M.wait_port(pid, file, timeout, pattern)
  local deadline = socket.gettime() + (timeout or 10)
  while true do
    local text = read_file(file)
    local port = text and tonumber(text:match(pattern or "^(%d+)"))
    if port then return port end
    if gone(pid) then return nil, "exited" end
    if socket.gettime() > deadline then return nil, "timeout" end
    socket.sleep(0.02)
  end
end

--- Stop a process by pid: SIGTERM, wait (bounded) until it is gone, SIGKILL if it is still there.
-- @tparam integer pid
-- @tparam[opt] number grace seconds to wait after SIGTERM (default 5)
function M.stop(pid, grace)
  os.execute("kill " .. pid .. " 2>/dev/null")
  local deadline = socket.gettime() + (grace or 5)
  while not gone(pid) do
    if socket.gettime() > deadline then
      os.execute("kill -9 " .. pid .. " 2>/dev/null")
      break
    end
    socket.sleep(0.01)
  end
end

--- A started local server: `pid`, `port`, `host`, `root_url` ("http://HOST:PORT"), `base_url`
-- (root_url .. "/v1"), `log_file` (its standard output and error).
-- @type Server
local Server = {}
Server.__index = Server
M.Server = Server

--- Stop the server (see `stop`) and remove its log file. Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  M.stop(self.pid)
  os.remove(self.log_file)
end

--- The server's standard output and error so far ("" with quiet).
-- @treturn string
function Server:log()
  return read_file(self.log_file) or ""
end

--- Start the bundled local server in a process of its own on a free port and wait until it listens.
-- @tparam[opt] table opts
--   `host` (default "127.0.0.1"), `timeout` (seconds, default 10), `quiet` (default true: no log),
--   `lua` (the interpreter; default the one running this process, see `interpreter`),
--   `script` (run this file, e.g. `bin/imageroute-localserver`, with its command-line options;
--   default: `lua -e` requiring `imageroute.localserver` with this process's package.path and
--   package.cpath)
-- @treturn[1] Server
-- @treturn[2] nil
-- @treturn[2] string "spawn" (the shell could not start it), "exited" or "timeout"
-- @treturn[2] string the server's output ("" when it wrote nothing)
function M.start(opts)
  opts = opts or {}
  local host = opts.host or "127.0.0.1"
  local quiet = opts.quiet ~= false
  local port_file = os.tmpname()
  local log_file = os.tmpname()
  os.remove(port_file)
  local owner = own_pid()
  local words
  if opts.script then
    words = {opts.lua or M.interpreter(), opts.script, "--host", host, "--port", "0", "--port-file", port_file}
    if owner then words[#words + 1] = "--owner-pid"; words[#words + 1] = tostring(owner) end
    if quiet then words[#words + 1] = "--quiet" end
  else
    local code = format("package.path = %q; package.cpath = %q; require('imageroute.localserver').serve{host = "
      .. "%q, port = 0, port_file = %q, owner_pid = %s, quiet = %s}", package.path, package.cpath, host,
      port_file, owner and tostring(owner) or "nil", tostring(quiet))
    words = {opts.lua or M.interpreter(), "-e", code}
  end
  local pid = M.spawn(words, log_file)
  if not pid then
    os.remove(log_file)
    return nil, "spawn", ""
  end
  local self = setmetatable({pid = pid, host = host, log_file = log_file}, Server)
  local port, why = M.wait_port(pid, port_file, opts.timeout)
  os.remove(port_file)
  if not port then
    local log = self:log()
    self:stop()
    return nil, why, log
  end
  self.port = port
  self.root_url = "http://" .. host .. ":" .. port
  self.base_url = self.root_url .. "/v1"
  return self
end

return M
