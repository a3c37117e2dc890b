-- imageroute.cli.common: what every subcommand of the `imageroute` command shares: the exit
-- failure, small helpers, standard input, the bundled local server (--local) and the routes.
-- Internal to the command (its public face is imageroute.cli).

local imageroute = require("imageroute")
local routes_file = require("imageroute.routes")
local compare = require("imageroute.compare")
local core = require("imageroute.core")
local sys = require("imageroute.sys")

local format, concat = string.format, table.concat

local M = {}

-- The routes file read when `--routes` is not given.
M.DEFAULT_ROUTES = "routes.lua"
-- The output directory when `-o` does not name one.
M.DEFAULT_OUT = "out"
-- The call log of the built-in routes, under the output directory.
M.LOG_NAME = "imageroute-calls.jsonl"
-- The call log of the --local routes: the local server's made-up costs never mix with real ones.
M.LOCAL_LOG_NAME = "imageroute-local-calls.jsonl"

-- ---------------------------------------------------------------------------------------------
-- failing with an exit code

-- A failure that ends the command with an exit code (2: usage, setup or refused before sending;
-- 1: a call failed).
M.Exit = {}
M.Exit.__index = M.Exit

function M.fail(code, msg)
  error(setmetatable({code = code, msg = msg}, M.Exit), 0)
end
local fail = M.fail

-- ---------------------------------------------------------------------------------------------
-- small helpers

M.shell_quote, M.read_file = sys.shell_quote, sys.read_file
local shell_quote = M.shell_quote

function M.file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end
local file_exists = M.file_exists

-- True when path is an existing directory.
function M.is_dir(path)
  return os.execute("test -d " .. shell_quote(path)) == true
end

function M.now()
  return core.now()
end

M.own_pid = sys.own_pid

function M.mkdir(dir)
  local ok, err = compare.mkdir(dir)
  if not ok then fail(2, "imageroute: " .. M.message(err)) end -- before anything is sent: setup
end

function M.secs(v)
  if type(v) ~= "number" then return "-" end
  return format("%.3fs", v)
end

-- The message of an error value (an imageroute error table, or a string), as one line: never
-- "imageroute: imageroute io error: ...".
function M.message(err)
  if type(err) == "table" and type(err.message) == "string" then return M.oneline(err.message) end
  return M.oneline(tostring(err))
end

-- Text for a line: no newlines, at most n characters.
function M.oneline(s, n)
  s = tostring(s):gsub("[\r\n\t]+", " ")
  if n and #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end
local oneline = M.oneline

-- True when descriptor fd (default 1, stdout) is a terminal (and TERM is not dumb).
function M.is_tty(fd)
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return os.execute("test -t " .. (fd or 1)) == true
end

-- Aligned columns: rows of strings; the last column is not padded.
function M.table_text(rows)
  local w = {}
  for _, r in ipairs(rows) do
    for i, c in ipairs(r) do
      if i < #r and #c > (w[i] or 0) then w[i] = #c end
    end
  end
  local out = {}
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(r) do
      cells[i] = i < #r and (c .. string.rep(" ", w[i] - #c)) or c
    end
    out[#out + 1] = (concat(cells, "  "):gsub("%s+$", ""))
  end
  return concat(out, "\n")
end

-- Standard input, read once (`-` as the prompt or the batch file).
local stdin_text
function M.stdin()
  if stdin_text == nil then stdin_text = io.stdin:read("a") or "" end
  return stdin_text
end

-- The text argument `value`, or standard input when it is "-" (one trailing newline dropped); exit 2
-- when that is empty. what: "the prompt" | "the input".
function M.text_arg(value, what)
  if value ~= "-" then return value end
  local t = M.stdin():gsub("\r?\n$", "")
  if t:match("^%s*$") then
    fail(2, "imageroute: " .. what .. " from standard input ('-') is empty: pipe the text in, e.g. "
      .. "echo 'a lighthouse' | imageroute generate -")
  end
  return t
end

-- ---------------------------------------------------------------------------------------------
-- the local server (--local)

-- Starts the bundled local server in the background on a free loopback port
-- (imageroute.localserver.process; luasocket is needed only then). It exits by itself when this
-- process is gone (`owner_pid`), and its `stop` ends it.
function M.start_server()
  local process = require("imageroute.localserver.process")
  local server, why, log = process.start{timeout = 10}
  if not server then
    if why == "spawn" then fail(1, "imageroute: could not start the local server") end
    fail(1, "imageroute: the local server did not start: " .. oneline(log ~= "" and log or "no output", 400))
  end
  return server
end

-- ---------------------------------------------------------------------------------------------
-- routes

-- The names and meaning of the built-in routes (used without a routes file).
M.BUILTIN = {
  {name = "official", text = "the official lane, Images API, model gpt-image-1 (generate, edit)"},
  {name = "official-responses", text = "the official lane, Responses API, model gpt-5 + image tool gpt-image-1 "
    .. "(respond)"},
}

-- The built-in routes of --local: the same shapes on the bundled server, named for what they are.
M.BUILTIN_LOCAL = {
  {name = "local", text = "the local server, Images API, gpt-image-1 (generate, edit; made-up costs)"},
  {name = "local-responses", text = "the local server, Responses API, gpt-5 + gpt-image-1 (respond)"},
  {name = "local-gateway", text = "the local server as a provider gateway, chat shape, 0.03 USD a call"},
}

-- With --local, the official names still find the local routes.
local LOCAL_ALIAS = {official = "local", ["official-responses"] = "local-responses", gateway = "local-gateway"}

local SETUP_HELP = [[
imageroute: nothing to call: no routes file (./routes.lua) and OPENAI_API_KEY is not set. Either
  export OPENAI_API_KEY=sk-...                    # the official API (model gpt-image-1), then run again
  imageroute --routes FILE <command> ...          # your routes file, e.g. a copy of examples/routes.lua:
                                                  #   return {["official-images"] = {lane = "official",
                                                  #     shape = "images", model = "gpt-image-1"}}
  imageroute --local generate "a lighthouse"      # the bundled local server: see it work at once]]

local function builtin_configs(log_path)
  local billing = {unit = "token", currency = "USD"}
  return {
    {name = "official", lane = "official", shape = "images", model = "gpt-image-1", billing = billing,
      log = log_path},
    {name = "official-responses", lane = "official", shape = "responses", model = "gpt-5",
      image_model = "gpt-image-1", billing = billing, log = log_path},
  }
end

local function local_configs(base_url, log_path)
  local env = "IMAGEROUTE_LOCAL_KEY" -- never send a real key to the local server
  local billing = {unit = "token", currency = "USD", source = "the local server's made-up usage"}
  local who = "imageroute-localserver"
  return {
    {name = "local", lane = "official", provider = who, shape = "images", model = "gpt-image-1", base_url = base_url,
      api_key_env = env, billing = billing, log = log_path},
    {name = "local-responses", lane = "official", provider = who, shape = "responses", model = "gpt-5",
      image_model = "gpt-image-1", base_url = base_url, api_key_env = env, billing = billing, log = log_path},
    {name = "local-gateway", lane = "provider", provider = "local-gateway", shape = "chat",
      model = "gpt-image-1", base_url = base_url, api_key_env = env, max_retries = 0,
      billing = {unit = "call", price = 0.03, currency = "USD", source = "the local gateway's stand-in price"},
      accepted = "the bundled local server standing in for a provider gateway (imageroute --local)",
      log = log_path},
  }
end

-- The call log of this run's built-in routes: under -o DIR when it names a directory, else ./out.
function M.log_path(ctx)
  local dir = ctx.log_dir or M.DEFAULT_OUT
  return dir .. "/" .. (ctx.args["local"] and M.LOCAL_LOG_NAME or M.LOG_NAME)
end

-- The routes this run can use: ctx.routes (name -> Route), ctx.order, ctx.source.
function M.load_routes(ctx)
  if ctx.routes then return end
  local args = ctx.args
  local function builtin(list)
    ctx.routes, ctx.order = {}, {}
    for _, cfg in ipairs(list) do
      local r, err = imageroute.route(cfg)
      if not r then fail(1, "imageroute: built-in route " .. cfg.name .. ": " .. M.message(err)) end
      ctx.routes[cfg.name] = r
      ctx.order[#ctx.order + 1] = cfg.name
    end
    ctx.builtin = true
  end
  if args["local"] then
    if args.routes_file then
      fail(2, "imageroute: --local uses the built-in local routes (local, local-responses, local-gateway); "
        .. "drop --routes FILE, or point the file's base_url at a server you started")
    end
    ctx.server = M.start_server()
    builtin(local_configs(ctx.server.base_url, M.log_path(ctx)))
    ctx.source = "the built-in local routes on " .. ctx.server.base_url
    return
  end
  local path = args.routes_file
  if not path and file_exists(M.DEFAULT_ROUTES) then path = M.DEFAULT_ROUTES end
  if path then
    if args.command == "compare" and path:find(",", 1, true) and not file_exists(path) then
      fail(2, "imageroute: --routes names the routes file; choose the routes to compare with --route NAME, "
        .. "repeated (e.g. --route " .. path:gsub(",", " --route ") .. ")")
    end
    local all, order = routes_file.load(path)
    if not all then fail(2, "imageroute: " .. M.message(order)) end
    ctx.routes, ctx.order, ctx.source = all, order, path
    return
  end
  local key = os.getenv("OPENAI_API_KEY")
  if key and key ~= "" then
    builtin(builtin_configs(M.log_path(ctx)))
    ctx.source = "the built-in official routes"
    return
  end
  fail(2, SETUP_HELP)
end

-- The route for a call: name (--route NAME), else the command's default.
function M.pick_route(ctx, name, kind)
  M.load_routes(ctx)
  if name then
    if ctx.args["local"] and LOCAL_ALIAS[name] then name = LOCAL_ALIAS[name] end
    local r = ctx.routes[name]
    if not r then
      fail(2, format("imageroute: no route '%s' in %s (routes: %s)", name, ctx.source, concat(ctx.order, ", ")))
    end
    return r
  end
  if ctx.builtin then
    local prefix = ctx.args["local"] and "local" or "official"
    return ctx.routes[kind == "respond" and (prefix .. "-responses") or prefix]
  end
  if #ctx.order == 1 then return ctx.routes[ctx.order[1]] end
  fail(2, format("imageroute: %s declares several routes (%s): choose one with --route NAME", ctx.source,
    concat(ctx.order, ", ")))
end

return M
