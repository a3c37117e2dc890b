--- imageroute.localserver.json: JSON as the OpenAI API writes it, for the local server's replies.
-- `/` not escaped, `EMPTY_ARRAY` written as `[]`, big base64 strings and microsecond times spliced
-- in after encoding (`blob`, `timestamp`); `decode` returns nil, message on bad text; `val`, `field`,
-- `int`, `str`, `array` read and shape decoded values (cjson.null reads as nil).
-- @module imageroute.localserver.json

local cjson = require("cjson")

local find, format = string.find, string.format
local floor, tointeger = math.floor, math.tointeger
local type, tostring, tonumber, pcall = type, tostring, tonumber, pcall

local J = {}

local json = cjson.new()
local NULL = json.null
--- Marker for an empty JSON array (this cjson encodes `{}` as an object): use `M.EMPTY_ARRAY`.
local EMPTY_ARRAY = "__imageroute_empty_array__"

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

J.NULL, J.EMPTY_ARRAY = NULL, EMPTY_ARRAY
J.blob, J.timestamp, J.encode, J.decode = blob, timestamp, encode, decode
J.val, J.field, J.int, J.str, J.array = val, field, int, str, array
return J
