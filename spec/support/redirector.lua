--- spec/support/redirector.lua: a tiny HTTP server that only redirects (for download specs).
--
--     lua5.4 spec/support/redirector.lua PORT_FILE [SECONDS]
--
-- Listens on 127.0.0.1 (any port, written to PORT_FILE). `GET /r/<percent-encoded URL>` answers
-- 302 to that URL; `GET /loop` answers 302 to `/loop` (a redirect loop). Every request is
-- answered and the connection closed. Exits after SECONDS (default 120).

local socket = require("socket")

local port_file, seconds = arg[1], tonumber(arg[2]) or 120
local server = assert(socket.bind("127.0.0.1", 0))
local _, port = server:getsockname()
local f = assert(io.open(port_file .. ".tmp", "w"))
f:write(port, "\n")
f:close()
assert(os.rename(port_file .. ".tmp", port_file))
server:settimeout(0.5)
local stop = socket.gettime() + seconds

local function unescape(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

while socket.gettime() < stop do
  local c = server:accept()
  if c then
    c:settimeout(2)
    local line = c:receive("*l") or ""
    repeat local h = c:receive("*l") until not h or h == ""
    local path = line:match("^GET (%S+)") or "/"
    local location = path == "/loop" and "/loop" or path:match("^/r/(.*)$")
    if location then
      c:send("HTTP/1.1 302 Found\r\nLocation: " .. unescape(location)
        .. "\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    else
      c:send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    end
    c:close()
  end
end
