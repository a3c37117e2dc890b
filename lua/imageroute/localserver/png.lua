--- imageroute.localserver.png: the local server's image fixtures. CRC-32 and Adler-32, an FNV-1a
-- hash and fingerprint of bytes, an xorshift64* PRNG, and a PNG encoder (8-bit RGB, zlib "stored"
-- blocks) that makes the small seeded pictures (`image`) and the large incompressible ones
-- (`random_png`) the mocks answer with.
-- @module imageroute.localserver.png

local core = require("imageroute.core")

local byte, char, concat, format, pack, sub =
  string.byte, string.char, table.concat, string.format, string.pack, string.sub
local ceil, max, min = math.ceil, math.max, math.min

local M = {}

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

M.fnv64, M.fingerprint, M.prng = fnv64, fingerprint, prng
return M
