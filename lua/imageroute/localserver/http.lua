--- imageroute.localserver.http: HTTP/1.1 on the loop's sockets. A buffered connection (`new_conn`:
-- fill, read_exact, read_line, write, close, linger), reading a request head and body
-- (Content-Length or chunked, 100-continue), OpenAI-shaped JSON and error replies
-- (`json_response`, `error_response`), and writing a response: plain (optionally truncated or
-- dripped) or an event stream (chunked, paced).
-- @module imageroute.localserver.http

local socket = require("socket")
local J = require("imageroute.localserver.json")
local loop = require("imageroute.localserver.loop")

local concat, find, format, sub = table.concat, string.find, string.format, string.sub
local gettime = socket.gettime
local max, min = math.max, math.min
local type, pairs, ipairs, tostring, tonumber, setmetatable =
  type, pairs, ipairs, tostring, tonumber, setmetatable
local NULL, encode, timestamp, val, field, int, str = J.NULL, J.encode, J.timestamp, J.val, J.field, J.int, J.str
local wait, sleep = loop.wait, loop.sleep

local H = {}

local IO_IDLE = 120 -- seconds without progress before a connection is given up

-- ==============================================================================================
-- Connection I/O
-- ==============================================================================================

local Conn = {}
Conn.__index = Conn

local function new_conn(sock)
  return setmetatable({sock = sock, buf = "", eof = false, closed = false}, Conn)
end

-- Read more bytes into self.buf. Returns true, or nil, "closed"|"timeout"|err.
function Conn:fill()
  while true do
    if self.eof then return nil, "closed" end
    local data, err, partial = self.sock:receive(65536)
    local got = data or partial
    if got and #got > 0 then
      self.buf = self.buf .. got
      if err == "closed" then self.eof = true end
      return true
    end
    if err == "closed" then self.eof = true; return nil, "closed" end
    if err ~= "timeout" then return nil, err end
    if wait(self.sock, "r", gettime() + IO_IDLE) == "timeout" then return nil, "timeout" end
  end
end

-- Read exactly n bytes (from the buffer, then the socket). Returns the bytes or nil, err.
function Conn:read_exact(n)
  local parts, have = {}, 0
  if #self.buf > 0 then
    local take = sub(self.buf, 1, n)
    parts[1], have = take, #take
    self.buf = sub(self.buf, n + 1)
  end
  while have < n do
    if self.eof then return nil, "closed" end
    local data, err, partial = self.sock:receive(min(n - have, 1 << 20))
    local got = data or partial
    if got and #got > 0 then parts[#parts + 1] = got; have = have + #got end
    if not data then
      if err == "closed" then self.eof = true
      elseif err ~= "timeout" then return nil, err
      elseif have < n and wait(self.sock, "r", gettime() + IO_IDLE) == "timeout" then return nil, "timeout" end
    end
  end
  return concat(parts)
end

-- Read one line (without CRLF), at most `limit` bytes.
function Conn:read_line(limit)
  while true do
    local e = find(self.buf, "\n", 1, true)
    if e then
      local line = sub(self.buf, 1, e - 1)
      self.buf = sub(self.buf, e + 1)
      if sub(line, -1) == "\r" then line = sub(line, 1, -2) end
      return line
    end
    if #self.buf > limit then return nil, "line too long" end
    local ok, err = self:fill()
    if not ok then return nil, err end
  end
end

-- Write all of data. Returns true or nil, err.
function Conn:write(data)
  local i, n = 1, #data
  while i <= n do
    local last, err, partlast = self.sock:send(data, i)
    if last then
      i = last + 1
    else
      if err ~= "timeout" then return nil, err end
      i = partlast + 1
      if i <= n and wait(self.sock, "w", gettime() + IO_IDLE) == "timeout" then return nil, "timeout" end
    end
  end
  return true
end

function Conn:close()
  if not self.closed then
    self.closed = true
    self.sock:close()
  end
end

-- Half-close, drain what the client still sends (so closing does not reset the connection and
-- destroy the response in flight), then close.
function Conn:linger(seconds)
  if self.closed then return end
  self.sock:shutdown("send")
  local deadline = gettime() + (seconds or 2)
  local drained = 0
  while drained < (64 << 20) do
    local data, err, partial = self.sock:receive(65536)
    local got = data or partial
    if got then drained = drained + #got end
    if not data then
      if err ~= "timeout" then break end
      if wait(self.sock, "r", deadline) == "timeout" then break end
    end
  end
  self:close()
end

-- ==============================================================================================
-- HTTP
-- ==============================================================================================

local REASONS = {
  [100] = "Continue", [200] = "OK", [201] = "Created", [202] = "Accepted", [204] = "No Content",
  [301] = "Moved Permanently", [302] = "Found", [304] = "Not Modified",
  [400] = "Bad Request", [401] = "Unauthorized", [402] = "Payment Required", [403] = "Forbidden",
  [404] = "Not Found", [405] = "Method Not Allowed", [408] = "Request Timeout", [409] = "Conflict",
  [413] = "Payload Too Large", [415] = "Unsupported Media Type", [422] = "Unprocessable Entity",
  [429] = "Too Many Requests", [500] = "Internal Server Error", [502] = "Bad Gateway",
  [503] = "Service Unavailable", [504] = "Gateway Timeout",
}

local MAX_HEAD = 64 * 1024
local MAX_BODY = 64 * 1024 * 1024

local function bad_request(msg) return {bad = true, message = msg} end

-- Read and parse one request. Returns req, or nil, err ("closed"/"timeout" when nothing usable
-- arrived), or a table {bad = true, message = ...} for a malformed request.
local function read_head(conn)
  -- wait for the end of the head
  local init = 1
  local head_end
  while true do
    local s, e = find(conn.buf, "\r?\n\r?\n", init)
    if s then
      if e > MAX_HEAD then return bad_request("request head too large") end
      head_end = e
      break
    end
    if #conn.buf > MAX_HEAD then return bad_request("request head too large") end
    init = max(1, #conn.buf - 3)
    local ok, err = conn:fill()
    if not ok then
      if #conn.buf > 0 and err == "closed" then return bad_request("incomplete request head") end
      return nil, err
    end
  end
  local head = sub(conn.buf, 1, head_end)
  conn.buf = sub(conn.buf, head_end + 1)
  local lines = {}
  for line in head:gmatch("([^\n]*)\n") do
    if sub(line, -1) == "\r" then line = sub(line, 1, -2) end
    lines[#lines + 1] = line
  end
  local method, target, version = (lines[1] or ""):match("^(%u+) (%S+) HTTP/(%d%.%d)$")
  if not method then return bad_request("malformed request line") end
  local headers = {}
  for k = 2, #lines do
    local line = lines[k]
    if line ~= "" then
      local name, value = line:match("^([^:%s]+):%s*(.-)%s*$")
      if not name then return bad_request("malformed header line") end
      name = name:lower()
      if headers[name] then headers[name] = headers[name] .. ", " .. value else headers[name] = value end
    end
  end
  local path, query = target:match("^([^?]*)%??(.*)$")
  return {
    method = method, target = target, path = path, query = query ~= "" and query or nil,
    version = version, headers = headers,
  }
end

-- Read the body of req (Content-Length or chunked). Returns body or nil, err (bad = true if malformed).
local function read_body(conn, req)
  local h = req.headers
  if h.expect and h.expect:lower() == "100-continue" then
    local ok, err = conn:write("HTTP/1.1 100 Continue\r\n\r\n")
    if not ok then return nil, err end
  end
  local te = h["transfer-encoding"]
  if te and te:lower():find("chunked", 1, true) then
    local parts, total = {}, 0
    while true do
      local line, err = conn:read_line(4096)
      if not line then return nil, err end
      local size = line:match("^%s*(%x+)")
      if not size then return nil, "malformed chunk size", true end
      size = tonumber(size, 16)
      if total + size > MAX_BODY then return nil, "request body too large", true end
      if size == 0 then
        repeat -- trailers
          line, err = conn:read_line(MAX_HEAD)
          if not line then return nil, err end
        until line == ""
        break
      end
      local data
      data, err = conn:read_exact(size)
      if not data then return nil, err end
      parts[#parts + 1] = data
      total = total + size
      line, err = conn:read_line(16)
      if not line then return nil, err end
      if line ~= "" then return nil, "malformed chunk", true end
    end
    return concat(parts)
  end
  local cl = h["content-length"]
  if cl then
    if not cl:match("^%d+$") then return nil, "invalid content-length", true end
    local n = tonumber(cl)
    if n > MAX_BODY then return nil, "request body too large", true end
    if n == 0 then return "" end
    return conn:read_exact(n)
  end
  return ""
end

local function error_body(message, etype, param, code)
  return encode({error = {message = message, type = etype or "invalid_request_error",
    param = param or NULL, code = code or NULL}})
end

local function default_error_type(status)
  if status == 401 then return "authentication_error" end
  if status == 403 then return "permission_error" end
  if status == 404 then return "not_found_error" end
  if status == 429 then return "rate_limit_error" end
  if status >= 500 then return "server_error" end
  return "invalid_request_error"
end

local function json_response(status, tbl, blobs)
  return {status = status, body = encode(tbl, blobs), content_type = "application/json"}
end

local function error_response(status, message, param, code, etype)
  return {status = status, body = error_body(message, etype or default_error_type(status), param, code),
    content_type = "application/json"}
end

-- Build the head of a response.
local function head_text(status, fields)
  local out = {format("HTTP/1.1 %d %s\r\n", status, REASONS[status] or "Status")}
  for _, f in ipairs(fields) do out[#out + 1] = f[1] .. ": " .. f[2] .. "\r\n" end
  out[#out + 1] = "\r\n"
  return concat(out)
end

-- Response fields in order, with later extra headers replacing earlier ones by name.
local function header_fields(base, extra)
  local fields, index = {}, {}
  local function put(name, value)
    local lname = name:lower()
    value = str(value) or (type(value) == "boolean" and tostring(value)) or nil
    if value == nil then return end
    value = value:gsub("[\r\n]", " ")
    if index[lname] then fields[index[lname]][2] = value
    else fields[#fields + 1] = {lname, value}; index[lname] = #fields end
  end
  for _, f in ipairs(base) do put(f[1], f[2]) end
  if type(extra) == "table" then
    local names = {}
    for k in pairs(extra) do if type(k) == "string" then names[#names + 1] = k end end
    table.sort(names)
    for _, k in ipairs(names) do put(k, val(extra[k])) end
  end
  return fields
end

local function base_fields(ctx, content_type, length)
  local fields = {{"content-type", content_type}}
  if length then fields[#fields + 1] = {"content-length", tostring(length)} end
  fields[#fields + 1] = {"connection", "close"}
  fields[#fields + 1] = {"x-request-id", ctx.request_id}
  fields[#fields + 1] = {"server", "imageroute-localserver"}
  return fields
end

-- Send a plain response. With truncate, announce the full length and send half the body.
-- With drip = {bytes = n, interval = s}, send the body n bytes at a time, s seconds apart.
local function send_plain(conn, ctx, resp, extra, truncate, drip)
  local body = resp.body or ""
  local fields = header_fields(base_fields(ctx, resp.content_type or "application/json", #body), extra)
  local ok, err = conn:write(head_text(resp.status, fields))
  if not ok then return nil, err end
  if truncate then
    return conn:write(sub(body, 1, #body // 2))
  end
  if ctx.method == "HEAD" then return true end
  if type(drip) == "table" then
    local n, interval = math.max(1, int(field(drip, "bytes")) or 1), tonumber(field(drip, "interval")) or 0.1
    for i = 1, #body, n do
      if i > 1 then sleep(interval) end
      ok, err = conn:write(sub(body, i, i + n - 1))
      if not ok then return nil, err end
    end
    return true
  end
  return conn:write(body)
end

-- Send an event stream (chunked). events: {name|false, table|string}; pace seconds between them.
local function send_events(conn, ctx, resp, extra, truncate, pace)
  local blobs = resp.blobs or {}
  local fields = header_fields(base_fields(ctx, "text/event-stream; charset=utf-8"), extra)
  fields[#fields + 1] = {"transfer-encoding", "chunked"}
  fields[#fields + 1] = {"cache-control", "no-cache"}
  local ok, err = conn:write(head_text(resp.status, fields))
  if not ok then return nil, err end
  local events = resp.events
  local count = truncate and (#events // 2) or #events
  for k = 1, count do
    if k > 1 then sleep(pace) end
    local name, data = events[k][1], events[k][2]
    if type(data) == "table" then
      local mark = #blobs
      data.server_time = timestamp(blobs, gettime())
      data = encode(data, blobs)
      blobs[mark + 1] = nil
    end
    local frame = (name and ("event: " .. name .. "\n") or "") .. "data: " .. data .. "\n\n"
    ok, err = conn:write(format("%x\r\n", #frame) .. frame .. "\r\n")
    if not ok then return nil, err end
  end
  if truncate then return true end
  return conn:write("0\r\n\r\n")
end

H.new_conn, H.read_head, H.read_body = new_conn, read_head, read_body
H.error_body, H.default_error_type, H.json_response, H.error_response =
  error_body, default_error_type, json_response, error_response
H.head_text, H.header_fields, H.base_fields = head_text, header_fields, base_fields
H.send_plain, H.send_events = send_plain, send_events
H.MAX_HEAD, H.MAX_BODY = MAX_HEAD, MAX_BODY
return H
