--- imageroute.compare.json: plain data as JSON with sorted keys (stable, diffable files), for the
-- comparison record (`compare.json`) and the command line's JSON output.
-- @module imageroute.compare.json

local json = require("imageroute.json")

local type, pairs, ipairs, tostring, concat, sort, format =
  type, pairs, ipairs, tostring, table.concat, table.sort, string.format
local math_type = math.type

local M = {}

-- Keys whose value is a list: an empty table under them is written as [] (else {}).
local LIST_KEYS = {entries = true, images = true, inputs = true, files = true, partial_files = true,
  attempts = true, rows = true, reports = true, jobs = true, image_calls = true}

local function json_string(s)
  local out = json.encode(s)
  if not out then out = json.encode((s:gsub("[\128-\255]", "?"))) end
  return (out:gsub("\\/", "/"))
end

local function is_list(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math_type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local function encode(v, key, indent, depth, seen, out)
  local tv = type(v)
  if tv == "string" then out[#out + 1] = json_string(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif math_type(v) == "integer" then out[#out + 1] = format("%d", v)
    else out[#out + 1] = format("%.14g", v):gsub("^(%-?%d+)$", "%1.0") end
  elseif tv == "boolean" then out[#out + 1] = tostring(v)
  elseif tv == "table" then
    if seen[v] then error("to_json: a cycle", 0) end
    seen[v] = true
    local nl = indent and ("\n" .. indent:rep(depth + 1)) or ""
    local close = indent and ("\n" .. indent:rep(depth)) or ""
    local sep = indent and ": " or ":"
    if is_list(v) then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl
        encode(x, nil, indent, depth + 1, seen, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k, x in pairs(v) do
        local tx = type(x)
        if (type(k) == "string" or math_type(k) == "integer") and tx ~= "function" and tx ~= "userdata"
          and tx ~= "thread" then
          keys[#keys + 1] = tostring(k)
        end
      end
      if #keys == 0 then
        out[#out + 1] = LIST_KEYS[key] and "[]" or "{}"
      else
        sort(keys)
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          local x = v[k]
          if x == nil then x = v[tonumber(k)] end
          out[#out + 1] = nl .. json_string(k) .. sep
          encode(x, k, indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "}"
      end
    end
    seen[v] = nil
  else
    out[#out + 1] = "null"
  end
end

--- Encodes plain data as JSON with sorted keys. Functions and userdata (an Image, a Route) are left
-- out, so a record or a result summary can be written as is; the command line's `--json` uses it.
-- @param value a string, number, boolean or table of those
-- @tparam[opt] string indent e.g. `"  "` for an indented text; compact when nil
-- @treturn string JSON text
-- @raise on a table cycle
function M.to_json(value, indent)
  local out = {}
  encode(value, nil, indent, 0, {}, out)
  return concat(out)
end

return M
