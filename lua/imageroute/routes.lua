--- imageroute.routes: routes declared in a Lua file, loaded by name.
--
-- A routes file keeps an application's contracts in one reviewed place. It is a Lua chunk that
-- returns either a map `name -> route config` or a list of route configs (each with a `name`); the
-- configs are what `imageroute.route{...}` takes (see `examples/routes.lua`). The chunk runs with
-- an environment holding only `os.getenv`, so it is data, not a program.
--
-- Loading is bounded: a file larger than `MAX_FILE_BYTES` is refused unread, and the chunk runs in
-- its own coroutine under an instruction-count hook that stops it after `MAX_INSTRUCTIONS` VM
-- instructions, `MAX_SECONDS` of wall-clock time, or when the Lua heap has grown by more than
-- `MAX_MEMORY_KB` (checked every `HOOK_EVERY` instructions: a single C call such as `string.rep`
-- cannot be interrupted), with a validation error naming the file. An `api_key` function declared in
-- the file runs under the same bounds whenever it is called.
--
--    local routes = require("imageroute.routes")
--    local gateway = assert(routes.get("config/routes.lua", "acme-chat"))
--
-- An entry with `usd =` declares a budget (the fields of `imageroute.budget`: `usd`, `per`,
-- `unknown_price`, `state`; its name is the entry's), which the file's routes and routers name
-- with `budget = "NAME"`; `state` (in routes and budgets) is a URL string, `"memory"` or
-- `"redis://host:port/db"` (see `imageroute.state`): the store the file names, which
-- `imageroute budget` reads.
--
-- Errors name the file, the route and the field.
-- @module imageroute.routes

local core = require("imageroute.core")
local contract = require("imageroute.contract")
require("imageroute.route") -- the routes it returns have their Lua methods (route:check())

local type, pairs, ipairs, tostring, load, sort = type, pairs, ipairs, tostring, load, table.sort
local co_create, co_resume, co_status, sethook = coroutine.create, coroutine.resume, coroutine.status, debug.sethook

local M = {}

--- Largest routes file read (bytes).
M.MAX_FILE_BYTES = 1024 * 1024
--- Most VM instructions a routes file (or one call of an `api_key` function from it) may run.
M.MAX_INSTRUCTIONS = 10000000
--- Longest wall-clock time a routes file (or one call of its `api_key` function) may run (seconds).
M.MAX_SECONDS = 2
--- Most the Lua heap may grow while a routes file runs (KiB).
M.MAX_MEMORY_KB = 256 * 1024
--- How often the hook checks (instructions).
M.HOOK_EVERY = 1000

local clock = os.clock
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then clock = socket.gettime end
end

-- Runs fn(...) in a new coroutine under the bounds; returns true, value | false, message.
local function bounded(what, fn, ...)
  local co = co_create(fn)
  local steps, t0, m0 = 0, clock(), collectgarbage("count")
  local limit = M.MAX_INSTRUCTIONS
  sethook(co, function()
    steps = steps + M.HOOK_EVERY
    if steps > limit then
      error(("%s ran more than %d instructions (an endless loop?)"):format(what, limit), 0)
    end
    if clock() - t0 > M.MAX_SECONDS then
      error(("%s ran longer than %g s (an endless loop?)"):format(what, M.MAX_SECONDS), 0)
    end
    if collectgarbage("count") - m0 > M.MAX_MEMORY_KB then
      error(("%s grew the heap by more than %d KiB"):format(what, M.MAX_MEMORY_KB), 0)
    end
  end, "", M.HOOK_EVERY)
  local ok, v = co_resume(co, ...)
  if ok and co_status(co) ~= "dead" then ok, v = false, what .. " yielded" end
  return ok, v
end

-- Reads at most MAX_FILE_BYTES of a file: text | nil, error kind, message.
local function read_bounded(path)
  local f, msg = io.open(path, "rb")
  if not f then return nil, "io", "cannot open " .. tostring(msg) end
  local size = f:seek("end")
  if not size then f:close(); return nil, "io", "cannot read it (not a regular file?)" end
  if size > M.MAX_FILE_BYTES then
    f:close()
    return nil, "validation", ("is %d bytes, larger than the %d a routes file may be"):format(size, M.MAX_FILE_BYTES)
  end
  f:seek("set")
  local text = f:read(M.MAX_FILE_BYTES + 1) or ""
  f:close()
  if #text > M.MAX_FILE_BYTES then return nil, "validation", "is larger than a routes file may be" end
  return text
end

local function fail(path, name, field, msg)
  return nil, core.error("validation", ("routes file %s%s: %s"):format(path,
    name and (": route '" .. tostring(name) .. "'") or "", msg), {path = path, route = name, field = field})
end

--- Loads every route of a routes file.
-- @tparam string path the file
-- @treturn table|nil name -> Route
-- @treturn[1] table the names, in order (file order for a list, sorted for a map)
-- @treturn[1] table the budgets the file declares (Budget objects, in the same order)
-- @treturn[2] table error: `kind = "validation"` (or `"io"` when the file cannot be read), `path`,
--   `route` (the route's name or position), `field` (the offending field)
function M.load(path)
  if type(path) ~= "string" then error("routes.load: path must be a string", 2) end
  local env = {os = {getenv = os.getenv}}
  local text, rkind, rmsg = read_bounded(path)
  if not text then return nil, core.error(rkind, ("routes file %s: %s"):format(path, rmsg), {path = path}) end
  local chunk, msg = load(text, "@" .. path, "t", env)
  if not chunk then
    return nil, core.error("validation", ("routes file %s: %s"):format(path, tostring(msg)), {path = path})
  end
  local ok, decl = bounded("the file", chunk)
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
  local out, order, routers, budgets = {}, {}, {}, {}
  for _, e in ipairs(entries) do
    if out[e.name] or routers[e.name] then return fail(path, e.name, "name", "is declared twice") end
    if e.cfg.usd ~= nil then -- a budget
      local bcfg = {name = e.name}
      for k, v in pairs(e.cfg) do if k ~= "name" then bcfg[k] = v end end
      local b, berr = require("imageroute.budget").new(bcfg)
      if not b then return fail(path, e.name, berr.field, berr.message) end
      budgets[#budgets + 1] = b
      goto continue
    end
    if e.cfg.routes ~= nil then -- a router: built below, once every route exists
      routers[e.name] = e
      order[#order + 1] = e.name
      goto continue
    end
    local cfg = {}
    for k, v in pairs(e.cfg) do cfg[k] = v end
    cfg.name = e.name
    if type(cfg.api_key) == "function" then -- it runs at call time: under the same bounds
      local f, what = cfg.api_key, ("it (route '%s' of routes file %s)"):format(e.name, path)
      cfg.api_key = function(...)
        local okf, v = bounded(what, f, ...)
        if not okf then error(v, 0) end
        return v
      end
    end
    if type(cfg.state) == "string" and cfg.state ~= "memory" then -- a store URL: checked now, opened at call time
      local oks, smsg = require("imageroute.state").parse_url(cfg.state)
      if not oks then return fail(path, e.name, "state", smsg) end
    end
    local okc, cmsg, cfield = contract.validate(cfg.contract)
    if not okc then return fail(path, e.name, cfield, cmsg) end
    local route, err = core.route(cfg)
    if not route then
      return fail(path, e.name, err and err.field, err and err.message or "invalid route")
    end
    out[e.name] = route
    order[#order + 1] = e.name
    ::continue::
  end
  for name, e in pairs(routers) do
    if type(e.cfg.routes) ~= "table" then return fail(path, name, "routes", "must be a list of route names") end
    local list = {}
    for i, rn in ipairs(e.cfg.routes) do
      list[i] = out[rn]
      if not list[i] then
        return fail(path, name, "routes", ("names '%s', which is not a route of this file"):format(tostring(rn)))
      end
    end
    local r, err = require("imageroute.router").new{name = name, routes = list, fallback_on = e.cfg.fallback_on,
      description = e.cfg.description}
    if not r then return fail(path, name, err.field, err.message) end
    out[name] = r
  end
  return out, order, budgets
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
