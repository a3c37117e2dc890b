--- imageroute.sys: small helpers over files, the shell and /proc, shared by the command line, the
-- local server's process helper, the specs and the benchmarks. Plain Lua (no luasocket, no core).
-- @module imageroute.sys

local tostring, tonumber = tostring, tonumber

local M = {}

--- Quote a word for /bin/sh (single quotes).
-- @tparam string s
-- @treturn string
function M.shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- The bytes of a file, or nil when it cannot be read.
-- @tparam string path
-- @treturn string|nil
function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end
local read_file = M.read_file

--- Write bytes to a file (replacing it); raises when it cannot be opened.
-- @tparam string path
-- @tparam string s
function M.write_file(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

--- The pid of this process (from /proc/self/stat), or nil.
-- @treturn integer|nil
function M.own_pid()
  local stat = read_file("/proc/self/stat")
  return stat and tonumber(stat:match("^(%d+)"))
end

--- True when process `pid` is gone (no /proc entry, or a zombie).
-- @tparam integer pid
-- @treturn boolean
function M.process_gone(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return true end
  local st = stat:match("^%d+ %b() (%a)")
  return st == "Z" or st == "X"
end

--- How many file descriptors this process has open (from /proc/self/fd), or nil.
-- @treturn integer|nil
function M.open_fds()
  local p = io.popen("ls /proc/" .. (M.own_pid() or "self") .. "/fd | wc -l")
  if not p then return nil end
  local n = tonumber(p:read("a"))
  p:close()
  return n
end

return M
