--- imageroute.localserver: a small OpenAI-compatible image API server for the demo, the tests and
-- the benchmarks. One thread, non-blocking luasocket sockets, `socket.select` and one coroutine per
-- connection, so slow (`delay`) or large requests never hold up the others.
--
-- Endpoints under `/v1`: `POST images/generations` (JSON), `POST images/edits` (multipart or JSON),
-- `POST responses` (with the `image_generation` tool), `POST chat/completions` (gateway style: a
-- Markdown image link). `GET /files/<name>` serves stored images. Control endpoints (not recorded):
-- `GET /__requests`, `POST /__reset`, `POST /__script`, `GET /__stats`, `GET /__health`.
--
-- Images are real PNGs (64x64 RGB, zlib "stored" blocks, CRC32 and Adler32 computed here) whose
-- pixels come from a hash of the prompt, the image index and the input images.
--
-- Token rule (deterministic, documented for the tests):
--
--  * text tokens = ceil(#text / 4);
--  * image input tokens = 256 per input image (edits, Responses input_image, chat image_url);
--  * image output tokens per image = ceil(base * W * H / 1024^2) with base low 272, medium 1056,
--    high 4160 (auto = medium; size auto = 1024x1024).
--
-- Behaviours (a JSON object per /v1 request, from the `POST /__script` queue or the
-- `x-imageroute-test` request header; the queue wins) are described on `M.serve`.
-- @module imageroute.localserver

local socket = require "socket"
local cjson = require "cjson"
local core = require "imageroute.core"

local byte, char, concat, find, format, pack, sub, rep =
  string.byte, string.char, table.concat, string.find, string.format, string.pack, string.sub, string.rep
local gettime = socket.gettime
local ceil, floor, max, min, tointeger = math.ceil, math.floor, math.max, math.min, math.tointeger
local co_create, co_resume, co_status, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local type, pairs, ipairs, tostring, tonumber, pcall, setmetatable =
  type, pairs, ipairs, tostring, tonumber, pcall, setmetatable
local io_open, os_rename, os_remove, os_time, os_exit = io.open, os.rename, os.remove, os.time, os.exit
local stderr = io.stderr

local M = {}

-- ==============================================================================================
-- JSON
-- ==============================================================================================

local json = cjson.new()
local NULL = json.null
--- Marker for an empty JSON array (this cjson encodes `{}` as an object): use `M.EMPTY_ARRAY`.
local EMPTY_ARRAY = "__imageroute_empty_array__"
M.EMPTY_ARRAY = EMPTY_ARRAY

--- Register a big JSON-safe string (base64, data URL) to be spliced in after encoding, so that
-- cjson does not scan and escape megabytes of base64. Returns the placeholder to put in the table.
-- @tparam table blobs the registry of one request (a list)
-- @tparam string s text that needs no JSON escaping
-- @treturn string placeholder
local function blob(blobs, s)
  blobs[#blobs + 1] = '"' .. s .. '"'
  return "__imageroute_blob_" .. #blobs .. "__"
end

--- Register a time (socket.gettime() seconds) to be written with microseconds (cjson 2.1.0 stops at
-- 14 significant digits, i.e. 0.1 ms). Returns the placeholder to put in the table.
local function timestamp(blobs, t)
  blobs[#blobs + 1] = format("%.6f", t)
  return "__imageroute_blob_" .. #blobs .. "__"
end

--- Encode a value as JSON like the OpenAI API does: `/` not escaped, `EMPTY_ARRAY` as `[]`,
-- placeholders from `blob` replaced by their strings.
-- (`\/` can only come from an escaped `/` in cjson output, so the substitution is exact.)
-- @param v value
-- @tparam[opt] table blobs registry used with `blob`
-- @treturn string JSON text
local function encode(v, blobs)
  local s = json.encode(v)
  if find(s, "\\/", 1, true) then s = s:gsub("\\/", "/") end
  if find(s, EMPTY_ARRAY, 1, true) then s = s:gsub('"' .. EMPTY_ARRAY .. '"', "[]") end
  if blobs and blobs[1] then
    s = s:gsub('"__imageroute_blob_(%d+)__"', function(k) return blobs[tonumber(k)] end)
  end
  return s
end
M.json_encode = encode

--- Decode JSON text; returns nil, message on error.
local function decode(s)
  local ok, v = pcall(json.decode, s)
  if not ok then return nil, tostring(v) end
  return v
end

-- cjson.null -> nil
local function val(v)
  if v == NULL then return nil end
  return v
end

local function field(t, k)
  if type(t) ~= "table" then return nil end
  return val(t[k])
end

local function int(v)
  v = tonumber(v)
  if not v or v ~= v or v == math.huge or v == -math.huge then return nil end
  return tointeger(floor(v))
end

local function str(v)
  if type(v) == "string" then return v end
  if type(v) == "number" then return tostring(tointeger(v) or v) end
  return nil
end

local function array(t)
  if #t == 0 then return EMPTY_ARRAY end
  return t
end

-- ==============================================================================================
-- Checksums, hashing, PRNG
-- ==============================================================================================

local CRC_TABLE = {}
for i = 0, 255 do
  local c = i
  for _ = 1, 8 do
    if c & 1 == 1 then c = 0xEDB88320 ~ (c >> 1) else c = c >> 1 end
  end
  CRC_TABLE[i] = c
end

--- CRC-32 (ISO-HDLC, as in PNG and zlib).
-- @tparam string s bytes
-- @tparam[opt] integer crc running CRC from a previous call (default 0)
-- @treturn integer CRC in 0..2^32-1
local function crc32(s, crc)
  local T = CRC_TABLE
  local c = (crc or 0) ~ 0xFFFFFFFF
  local n, i = #s, 1
  while i + 7 <= n do
    local a, b, d, e, f, g, h, k = byte(s, i, i + 7)
    c = T[(c ~ a) & 0xFF] ~ (c >> 8)
    c = T[(c ~ b) & 0xFF] ~ (c >> 8)
    c = T[(c ~ d) & 0xFF] ~ (c >> 8)
    c = T[(c ~ e) & 0xFF] ~ (c >> 8)
    c = T[(c ~ f) & 0xFF] ~ (c >> 8)
    c = T[(c ~ g) & 0xFF] ~ (c >> 8)
    c = T[(c ~ h) & 0xFF] ~ (c >> 8)
    c = T[(c ~ k) & 0xFF] ~ (c >> 8)
    i = i + 8
  end
  for j = i, n do c = T[(c ~ byte(s, j)) & 0xFF] ~ (c >> 8) end
  return c ~ 0xFFFFFFFF
end
M.crc32 = crc32

--- Adler-32 of a string (zlib trailer).
local function adler32(s)
  local a, b = 1, 0
  local n, i = #s, 1
  -- 64-bit integers: reduce every 4096 bytes, far below overflow.
  while i <= n do
    local stop = min(n, i + 4095)
    while i + 7 <= stop do
      local c1, c2, c3, c4, c5, c6, c7, c8 = byte(s, i, i + 7)
      a = a + c1; b = b + a; a = a + c2; b = b + a; a = a + c3; b = b + a; a = a + c4; b = b + a
      a = a + c5; b = b + a; a = a + c6; b = b + a; a = a + c7; b = b + a; a = a + c8; b = b + a
      i = i + 8
    end
    for j = i, stop do a = a + byte(s, j); b = b + a end
    i = stop + 1
    a, b = a % 65521, b % 65521
  end
  return (b << 16) | a
end
M.adler32 = adler32

-- FNV-1a 64 of a string (wrapping integer arithmetic).
local function fnv64(s, h)
  h = h or -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #s do h = (h ~ byte(s, i)) * 0x100000001b3 end
  return h
end

--- A cheap fingerprint of possibly large bytes (length, head, tail, and samples).
local function fingerprint(s)
  local n = #s
  if n <= 16384 then return format("%d:%08x", n, crc32(s)) end
  local pieces = {sub(s, 1, 4096), sub(s, -4096)}
  local step = n // 64
  for k = 1, 63 do pieces[#pieces + 1] = sub(s, k * step, k * step + 63) end
  return format("%d:%08x", n, crc32(concat(pieces)))
end

-- xorshift64* generator; returns a function giving 64-bit integers.
local function prng(seed)
  local x = seed
  if x == 0 then x = 0x2545F4914F6CDD1D end
  return function()
    x = x ~ (x >> 12); x = x ~ (x << 25); x = x ~ (x >> 27)
    return x * 0x2545F4914F6CDD1D
  end
end

-- ==============================================================================================
-- PNG
-- ==============================================================================================

local PNG_SIGNATURE = "\137PNG\r\n\26\n"

local function png_chunk(kind, data)
  return pack(">I4", #data) .. kind .. data .. pack(">I4", crc32(data, crc32(kind)))
end

-- zlib stream of stored (uncompressed) deflate blocks.
local function zlib_stored(raw)
  local out = {"\120\1"} -- CMF 0x78, FLG 0x01: (0x7801 % 31 == 0), no dictionary, fastest
  local n, i = #raw, 1
  if n == 0 then out[2] = pack("<BI2I2", 1, 0, 0xFFFF) end
  while i <= n do
    local len = min(65535, n - i + 1)
    local final = (i + len > n) and 1 or 0
    out[#out + 1] = pack("<BI2I2", final, len, (~len) & 0xFFFF)
    out[#out + 1] = sub(raw, i, i + len - 1)
    i = i + len
  end
  out[#out + 1] = pack(">I4", adler32(raw))
  return concat(out)
end

--- Encode an 8-bit RGB PNG from raw scanlines.
-- @tparam integer width pixels
-- @tparam integer height pixels
-- @tparam string raw scanlines, each a filter byte (0) then width*3 bytes
-- @treturn string PNG bytes
local function png_encode(width, height, raw)
  local ihdr = pack(">I4I4BBBBB", width, height, 8, 2, 0, 0, 0)
  return PNG_SIGNATURE .. png_chunk("IHDR", ihdr) .. png_chunk("IDAT", zlib_stored(raw)) .. png_chunk("IEND", "")
end
M.png_encode = png_encode

local IMAGE_SIDE = 64

--- A small (64x64 RGB) PNG whose picture derives from `seed` (a string, e.g. prompt .. index).
-- Different seeds give different pictures; the same seed gives the same bytes.
-- @tparam string seed
-- @treturn string PNG bytes
function M.image(seed)
  local rnd = prng(fnv64(seed))
  local function colour()
    local v = rnd()
    return (v >> 8) & 0xFF, (v >> 24) & 0xFF, (v >> 40) & 0xFF
  end
  local r1, g1, b1 = colour()
  local r2, g2, b2 = colour()
  local pattern = (rnd() >> 33) % 4
  local cell = 4 + (rnd() >> 40) % 13
  local cx, cy = (rnd() >> 40) % IMAGE_SIDE, (rnd() >> 40) % IMAGE_SIDE
  local rows = {}
  local px = {}
  for y = 0, IMAGE_SIDE - 1 do
    px[1] = "\0"
    for x = 0, IMAGE_SIDE - 1 do
      local t -- 0..255 mix between colour 1 and colour 2
      if pattern == 0 then
        t = (x + y) * 255 // (2 * IMAGE_SIDE - 2)
      elseif pattern == 1 then
        local dx, dy = x - cx, y - cy
        t = ((dx * dx + dy * dy) // (cell * 4)) % 2 * 255
      elseif pattern == 2 then
        t = ((x // cell + y // cell) % 2) * 255
      else
        t = ((y * 4 + x) % (cell * 2) < cell) and 255 or 0
      end
      local noise = rnd()
      local nr, ng, nb = (noise & 15) - 8, ((noise >> 8) & 15) - 8, ((noise >> 16) & 15) - 8
      local r = (r1 * (255 - t) + r2 * t) // 255 + nr
      local g = (g1 * (255 - t) + g2 * t) // 255 + ng
      local b = (b1 * (255 - t) + b2 * t) // 255 + nb
      px[x + 2] = char(r < 0 and 0 or r > 255 and 255 or r, g < 0 and 0 or g > 255 and 255 or g,
        b < 0 and 0 or b > 255 and 255 or b)
    end
    rows[y + 1] = concat(px)
  end
  return png_encode(IMAGE_SIDE, IMAGE_SIDE, concat(rows))
end

local random_png_cache = {} -- min_bytes -> {png = ..., b64 = ...}

--- An incompressible PNG (PRNG noise, 1024 pixels wide, stored deflate) of at least `min_bytes`
-- bytes, built once per size and cached.
-- @tparam integer min_bytes
-- @treturn string PNG bytes
-- @treturn string its base64
function M.random_png(min_bytes)
  local hit = random_png_cache[min_bytes]
  if hit then return hit.png, hit.b64 end
  local width = 1024
  local rowlen = width * 3
  local height = max(1, ceil(min_bytes / rowlen))
  local rnd = prng(0x1234567 + min_bytes)
  local rows = {}
  local words = {}
  for y = 1, height do
    for k = 1, rowlen // 8 do words[k] = pack("<i8", rnd()) end
    rows[y] = "\0" .. concat(words)
  end
  local png = png_encode(width, height, concat(rows))
  local b64 = core.b64encode(png)
  random_png_cache[min_bytes] = {png = png, b64 = b64}
  return png, b64
end

-- ==============================================================================================
-- Server state
-- ==============================================================================================

local state = {
  port = 0,
  quiet = false,
  log = {},            -- recorded /v1 requests
  queue = {},          -- behaviours
  requests = 0,        -- /v1 requests since reset
  in_flight = 0,
  max_in_flight = 0,
  files = {},          -- name -> bytes
  file_order = {},     -- names, oldest first
  responses = {},      -- resp id -> stored turn
}
local MAX_FILES = 256

local id_counter = 0
-- Lua seeds math.random from the time and its state's address, which repeats across processes
-- started in the same second where addresses are not randomised: seed from the kernel instead.
do
  local f = io.open("/dev/urandom", "rb")
  local seed = f and f:read(8)
  if f then f:close() end
  if seed and #seed == 8 then math.randomseed(string.unpack("<I4I4", seed)) end
end
--- A unique id: prefix .. 24 hex digits.
local function new_id(prefix)
  id_counter = id_counter + 1
  return format("%s%08x%06x%010x", prefix, os_time() & 0xFFFFFFFF, id_counter & 0xFFFFFF,
    math.random(0, 0xFFFFFFFFFF))
end

local function store_file(bytes)
  local name = new_id("img_") .. ".png"
  state.files[name] = bytes
  state.file_order[#state.file_order + 1] = name
  while #state.file_order > MAX_FILES do
    state.files[table.remove(state.file_order, 1)] = nil
  end
  return name
end

local function logf(...)
  if not state.quiet then stderr:write(format(...), "\n") end
end

-- ==============================================================================================
-- Scheduler primitives (used inside connection coroutines)
-- ==============================================================================================

-- Wait until `sock` is ready for `mode` ("r"/"w") or until `deadline` (socket.gettime() seconds).
-- Returns "ready" or "timeout".
local function wait(sock, mode, deadline)
  return co_yield(sock, mode, deadline)
end

local function sleep(seconds)
  if seconds and seconds > 0 then wait(nil, nil, gettime() + seconds) end
end

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

-- ==============================================================================================
-- multipart/form-data
-- ==============================================================================================

-- Parse `; key=value; key="quoted"` parameters of a header value. Keys are lowercased.
local function header_params(value)
  local params = {}
  local n = #value
  local first = value:match("^%s*([^;]*)")
  params[""] = first and first:match("^(.-)%s*$") or ""
  local i = (find(value, ";", 1, true) or n + 1) + 1
  while i <= n do
    local ks, ke, key = find(value, "^%s*([^=;%s]+)%s*=%s*", i)
    if not ks then
      local semi = find(value, ";", i, true)
      if not semi then break end
      i = semi + 1
    else
      i = ke + 1
      local v
      if sub(value, i, i) == '"' then
        local buf = {}
        i = i + 1
        while i <= n do
          local c = sub(value, i, i)
          if c == "\\" and i < n then buf[#buf + 1] = sub(value, i + 1, i + 1); i = i + 2
          elseif c == '"' then i = i + 1; break
          else buf[#buf + 1] = c; i = i + 1 end
        end
        v = concat(buf)
      else
        local vs, ve = find(value, "^[^;]*", i)
        v = sub(value, vs, ve):match("^(.-)%s*$")
        i = ve + 1
      end
      params[key:lower()] = v
      local semi = find(value, ";", i, true)
      if not semi then break end
      i = semi + 1
    end
  end
  return params
end

--- Parse a multipart/form-data body.
-- @tparam string body
-- @tparam string boundary
-- @treturn table list of parts {name, filename, content_type, data, headers} or nil, message
local function parse_multipart(body, boundary)
  local delim = "--" .. boundary
  local s, e = find(body, delim, 1, true)
  if not s then return nil, "multipart boundary not found in the body" end
  local parts = {}
  local pos = e + 1
  while true do
    if sub(body, pos, pos + 1) == "--" then break end
    local _, le = find(body, "^[ \t]*\r?\n", pos)
    if not le then return nil, "malformed multipart delimiter line" end
    pos = le + 1
    local headers_text, dstart
    if sub(body, pos, pos + 1) == "\r\n" then
      headers_text, dstart = "", pos + 2
    else
      local hs, he = find(body, "\r\n\r\n", pos, true)
      if not hs then return nil, "malformed multipart part headers" end
      headers_text, dstart = sub(body, pos, hs - 1), he + 1
    end
    -- the next delimiter: CRLF--boundary followed by "--" or by optional blanks and CRLF
    local ns, ne
    local from = dstart
    while true do
      ns, ne = find(body, "\r\n" .. delim, from, true)
      if not ns then return nil, "unterminated multipart part" end
      if sub(body, ne + 1, ne + 2) == "--" or find(body, "^[ \t]*\r?\n", ne + 1) then break end
      from = ne + 1
    end
    local part = {headers = {}, data = sub(body, dstart, ns - 1)}
    for line in (headers_text .. "\r\n"):gmatch("(.-)\r\n") do
      local name, value = line:match("^([^:]+):%s*(.-)%s*$")
      if name then part.headers[name:lower()] = value end
    end
    local disp = part.headers["content-disposition"]
    if disp then
      local p = header_params(disp)
      part.name = p.name
      part.filename = p.filename or p["filename*"]
    end
    part.content_type = part.headers["content-type"]
    parts[#parts + 1] = part
    pos = ne + 1
  end
  return parts
end
M.parse_multipart = parse_multipart

-- ==============================================================================================
-- Images and usage helpers
-- ==============================================================================================

local OUTPUT_TOKENS = {low = 272, medium = 1056, high = 4160}

local function text_tokens(text)
  return ceil(#(text or "") / 4)
end

local function norm_size(size)
  size = str(size)
  if not size or size == "auto" then return "1024x1024" end
  return size
end

local function norm_quality(q)
  q = str(q)
  if not q or q == "auto" or q == "standard" then return "medium" end
  if q == "hd" then return "high" end
  return q
end

local function norm_background(b)
  b = str(b)
  if not b or b == "auto" then return "opaque" end
  return b
end

--- Output tokens of one image of `size` at `quality` (see the module doc).
local function image_output_tokens(size, quality)
  local w, h = norm_size(size):match("^(%d+)x(%d+)$")
  w, h = tonumber(w) or 1024, tonumber(h) or 1024
  return ceil((OUTPUT_TOKENS[norm_quality(quality)] or OUTPUT_TOKENS.medium) * w * h / (1024 * 1024))
end
M.image_output_tokens = image_output_tokens

-- Decode a data URL (base64) to bytes; other URLs give their own text as the "bytes" (not fetched).
local function url_bytes(url)
  if type(url) ~= "string" then return nil, "image URL must be a string" end
  if url:sub(1, 5) == "data:" then
    local comma = find(url, ",", 1, true)
    if not comma then return nil, "malformed data URL" end
    if not sub(url, 1, comma):find(";base64,", 1, true) then return nil, "data URL is not base64" end
    local bytes, err = core.b64decode(sub(url, comma + 1))
    if not bytes then return nil, "invalid base64 in data URL: " .. tostring(err) end
    return bytes
  end
  return url
end

-- The output image for a request (honours behaviour png_bytes). Returns png bytes, base64.
local function make_image(B, seed)
  local big = int(field(B, "png_bytes"))
  if big and big > 0 then return M.random_png(big) end
  local png = M.image(seed)
  return png, nil
end

local function base_url(ctx)
  local host = ctx.headers.host
  if not host or not host:match("^[%w%.%-:%[%]]+$") then host = "127.0.0.1:" .. state.port end
  return "http://" .. host
end

local function file_url(ctx, bytes)
  return base_url(ctx) .. "/files/" .. store_file(bytes)
end

-- ==============================================================================================
-- Images API
-- ==============================================================================================

local function boolish(v)
  v = val(v)
  return v == true or v == "true" or v == "1"
end

-- Common parameters of generations and edits (JSON values or form strings).
local function image_params(src)
  return {
    prompt = str(field(src, "prompt")),
    model = str(field(src, "model")),
    n = field(src, "n"),
    size = field(src, "size"),
    quality = field(src, "quality"),
    background = field(src, "background"),
    response_format = str(field(src, "response_format")),
    stream = boolish(field(src, "stream")),
    partial_images = int(field(src, "partial_images")) or 0,
  }
end

local function validate_image_params(p)
  if not p.prompt or p.prompt == "" then
    return error_response(400, "Missing required parameter: 'prompt'.", "prompt", "missing_required_parameter")
  end
  local n = 1
  if p.n ~= nil then
    n = int(p.n)
    if not n or n < 1 or n > 10 or tonumber(p.n) ~= n then
      return error_response(400, format("Invalid 'n': expected an integer between 1 and 10, got %s.",
        tostring(p.n)), "n", "invalid_value")
    end
  end
  p.n = n
  local size = str(p.size)
  if p.size ~= nil and (not size or (size ~= "auto" and not size:match("^%d+x%d+$"))) then
    return error_response(400, format("Invalid size '%s'.", tostring(size)), "size", "invalid_value")
  end
  if p.partial_images < 0 or p.partial_images > 3 then
    return error_response(400, "Invalid 'partial_images': expected 0..3.", "partial_images", "invalid_value")
  end
  return nil
end

local function images_usage(p, input_images)
  local text = text_tokens(p.prompt)
  local image_in = 256 * input_images
  local out = p.n * image_output_tokens(p.size, p.quality)
  return {
    input_tokens = text + image_in,
    input_tokens_details = {text_tokens = text, image_tokens = image_in},
    output_tokens = out,
    total_tokens = text + image_in + out,
  }
end

-- Shared by generations and edits. kind: "image_generation" | "image_edit".
local function images_result(ctx, B, p, inputs, kind)
  local err = validate_image_params(p)
  if err then return err end
  local fps = {}
  for k, bytes in ipairs(inputs) do fps[k] = fingerprint(bytes) end
  local seed_base = kind .. "\0" .. p.prompt .. "\0" .. concat(fps, "\0")
  local mode = str(field(B, "b64_mode")) or (p.response_format == "url" and "url") or "b64"
  local usage = images_usage(p, p.input_images or #inputs)
  local created = os_time()
  local common = {
    background = norm_background(p.background), output_format = "png",
    size = norm_size(p.size), quality = norm_quality(p.quality),
  }
  local blobs = ctx.blobs
  local function b64_of(png, b64)
    b64 = b64 or core.b64encode(png)
    if mode == "dataurl" then return blob(blobs, "data:image/png;base64," .. b64) end
    return blob(blobs, b64)
  end
  if p.stream then
    local events = {}
    for k = 1, p.n do
      for i = 0, p.partial_images - 1 do
        local partial = M.image(seed_base .. "\0partial" .. k .. ":" .. i)
        local ev = {type = kind .. ".partial_image", b64_json = b64_of(partial),
          partial_image_index = i, created_at = created}
        for key, v in pairs(common) do ev[key] = v end
        events[#events + 1] = {kind .. ".partial_image", ev}
      end
      local png, b64 = make_image(B, seed_base .. "\0" .. k)
      local ev = {type = kind .. ".completed", b64_json = b64_of(png, b64), created_at = created, usage = usage}
      for key, v in pairs(common) do ev[key] = v end
      events[#events + 1] = {kind .. ".completed", ev}
    end
    return {status = 200, events = events, blobs = blobs}
  end
  local data = {}
  for k = 1, p.n do
    local png, b64 = make_image(B, seed_base .. "\0" .. k)
    if mode == "url" then
      data[k] = {url = file_url(ctx, png)}
    else
      data[k] = {b64_json = b64_of(png, b64)}
    end
  end
  local body = {created = created, data = data, usage = usage}
  for key, v in pairs(common) do body[key] = v end
  return json_response(200, body, blobs)
end

local function handle_generations(ctx, B)
  if type(ctx.json) ~= "table" then
    return error_response(400, "The request body must be a JSON object.", NULL, "invalid_json")
  end
  return images_result(ctx, B, image_params(ctx.json), {}, "image_generation")
end

local function is_image_part(name)
  return name == "image" or name == "image[]" or (name and name:match("^image%[%d+%]$") ~= nil)
end

local function handle_edits(ctx, B)
  local p, inputs
  if ctx.parts then
    local form = {}
    inputs = {}
    for _, part in ipairs(ctx.parts) do
      if is_image_part(part.name) then
        inputs[#inputs + 1] = part.data
      elseif part.name == "mask" then
        form.mask = part.data
      elseif part.name and not part.filename then
        form[part.name] = part.data
      end
    end
    p = image_params(form)
    if #inputs == 0 then
      return error_response(400, "Missing required parameter: 'image'.", "image", "missing_required_parameter")
    end
    p.input_images = #inputs
    if form.mask then inputs[#inputs + 1] = form.mask end
  elseif type(ctx.json) == "table" then
    p = image_params(ctx.json)
    inputs = {}
    local images = field(ctx.json, "images")
    if type(images) == "table" then
      for _, im in ipairs(images) do
        local url = field(im, "image_url")
        local fid = field(im, "file_id")
        if url then
          local bytes, err = url_bytes(url)
          if not bytes then return error_response(400, err, "images", "invalid_image_url") end
          inputs[#inputs + 1] = bytes
        elseif fid then
          inputs[#inputs + 1] = str(fid) or ""
        end
      end
    end
    if #inputs == 0 then
      return error_response(400, "Missing required parameter: 'images'.", "images", "missing_required_parameter")
    end
  else
    return error_response(400, "Expected a multipart/form-data (or JSON) body.", NULL, "invalid_content_type")
  end
  return images_result(ctx, B, p, inputs, "image_edit")
end

-- ==============================================================================================
-- Responses API
-- ==============================================================================================

-- Collect text and input images of a Responses `input`. Returns text, images (bytes list) or nil, err.
local function responses_input(input)
  local texts, images = {}, {}
  local function add_content(c)
    if type(c) == "string" then texts[#texts + 1] = c; return true end
    if type(c) ~= "table" then return true end
    local ctype = field(c, "type")
    if ctype == "input_text" or ctype == "text" or ctype == "output_text" then
      texts[#texts + 1] = str(field(c, "text")) or ""
    elseif ctype == "input_image" then
      local url = field(c, "image_url")
      if type(url) == "table" then url = field(url, "url") end
      if url then
        local bytes, err = url_bytes(url)
        if not bytes then return nil, err end
        images[#images + 1] = bytes
      elseif field(c, "file_id") then
        images[#images + 1] = str(field(c, "file_id")) or ""
      end
    end
    return true
  end
  if type(input) == "string" then
    texts[1] = input
  elseif type(input) == "table" then
    for _, item in ipairs(input) do
      if type(item) == "string" then
        texts[#texts + 1] = item
      elseif type(item) == "table" then
        local content = field(item, "content")
        local ok, err
        if content ~= nil then
          if type(content) == "table" and content[1] ~= nil then
            for _, c in ipairs(content) do
              ok, err = add_content(c)
              if not ok then return nil, err end
            end
          else
            ok, err = add_content(content)
            if not ok then return nil, err end
          end
        else
          ok, err = add_content(item)
          if not ok then return nil, err end
        end
      end
    end
  elseif input ~= nil then
    return nil, "'input' must be a string or a list of items"
  end
  return concat(texts, "\n"), images
end

local IMAGE_WORDS = {"image", "draw", "picture", "render"}

local function wants_image(text)
  local lower = text:lower()
  for _, w in ipairs(IMAGE_WORDS) do
    if find(lower, w, 1, true) then return true end
  end
  return false
end

local function clip(s, n)
  if #s <= n then return s end
  return sub(s, 1, n) .. "..."
end

local function handle_responses(ctx, B)
  local req = ctx.json
  if type(req) ~= "table" then
    return error_response(400, "The request body must be a JSON object.", NULL, "invalid_json")
  end
  local model = str(field(req, "model"))
  if not model then
    return error_response(400, "Missing required parameter: 'model'.", "model", "missing_required_parameter")
  end
  if model:match("^gpt%-image") or model:match("^dall%-e") then
    return error_response(400, format("The model '%s' is not supported with the Responses API; "
      .. "put the image model inside the image_generation tool.", model), "model", "model_not_supported")
  end
  local prev_id = str(field(req, "previous_response_id"))
  local prev
  if prev_id then
    prev = state.responses[prev_id]
    if not prev then
      return error_response(400, format("Previous response with id '%s' not found.", prev_id),
        "previous_response_id", "previous_response_not_found")
    end
  end
  local text, images = responses_input(field(req, "input"))
  if not text then return error_response(400, images, "input", "invalid_value") end

  local tool
  local tools = field(req, "tools")
  if type(tools) == "table" then
    for _, t in ipairs(tools) do
      if field(t, "type") == "image_generation" then tool = t; break end
    end
  end
  local choice = field(req, "tool_choice")
  local forced = choice == "required" or (type(choice) == "table" and field(choice, "type") == "image_generation")
  local use_tool = tool ~= nil and choice ~= "none" and (forced or wants_image(text))

  local resp_id = new_id("resp_")
  local created = os_time()
  local status = str(field(B, "response_status")) or "completed"
  local output = {}
  local image_item, image_bytes
  local out_tokens = 0
  local size, quality = norm_size(field(tool, "size")), norm_quality(field(tool, "quality"))
  local partials = {}
  if use_tool then
    local fps = {}
    for k, bytes in ipairs(images) do fps[k] = fingerprint(bytes) end
    if prev and prev.image then fps[#fps + 1] = fingerprint(prev.image) end
    local seed = "responses\0" .. text .. "\0" .. concat(fps, "\0")
    image_item = {
      type = "image_generation_call", id = new_id("ig_"), status = "completed",
      revised_prompt = "An image of: " .. text, size = size, quality = quality, output_format = "png",
      background = norm_background(field(tool, "background")),
      action = (#images > 0 or (prev and prev.image)) and "edit" or "generate",
    }
    if status == "failed" then
      image_item.status, image_item.result = "failed", NULL
    else
      local png, b64 = make_image(B, seed)
      image_bytes = png
      image_item.result = blob(ctx.blobs, b64 or core.b64encode(png))
      out_tokens = out_tokens + image_output_tokens(size, quality)
      for i = 0, (int(field(tool, "partial_images")) or 0) - 1 do
        partials[#partials + 1] = blob(ctx.blobs, core.b64encode(M.image(seed .. "\0partial" .. i)))
      end
    end
    output[#output + 1] = image_item
  end
  local message
  if status ~= "failed" then
    local say
    if image_item then
      say = "Here is the image you asked for: " .. clip(text, 200)
    else
      say = "You said: " .. clip(text, 200)
    end
    if prev then say = say .. format(" (continuing from %s, where you said: %s)", prev_id, clip(prev.text, 80)) end
    message = {type = "message", id = new_id("msg_"), role = "assistant",
      status = status == "incomplete" and "incomplete" or "completed",
      content = {{type = "output_text", text = say, annotations = EMPTY_ARRAY}}}
    output[#output + 1] = message
    out_tokens = out_tokens + text_tokens(say)
  end
  local in_tokens = text_tokens(text) + 256 * #images
  local response = {
    id = resp_id, object = "response", created_at = created, status = status, model = model,
    output = array(output), previous_response_id = prev_id or NULL,
    usage = {input_tokens = in_tokens, output_tokens = out_tokens, total_tokens = in_tokens + out_tokens},
    error = NULL, incomplete_details = NULL,
  }
  if status == "failed" then
    response.error = {code = "server_error", message = "The image could not be generated (simulated failure)."}
  elseif status == "incomplete" then
    response.incomplete_details = {reason = "max_output_tokens"}
  end
  state.responses[resp_id] = {text = text, image = image_bytes or (prev and prev.image)}

  if not boolish(field(req, "stream")) then return json_response(200, response, ctx.blobs) end

  -- Streaming: build the event list.
  local events, seq = {}, 0
  local function ev(t, tbl)
    tbl.type = t
    tbl.sequence_number = seq
    seq = seq + 1
    events[#events + 1] = {t, tbl}
  end
  local shell = {}
  for k, v in pairs(response) do shell[k] = v end
  shell.status, shell.output, shell.usage = "in_progress", EMPTY_ARRAY, NULL
  shell.error, shell.incomplete_details = NULL, NULL
  ev("response.created", {response = shell})
  ev("response.in_progress", {response = shell})
  local index = 0
  if image_item then
    local pending = {}
    for k, v in pairs(image_item) do pending[k] = v end
    pending.status, pending.result = "in_progress", NULL
    ev("response.output_item.added", {output_index = index, item = pending})
    ev("response.image_generation_call.in_progress", {output_index = index, item_id = image_item.id})
    ev("response.image_generation_call.generating", {output_index = index, item_id = image_item.id})
    for i, b64 in ipairs(partials) do
      ev("response.image_generation_call.partial_image", {output_index = index, item_id = image_item.id,
        partial_image_index = i - 1, partial_image_b64 = b64, size = size, quality = quality,
        output_format = "png", background = image_item.background})
    end
    if image_item.status == "completed" then
      ev("response.image_generation_call.completed", {output_index = index, item_id = image_item.id})
    end
    ev("response.output_item.done", {output_index = index, item = image_item})
    index = index + 1
  end
  if message then
    local pending = {}
    for k, v in pairs(message) do pending[k] = v end
    pending.status, pending.content = "in_progress", EMPTY_ARRAY
    ev("response.output_item.added", {output_index = index, item = pending})
    local part = message.content[1]
    ev("response.output_text.delta", {output_index = index, item_id = message.id, content_index = 0,
      delta = part.text})
    ev("response.output_text.done", {output_index = index, item_id = message.id, content_index = 0,
      text = part.text})
    ev("response.output_item.done", {output_index = index, item = message})
  end
  local final = {failed = "response.failed", incomplete = "response.incomplete"}
  ev(final[status] or "response.completed", {response = response})
  return {status = 200, events = events, blobs = ctx.blobs}
end

-- ==============================================================================================
-- Chat Completions (gateway style)
-- ==============================================================================================

local function handle_chat(ctx, B)
  local req = ctx.json
  if type(req) ~= "table" then
    return error_response(400, "The request body must be a JSON object.", NULL, "invalid_json")
  end
  local messages = field(req, "messages")
  if type(messages) ~= "table" or messages[1] == nil then
    return error_response(400, "Missing required parameter: 'messages'.", "messages", "missing_required_parameter")
  end
  local user
  for _, m in ipairs(messages) do
    if field(m, "role") == "user" then user = m end
  end
  if not user then
    return error_response(400, "No user message in 'messages'.", "messages", "invalid_value")
  end
  local texts, images = {}, {}
  local content = field(user, "content")
  if type(content) == "string" then
    texts[1] = content
  elseif type(content) == "table" then
    for _, c in ipairs(content) do
      local ctype = field(c, "type")
      if ctype == "text" then
        texts[#texts + 1] = str(field(c, "text")) or ""
      elseif ctype == "image_url" then
        local iu = field(c, "image_url")
        local url = type(iu) == "table" and field(iu, "url") or iu
        local bytes, err = url_bytes(url)
        if not bytes then return error_response(400, err, "messages", "invalid_image_url") end
        images[#images + 1] = bytes
      end
    end
  end
  local prompt = concat(texts, "\n")
  local fps = {}
  for k, bytes in ipairs(images) do fps[k] = fingerprint(bytes) end
  local seed = "chat\0" .. prompt .. "\0" .. concat(fps, "\0")
  local msg = {role = "assistant", content = NULL, refusal = NULL}
  local refusal = str(field(B, "refusal"))
  if refusal then
    msg.refusal = refusal
  else
    local template = str(field(B, "chat_content")) or "\n\n![image]({URL})\n\n"
    local text = template
    if find(text, "{URL}", 1, true) then
      local url = file_url(ctx, (make_image(B, seed .. "\0" .. 1)))
      text = text:gsub("{URL}", function() return url end)
    end
    if find(text, "{URL2}", 1, true) then
      local url = file_url(ctx, (make_image(B, seed .. "\0" .. 2)))
      text = text:gsub("{URL2}", function() return url end)
    end
    msg.content = text
  end
  local prompt_tokens = text_tokens(prompt) + 256 * #images
  local completion_tokens = text_tokens(val(msg.content) or refusal)
  local id = new_id("chatcmpl-")
  local created = os_time()
  local model = str(field(req, "model")) or "gpt-image-2"
  local usage = {prompt_tokens = prompt_tokens, completion_tokens = completion_tokens,
    total_tokens = prompt_tokens + completion_tokens}
  if not boolish(field(req, "stream")) then
    return json_response(200, {id = id, object = "chat.completion", created = created, model = model,
      choices = {{index = 0, message = msg, finish_reason = "stop"}}, usage = usage})
  end
  local function chunk(delta, finish)
    return {false, {id = id, object = "chat.completion.chunk", created = created, model = model,
      choices = {{index = 0, delta = delta, finish_reason = finish or NULL}}}}
  end
  local events = {chunk({role = "assistant", content = ""})}
  if refusal then events[#events + 1] = chunk({refusal = refusal})
  else events[#events + 1] = chunk({content = msg.content}) end
  local last = chunk({}, "stop")
  last[2].usage = usage
  events[#events + 1] = last
  events[#events + 1] = {false, "[DONE]"}
  return {status = 200, events = events}
end

-- ==============================================================================================
-- Control endpoints
-- ==============================================================================================

local function record_json(rec, with_data, blobs)
  local out = {
    method = rec.method, path = rec.path, query = rec.query or NULL, headers = rec.headers,
    json = rec.json == nil and NULL or rec.json, body_bytes = rec.body_bytes or 0,
    t_start = timestamp(blobs, rec.t_start), t_end = rec.t_end and timestamp(blobs, rec.t_end) or NULL,
    status = rec.status or NULL,
    body = rec.body or NULL, parts = NULL,
  }
  if rec.parts then
    local parts = {}
    for k, p in ipairs(rec.parts) do
      parts[k] = {
        name = p.name or NULL, filename = p.filename or NULL, content_type = p.content_type or NULL,
        size = #p.data, value = (not p.filename) and p.data or NULL,
        data_b64 = with_data and blob(blobs, core.b64encode(p.data)) or NULL,
      }
    end
    out.parts = array(parts)
  end
  return out
end

local function handle_control(ctx)
  local path, method = ctx.path, ctx.method
  if path == "/__requests" and method == "GET" then
    local with_data = not (ctx.query and ctx.query:find("data=0", 1, true))
    local list, blobs = {}, {}
    for k, rec in ipairs(state.log) do list[k] = record_json(rec, with_data, blobs) end
    return {status = 200, body = encode(array(list), blobs), content_type = "application/json"}
  elseif path == "/__reset" and method == "POST" then
    state.log, state.queue, state.requests = {}, {}, 0
    state.max_in_flight = state.in_flight
    state.rl_windows = {}
    return json_response(200, {ok = true})
  elseif path == "/__script" and method == "POST" then
    local body = ctx.json
    local queue = field(body, "queue")
    if type(body) ~= "table" or (queue ~= nil and type(queue) ~= "table") then
      return error_response(400, "expected {\"queue\": [behaviour, ...]}")
    end
    for _, b in ipairs(queue or {}) do
      if type(b) ~= "table" then return error_response(400, "each behaviour must be a JSON object") end
    end
    for _, b in ipairs(queue or {}) do state.queue[#state.queue + 1] = b end
    return json_response(200, {queued = #state.queue})
  elseif path == "/__stats" and method == "GET" then
    return json_response(200, {requests = state.requests, in_flight = state.in_flight,
      max_in_flight = state.max_in_flight, queued = #state.queue})
  elseif path == "/__health" and method == "GET" then
    return json_response(200, {ok = true, port = state.port})
  end
  return error_response(404, "Unknown control endpoint " .. method .. " " .. path, NULL, "unknown_url")
end

-- ==============================================================================================
-- Behaviours and dispatch
-- ==============================================================================================

local HTML_PAGE = [[<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>502 Bad Gateway</title>
<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}h1{font-size:1.6em}</style>
</head>
<body>
<h1>502 Bad Gateway</h1>
<p>The upstream server returned an invalid response. This page comes from the imageroute local
server's "html" behaviour, which imitates a gateway or CDN error page served instead of JSON.</p>
<!-- %s -->
</body>
</html>
]]

local function html_page()
  local filler = rep("padding to make this page about two kilobytes long. ", 30)
  return format(HTML_PAGE, filler)
end

-- The response a behaviour imposes by itself (error, html, body, status >= 400), or nil.
local function behaviour_response(B)
  local status = int(field(B, "status"))
  local berr = field(B, "error")
  if type(berr) == "table" then
    status = status or 400
    return {status = status, content_type = "application/json", body = encode({error = {
      message = str(field(berr, "message")) or "Simulated error.",
      type = str(field(berr, "type")) or default_error_type(status),
      param = val(berr.param) or NULL, code = val(berr.code) or NULL,
    }})}
  end
  if field(B, "html") == true then
    return {status = status or 200, content_type = "text/html; charset=utf-8", body = html_page()}
  end
  local body = field(B, "body")
  if body ~= nil then
    if type(body) ~= "string" then body = encode(body) end
    return {status = status or 200, content_type = str(field(B, "content_type")) or "application/json",
      body = body}
  end
  if status and status >= 400 then
    return error_response(status, format("Simulated HTTP %d.", status))
  end
  return nil
end

local ROUTES = {
  ["/v1/images/generations"] = handle_generations,
  ["/v1/images/edits"] = handle_edits,
  ["/v1/responses"] = handle_responses,
  ["/v1/chat/completions"] = handle_chat,
}

-- Take this request's behaviour: queue first, else the x-imageroute-test header.
local function take_behaviour(ctx)
  if #state.queue > 0 then return table.remove(state.queue, 1) end
  local h = ctx.headers["x-imageroute-test"]
  if h and h ~= "" then
    local B, err = decode(h)
    if type(B) ~= "table" then return nil, "invalid x-imageroute-test header: " .. tostring(err or "not an object") end
    return B
  end
  return {}
end

local function route_v1(ctx, B)
  local handler = ROUTES[ctx.path]
  if not handler then
    return error_response(404, format("Invalid URL (%s %s)", ctx.method, ctx.path), NULL, "unknown_url")
  end
  if ctx.method ~= "POST" then
    return error_response(405, format("Method %s not allowed on %s", ctx.method, ctx.path), NULL,
      "method_not_allowed")
  end
  local ok, resp = pcall(handler, ctx, B)
  if not ok then
    logf("localserver: handler error: %s", tostring(resp))
    return error_response(500, "Internal error in the local server: " .. tostring(resp), NULL, "server_error")
  end
  return resp
end

-- Decode the body into ctx.json / ctx.parts. Returns nil or an error response.
local function parse_body(ctx)
  local ct = (ctx.headers["content-type"] or ""):lower()
  local body = ctx.body
  if ct:find("multipart/form-data", 1, true) then
    local params = header_params(ctx.headers["content-type"])
    local boundary = params.boundary
    if not boundary or boundary == "" then
      return error_response(400, "multipart/form-data without a boundary.", NULL, "invalid_multipart")
    end
    local parts, err = parse_multipart(body, boundary)
    if not parts then return error_response(400, "Malformed multipart body: " .. err, NULL, "invalid_multipart") end
    ctx.parts = parts
  elseif #body > 0 then
    local v = decode(body)
    if v ~= nil then
      ctx.json = v
    elseif ct:find("json", 1, true) then
      if #body <= (1 << 20) then ctx.body_text = body end
      return error_response(400, "We could not parse the JSON body of your request.", NULL, "invalid_json")
    elseif #body <= (1 << 20) then
      ctx.body_text = body
    end
  end
  return nil
end

-- ==============================================================================================
-- Sending
-- ==============================================================================================

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

-- ==============================================================================================
-- Connection handler
-- ==============================================================================================

local function handle_files(ctx)
  local name = ctx.path:match("^/files/([%w%._%-]+)$")
  local bytes = name and state.files[name]
  if ctx.method ~= "GET" and ctx.method ~= "HEAD" then
    return error_response(405, "Method not allowed", NULL, "method_not_allowed")
  end
  if not bytes then return error_response(404, "No such file: " .. ctx.path, NULL, "file_not_found") end
  return {status = 200, body = bytes, content_type = "image/png"}
end

-- The API's rate-limit headers and 429s. Every /v1 answer carries x-ratelimit-* headers; with the
-- behaviour `rate_limit = {requests = N, window = seconds}` the server counts the requests that
-- carry that behaviour in a fixed window shared by all connections and answers 429 past N, like
-- the real API: an OpenAI error body (code rate_limit_exceeded, type requests) and retry-after.

local function fmt_duration(seconds)
  if seconds < 1 then return ("%dms"):format(math.floor(seconds * 1000 + 0.5)) end
  local m = math.floor(seconds / 60)
  local sec = seconds - m * 60
  if m > 0 then return ("%dm%ds"):format(m, math.floor(sec + 0.5)) end
  return ("%.3gs"):format(sec)
end

local function rate_limit(B)
  local cfg = field(B, "rate_limit")
  local limit, window = 500, 60
  if type(cfg) == "table" then
    limit = int(field(cfg, "requests")) or limit
    window = tonumber(field(cfg, "window")) or window
  end
  local key = limit .. "/" .. window
  state.rl_windows = state.rl_windows or {} -- "N/window" -> {start =, count =}
  local w = state.rl_windows[key]
  local now = gettime()
  if not w or now - w.start >= window then
    w = {start = now, count = 0}
    state.rl_windows[key] = w
  end
  local over = type(cfg) == "table" and w.count >= limit
  if not over then w.count = w.count + 1 end
  local reset = math.max(0, w.start + window - now)
  local headers = {
    ["x-ratelimit-limit-requests"] = tostring(limit),
    ["x-ratelimit-remaining-requests"] = tostring(math.max(0, limit - w.count)),
    ["x-ratelimit-reset-requests"] = fmt_duration(reset),
    ["x-ratelimit-limit-tokens"] = "250000",
    ["x-ratelimit-remaining-tokens"] = "249000",
    ["x-ratelimit-reset-tokens"] = "240ms",
  }
  if not over then return headers, nil end
  headers["retry-after"] = tostring(math.max(1, math.ceil(reset)))
  local resp = error_response(429, format("Rate limit reached for images in organization org-local on " ..
    "requests per min (RPM): Limit %d, Used %d, Requested 1. Please try again in %s.", limit, w.count,
    fmt_duration(reset)), NULL, "rate_limit_exceeded", "requests")
  return headers, resp
end

local function merged(a, b)
  local out = {}
  for k, v in pairs(a or {}) do out[k] = v end
  if type(b) == "table" then for k, v in pairs(b) do out[k] = v end end
  return out
end

local function serve_v1(conn, ctx)
  local rec = {method = ctx.method, path = ctx.path, query = ctx.query, headers = ctx.headers,
    t_start = ctx.t_start}
  state.log[#state.log + 1] = rec
  state.requests = state.requests + 1
  state.in_flight = state.in_flight + 1
  if state.in_flight > state.max_in_flight then state.max_in_flight = state.in_flight end
  local finished = false
  local function finish(status)
    if finished then return end
    finished = true
    rec.t_end = gettime()
    rec.status = status
    state.in_flight = state.in_flight - 1
  end
  local ok, err = pcall(function()
    local B, berr = take_behaviour(ctx)
    local body, rerr, bad = read_body(conn, ctx)
    if not body and rerr == "closed" then bad, rerr = true, "incomplete request body" end
    if not body then
      if bad then
        local status = rerr == "request body too large" and 413 or 400
        send_plain(conn, ctx, error_response(status, rerr))
        finish(status)
        conn:linger()
      else
        finish(0)
        conn:close()
      end
      return
    end
    ctx.body = body
    rec.body_bytes = #body
    local resp = parse_body(ctx)
    rec.json, rec.parts, rec.body = ctx.json, ctx.parts, ctx.body_text
    if not B then
      resp = error_response(400, berr, NULL, "invalid_test_header")
      B = {}
    end
    sleep(tonumber(field(B, "delay")))
    if field(B, "drop") == true then
      finish(0)
      conn:close()
      logf("%s %s -> dropped", ctx.method, ctx.path)
      return
    end
    local rl_headers, limited = rate_limit(B)
    resp = resp or limited or behaviour_response(B) or route_v1(ctx, B)
    local status = int(field(B, "status"))
    if status and status < 400 and resp.status < 400 then resp.status = status end
    local extra = merged(rl_headers, field(B, "headers"))
    local truncate = field(B, "truncate") == true
    local reset = field(B, "reset") == true -- like truncate, then a TCP reset instead of a close
    truncate = truncate or reset
    if resp.events then
      send_events(conn, ctx, resp, extra, truncate, tonumber(field(B, "pace")) or 0)
    else
      send_plain(conn, ctx, resp, extra, truncate, field(B, "drip"))
    end
    finish(resp.status)
    logf("%s %s -> %d%s", ctx.method, ctx.path, resp.status, truncate and " (truncated)" or "")
    if reset then
      pcall(conn.sock.setoption, conn.sock, "linger", {on = true, timeout = 0})
      conn:close()
    elseif truncate then conn:close() else conn:linger() end
  end)
  finish(0)
  if not ok then
    logf("localserver: error serving %s %s: %s", ctx.method, ctx.path, tostring(err))
    conn:close()
  end
end

local function serve_other(conn, ctx)
  local body, rerr, bad = read_body(conn, ctx)
  if not body and rerr == "closed" then bad, rerr = true, "incomplete request body" end
  if not body then
    if bad then send_plain(conn, ctx, error_response(400, rerr)) end
    conn:linger()
    return
  end
  ctx.body = body
  local resp
  if ctx.path:sub(1, 3) == "/__" then
    if #body > 0 then ctx.json = decode(body) end
    resp = handle_control(ctx)
  elseif ctx.path:sub(1, 7) == "/files/" then
    resp = handle_files(ctx)
  else
    resp = error_response(404, format("Invalid URL (%s %s)", ctx.method, ctx.path), NULL, "unknown_url")
  end
  send_plain(conn, ctx, resp)
  conn:linger()
end

-- One connection: one request, one response, close.
local function handle_connection(sock)
  local conn = new_conn(sock)
  local ok, err = pcall(function()
    local req = read_head(conn)
    if not req then conn:close(); return end
    local ctx = req
    ctx.request_id = new_id("req_")
    ctx.blobs = {}
    ctx.t_start = gettime()
    if req.bad then
      ctx.headers = {}
      send_plain(conn, ctx, error_response(400, "Bad request: " .. req.message, NULL, "bad_request"))
      conn:linger()
      return
    end
    if ctx.path:sub(1, 4) == "/v1/" then
      serve_v1(conn, ctx)
    else
      serve_other(conn, ctx)
    end
  end)
  if not ok then logf("localserver: connection error: %s", tostring(err)) end
  conn:close()
end

-- ==============================================================================================
-- Main loop
-- ==============================================================================================

local MAX_CONNECTIONS = 900 -- stays below FD_SETSIZE for select()

local function process_alive(pid)
  local f = io_open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local line = f:read("l") or ""
  f:close()
  local st = line:match("^%d+ %b() (%a)")
  return st ~= "Z" and st ~= "X"
end

--- Run the server forever (never returns; raises if it cannot listen).
--
-- Behaviours: a JSON object B per /v1 request, taken from the `POST /__script` queue (one per
-- request, in head-arrival order) or else from the `x-imageroute-test: <B as JSON>` header.
-- Fields: `status`, `headers`, `error` {message,type,param,code} (status default 400), `html`
-- (2 KB HTML page, status default 200), `body` + `content_type` (raw body, status default 200),
-- `delay` (s, before answering), `drop`, `truncate`, `b64_mode` ("dataurl"|"url"), `png_bytes`,
-- `chat_content` ({URL}, {URL2}), `refusal`, `response_status` ("failed"|"incomplete"), `pace` (s),
-- `drip` ({bytes =, interval =}: the body a few bytes at a time), `reset` (half the body or events,
-- then a TCP reset), `rate_limit` ({requests =, window = s}: 429s like the real API past that many
-- requests in the window; every answer carries x-ratelimit-* headers).
-- A `status` >= 400 alone gives an OpenAI error body; a `status` < 400 only changes the status of
-- the normal answer.
--
-- @tparam[opt] table opts `host` (default "127.0.0.1"), `port` (0 = any free port), `port_file`
--   (the bound port is written there, atomically, once listening), `quiet` (no log on stderr),
--   `owner_pid` (exit when this process is gone).
function M.serve(opts)
  opts = opts or {}
  state.quiet = opts.quiet and true or false
  local host = opts.host or "127.0.0.1"
  local server, err = socket.bind(host, tonumber(opts.port) or 0, 1024) -- sets reuseaddr
  if not server then error(format("localserver: cannot listen on %s:%s: %s", host, tostring(opts.port), err)) end
  server:settimeout(0)
  local _, port = server:getsockname()
  state.port = tonumber(port)
  if opts.port_file then
    local tmp = opts.port_file .. ".tmp"
    local f = assert(io_open(tmp, "w"))
    f:write(tostring(state.port), "\n")
    f:close()
    assert(os_rename(tmp, opts.port_file))
  end
  logf("imageroute localserver listening on http://%s:%d/v1", host, state.port)

  local tasks = {}   -- coroutine -> {sock, mode, deadline}
  local ntasks = 0
  local owner_pid = tonumber(opts.owner_pid)
  local next_owner_check = 0

  local function step(co, arg)
    local ok, sock, mode, deadline = co_resume(co, arg)
    if not ok then logf("localserver: coroutine error: %s", tostring(sock)) end
    if not ok or co_status(co) == "dead" then
      if tasks[co] then tasks[co] = nil; ntasks = ntasks - 1 end
      return
    end
    local w = tasks[co]
    if not w then w = {}; tasks[co] = w; ntasks = ntasks + 1 end
    w[1], w[2], w[3] = sock, mode, deadline
  end

  while true do
    local recvt, sendt, owner = {}, {}, {}
    local nearest
    if ntasks < MAX_CONNECTIONS then recvt[1] = server end
    for co, w in pairs(tasks) do
      local sock, mode, deadline = w[1], w[2], w[3]
      if sock then
        owner[sock] = co
        if mode == "w" then sendt[#sendt + 1] = sock else recvt[#recvt + 1] = sock end
      end
      if deadline and (not nearest or deadline < nearest) then nearest = deadline end
    end
    local now = gettime()
    local timeout = 1.0
    if nearest then timeout = min(timeout, max(0, nearest - now)) end
    local readable, writable = socket.select(recvt, sendt, timeout)
    local ready = {}
    for _, sock in ipairs(readable) do
      if sock == server then
        for _ = 1, 64 do
          local client = server:accept()
          if not client then break end
          client:settimeout(0)
          client:setoption("tcp-nodelay", true)
          step(co_create(handle_connection), client)
        end
      elseif owner[sock] then
        ready[owner[sock]] = true
      end
    end
    for _, sock in ipairs(writable) do
      if owner[sock] then ready[owner[sock]] = true end
    end
    now = gettime()
    local runs = {}
    for co, w in pairs(tasks) do
      if ready[co] then runs[#runs + 1] = {co, "ready"}
      elseif w[3] and w[3] <= now then runs[#runs + 1] = {co, "timeout"} end
    end
    for _, r in ipairs(runs) do
      if tasks[r[1]] then step(r[1], r[2]) end
    end
    if owner_pid and now >= next_owner_check then
      next_owner_check = now + 1
      if not process_alive(owner_pid) then
        logf("localserver: owner process %d is gone, exiting", owner_pid)
        if opts.port_file then os_remove(opts.port_file) end
        os_exit(0)
      end
    end
  end
end

return M
