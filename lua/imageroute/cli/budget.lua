--- imageroute.cli.budget: `imageroute budget [NAME]`, what each budget of the routes file has spent,
-- reserved and left in its current period (USD), read from the store the file names for it (its
-- `state`: this process's memory, where nothing is spent yet, or a Redis server shared by the
-- processes that spend it).
--
--    imageroute --routes routes.lua budget
--    budget        period      store                     usd     spent   reserved  left
--    images-daily  2026-12-01  redis://127.0.0.1:6379/0  5.0000  1.3360  0.1670    3.4970
--
-- Exit codes: 0 every budget was read; 1 a store could not be read (its row says why); 2 no routes
-- file, a file that does not load, or no budget of that name.
-- @module imageroute.cli.budget

local common = require("imageroute.cli.common")
local routes_file = require("imageroute.routes")
local to_json = require("imageroute.compare").to_json

local format = string.format

local M = {}

--- Adds the `budget` command to the parser.
-- @tparam table parser the argparse parser
-- @tparam function help the CLI's help installer (`help(cmd, epilog)`)
-- @tparam[opt] string epilog
function M.register(parser, help, epilog)
  local cmd = parser:command("budget", "Show spent / reserved / left (USD) in the current period of each budget "
    .. "of the routes file (entries with usd = ...), read from the store the file names (state = ...).")
  cmd:argument("budget", "One budget's name (default: every budget of the file)."):args("?")
  help(cmd, epilog)
  cmd:flag("--json", "Print the budgets as JSON.")
end

local function usd(v) return v and format("%.4f", v) or "-" end

--- Runs `imageroute budget`.
-- @tparam table ctx `{args = parsed arguments}`
-- @treturn integer exit code
function M.run(ctx)
  local args = ctx.args
  local path = args.routes_file
  if not path and io.open(common.DEFAULT_ROUTES) then path = common.DEFAULT_ROUTES end
  if not path then
    common.fail(2, "imageroute: budget reads the budgets of a routes file: pass --routes FILE (default ./"
      .. common.DEFAULT_ROUTES .. ", which does not exist)")
  end
  local all, order, budgets = routes_file.load(path)
  if not all then common.fail(2, "imageroute: " .. common.message(order)) end
  local list = {}
  for _, b in ipairs(budgets) do
    if not args.budget or b.name == args.budget then list[#list + 1] = b end
  end
  if args.budget and #list == 0 then
    common.fail(2, format("imageroute: routes file %s declares no budget '%s'", path, args.budget))
  end
  local rows, out, failed = {{"budget", "period", "store", "usd", "spent", "reserved", "left"}}, {}, false
  for _, b in ipairs(list) do
    local st = b:status()
    local e = st.error
    if e then failed = true end
    out[#out + 1] = {name = st.name, period = st.period, per = b.per, store = st.store, usd = st.usd,
      spent = st.spent, reserved = st.reserved, left = st.left,
      error = e and {kind = e.kind, code = e.code, message = e.message} or nil}
    rows[#rows + 1] = {st.name, st.period, st.store, usd(st.usd), usd(st.spent), usd(st.reserved),
      e and ("unreadable: " .. tostring(e.code)) or usd(st.left)}
    if e then io.stderr:write("imageroute: budget ", st.name, ": ", common.message(e), "\n") end
  end
  if args.json then
    io.write(to_json({routes_file = path, budgets = out}), "\n")
  elseif #list == 0 then
    io.write(format("routes file %s declares no budget (an entry with usd = ...)\n", path))
  else
    io.write(common.table_text(rows), "\n")
  end
  return failed and 1 or 0
end

return M
