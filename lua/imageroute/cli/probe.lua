-- imageroute.cli.probe: `imageroute probe ROUTE [--failed]`, the billing test of a route
-- (imageroute.billing.probe). Internal to the command (its public face is imageroute.cli).

local probe = require("imageroute.billing.probe")
local compare = require("imageroute.compare")
local common = require("imageroute.cli.common")
local output = require("imageroute.cli.output")

local M = {}

-- The call log of a route for the billing commands: --log FILE, else the route's own, else the
-- command's default (./out/imageroute-calls.jsonl, or the --local one).
function M.log_for(ctx, route)
  if ctx.args.log then return ctx.args.log end
  local function path_of(r)
    local l = r and r.log
    if type(l) == "string" then return l end
    if type(l) == "table" and type(l.path) == "string" then return l.path end
  end
  if route then return path_of(route) or common.log_path(ctx) end
  if pcall(common.load_routes, ctx) then -- the routes file's first log
    for _, name in ipairs(ctx.order) do
      local p = path_of(ctx.routes[name])
      if p then return p end
    end
  end
  return common.log_path(ctx)
end

function M.add(parser, help, opt, epilog)
  local p = parser:command("probe", "The billing test of a route: its cheapest successful call (and, with "
    .. "--failed, one call the server refuses), a probe record in the call log, and what to compare on the "
    .. "dashboard.")
  p:argument("route", "The route to probe (a route, not a router).")
  help(p, epilog)
  p:flag("--failed", "Also send one call with a deliberately invalid field (past the stop rules): is a refused "
    .. "call billed?")
  opt(p, "--log", "The call log to write the calls and the probe record to (default: the route's log, else "
    .. "./out/" .. common.LOG_NAME .. ").", "FILE")
  opt(p, "--timeout", "Seconds per attempt.", "SECONDS", tonumber)
  p:flag("--json", "Print the probe record as JSON.")
end

function M.run(ctx)
  local args = ctx.args
  local route = common.pick_route(ctx, args.route, "generate")
  if type(route.routes) == "table" then
    common.fail(2, "imageroute: probe takes one route, not the router '" .. tostring(route.name) .. "': probe "
      .. "each of its routes")
  end
  local path = M.log_for(ctx, route)
  local dir = path:match("^(.*)/[^/]*$")
  if dir and dir ~= "" then common.mkdir(dir) end
  local rec, err = probe.run(route, {failed = args.failed, log = path, timeout = args.timeout})
  if not rec then
    io.stderr:write("imageroute: ", output.error_text("probe", err), "\n")
    return output.exit_code(err)
  end
  if args.json then
    io.write(compare.to_json(rec), "\n")
  else
    io.write(probe.text(rec))
    io.write("log ", path, "\n")
  end
  local failed = rec.calls[2]
  if failed and failed.sent == false then
    io.stderr:write("imageroute: the refused call was not sent (", tostring(failed.error), ")\n")
    return 2
  end
  if failed and failed.ok then
    io.stderr:write("imageroute: the server accepted the invalid field ", tostring(failed.field), " = ",
      tostring(failed.value), ": it did not refuse the call (request ", tostring(failed.request_id), ")\n")
    return 1
  end
  return 0
end

return M
