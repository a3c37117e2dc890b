--- imageroute.shapes.common: what the request shapes share (building a body and reading a reply).
-- @module imageroute.shapes.common

local core = require("imageroute.core")
local json = require("imageroute.json")

local type, pairs, ipairs, rawlen, getmetatable, tostring, math_type =
  type, pairs, ipairs, rawlen, getmetatable, tostring, math.type

local M = {}

--- The placeholder the C core puts where it lifted a base64 image out of a reply ("@imageroute-image:N").
M.PLACEHOLDER = "^@imageroute%-image:(%d+)$"

function M.copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

function M.is_image(v)
  local mt = type(v) == "userdata" and getmetatable(v)
  return mt and mt.__name == "imageroute.Image" or false
end

--- A validation error of a request that cannot be built (nothing sent), as the core gives one.
function M.invalid(req, field, message)
  return core.error("validation", message, {field = field, route = req.route.name, attempts = 0})
end

--- Checks params.prompt (a non-empty string). nil, err when it is not.
function M.check_prompt(req)
  local p = req.params.prompt
  if type(p) ~= "string" or p == "" then
    return nil, M.invalid(req, "prompt", "params.prompt must be a non-empty string")
  end
  return true
end

--- The model sent: params.model, else the route's. nil, err when neither is a string.
function M.model(req)
  local m = req.params.model
  if m ~= nil and type(m) ~= "string" then return nil, M.invalid(req, "model", "params.model must be a string") end
  if m == nil then m = req.route.model end
  if type(m) ~= "string" then
    return nil, M.invalid(req, "model", "no model: give the route a model or pass params.model")
  end
  return m
end

--- The body as JSON text (imageroute.json), or nil, err.
function M.encode(req, body)
  local text, err = json.encode(body)
  if not text then return nil, M.invalid(req, "params", "params cannot be sent as JSON: " .. tostring(err)) end
  return text
end

--- A short printable excerpt (at most max bytes; whitespace runs as one space, controls as '?').
function M.excerpt(s, max)
  s = type(s) == "string" and s or ""
  local cut = s:sub(1, max or 200):gsub("[\n\r\t ]+", " "):gsub("[%c\127]", "?")
  if #s > (max or 200) then cut = cut .. "..." end
  return cut
end

--- A decode error for a 2xx reply that is not what the shape needs: "<what> (HTTP n, content-type
-- t): <excerpt of the body>", with `status`.
function M.decode_error(reply, what)
  return core.error("decode", ("%s (HTTP %d, content-type %s): %s"):format(what, reply.status or 0,
    reply.content_type or "none", M.excerpt(reply.text, 200)), {status = reply.status})
end

--- Decodes a JSON reply's text (once): the table, or nil and the decode error.
function M.decode(reply)
  local body = json.decode(reply.text or "")
  if type(body) ~= "table" then return nil, M.decode_error(reply, "the response is not valid JSON") end
  return body
end

--- The Image behind placeholder string s of a JSON reply (reply.images[N + 1]), named field in
-- errors: Image, or nil and a decode error; false when s is no placeholder.
function M.take(reply, s, field)
  local k = type(s) == "string" and s:match(M.PLACEHOLDER)
  if not k then return false end
  local img = (reply.images or {})[tonumber(k) + 1]
  if M.is_image(img) then return img end
  if type(img) == "string" then return nil, core.error("decode", field .. " " .. img) end
  if type(img) == "table" then return nil, img end
  return nil, core.error("decode", field .. ": internal placeholder out of range")
end

--- Puts a list of Images in the order of their `index` (their place in the reply), in place:
-- the ones decoded in the reply come before the downloaded ones. Images without a usable index
-- keep their relative order, at the end.
function M.order(list)
  local n = rawlen(list)
  if n < 2 then return list end
  local slots, extra, maxi = {}, {}, 0
  for k = 1, n do
    local img = list[k]
    local i = img.index
    if math_type(i) == "float" and i == i // 1 then i = math.tointeger(i) end
    if math_type(i) == "integer" and i >= 1 and i <= n * 64 and slots[i] == nil then
      slots[i] = img
      if i > maxi then maxi = i end
    else
      extra[#extra + 1] = img
    end
  end
  local j = 0
  for k = 1, maxi do
    if slots[k] ~= nil then j = j + 1; list[j] = slots[k] end
  end
  for _, img in ipairs(extra) do j = j + 1; list[j] = img end
  return list
end

--- Form values of a multipart field: strings as they are, integers without a decimal point,
-- booleans as true/false; nil for anything else.
function M.form_value(v)
  local t = type(v)
  if t == "string" then return v end
  if t == "boolean" then return v and "true" or "false" end
  if t == "number" then
    local i = math.tointeger(v)
    if i then return ("%d"):format(i) end
    return ("%.14g"):format(v)
  end
  return nil
end

return M
