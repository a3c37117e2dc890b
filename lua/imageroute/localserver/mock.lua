--- imageroute.localserver.mock: what the API mocks share. The token rule (see
-- `imageroute.localserver`), size / quality / background defaults, input image URLs to bytes, the
-- output image of a request (behaviour `png_bytes`), and stored-file URLs (`/files/<name>`).
--
-- A mock needs this module only: `mock.json` (JSON helpers: NULL, field, str, blob, ...),
-- `mock.http` (json_response, error_response), `mock.fixtures` (fingerprint, seeded image) and
-- `mock.S` (the server state, new_id) are the modules it would otherwise require one by one.
-- @module imageroute.localserver.mock

local core = require("imageroute.core")
local J = require("imageroute.localserver.json")
local http = require("imageroute.localserver.http")
local fixtures = require("imageroute.localserver.png")
local S = require("imageroute.localserver.state")

local find, sub = string.find, string.sub
local ceil = math.ceil
local type, tostring, tonumber = type, tostring, tonumber
local val, field, int, str = J.val, J.field, J.int, J.str
local state, store_file = S.state, S.store_file

local M = {}

local OUTPUT_TOKENS = {low = 272, medium = 1056, high = 4160}

local function text_tokens(text)
  return ceil(#(text or "") / 4)
end

-- An option as the mock reads it: absent or "auto" is `default`, an alias its name.
local function normaliser(default, aliases)
  return function(v)
    v = str(v)
    if not v or v == "auto" then return default end
    return aliases and aliases[v] or v
  end
end

local norm_size = normaliser("1024x1024")
local norm_quality = normaliser("medium", {standard = "medium", hd = "high"})
local norm_background = normaliser("opaque")

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
  if big and big > 0 then return fixtures.random_png(big) end
  local png = fixtures.image(seed)
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

local function boolish(v)
  v = val(v)
  return v == true or v == "true" or v == "1"
end

--- The 403 an organization gets before it is verified for a GPT image model, with the API's
-- message (behaviour `unverified`), or nil without the behaviour.
-- @tparam table B the behaviour
-- @tparam string model the image model asked for
-- @treturn table|nil the response
function M.unverified(B, model)
  if field(B, "unverified") ~= true then return nil end
  return http.error_response(403, "Your organization must be verified to use the model `" .. tostring(model) ..
    "`. Please go to: https://platform.openai.com/settings/organization/general and click on Verify " ..
    "Organization. If you just verified, it can take up to 15 minutes for access to propagate.", J.NULL, J.NULL,
    "invalid_request_error")
end

M.text_tokens, M.norm_size, M.norm_quality, M.norm_background = text_tokens, norm_size, norm_quality, norm_background
M.url_bytes, M.make_image, M.base_url, M.file_url, M.boolish = url_bytes, make_image, base_url, file_url, boolish
M.json, M.http, M.fixtures, M.S = J, http, fixtures, S
return M
