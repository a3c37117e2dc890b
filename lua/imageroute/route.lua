--- imageroute.route: the Route type's Lua half. A Route is a userdata of the C core (src/route.c:
-- the validated, immutable configuration, its fields and `route:config()`); its Lua methods are
-- defined here, once, in the methods table the C type looks them up in (`core.route_methods`), and
-- nowhere else:
--
-- * `route:check([opts])`: the acceptance report of the route's contract (`imageroute.contract.check`;
--   `opts.live = true` adds the rows of `imageroute.live`).
--
-- `new(config)` is `imageroute.route` (documented there): the Lua-side normalisation of a config
-- (a Budget object named by its name, a state store by its id or URL, the client-side `limits`
-- checked) before the core validates it.
-- The Route type is documented in ldoc/types.lua.
-- @module imageroute.route

local core = require("imageroute.core")
local contract = require("imageroute.contract")
local budget = require("imageroute.budget")
local limits = require("imageroute.limits")
local state = require("imageroute.state")

local type, pairs = type, pairs

local M = {}

--- The Lua methods of every Route (looked up by the C type after its own).
M.methods = core.route_methods

-- route:check([opts]): the acceptance report of a route, one row per gate (`imageroute.contract.check`;
-- documented with the Route type).
M.methods.check = function(route, opts) return contract.check(route, opts) end

--- Builds a route (see `imageroute.route`).
-- @tparam table config
-- @treturn Route|nil
-- @treturn[2] table a `validation` error with `field`
function M.new(config)
  if type(config) == "table" and budget.is_budget(config.budget) then -- the route names its budget
    local c = {}
    for k, v in pairs(config) do c[k] = v end
    c.budget = config.budget.name
    config = c
  end
  if type(config) == "table" and state.is_store(config.state) then -- the route keeps its store's id
    local c = {}
    for k, v in pairs(config) do c[k] = v end
    c.state = config.state.id
    config = c
  elseif type(config) == "table" and type(config.state) == "string" then -- a URL: checked now
    local _, serr = state.resolve(config.state)
    if serr then serr.field = "state"; return nil, serr end
  end
  if type(config) == "table" and config.limits ~= nil then
    local ok, msg = limits.normalise(config.limits)
    if not ok then return nil, core.error("validation", msg, {field = "limits"}) end
  end
  return core.route(config)
end

return M
