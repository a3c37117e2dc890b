--- imageroute.routes: routes declared in a Lua file, loaded by name.
--
-- A routes file keeps an application's contracts in one reviewed place. It is a Lua chunk that
-- returns either a map `name -> route config` or a list of route configs (each with a `name`); the
-- configs are what `imageroute.route{...}` takes (see `examples/routes.lua`). The chunk runs with
-- an environment holding only `os.getenv`, so it is data, not a program.
--
--    local routes = require "imageroute.routes"
--    local gateway = assert(routes.get("config/routes.lua", "acme-chat"))
--
-- Errors name the file, the route and the field.
-- @module imageroute.routes

local core = require "imageroute.core"
local contract = require "imageroute.contract"

local type, pairs, ipairs, tostring, pcall, loadfile, sort = type, pairs, ipairs, tostring, pcall, loadfile, table.sort

local M = {}

local function fail(path, name, field, msg)
  return nil, core.error("validation", ("routes file %s%s: %s"):format(path,
    name and (": route '" .. tostring(name) .. "'") or "", msg), {path = path, route = name, field = field})
end

--- Loads every route of a routes file.
-- @tparam string path the file
-- @treturn table|nil name -> Route
-- @treturn[1] table the names, in order (file order for a list, sorted for a map)
-- @treturn[2] table error: `kind = "validation"` (or `"io"` when the file cannot be read), `path`,
--   `route` (the route's name or position), `field` (the offending field)
function M.load(path)
  if type(path) ~= "string" then error("routes.load: path must be a string", 2) end
  local env = {os = {getenv = os.getenv}}
  local chunk, msg = loadfile(path, "t", env)
  if not chunk then
    local kind = msg and msg:find("cannot open", 1, true) and "io" or "validation"
    return nil, core.error(kind, ("routes file %s: %s"):format(path, tostring(msg)), {path = path})
  end
  local ok, decl = pcall(chunk)
  if not ok then return fail(path, nil, nil, "error while loading: " .. tostring(decl)) end
  if type(decl) ~= "table" then return fail(path, nil, nil, "must return a table of routes") end
  local entries = {}
  if #decl > 0 then
    for k in pairs(decl) do
      if type(k) ~= "number" then return fail(path, k, nil, "mixes a list of routes with named routes") end
    end
    for i, cfg in ipairs(decl) do
      if type(cfg) ~= "table" then return fail(path, "#" .. i, nil, "must be a table") end
      if type(cfg.name) ~= "string" or cfg.name == "" then
        return fail(path, "#" .. i, "name", "routes in a list need a name")
      end
      entries[#entries + 1] = {name = cfg.name, cfg = cfg}
    end
  else
    local names = {}
    for k in pairs(decl) do
      if type(k) ~= "string" then return fail(path, tostring(k), nil, "route keys must be names (strings)") end
      names[#names + 1] = k
    end
    sort(names)
    for _, k in ipairs(names) do
      local cfg = decl[k]
      if type(cfg) ~= "table" then return fail(path, k, nil, "must be a table") end
      if cfg.name ~= nil and cfg.name ~= k then
        return fail(path, k, "name", ("is declared under '%s' but named '%s'"):format(k, tostring(cfg.name)))
      end
      entries[#entries + 1] = {name = k, cfg = cfg}
    end
  end
  local out, order = {}, {}
  for _, e in ipairs(entries) do
    if out[e.name] then return fail(path, e.name, "name", "is declared twice") end
    local cfg = {}
    for k, v in pairs(e.cfg) do cfg[k] = v end
    cfg.name = e.name
    local okc, cmsg, cfield = contract.validate(cfg.contract)
    if not okc then return fail(path, e.name, cfield, cmsg) end
    local route, err = core.route(cfg)
    if not route then
      return fail(path, e.name, err and err.field, err and err.message or "invalid route")
    end
    out[e.name] = route
    order[#order + 1] = e.name
  end
  return out, order
end

--- Loads one route of a routes file by name.
-- @tparam string path
-- @tparam string name
-- @treturn Route|nil
-- @treturn[2] table error as for `load`; `field = "name"` when the file has no such route
function M.get(path, name)
  local all, order = M.load(path)
  if not all then return nil, order end
  local r = all[name]
  if not r then
    return fail(path, name, "name", "no such route (the file declares: " .. table.concat(order, ", ") .. ")")
  end
  return r
end

return M
