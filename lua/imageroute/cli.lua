--- imageroute.cli: the `imageroute` command, as a module (`bin/imageroute` calls `main`).
--
--    imageroute --local generate "a lighthouse at dawn"        # the bundled local server: works at once
--    OPENAI_API_KEY=sk-... imageroute generate "a lighthouse"   # the official Images API, gpt-image-1
--    imageroute --routes routes.lua compare "a fox" --routes official-images,acme-chat
--
-- Subcommands: `generate`, `edit`, `respond`, `check`, `batch`, `log summary`, `compare`; each
-- has `--help`. Exit codes: 0 done, 1 a call (or a check, or a job) failed, 2 a usage or setup
-- error. Errors go to stderr; `--json` puts a machine-readable object on stdout instead of the
-- text lines (an error included).
-- @module imageroute.cli

local argparse = require "argparse"
local imageroute = require "imageroute"
local routes_file = require "imageroute.routes"
local compare = require "imageroute.compare"

local core = imageroute.core
local format, concat = string.format, table.concat
local to_json = compare.to_json

local M = {}

--- The routes file read when `--routes` is not given.
M.DEFAULT_ROUTES = "routes.lua"

--- The output directory when `-o` is not given.
M.DEFAULT_OUT = "out"

--- The call log of the built-in routes, under the output directory.
M.LOG_NAME = "imageroute-calls.jsonl"

-- ---------------------------------------------------------------------------------------------
-- small helpers

-- A failure that ends the command with an exit code (2: usage or setup, 1: a call failed).
local Exit = {}
Exit.__index = Exit

local function fail(code, msg)
  error(setmetatable({code = code, msg = msg}, Exit), 0)
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function file_exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local socket do
  local ok, s = pcall(require, "socket")
  if ok and type(s) == "table" then socket = s end
end

local function now()
  return socket and socket.gettime() or os.time()
end

local function sleep(s)
  if socket then socket.sleep(s) else os.execute("sleep " .. s) end
end

local function own_pid()
  local stat = read_file("/proc/self/stat")
  return stat and tonumber(stat:match("^(%d+)"))
end

local function process_gone(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  if not stat then return true end
  local st = stat:match("^%d+ %b() (%a)")
  return st == "Z" or st == "X"
end

-- The Lua interpreter running this process (the lowest arg index), else lua5.4.
local function interpreter()
  local a = rawget(_G, "arg")
  local lua
  if type(a) == "table" then
    local i = -1
    while a[i] ~= nil do lua = a[i]; i = i - 1 end
  end
  if type(lua) ~= "string" or not lua:match("lua[%d.]*$") then lua = "lua5.4" end
  return lua
end

local function mkdir(dir)
  local ok, err = compare.mkdir(dir)
  if not ok then fail(1, "imageroute: " .. tostring(err)) end
end

local function secs(v)
  if type(v) ~= "number" then return "-" end
  return format("%.3fs", v)
end

-- Text for a line: no newlines, at most n characters.
local function oneline(s, n)
  s = tostring(s):gsub("[\r\n\t]+", " ")
  if n and #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

local function is_tty()
  local term = os.getenv("TERM")
  if not term or term == "" or term == "dumb" then return false end
  return os.execute("test -t 1") == true
end

-- Aligned columns: rows of strings; the last column is not padded.
local function table_text(rows)
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

-- ---------------------------------------------------------------------------------------------
-- the local server (--local)

local Server = {}
Server.__index = Server

--- Starts the bundled local server in the background on a free loopback port. It exits by itself
-- when this process is gone (`--owner-pid`), and `stop` ends it.
local function start_server()
  local port_file = os.tmpname()
  local log_file = os.tmpname()
  os.remove(port_file)
  local pid = own_pid()
  local code = format("package.path = %q; package.cpath = %q; require('imageroute.localserver').serve{host = "
    .. "'127.0.0.1', port = 0, port_file = %q, owner_pid = %s, quiet = true}", package.path, package.cpath,
    port_file, pid and tostring(pid) or "nil")
  local cmd = shell_quote(interpreter()) .. " -e " .. shell_quote(code) .. " </dev/null >" .. shell_quote(log_file)
    .. " 2>&1 & echo $!"
  local p = io.popen(cmd, "r")
  local spid = p and tonumber(p:read("l"))
  if p then p:close() end
  if not spid then fail(1, "could not start the local server") end
  local self = setmetatable({pid = spid, log_file = log_file}, Server)
  local deadline = now() + 10
  while true do
    local text = read_file(port_file)
    local port = text and tonumber(text:match("^(%d+)"))
    if port then
      self.port = port
      break
    end
    if process_gone(spid) or now() > deadline then
      local log = read_file(log_file) or ""
      self:stop()
      fail(1, "the local server did not start: " .. oneline(log ~= "" and log or "no output", 400))
    end
    sleep(0.02)
  end
  os.remove(port_file)
  self.base_url = "http://127.0.0.1:" .. self.port .. "/v1"
  return self
end

--- Stops the server: SIGTERM, a bounded wait, SIGKILL if needed. Idempotent.
function Server:stop()
  if self.stopped then return end
  self.stopped = true
  os.execute("kill " .. self.pid .. " 2>/dev/null")
  local deadline = now() + 5
  while not process_gone(self.pid) do
    if now() > deadline then
      os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
      break
    end
    sleep(0.01)
  end
  os.remove(self.log_file)
end

-- ---------------------------------------------------------------------------------------------
-- routes

--- The names and meaning of the built-in routes (used without a routes file).
M.BUILTIN = {
  {name = "official", text = "official lane, Images API, model gpt-image-1 (generate, edit)"},
  {name = "official-responses", text = "official lane, Responses API, model gpt-5 + image tool gpt-image-1 (respond)"},
  {name = "gateway", text = "--local only: provider lane, chat shape (a gateway), gpt-image-1, 0.03 USD a call"},
}

local SETUP_HELP = [[
imageroute: nothing to call: no routes file (./routes.lua) and OPENAI_API_KEY is not set. Either
  export OPENAI_API_KEY=sk-...                    # the official API (model gpt-image-1), then run again
  imageroute --routes FILE <command> ...          # your routes file, e.g. a copy of examples/routes.lua:
                                                  #   return {["official-images"] = {lane = "official",
                                                  #     shape = "images", model = "gpt-image-1"}}
  imageroute --local generate "a lighthouse"      # the bundled local server: see it work at once]]

local function builtin_configs(base_url, log_path, with_gateway)
  local env = base_url and "IMAGEROUTE_LOCAL_KEY" or nil -- never send a real key to the local server
  local list = {
    {name = "official", lane = "official", shape = "images", model = "gpt-image-1", base_url = base_url,
      api_key_env = env, billing = {unit = "token", currency = "USD"}, log = log_path},
    {name = "official-responses", lane = "official", shape = "responses", model = "gpt-5",
      image_model = "gpt-image-1", base_url = base_url, api_key_env = env,
      billing = {unit = "token", currency = "USD"}, log = log_path},
  }
  if with_gateway then
    list[#list + 1] = {name = "gateway", lane = "provider", provider = "local-gateway", shape = "chat",
      model = "gpt-image-1", base_url = base_url, api_key_env = env, max_retries = 0,
      billing = {unit = "call", price = 0.03, currency = "USD", source = "the local gateway's stand-in price"},
      accepted = "the bundled local server standing in for a provider gateway (imageroute --local)",
      log = log_path}
  end
  return list
end

-- The routes this run can use: ctx.routes (name -> Route), ctx.order, ctx.source.
local function load_routes(ctx)
  if ctx.routes then return end
  local args = ctx.args
  local log_path = (ctx.log_dir or args.out or M.DEFAULT_OUT) .. "/" .. M.LOG_NAME
  local function builtin(base_url, with_gateway)
    ctx.routes, ctx.order = {}, {}
    for _, cfg in ipairs(builtin_configs(base_url, log_path, with_gateway)) do
      local r, err = imageroute.route(cfg)
      if not r then fail(1, "built-in route " .. cfg.name .. ": " .. tostring(err)) end
      ctx.routes[cfg.name] = r
      ctx.order[#ctx.order + 1] = cfg.name
    end
    ctx.builtin = true
  end
  if args["local"] then
    if args.routes_file then
      fail(2, "imageroute: --local uses the built-in local routes (" .. concat({"official", "official-responses",
        "gateway"}, ", ") .. "); drop --routes FILE, or point the file's base_url at a server you started")
    end
    ctx.server = start_server()
    builtin(ctx.server.base_url, true)
    ctx.source = "the built-in local routes on " .. ctx.server.base_url
    return
  end
  local path = args.routes_file
  if not path and file_exists(M.DEFAULT_ROUTES) then path = M.DEFAULT_ROUTES end
  if path then
    local all, order = routes_file.load(path)
    if not all then fail(2, "imageroute: " .. tostring(order)) end
    ctx.routes, ctx.order, ctx.source = all, order, path
    return
  end
  local key = os.getenv("OPENAI_API_KEY")
  if key and key ~= "" then
    builtin(nil, false)
    ctx.source = "the built-in official routes"
    return
  end
  fail(2, SETUP_HELP)
end

-- The route for a call: --route NAME, else the command's default.
local function pick_route(ctx, name, kind)
  load_routes(ctx)
  if name then
    local r = ctx.routes[name]
    if not r then
      fail(2, format("imageroute: no route '%s' in %s (routes: %s)", name, ctx.source, concat(ctx.order, ", ")))
    end
    return r
  end
  if ctx.builtin then return ctx.routes[kind == "respond" and "official-responses" or "official"] end
  if #ctx.order == 1 then return ctx.routes[ctx.order[1]] end
  fail(2, format("imageroute: %s declares several routes (%s): choose one with --route NAME", ctx.source,
    concat(ctx.order, ", ")))
end

-- ---------------------------------------------------------------------------------------------
-- calls

-- The API fields from the common options.
local function params_from(args, kind)
  local p = {}
  if args.size then p.size = args.size end
  if args.quality then p.quality = args.quality end
  if args.n then p.n = args.n end
  if args.format then p.output_format = args.format end
  if args.background then p.background = args.background end
  if args.model then p.model = args.model end
  if args.stream or args.partial then
    p.stream = true
    p.partial_images = args.partial or 2
  end
  if kind == "respond" then p.tool_choice = "image_generation" end
  return p
end

local function call_opts(args)
  local o = {}
  if args.timeout then o.timeout = args.timeout end
  if args.retries then o.max_retries = args.retries end
  return o
end

local counter = 0
local function unique_name(prefix)
  counter = counter + 1
  return format("%s-%s-%d-%d", prefix, os.date("!%Y%m%dT%H%M%S"), own_pid() or 0, counter)
end

-- Saves a result's (or an error's) images under dir; returns the file rows.
local function save_images(r, dir, route)
  if type(r) ~= "table" or type(r.images) ~= "table" or #r.images == 0 then return {} end
  local name = r.request_id or r.response_id or unique_name(route and route.name or "image")
  local saved, err = imageroute.save(r, dir, {name = name})
  if not saved then fail(1, "imageroute: saving failed: " .. tostring(err)) end
  for i, s in ipairs(saved) do
    local img = r.images[i]
    s.width, s.height, s.format = img.width, img.height, img.format
  end
  return saved
end

local function files_text(files)
  local list = {}
  for i, f in ipairs(files) do list[i] = f.path end
  return #list > 0 and concat(list, ",") or "-"
end

local function cost_summary(c)
  if type(c) ~= "table" then return nil end
  return {amount = c.amount, currency = c.currency, basis = c.basis, estimated = c.estimated, unit = c.unit,
    source = c.source, date = c.date, reason = c.reason, known_amount = c.known_amount, max_amount = c.max_amount,
    outcome = c.outcome, billed = c.billed, excludes = c.excludes}
end

local function plain(v, depth)
  depth = depth or 0
  local t = type(v)
  if t == "userdata" or t == "function" or t == "thread" then return nil end
  if t ~= "table" or depth > 6 then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = plain(x, depth + 1) end
  return out
end

--- The machine-readable summary of one call (`--json`): never image bytes or base64.
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table|nil res
-- @tparam table|nil err
-- @tparam table files saved files (`{path, bytes, sha256, width, height, format}`)
-- @tparam[opt] table partial_files
-- @treturn table
function M.call_record(kind, route, res, err, files, partial_files)
  local r = res or err or {}
  local o = {ok = res ~= nil, call = kind, route = route.name, lane = route.lane, provider = route.provider,
    shape = route.shape, model = r.model or route.model, tool_model = r.tool_model, request_id = r.request_id,
    response_id = r.response_id, http_status = r.http_status or r.status, files = files or {},
    partial_files = partial_files, usage = plain(r.usage), cost = cost_summary(r.cost), latency = r.latency,
    attempts = r.attempts, output_text = r.output_text ~= "" and r.output_text or nil,
    contract_reason = r.contract_reason}
  if err then
    o.error = {kind = err.kind, message = err.message, text = tostring(err), status = err.status, code = err.code,
      type = err.type, param = err.param, field = err.field, rule = err.rule, fix = err.fix}
  end
  return o
end

-- "cost=0.011 currency=USD basis=usage" (cost=unknown, with max= when bounded)
local function cost_fields(c)
  if type(c) ~= "table" then return "cost=unknown" end
  local s = "cost=" .. compare.money(c.amount)
  if c.amount == nil and type(c.max_amount) == "number" then s = s .. " max=" .. compare.money(c.max_amount) end
  return s .. " currency=" .. tostring(c.currency or "USD") .. " basis=" .. tostring(c.basis or "-")
end

local function call_line(kind, route, res, files, partial_files)
  local parts = {kind, "route=" .. tostring(route.name), "model=" .. tostring(res.model or route.model)}
  if res.tool_model then parts[#parts + 1] = "tool_model=" .. tostring(res.tool_model) end
  parts[#parts + 1] = "request_id=" .. tostring(res.request_id or "-")
  parts[#parts + 1] = "files=" .. files_text(files)
  if partial_files and #partial_files > 0 then parts[#parts + 1] = "partials=" .. files_text(partial_files) end
  parts[#parts + 1] = "latency=" .. secs(res.latency)
  parts[#parts + 1] = "attempts=" .. tostring(res.attempts or "-")
  parts[#parts + 1] = cost_fields(res.cost)
  if type(res.output_text) == "string" and res.output_text ~= "" then
    parts[#parts + 1] = "text=" .. format("%q", oneline(res.output_text, 100))
  end
  return concat(parts, " ")
end

-- generate / edit / respond
local function run_call(ctx, kind, params)
  local args = ctx.args
  local route = pick_route(ctx, args.route, kind)
  local out = args.out or M.DEFAULT_OUT
  mkdir(out)
  local opts = call_opts(args)
  local partials = {}
  local stamp = unique_name("stream")
  if params.stream then
    opts.on_partial = function(img, index)
      index = index or #partials
      local path = format("%s/%s-partial-%d.%s", out, stamp, index, imageroute.safe_name(img.format or "png"))
      local p, e = img:save(path, {overwrite = true})
      if p then partials[#partials + 1] = {path = p, bytes = e, index = index, format = img.format}
      else io.stderr:write("imageroute: saving a partial image failed: ", tostring(e), "\n") end
    end
  end
  local res, err = imageroute[kind](route, params, opts)
  local r = res or err
  -- name the partial images after the call, like the final ones
  local name = r and (r.request_id or r.response_id)
  if name then
    for _, pf in ipairs(partials) do
      local to = format("%s/%s-partial-%d.%s", out, imageroute.safe_name(name), pf.index,
        imageroute.safe_name(pf.format or "png"))
      if not file_exists(to) and os.rename(pf.path, to) then pf.path = to end
    end
  end
  local files = save_images(r, out, route)
  if args.json then
    io.write(to_json(M.call_record(kind, route, res, err, files, params.stream and partials or nil)), "\n")
  elseif res then
    io.write(call_line(kind, route, res, files, partials), "\n")
  end
  if not res then
    io.stderr:write("imageroute: ", kind, " failed: ", oneline(tostring(err)), "\n")
    if #files > 0 then io.stderr:write("imageroute: images received before the failure: ", files_text(files), "\n") end
    return 1
  end
  return 0
end

local function cmd_generate(ctx)
  local params = params_from(ctx.args, "generate")
  params.prompt = ctx.args.prompt
  return run_call(ctx, "generate", params)
end

local function cmd_edit(ctx)
  local args = ctx.args
  local params = params_from(args, "edit")
  params.prompt = args.prompt
  for _, path in ipairs(args.image) do
    if not file_exists(path) then fail(2, "imageroute: cannot read the image " .. path) end
  end
  if args.mask and not file_exists(args.mask) then fail(2, "imageroute: cannot read the mask " .. args.mask) end
  params.image = #args.image == 1 and args.image[1] or args.image
  params.mask = args.mask
  return run_call(ctx, "edit", params)
end

local function cmd_respond(ctx)
  local params = params_from(ctx.args, "respond")
  params.input = ctx.args.input
  return run_call(ctx, "respond", params)
end

-- ---------------------------------------------------------------------------------------------
-- check

local function cmd_check(ctx)
  local args = ctx.args
  load_routes(ctx)
  local names = args.route and {args.route} or ctx.order
  local reports, all_allowed = {}, true
  for _, name in ipairs(names) do
    local r = pick_route(ctx, name, "check")
    local rep = r:check()
    reports[#reports + 1] = rep
    all_allowed = all_allowed and rep.allowed
  end
  if args.json then
    io.write(to_json(#reports == 1 and reports[1] or {reports = reports}), "\n")
  else
    for i, rep in ipairs(reports) do
      if i > 1 then io.write("\n") end
      io.write(format("route %s  lane=%s  host=%s\n", tostring(rep.route), tostring(rep.lane),
        tostring(rep.host)))
      local rows = {{"GATE", "STATUS", "REASON"}}
      for _, row in ipairs(rep.rows) do
        rows[#rows + 1] = {row.gate, row.status, oneline(row.reason or "")}
      end
      io.write(table_text(rows), "\n")
      io.write(format("allowed: %s%s\n", rep.allowed and "yes" or "no",
        rep.reason and (" (" .. oneline(rep.reason) .. ")") or ""))
    end
  end
  return all_allowed and 0 or 1
end

-- ---------------------------------------------------------------------------------------------
-- batch

local JOB_CALLS = {generate = true, edit = true, respond = true}

--- Reads a batch file: prompts one per line (blank lines and `#` comments skipped), or job objects
-- (`.json`: a list, or `{jobs = [...]}`; `.jsonl`: one object per line).
-- @tparam string path
-- @treturn table|nil list of `{prompt =, route =, call =, ...}` (API fields as given)
-- @treturn[2] string what is wrong, with the line
function M.read_jobs(path)
  local text = read_file(path)
  if not text then return nil, "cannot read " .. path end
  local jobs = {}
  if path:match("%.json$") then
    local v, err = core.json_decode(text)
    if type(v) ~= "table" then return nil, path .. ": not valid JSON: " .. tostring(err) end
    if type(v.jobs) == "table" then v = v.jobs end
    for i, j in ipairs(v) do
      if type(j) ~= "table" then return nil, format("%s: job %d is not an object", path, i) end
      jobs[#jobs + 1] = j
    end
    if #jobs == 0 then return nil, path .. ": no jobs (a JSON list of objects expected)" end
    return jobs
  end
  local jsonl = path:match("%.jsonl$") ~= nil
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    local trimmed = line:match("^%s*(.-)%s*$")
    if trimmed ~= "" and not trimmed:match("^#") then
      if jsonl then
        local v, err = core.json_decode(trimmed)
        if type(v) ~= "table" then return nil, format("%s:%d: not a JSON object: %s", path, n, tostring(err)) end
        jobs[#jobs + 1] = v
      else
        jobs[#jobs + 1] = {prompt = trimmed}
      end
    end
  end
  if #jobs == 0 then return nil, path .. ": no prompts (one per line; blank lines and # comments are skipped)" end
  return jobs
end

local function cmd_batch(ctx)
  local args = ctx.args
  local specs, rerr = M.read_jobs(args.file)
  if not specs then fail(2, "imageroute: " .. rerr) end
  local defaults = params_from(args, "generate")
  defaults.stream, defaults.partial_images = nil, nil
  local jobs, routes = {}, {}
  for i, spec in ipairs(specs) do
    local call = spec.call or (spec.image ~= nil and "edit") or (spec.input ~= nil and "respond") or "generate"
    if not JOB_CALLS[call] then fail(2, format("imageroute: %s: job %d: unknown call '%s'", args.file, i,
      tostring(call))) end
    if spec.route ~= nil and type(spec.route) ~= "string" then
      fail(2, format("imageroute: %s: job %d: route must be a route name", args.file, i))
    end
    local route = pick_route(ctx, spec.route or args.route, call)
    local params = {}
    for k, v in pairs(defaults) do params[k] = v end
    if call == "respond" then params.n, params.tool_choice = nil, "image_generation" end
    for k, v in pairs(spec) do
      if k == "format" then params.output_format = v
      elseif k ~= "route" and k ~= "call" then params[k] = v end
    end
    jobs[i] = {call = call, route = route, params = params, opts = call_opts(args)}
    routes[i] = route
  end
  local out = args.out or M.DEFAULT_OUT
  mkdir(out)
  local tty = not args.json and is_tty()
  local n, done, failed, images, t0 = #jobs, 0, 0, 0, now()
  local cost, currency, unknown = 0, nil, 0
  local last_draw = 0
  local function progress_text()
    local c = format("%s %s", compare.money(cost), currency or "USD")
    if unknown > 0 then c = c .. format(" + %d unknown", unknown) end
    return format("batch %d/%d done, %d failed, %.1fs, %d images, %s so far", done, n, failed, now() - t0, images, c)
  end
  local function draw(force)
    if not tty then return end
    local t = now()
    if not force and t - last_draw < 0.1 then return end
    last_draw = t
    io.write("\r\27[K", progress_text())
    io.output():flush()
  end
  local function on_done(i, res, err)
    local r = res or err
    local files = save_images(r, out, routes[i])
    done = done + 1
    if not res then failed = failed + 1 end
    images = images + #files
    local c = r and r.cost
    if type(c) == "table" and type(c.amount) == "number" then
      cost = cost + c.amount
      currency = currency or c.currency
    else
      unknown = unknown + 1
    end
    if args.json then
      local rec = M.call_record(jobs[i].call, routes[i], res, err, files)
      rec.job = i
      io.write(to_json(rec), "\n")
      io.output():flush()
    elseif tty then
      if not res then
        io.write("\r\27[K")
        io.stderr:write(format("job %d failed route=%s: %s\n", i, tostring(routes[i].name), oneline(tostring(err))))
      end
      draw(true)
    else
      if res then
        io.write(format("[%d/%d] job %d: ", done, n, i), call_line(jobs[i].call, routes[i], res, files), "\n")
      else
        io.write(format("[%d/%d] job %d: failed route=%s: %s\n", done, n, i, tostring(routes[i].name),
          oneline(tostring(err))))
      end
      io.output():flush()
    end
  end
  draw(true)
  imageroute.batch(jobs, {max_in_flight = args.parallel, on_done = on_done,
    on_progress = tty and function() draw(false) end or nil})
  if tty then io.write("\r\27[K") end
  local summary = format("batch: %d jobs, %d ok, %d failed, %d images in %s, cost %s %s%s, %.1fs", n, n - failed,
    failed, images, out, compare.money(cost), currency or "USD",
    unknown > 0 and format(" (+ %d calls of unknown cost)", unknown) or "", now() - t0)
  if args.json then io.stderr:write(summary, "\n") else io.write(summary, "\n") end
  return failed > 0 and 1 or 0
end

-- ---------------------------------------------------------------------------------------------
-- log summary

-- The call log named by the routes file (its first route with a log path), else ./out/<log>.
local function default_log(ctx)
  local path = ctx.args.routes_file
  if not path and file_exists(M.DEFAULT_ROUTES) then path = M.DEFAULT_ROUTES end
  if path then
    local all, order = routes_file.load(path)
    if not all then fail(2, "imageroute: " .. tostring(order)) end
    for _, name in ipairs(order) do
      local l = all[name].log
      if type(l) == "string" then return l end
      if type(l) == "table" and type(l.path) == "string" then return l.path end
    end
  end
  return (ctx.args.out or M.DEFAULT_OUT) .. "/" .. M.LOG_NAME
end

local function cmd_log_summary(ctx)
  local args = ctx.args
  local path = args.file or default_log(ctx)
  local sum, err = imageroute.log.summary(path)
  if not sum then
    io.stderr:write("imageroute: cannot read the call log: ", oneline(tostring(err)), "\n")
    return 1
  end
  local names = {}
  for name in pairs(sum) do names[#names + 1] = name end
  table.sort(names)
  if args.json then
    io.write(to_json({log = path, routes = sum}), "\n")
    return 0
  end
  io.write("call log ", path, "\n")
  local rows = {{"ROUTE", "CALLS", "FAILED", "REFUSED", "IMAGES", "COST", "UNKNOWN", "P50", "P95"}}
  for _, name in ipairs(names) do
    local t = sum[name]
    rows[#rows + 1] = {name, tostring(t.calls), tostring(t.failures), tostring(t.refused), tostring(t.images),
      compare.money(t.cost) .. " " .. (t.currency or "USD"), tostring(t.cost_unknown), secs(t.p50_latency),
      secs(t.p95_latency)}
  end
  if #names == 0 then rows[#rows + 1] = {"(no calls)"} end
  io.write(table_text(rows), "\n")
  return 0
end

-- ---------------------------------------------------------------------------------------------
-- compare

local function cmd_compare(ctx)
  local args = ctx.args
  ctx.log_dir = M.DEFAULT_OUT -- -o names the report directory; the built-in routes log under ./out
  local names = {}
  for name in tostring(args.compare_routes):gmatch("[^,%s]+") do names[#names + 1] = name end
  if #names < 1 then fail(2, "imageroute: --routes needs route names, e.g. --routes official,gateway") end
  local seen, list = {}, {}
  for _, name in ipairs(names) do
    if seen[name] then fail(2, "imageroute: route '" .. name .. "' is listed twice") end
    seen[name] = true
    list[#list + 1] = pick_route(ctx, name, "generate")
  end
  for _, path in ipairs(args.image) do
    if not file_exists(path) then fail(2, "imageroute: cannot read the image " .. path) end
  end
  if args.mask and #args.image == 0 then fail(2, "imageroute: --mask needs input images (--image FILE)") end
  if args.mask and not file_exists(args.mask) then fail(2, "imageroute: cannot read the mask " .. args.mask) end
  local dir = args.out or (M.DEFAULT_OUT .. "/compare-" .. os.date("%Y%m%d-%H%M%S"))
  local rec, err = compare.run(args.prompt, list, {size = args.size, quality = args.quality,
    output_format = args.format, images = #args.image > 0 and args.image or nil, mask = args.mask,
    call_opts = call_opts(args)})
  if not rec then
    io.stderr:write("imageroute: compare failed: ", oneline(tostring(err)), "\n")
    return 1
  end
  local html, json = compare.write(rec, dir)
  if not html then
    io.stderr:write("imageroute: writing the report failed: ", oneline(tostring(json)), "\n")
    return 1
  end
  if args.json then
    rec.html, rec.json = html, json
    io.write(to_json(rec), "\n")
  else
    for _, e in ipairs(rec.entries) do
      local files = {}
      for _, img in ipairs(e.images) do files[#files + 1] = img.file and (dir .. "/" .. img.file) or nil end
      io.write(format("compare route=%s lane=%s provider=%s model=%s request_id=%s files=%s latency=%s "
        .. "attempts=%s %s%s\n", tostring(e.route), tostring(e.lane), tostring(e.provider),
        tostring(e.model) .. (e.tool_model and ("+" .. e.tool_model) or ""), tostring(e.request_id or "-"),
        #files > 0 and concat(files, ",") or "-", secs(e.latency), tostring(e.attempts or "-"), cost_fields(e.cost),
        e.ok and "" or (" error=" .. format("%q", oneline(e.error and e.error.text or "failed", 200)))))
    end
    io.write("report ", html, "\n", "record ", json, "\n")
  end
  if not rec.ok then
    for _, e in ipairs(rec.entries) do
      if not e.ok then
        io.stderr:write("imageroute: route ", tostring(e.route), " failed: ",
          oneline(e.error and e.error.text or "no image"), "\n")
      end
    end
    return 1
  end
  return 0
end

-- ---------------------------------------------------------------------------------------------
-- the parser

local EPILOG = [[
Global options (before or after the command): --routes FILE (the routes file; default ./routes.lua),
--local (run against the bundled local server). Exit codes: 0 ok, 1 a call failed, 2 usage or setup.]]

local function integer_at_least(name, min)
  return function(s)
    local n = math.tointeger(tonumber(s))
    if not n or n < min then
      return nil, ("%s must be an integer >= %d, got '%s'"):format(name, min, tostring(s))
    end
    return n
  end
end

local function positive_number(name)
  return function(s)
    local n = tonumber(s)
    if not n or n <= 0 then return nil, name .. " must be a positive number (seconds), got '" .. tostring(s) .. "'" end
    return n
  end
end

local function build_parser(state)
  -- --help records the text and stops the parse (argparse's own help would os.exit)
  local function help(p, epilog)
    p:add_help(false)
    p:help_max_width(110):help_description_margin(29)
    if epilog then p:epilog(epilog) end
    p:flag("-h --help", "Show this help message and exit."):action(function()
      state.help = p:get_help()
      error("imageroute: help shown", 0)
    end)
  end
  -- an option with a value: names, description, the value's name, [convert], [default]
  local function opt(p, names, desc, argname, convert, default)
    return p:option(names, desc, default, convert):argname("<" .. argname .. ">")
  end

  local builtin = {}
  for _, b in ipairs(M.BUILTIN) do builtin[#builtin + 1] = format("  %-19s %s", b.name, b.text) end
  local parser = argparse("imageroute", "Image generation and editing through OpenAI's image APIs and "
    .. "OpenAI-compatible provider gateways, one route at a time.")
  help(parser, "Routes come from --routes FILE (default ./routes.lua; see examples/routes.lua). Without a "
    .. "routes file: with\nOPENAI_API_KEY set, the built-in official routes; with --local, the built-in routes on "
    .. "the bundled local\nserver (./routes.lua is not read). Built-in routes:\n" .. concat(builtin, "\n") .. "\n\n"
    .. "First run:  imageroute --local generate \"a lighthouse at dawn\"   (the image lands in ./out/)\n"
    .. "Exit codes: 0 ok, 1 a call (check, job) failed, 2 usage or setup error.\n"
    .. "`imageroute COMMAND --help` for a command's options.")
  opt(parser, "--routes", "The routes file (default ./routes.lua); also --routes-file FILE.", "FILE")
    :hidden_name("--routes-file"):target("routes_file")
  parser:flag("--local", "Run against the bundled local server (started and stopped by the command).")
  parser:flag("--version", "Print the version and exit."):action(function()
    state.version = true
    error("imageroute: version shown", 0)
  end)
  parser:command_target("command")

  local function call_options(cmd, what)
    help(cmd, EPILOG)
    opt(cmd, "--route", "The route to use (from the routes file, or a built-in route).", "NAME")
    opt(cmd, "-o --out", "Output directory (default ./out; created).", "DIR")
    opt(cmd, "--size", "Image size, e.g. 1024x1024, 1536x1024, auto.", "WxH")
    opt(cmd, "--quality", "Quality: low, medium, high, auto.", "Q")
    if what ~= "respond" then opt(cmd, "--n", "How many images.", "N", integer_at_least("--n", 1)) end
    opt(cmd, "--format", "Output format: png, jpeg, webp.", "F")
    opt(cmd, "--background", "Background: transparent, opaque, auto.", "B")
    opt(cmd, "--model", "The model label to send instead of the route's.", "MODEL")
    if what ~= "batch" then
      cmd:flag("--stream", "Stream: partial images are saved as they arrive (<name>-partial-<i>.<format>).")
      opt(cmd, "--partial", "Partial images to ask for when streaming (default 2; implies --stream).", "N",
        integer_at_least("--partial", 1))
    end
    opt(cmd, "--timeout", "Seconds per attempt.", "SECONDS", positive_number("--timeout"))
    opt(cmd, "--retries", "Retries after the first attempt.", "N", integer_at_least("--retries", 0))
    cmd:flag("--json", "Print a JSON object (no image bytes) on stdout instead of the text line.")
  end

  local gen = parser:command("generate", "Generate images from a prompt; one line per call on stdout.")
  gen:argument("prompt", "The prompt.")
  call_options(gen, "generate")

  local ed = parser:command("edit", "Edit images: PROMPT and one or more input images (PNG, JPEG, WebP).")
  ed:argument("prompt", "The prompt.")
  ed:argument("image", "Input image files (up to 16)."):args("+")
  call_options(ed, "edit")
  opt(ed, "--mask", "A mask PNG: alpha 0 marks the area to change.", "M")

  local rs = parser:command("respond", "The Responses API with the image_generation tool (forced).")
  rs:argument("input", "The input text.")
  call_options(rs, "respond")

  local ck = parser:command("check", "Show a route's contract gates as a table; exit 0 when the route is "
    .. "allowed, 1 when refused. Without ROUTE: every route.")
  ck:argument("route", "The route name."):args("?")
  help(ck, EPILOG)
  ck:flag("--json", "Print the report as JSON.")

  local bt = parser:command("batch", "Run a file of prompts (one per line; blank lines and # comments skipped) "
    .. "or of jobs (.json list or .jsonl lines of {\"prompt\", \"route\", \"call\", \"size\", ...}), N calls in "
    .. "flight. A live progress line on a terminal, one line per finished job otherwise; exit 1 when a job failed.")
  bt:argument("file", "The prompts or jobs file.")
  call_options(bt, "batch")
  opt(bt, "--parallel", "Calls in flight at most (default 4).", "N", integer_at_least("--parallel", 1), 4)

  local lg = parser:command("log", "Read a call log (subcommand: summary).")
  help(lg, EPILOG)
  lg:command_target("log_command"):require_command(false)
  local ls = lg:command("summary", "Per-route totals of a call log: calls, failures, images, cost, p50/p95 "
    .. "latency.")
  ls:argument("file", "The log (default: the routes file's log, else ./out/" .. M.LOG_NAME .. ")."):args("?")
  help(ls, EPILOG)
  ls:flag("--json", "Print the totals as JSON.")
  opt(ls, "-o --out", "The output directory whose log to read (default ./out).", "DIR")

  local cp = parser:command("compare", "Send the same prompt, size, quality and input images to each route, "
    .. "once, at the same time; write an HTML page (the images side by side; route, lane, provider, model, "
    .. "request id, latency, attempts, cost and basis under each) and the JSON record.")
  cp:argument("prompt", "The prompt.")
  help(cp, "Here --routes is the list of route names; give the routes file as --routes-file FILE.\n"
    .. "The page needs no network: the images are files beside it. Calls are logged to ./out/" .. M.LOG_NAME
    .. ".\nExit codes: 0 every route returned an image, 1 one did not (the report is still written), 2 usage.")
  opt(cp, "--routes", "The routes to compare, comma-separated (with --local e.g. official,gateway).", "A,B[,C]")
    :target("compare_routes"):count(1)
  opt(cp, "--image", "An input image (repeat for several): the call becomes an edit.", "FILE"):count("*")
  opt(cp, "--mask", "A mask for the input images.", "M")
  opt(cp, "--size", "Image size, e.g. 1024x1024.", "WxH")
  opt(cp, "--quality", "Quality: low, medium, high, auto.", "Q")
  opt(cp, "--format", "Output format: png, jpeg, webp.", "F")
  opt(cp, "-o --out", "The report directory (default ./out/compare-<time>).", "DIR")
  opt(cp, "--timeout", "Seconds per attempt.", "SECONDS", positive_number("--timeout"))
  opt(cp, "--retries", "Retries after the first attempt.", "N", integer_at_least("--retries", 0))
  cp:flag("--json", "Print the record (with the report's paths) as JSON.")
  return parser
end

local COMMANDS = {generate = cmd_generate, edit = cmd_edit, respond = cmd_respond, check = cmd_check,
  batch = cmd_batch, compare = cmd_compare}

--- Runs the command.
-- @tparam {string,...} argv the arguments (without the program name), e.g. `arg`
-- @treturn integer the exit code: 0 done, 1 a call (or check, or batch job) failed, 2 a usage or setup error,
--   130 interrupted
function M.main(argv)
  local list = {}
  for i, a in ipairs(argv or {}) do list[i] = tostring(a) end
  local state = {}
  local parser = build_parser(state)
  local okp, ok, args = pcall(parser.pparse, parser, list)
  if state.help then
    io.write(state.help, "\n")
    return 0
  end
  if state.version then
    io.write("imageroute ", tostring(imageroute._VERSION), "\n")
    return 0
  end
  if not okp then
    io.stderr:write("imageroute: internal error while parsing the arguments: ", tostring(ok), "\n")
    return 1
  end
  if not ok then
    io.stderr:write(parser:get_usage(), "\n\nimageroute: ", tostring(args), "\n",
      "Try 'imageroute --help' or 'imageroute COMMAND --help'.\n")
    return 2
  end
  if args.command == "log" and not args.log_command then
    io.stderr:write("imageroute: log needs a subcommand: imageroute log summary [FILE]\n")
    return 2
  end
  if args.image == nil then args.image = {} end
  local ctx = {args = args}
  local fn = args.command == "log" and cmd_log_summary or COMMANDS[args.command]
  local okr, code = xpcall(fn, function(e)
    if getmetatable(e) == Exit then return e end
    return debug.traceback(tostring(e), 2)
  end, ctx)
  if ctx.server then ctx.server:stop() end
  if okr then return code end
  if getmetatable(code) == Exit then
    io.stderr:write(code.msg, "\n")
    return code.code
  end
  if tostring(code):find("interrupted!", 1, true) then -- SIGINT (the lua5.4 interpreter's handler)
    io.stderr:write("imageroute: interrupted\n")
    return 130
  end
  io.stderr:write("imageroute: internal error: ", tostring(code), "\n")
  return 1
end

return M
