-- imageroute.cli.commands: the subcommands of the `imageroute` command (generate, edit, respond,
-- check, batch, log summary, compare), each `fn(ctx) -> exit code` with ctx.args the parsed
-- arguments. Internal to the command (its public face is imageroute.cli).

local imageroute = require("imageroute")
local routes_file = require("imageroute.routes")
local compare = require("imageroute.compare")
local common = require("imageroute.cli.common")
local output = require("imageroute.cli.output")
local progress = require("imageroute.cli.progress")
local json = require("imageroute.json")

local format, concat = string.format, table.concat
local to_json = compare.to_json
local fail, oneline, secs, file_exists = common.fail, common.oneline, common.secs, common.file_exists

local M = {}

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
  if kind == "respond" and args.background_mode then -- top-level background mode; the image's background in the tool
    if p.background ~= nil then p.tool = {background = p.background} end
    p.background = true
  end
  return p
end

local function call_opts(args)
  local o = {}
  if args.timeout then o.timeout = args.timeout end
  if args.retries then o.max_retries = args.retries end
  return o
end

-- generate / edit / respond: one call, its images saved to the -o target.
local function run_call(ctx, kind, params)
  local args = ctx.args
  local target = output.target(args.out)
  ctx.log_dir = target.is_dir and target.dir or nil
  local route = common.pick_route(ctx, args.route, kind)
  common.mkdir(target.dir)
  local opts = call_opts(args)
  local partials = {}
  local stamp = output.unique_name("stream")
  if params.stream then
    opts.on_partial = function(img, index)
      index = index or #partials
      local path = output.partial_path(target, stamp, index, img.format)
      local p, e = img:save(path, {overwrite = true})
      if p then partials[#partials + 1] = {path = p, bytes = e, index = index, format = img.format}
      else io.stderr:write("imageroute: saving a partial image failed: ", oneline(e.message or e), "\n") end
    end
  end
  -- on a terminal, a progress line on stderr ticks while the call is silent
  local bar = progress.new(kind, 1, io.stderr, not args.json and common.is_tty(2))
  local res, err = progress.drive(bar, function() return imageroute[kind](route, params, opts) end)
  local r = res or err
  -- in a directory, name the partial images after the call, like the final ones
  local name = r and (r.request_id or r.response_id)
  if name and not target.file then
    for _, pf in ipairs(partials) do
      local to = output.partial_path(target, name, pf.index, pf.format)
      if not file_exists(to) and os.rename(pf.path, to) then pf.path = to end
    end
  end
  local files = output.save_images(r, target, route)
  output.warn_log(r)
  if args.json then
    io.write(to_json(output.call_record(kind, route, res, err, files, params.stream and partials or nil)), "\n")
  elseif res then
    io.write(output.call_line(kind, route, res, files, partials), "\n")
  end
  if not res then
    io.stderr:write("imageroute: ", output.error_text(kind, err), "\n")
    if #files > 0 then
      io.stderr:write("imageroute: images received before the failure: ", output.files_text(files), "\n")
    end
    return output.exit_code(err)
  end
  return 0
end

-- The command of one call kind: the API fields from the arguments, the text argument (`prompt` or
-- `input`) required, then more(args, params) for what the kind adds.
local function call_command(kind, field, label, more)
  return function(ctx)
    local params = params_from(ctx.args, kind)
    params[field] = common.text_arg(ctx.args[field], label)
    if more then more(ctx.args, params) end
    return run_call(ctx, kind, params)
  end
end

M.generate = call_command("generate", "prompt", "the prompt")

M.edit = call_command("edit", "prompt", "the prompt", function(args, params)
  for _, path in ipairs(args.image) do
    if not file_exists(path) then fail(2, "imageroute: cannot read the image " .. path) end
  end
  if args.mask and not file_exists(args.mask) then fail(2, "imageroute: cannot read the mask " .. args.mask) end
  params.image = #args.image == 1 and args.image[1] or args.image
  params.mask = args.mask
end)

M.respond = call_command("respond", "input", "the input")

-- ---------------------------------------------------------------------------------------------
-- check

function M.check(ctx)
  local args = ctx.args
  common.load_routes(ctx)
  local names = args.route and {args.route} or ctx.order
  local reports, all_allowed = {}, true
  for _, name in ipairs(names) do
    local r = common.pick_route(ctx, name, "check")
    local rep = r:check{live = args.live}
    reports[#reports + 1] = rep
    all_allowed = all_allowed and rep.allowed and rep.live_ok ~= false
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
      io.write(common.table_text(rows), "\n")
      io.write(format("allowed: %s%s\n", rep.allowed and "yes" or "no",
        rep.reason and (" (" .. oneline(rep.reason) .. ")") or ""))
    end
  end
  return all_allowed and 0 or 1
end

-- ---------------------------------------------------------------------------------------------
-- batch

local JOB_CALLS = {generate = true, edit = true, respond = true}

-- Parses a batch file's text: prompts one per line (blank lines and `#` comments skipped), or job
-- objects (as = "json": a list, or `{jobs = [...]}`; "jsonl": one object per line).
function M.parse_jobs(text, name, as)
  local jobs = {}
  if as == "json" then
    local v, err = json.decode(text)
    if type(v) ~= "table" then return nil, name .. ": not valid JSON: " .. tostring(err) end
    if type(v.jobs) == "table" then v = v.jobs end
    for i, j in ipairs(v) do
      if type(j) ~= "table" then return nil, format("%s: job %d is not an object", name, i) end
      jobs[#jobs + 1] = j
    end
    if #jobs == 0 then return nil, name .. ": no jobs (a JSON list of objects expected)" end
    return jobs
  end
  local n = 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    line = line:gsub("\r$", "")
    local trimmed = line:match("^%s*(.-)%s*$")
    if trimmed ~= "" and not trimmed:match("^#") then
      if as == "jsonl" then
        local v, err = json.decode(trimmed)
        if type(v) ~= "table" then return nil, format("%s:%d: not a JSON object: %s", name, n, tostring(err)) end
        jobs[#jobs + 1] = v
      else
        jobs[#jobs + 1] = {prompt = trimmed}
      end
    end
  end
  if #jobs == 0 then return nil, name .. ": no prompts (one per line; blank lines and # comments are skipped)" end
  return jobs
end

-- Reads a batch file (`-`: standard input, its kind told by its first character: `[` a JSON list,
-- `{` JSON lines, else prompts); the kind of a file comes from its name (.json, .jsonl, else prompts).
function M.read_jobs(path)
  if path == "-" then
    local text = common.stdin()
    local first = text:match("^%s*(.)")
    return M.parse_jobs(text, "standard input", first == "[" and "json" or first == "{" and "jsonl" or "text")
  end
  local text = common.read_file(path)
  if not text then return nil, "cannot read " .. path end
  return M.parse_jobs(text, path, path:match("%.json$") and "json" or path:match("%.jsonl$") and "jsonl" or "text")
end

function M.batch(ctx)
  local args = ctx.args
  local specs, rerr = M.read_jobs(args.file)
  if not specs then fail(2, "imageroute: " .. rerr) end
  local target = output.target(args.out, true)
  ctx.log_dir = args.out and target.dir or nil
  local defaults = params_from(args, "generate")
  defaults.stream, defaults.partial_images = nil, nil
  local jobs, routes = {}, {}
  local name = args.file == "-" and "standard input" or args.file
  for i, spec in ipairs(specs) do
    local call = spec.call or (spec.image ~= nil and "edit") or (spec.input ~= nil and "respond") or "generate"
    if not JOB_CALLS[call] then fail(2, format("imageroute: %s: job %d: unknown call '%s'", name, i,
      tostring(call))) end
    if spec.route ~= nil and type(spec.route) ~= "string" then
      fail(2, format("imageroute: %s: job %d: route must be a route name", name, i))
    end
    local route = common.pick_route(ctx, spec.route or args.route, call)
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
  common.mkdir(target.dir)
  local tty = not args.json and common.is_tty()
  local n = #jobs
  local bar = progress.new("batch", n, io.stdout, tty)
  local refused = 0
  local function on_done(i, res, err)
    local files = output.save_images(res or err, target, routes[i])
    output.warn_log(res or err, format("job %d: ", i))
    bar:add(res, err, #files)
    if err and output.refused(err) then refused = refused + 1 end
    if args.json then
      local rec = output.call_record(jobs[i].call, routes[i], res, err, files)
      rec.job = i
      io.write(to_json(rec), "\n")
      io.output():flush()
    elseif tty then
      if not res then
        bar:clear()
        io.stderr:write(format("job %d: route %s: %s\n", i, tostring(routes[i].name),
          output.error_text(jobs[i].call, err)))
      end
      bar:draw(true)
    else
      if res then
        io.write(format("[%d/%d] job %d: ", bar.done, n, i), output.call_line(jobs[i].call, routes[i], res, files),
          "\n")
      else
        io.write(format("[%d/%d] job %d: route=%s %s\n", bar.done, n, i, tostring(routes[i].name),
          output.error_text(jobs[i].call, err)))
      end
      io.output():flush()
    end
  end
  progress.drive(bar, function()
    return imageroute.batch(jobs, {max_in_flight = args.parallel, on_done = on_done, keep_results = false})
  end)
  local summary = format("batch: %d jobs, %d ok, %d failed, %d images in %s, cost %s %s%s, %.1fs", n,
    n - bar.failed, bar.failed, bar.images, target.dir, compare.money(bar.cost), bar.currency or "USD",
    bar.unknown > 0 and format(" (+ %d calls of unknown cost)", bar.unknown) or "", bar:elapsed())
  if refused > 0 then summary = summary .. format(" (%d refused before sending)", refused) end
  if args.json then io.stderr:write(summary, "\n") else io.write(summary, "\n") end
  if bar.failed == 0 then return 0 end
  return bar.failed == refused and 2 or 1 -- only refusals: nothing failed that was sent
end

-- ---------------------------------------------------------------------------------------------
-- log summary

-- The call log named by the routes file (its first route with a log path), else the built-in
-- routes' log under -o DIR (default ./out): the --local one with --local.
local function default_log(ctx)
  local path = ctx.args.routes_file
  if not path and not ctx.args["local"] and file_exists(common.DEFAULT_ROUTES) then path = common.DEFAULT_ROUTES end
  if path then
    local all, order = routes_file.load(path)
    if not all then fail(2, "imageroute: " .. common.message(order)) end
    for _, name in ipairs(order) do
      local l = all[name].log
      if type(l) == "string" then return l end
      if type(l) == "table" and type(l.path) == "string" then return l.path end
    end
  end
  ctx.log_dir = ctx.args.out and output.target(ctx.args.out, true).dir or nil
  return common.log_path(ctx)
end

function M.log_summary(ctx)
  local args = ctx.args
  local path = args.file or default_log(ctx)
  local sum, err = imageroute.log.summary(path)
  if not sum then
    local hint = ""
    local n = #common.LOG_NAME
    local other = path:sub(-n) == common.LOG_NAME and (path:sub(1, -n - 1) .. common.LOCAL_LOG_NAME) or nil
    if not args.file and not args["local"] and other and file_exists(other) then
      hint = " (the --local calls are in " .. other .. ": imageroute log summary --local)"
    end
    io.stderr:write("imageroute: cannot read the call log: ", oneline(err and err.message or tostring(err)), hint, "\n")
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
  io.write(common.table_text(rows), "\n")
  return 0
end

-- ---------------------------------------------------------------------------------------------
-- compare

function M.compare(ctx)
  local args = ctx.args
  common.load_routes(ctx)
  local names = {}
  for _, v in ipairs(args.compare_route or {}) do
    for name in tostring(v):gmatch("[^,%s]+") do names[#names + 1] = name end
  end
  if #names < 1 then
    fail(2, "imageroute: compare needs the routes to compare: --route NAME, repeated (e.g. --route official "
      .. "--route gateway)")
  end
  local seen, list = {}, {}
  for _, name in ipairs(names) do
    if seen[name] then fail(2, "imageroute: route '" .. name .. "' is listed twice") end
    seen[name] = true
    list[#list + 1] = common.pick_route(ctx, name, "generate")
  end
  for _, path in ipairs(args.image) do
    if not file_exists(path) then fail(2, "imageroute: cannot read the image " .. path) end
  end
  if args.mask and #args.image == 0 then fail(2, "imageroute: --mask needs input images (--image FILE)") end
  if args.mask and not file_exists(args.mask) then fail(2, "imageroute: cannot read the mask " .. args.mask) end
  local prompt = common.text_arg(args.prompt, "the prompt")
  local dir = args.out and output.target(args.out, true).dir
    or (common.DEFAULT_OUT .. "/compare-" .. os.date("%Y%m%d-%H%M%S"))
  common.mkdir(dir) -- before anything is sent, and so the built-in routes' log (under ./out) has its folder
  if ctx.builtin then common.mkdir(common.log_path(ctx):match("^(.*)/[^/]*$")) end
  local rec, err = compare.run(prompt, list, {size = args.size, quality = args.quality,
    output_format = args.format, images = #args.image > 0 and args.image or nil, mask = args.mask,
    call_opts = call_opts(args)})
  if not rec then
    io.stderr:write("imageroute: ", output.error_text("compare", err), "\n")
    return output.exit_code(err)
  end
  for _, e in ipairs(rec.entries) do
    output.warn_log({log_error = e.log_error}, "route " .. tostring(e.route) .. ": ")
  end
  local html, json_path = compare.write(rec, dir)
  if not html then
    local why = json_path and json_path.message or tostring(json_path)
    io.stderr:write("imageroute: writing the report failed: ", oneline(why), "\n")
    return 1
  end
  if args.json then
    rec.html, rec.json = html, json_path
    io.write(to_json(rec), "\n")
  else
    for _, e in ipairs(rec.entries) do
      local files = {}
      for _, img in ipairs(e.images) do files[#files + 1] = img.file and (dir .. "/" .. img.file) or nil end
      io.write(format("compare route=%s lane=%s provider=%s model=%s request_id=%s files=%s latency=%s "
        .. "attempts=%s %s%s\n", tostring(e.route), tostring(e.lane), tostring(e.provider),
        tostring(e.model) .. (e.tool_model and ("+" .. e.tool_model) or ""), tostring(e.request_id or "-"),
        #files > 0 and concat(files, ",") or "-", secs(e.latency), tostring(e.attempts or "-"),
        output.cost_fields(e.cost),
        e.ok and "" or (" error=" .. format("%q", oneline(e.error and e.error.text or "failed", 200)))))
    end
    io.write("report ", html, "\n", "record ", json_path, "\n")
  end
  if not rec.ok then
    local failed, refused = 0, 0
    for _, e in ipairs(rec.entries) do
      if not e.ok then
        failed = failed + 1
        local er = e.error or {kind = "decode", message = "no image"}
        local r = output.refused({kind = er.kind, attempts = e.attempts or 0})
        if r then refused = refused + 1 end
        io.stderr:write("imageroute: route ", tostring(e.route), ": ", r and "refused before sending (nothing sent): "
          or "", oneline(er.message or er.text or "no image"), "\n")
      end
    end
    return failed == refused and 2 or 1 -- only refusals: nothing failed that was sent
  end
  return 0
end

return M
