--- JSON for imageroute: lua-cjson, with JSON arrays kept as arrays.
--
-- Debian's lua-cjson 2.1.0 encodes every empty table as `{}` and decodes `[]` and `{}` alike, so
-- an empty array echoed back from a reply (`summary: []`, `annotations: []`) would go out as an
-- object where the API's schema types an array. This module keeps the difference:
--
-- * `array(t)` marks a table (empty or not) as a JSON array, `is_array(t)` tells;
-- * `encode(v)` sends a marked table as an array, `[]` when it is empty;
-- * `decode(s)` marks every array of the text it reads, so a reply's `[]` encodes back as `[]`
--   (the reply is decoded another way rather than by a table of field names: every array of the
--   text is marked, whatever the field, so nothing depends on a list of field names going stale).
--
-- A private cjson instance (`cjson.new()`) is used, so settings other code makes on `cjson` are
-- never touched; `null` decodes to nil, integral numbers to integers, and non-finite numbers are
-- refused on both sides.
-- @module imageroute.json

local cjson = require("cjson")

local M = {}

local codec = cjson.new()
codec.encode_sparse_array(true)
codec.encode_invalid_numbers(false)
codec.decode_invalid_numbers(false)

local NULL = codec.null
local MAX_DEPTH = 1000

local ARRAY = {__name = "imageroute.array", __jsontype = "array"}

local type, pairs, next, getmetatable, setmetatable = type, pairs, next, getmetatable, setmetatable
local math_type, tointeger = math.type, math.tointeger

--- Marks a table as a JSON array (`[]` when empty) and returns it.
-- @tparam[opt] table t the table to mark (a new empty one when nil); it must have no metatable
-- of its own
-- @treturn table t
-- @raise when t is not a table or already has another metatable
function M.array(t)
  if t == nil then t = {} end
  if type(t) ~= "table" then error("imageroute.array: a table expected, got " .. type(t), 2) end
  local mt = getmetatable(t)
  if mt ~= nil and mt ~= ARRAY then error("imageroute.array: the table already has a metatable", 2) end
  return setmetatable(t, ARRAY)
end

--- Tells whether a table is marked as a JSON array.
-- @param v any value
-- @treturn boolean
function M.is_array(v)
  return type(v) == "table" and getmetatable(v) == ARRAY
end

-- A token standing for an empty array inside the text cjson writes; chosen per process.
local EMPTY = string.format("imageroute-empty-array-%08x%08x", math.random(0, 0x7fffffff), math.random(0, 0x7fffffff))
local EMPTY_QUOTED = '"' .. EMPTY .. '"'

-- Copies v, replacing each marked empty table by the token. Tables are copied (never changed),
-- so a caller's params stay as they were.
local function prepare(v, depth, seen)
  if type(v) ~= "table" then return v, false end
  if depth > MAX_DEPTH then error("nested too deeply", 0) end
  if seen[v] then error("a table refers to itself", 0) end
  local marked = getmetatable(v) == ARRAY
  if marked and next(v) == nil then return EMPTY, true end
  seen[v] = true
  local out, any = {}, false
  for k, x in pairs(v) do
    local y, used = prepare(x, depth + 1, seen)
    out[k] = y
    any = any or used
  end
  seen[v] = nil
  return out, any
end

--- Encodes a value as JSON text.
-- @param v a table, string, number, boolean or nil (`null`)
-- @treturn[1] string the JSON text
-- @treturn[2] nil
-- @treturn[2] string why it cannot be encoded (a function, a cycle, NaN, mixed keys...)
function M.encode(v)
  local ok, prepared, used = pcall(prepare, v, 0, {})
  if not ok then return nil, prepared end
  local ok2, s = pcall(codec.encode, prepared)
  if not ok2 then return nil, s end
  if used then
    -- the token is made of letters, digits and hyphens only, so it is written as it is
    s = s:gsub(EMPTY_QUOTED:gsub("%-", "%%-"), "[]")
  end
  return s
end

-- Marks every array of a decoded value; nulls become nil, integral floats integers.
-- Arrays are found in the text: a decoded empty table came from `{}` or from `[]`, and the
-- positions of the empty arrays in the text tell which (see find_empty_arrays).
local function fix(v, depth)
  if depth > MAX_DEPTH then return v end
  for k, x in pairs(v) do
    if x == NULL then
      v[k] = nil
    elseif type(x) == "table" then
      fix(x, depth + 1)
    elseif math_type(x) == "float" then
      local i = tointeger(x)
      if i then v[k] = i end
    end
  end
  if v[1] ~= nil then setmetatable(v, ARRAY) end
  return v
end

-- Replaces every empty array `[ ]` outside strings by the token string, in one pass.
local function mark_empty_arrays(s)
  if not s:find("[", 1, true) then return s, false end
  local parts, n, pos, last, found = {}, 0, 1, 1, false
  while true do
    local at = s:find('[%["]', pos)
    if not at then break end
    if s:byte(at) == 34 then -- a string: skip to its closing quote
      local i = at + 1
      while true do
        local q = s:find('["\\]', i)
        if not q then return s, found end -- unterminated: cjson reports it
        if s:byte(q) == 92 then i = q + 2 else pos = q + 1; break end
      end
    else
      local close = s:match("^[ \t\r\n]*()%]", at + 1)
      if close then
        n = n + 1; parts[n] = s:sub(last, at - 1)
        n = n + 1; parts[n] = EMPTY_QUOTED
        last, pos, found = close + 1, close + 1, true
      else
        pos = at + 1
      end
    end
  end
  if not found then return s, false end
  parts[n + 1] = s:sub(last)
  return table.concat(parts), true
end

local function restore(v, depth)
  if depth > MAX_DEPTH then return v end
  for k, x in pairs(v) do
    if x == EMPTY then v[k] = setmetatable({}, ARRAY)
    elseif type(x) == "table" then restore(x, depth + 1) end
  end
  return v
end

--- Decodes JSON text; every JSON array in it comes back marked (see `array`), `null` as nil.
-- @tparam string s the JSON text
-- @return[1] the value (a table, string, number, boolean, or nil for `null`)
-- @treturn[2] nil
-- @treturn[2] string cjson's message for text that is not JSON
function M.decode(s)
  if type(s) ~= "string" then return nil, "JSON text must be a string" end
  local text, marked = mark_empty_arrays(s)
  local ok, v = pcall(codec.decode, text)
  if not ok then return nil, v end
  if v == NULL then return nil end
  if marked and v == EMPTY then return setmetatable({}, ARRAY) end
  if type(v) ~= "table" then return v end
  fix(v, 0)
  if marked then restore(v, 0) end
  return v
end

--- The value cjson uses for `null` when encoding (a light userdata).
M.null = NULL

return M
