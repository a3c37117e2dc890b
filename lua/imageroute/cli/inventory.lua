-- imageroute.cli.inventory: `imageroute log inventory [FILE]`, the migration table of a call log
-- (imageroute.billing.inventory). Internal to the command (its public face is imageroute.cli).

local imageroute = require("imageroute")
local routes_file = require("imageroute.routes")
local inventory = require("imageroute.billing.inventory")
local compare = require("imageroute.compare")
local common = require("imageroute.cli.common")

local M = {}

function M.add(log_parser, help, opt, epilog)
  local c = log_parser:command("inventory", "Per route, the capabilities the log shows it used, each mapped to "
    .. "its official replacement (Images API, Responses) and whether an official route of the routes file covers "
    .. "it: the migration table.")
  c:argument("file", "The log (default: the routes file's log, else ./out/" .. common.LOG_NAME .. ")."):args("?")
  help(c, epilog)
  opt(c, "-o --out", "The output directory whose log to read (default ./out).", "DIR")
  c:flag("--json", "Print the inventory as JSON.")
end

-- The routes of the routes file, when there is one (coverage needs them; the inventory does not).
local function routes_of(ctx)
  local path = ctx.args.routes_file
  if not path and not ctx.args["local"] and common.file_exists(common.DEFAULT_ROUTES) then
    path = common.DEFAULT_ROUTES
  end
  if not path then return nil, {}, nil end
  local all, order = routes_file.load(path)
  if not all then common.fail(2, "imageroute: " .. common.message(order)) end
  return all, order, path
end

function M.run(ctx)
  local args = ctx.args
  local all, order, rpath = routes_of(ctx)
  local path = args.file
  if not path then
    for _, name in ipairs(order) do
      local l = all[name].log
      if type(l) == "string" then path = l break end
      if type(l) == "table" and type(l.path) == "string" then path = l.path break end
    end
  end
  if not path then
    ctx.log_dir = args.out and args.out:gsub("/+$", "") or nil
    path = common.log_path(ctx)
  end
  local records, err = imageroute.log.read(path)
  if not records then
    io.stderr:write("imageroute: cannot read the call log: ", common.message(err), "\n")
    return 1
  end
  local inv = inventory.build(records, all, order)
  inv.log, inv.routes_file = path, rpath
  if args.json then
    io.write(compare.to_json(inv), "\n")
    return 0
  end
  io.write("call log ", path, rpath and ("  routes file " .. rpath) or "  (no routes file: coverage unknown)", "\n")
  io.write(inventory.text(inv, common.table_text))
  return 0
end

return M
