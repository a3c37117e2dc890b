--- `data:` URLs (RFC 2397).
--
-- `data:[<mediatype>][;attribute=value]*[;base64],<data>`. Gateways return images as data URLs
-- (`b64_json` holding `data:image/png;base64,...`) and Chat Completions edit inputs take them as
-- `image_url.url`. Base64 goes through the C core (libb64, validated there); this module only
-- parses the header and percent-decodes.
-- @module imageroute.dataurl

local type, error, tonumber = type, error, tonumber
local byte, char, sub, find, match, gmatch, gsub, lower, format = string.byte, string.char, string.sub,
  string.find, string.match, string.gmatch, string.gsub, string.lower, string.format

local core = require("imageroute.core")
local b64encode, b64decode, sniff = core.b64encode, core.b64decode, core.sniff

local M = {}

-- RFC 2045 token characters (any printable ASCII except space and tspecials ()<>@,;:\"/[]?=).
local TOKEN = "[%w!#%$%%&'%*%+%-%.%^_`{|}~]+"
local MEDIA_TYPE = "^" .. TOKEN .. "/" .. TOKEN .. "$"
local PARAMETER = "^(" .. TOKEN .. ")=(.+)$"

local function argerror(n, fname, msg)
  error(format("bad argument #%d to '%s' (%s)", n, fname, msg), 3)
end

-- Spaces and tabs trimmed (scanned, not pattern-matched: linear on any input).
local function trim(s)
  local a = find(s, "[^ \t]")
  if not a then return "" end
  local e = #s
  while byte(s, e) == 32 or byte(s, e) == 9 do e = e - 1 end
  return sub(s, a, e)
end

-- `type/subtype[;name=value]*` without spaces, commas or quotes: safe to write into a data URL.
local function valid_mime(mime)
  local base, rest = match(mime, "^([^;]*)(.*)$")
  if not find(base, MEDIA_TYPE) then return false end
  for param in gmatch(rest, ";([^;]*)") do
    if not find(param, "^" .. TOKEN .. "=[^%c ;,\"]+$") then return false end
  end
  return true
end

local function hex_byte(h)
  return char(tonumber(h, 16))
end

-- %XX escapes decoded; nil when a "%" is not followed by two hex digits.
local function percent_decode(s)
  local p = find(s, "%", 1, true)
  if not p then return s end
  while p do
    if not find(s, "^%x%x", p + 1) then return nil end
    p = find(s, "%", p + 3, true)
  end
  return (gsub(s, "%%(%x%x)", hex_byte))
end

--- Decode a data URL.
-- The scheme is matched case-insensitively; the media type and parameter names are lower-cased.
-- An empty media type means `text/plain;charset=US-ASCII` (RFC 2397 section 2), so
-- `data:,x` gives mime `"text/plain"` and `params.charset == "US-ASCII"`; `data:;charset=utf-8,x`
-- keeps the given charset. Parameter values are percent-decoded (a quoted-string value loses its
-- quotes); when a parameter repeats, the first value wins. The data is percent-decoded, then, with
-- `;base64`, base64-decoded by `core.b64decode` (whitespace ignored, alphabet and padding strict).
-- @tparam string s the URL, e.g. `"data:image/png;base64,iVBORw0KGgo="`
-- @treturn string the decoded bytes
-- @treturn string the media type, lower-case, e.g. `"image/png"`
-- @treturn table the parameters, `{[lower-case name] = value}` (empty when there are none)
-- @return on malformed input: `nil` and a short message, one of `"not a data URL"`,
--   `"malformed data URL: missing comma"`, `"malformed data URL: invalid media type"`,
--   `"malformed data URL: invalid parameter"`, `"malformed data URL: bad percent escape"`, or the
--   core's `"invalid base64: ..."`
-- @raise `bad argument #1 to 'decode' (string expected, got <type>)` when `s` is not a string
function M.decode(s)
  if type(s) ~= "string" then argerror(1, "decode", "string expected, got " .. type(s)) end
  if lower(sub(s, 1, 5)) ~= "data:" then return nil, "not a data URL" end
  local comma = find(s, ",", 6, true)
  if not comma then return nil, "malformed data URL: missing comma" end

  local parts, n = {}, 0
  for seg in gmatch(sub(s, 6, comma - 1) .. ";", "([^;]*);") do
    n = n + 1
    parts[n] = trim(seg)
  end
  local base64 = false
  if n > 1 and lower(parts[n]) == "base64" then
    base64 = true
    n = n - 1
  end

  local mime = lower(parts[1])
  local params = {}
  if mime ~= "" and not find(mime, MEDIA_TYPE) then return nil, "malformed data URL: invalid media type" end
  for k = 2, n do
    local name, value = match(parts[k], PARAMETER)
    if not name then return nil, "malformed data URL: invalid parameter" end
    local quoted = match(value, '^"(.*)"$')
    if quoted then
      value = gsub(quoted, "\\(.)", "%1")
    else
      if find(value, "[%c \"]") then return nil, "malformed data URL: invalid parameter" end
      value = percent_decode(value)
      if not value then return nil, "malformed data URL: bad percent escape" end
    end
    name = lower(name)
    if params[name] == nil then params[name] = value end
  end
  if mime == "" then
    mime = "text/plain"
    if params.charset == nil then params.charset = "US-ASCII" end
  end

  local data = sub(s, comma + 1)
  data = percent_decode(data)
  if not data then return nil, "malformed data URL: bad percent escape" end
  if base64 then
    local bytes, err = b64decode(data)
    if not bytes then return nil, err end
    data = bytes
  end
  return data, mime, params
end

--- Encode bytes as a base64 data URL.
-- @tparam string bytes the payload (any bytes, may be empty)
-- @tparam[opt] string mime the media type, optionally with parameters (`"image/png"`,
--   `"text/plain;charset=utf-8"`), written as given; when absent it is sniffed from the magic
--   bytes with `core.sniff` (PNG, JPEG, WebP, GIF)
-- @treturn string `"data:<mime>;base64,<base64>"` (base64 by `core.b64encode`, no line breaks)
-- @return `nil, "cannot sniff media type: pass mime"` when `mime` is absent and the bytes are not
--   a recognised image
-- @raise `bad argument #1 to 'encode' (string expected, got <type>)`,
--   `bad argument #2 to 'encode' (string expected, got <type>)`, or
--   `bad argument #2 to 'encode' (invalid media type '<mime>')` when `mime` is not
--   `type/subtype[;name=value]*`
function M.encode(bytes, mime)
  if type(bytes) ~= "string" then argerror(1, "encode", "string expected, got " .. type(bytes)) end
  if mime == nil then
    mime = sniff(bytes)
    if not mime then return nil, "cannot sniff media type: pass mime" end
  elseif type(mime) ~= "string" then
    argerror(2, "encode", "string expected, got " .. type(mime))
  elseif not valid_mime(mime) then
    argerror(2, "encode", "invalid media type '" .. mime .. "'")
  end
  return "data:" .. mime .. ";base64," .. b64encode(bytes)
end

return M
