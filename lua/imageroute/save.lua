--- imageroute.save: where a call's images go on disk: the per-call option `save_to` (checked before
-- sending, completed after), safe file names, and saving a result's images into a directory.
-- (Each Image saves itself: `Image:save`, in the C core, src/image.c.)
-- @module imageroute.save

local core = require("imageroute.core")

local M = {}

--- The name of image i of count for a save_to target: the target itself for one image, else
-- "<stem>-i<.ext>" (the same rule as the C core's).
local function numbered(target, i, count)
  if count <= 1 then return target end
  local stem, ext = target:match("^(.-)(%.[^./]+)$")
  if not stem or stem == "" or stem:sub(-1) == "/" then stem, ext = target, "" end
  return ("%s-%d%s"):format(stem, i, ext)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Checks opts.save_to before anything is sent: a file path whose names are free (or overwrite).
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn true|nil
-- @treturn[2] table a `validation` error (`field = "save_to"`)
function M.check_save_to(params, opts)
  local to = opts and opts.save_to
  if to == nil then return true end
  local function refuse(msg)
    return nil, core.error("validation", msg, {field = "save_to", fix = "pass opts.save_to = \"dir/name.png\""})
  end
  if type(to) ~= "string" or to == "" or to:sub(-1) == "/" or to:find("\0", 1, true) then
    return refuse("opts.save_to must be a file path such as out/fox.png")
  end
  local dir = to:match("^(.*)/[^/]*$") or "."
  if dir ~= "" and not exists(dir) then return refuse("opts.save_to: the directory " .. dir .. " does not exist") end
  local n = type(params) == "table" and math.tointeger(params.n) or 1
  if not opts.overwrite then
    for i = 1, math.max(1, math.min(n, 16)) do
      local name = numbered(to, i, n)
      if exists(name) then
        return nil, core.error("validation", ("opts.save_to: %s exists (pass opts.overwrite = true to replace it)")
          :format(name), {field = "save_to", path = name})
      end
    end
  end
  return true
end

--- After a call with save_to: the images the core could not decode into files as they arrived
-- (streamed events, downloaded links) are saved now, under the same names.
-- @tparam table res the result
-- @tparam table opts the call's options
-- @treturn table|nil res
-- @treturn[2] table the error of the save that failed (`images` carried)
function M.save_rest(res, opts)
  local count = #res.images
  for i, img in ipairs(res.images) do
    if not img.path then
      local p, err = img:save(numbered(opts.save_to, i, count), {overwrite = true})
      if not p then
        err.images = res.images
        return nil, err
      end
    end
  end
  return res
end

--- Makes a file name safe to join under a directory: letters, digits, '-', '_' and '.', no
-- leading dot, at most 80 characters. Names derived from prompts or ids go through this, so they
-- can never climb out of the output directory.
-- @tparam string s
-- @treturn string
function M.safe_name(s)
  s = tostring(s):gsub("[^%w%-_%.]+", "-"):gsub("^[%.%-]+", ""):gsub("%.%.+", ".")
  if #s > 80 then s = s:sub(1, 80) end
  if s == "" then s = "image" end
  return s
end

--- Saves every image of a result (or of an error that carries `images`) into a directory, as
-- `<name>-<i>.<format>`, atomically, never replacing a file unless `opts.overwrite`.
-- @tparam table result a result or an error with `images`
-- @tparam string dir an existing directory
-- @tparam[opt] table opts `name` (default: the result's request id, else "image"; made safe with
--   `safe_name`), `overwrite` (boolean), `durable` (boolean: fsync each file before its rename)
-- @treturn {table,...} one `{path =, bytes =, sha256 =}` per image (bytes: integer)
-- @treturn[2] nil
-- @treturn[2] table error (`kind = "io"`, `path`, `errno`) that still carries `images` (nothing
--   is lost: save them elsewhere) and `saved` (the files written before the failure)
function M.save(result, dir, opts)
  assert(type(result) == "table" and type(result.images) == "table", "save: a result with images expected")
  assert(type(dir) == "string", "save: a directory expected")
  opts = opts or {}
  local base = M.safe_name(opts.name or result.request_id or result.response_id or "image")
  local saved = {}
  for i, img in ipairs(result.images) do
    local path = string.format("%s/%s-%d.%s", dir, base, i, img.format or "bin")
    local p, err = img:save(path, {overwrite = opts.overwrite, durable = opts.durable})
    if not p then
      err.images = result.images
      err.saved = saved
      return nil, err
    end
    saved[#saved + 1] = {path = p, bytes = err, sha256 = img.sha256}
  end
  return saved
end

return M
