-- imageroute.cli.output: where `-o` puts the images, and what the command prints about a call:
-- the text line, the `--json` record, the one-line error, the exit code. Internal to the command.

local imageroute = require("imageroute")
local compare = require("imageroute.compare")
local common = require("imageroute.cli.common")

local format, concat = string.format, table.concat
local fail, oneline, secs = common.fail, common.oneline, common.secs

local M = {}

-- ---------------------------------------------------------------------------------------------
-- -o: a file or a directory

-- What `-o VALUE` names, as {dir =, file =}:
-- * nothing: the directory ./out, images named after the request id;
-- * `DIR/` (a trailing slash) or an existing directory: that directory (created), named the same way;
-- * anything else: that file (its directory created); several images are `stem-1.ext`, `stem-2.ext`...
-- many: the command writes many calls' images (batch, compare): -o is always a directory there.
function M.target(out, many)
  if out == nil then return {dir = common.DEFAULT_OUT} end
  if out == "" then fail(2, "imageroute: -o needs a file or a directory (DIR/)") end
  if many or out:sub(-1) == "/" or common.is_dir(out) then
    local dir = out:gsub("(.)/+$", "%1")
    return {dir = dir, is_dir = true}
  end
  local dir = out:match("^(.*)/[^/]*$")
  if dir == "" then dir = "/" end
  return {dir = dir or ".", file = out}
end

-- The name of image i of count for the file target: the file itself for one image, else
-- "<stem>-i<.ext>".
local function numbered(file, i, count)
  if count <= 1 then return file end
  local stem, ext = file:match("^(.-)(%.[^./]+)$")
  if not stem or stem == "" or stem:sub(-1) == "/" then stem, ext = file, "" end
  return format("%s-%d%s", stem, i, ext)
end
M.numbered = numbered

local counter = 0
local function unique_name(prefix)
  counter = counter + 1
  return format("%s-%s-%d-%d", prefix, os.date("!%Y%m%dT%H%M%S"), common.own_pid() or 0, counter)
end
M.unique_name = unique_name

-- Saves a result's (or an error's) images to the target; returns the file rows
-- ({path, bytes, sha256, width, height, format}).
function M.save_images(r, target, route)
  if type(r) ~= "table" or type(r.images) ~= "table" or #r.images == 0 then return {} end
  local saved, err
  if target.file then
    saved = {}
    for i, img in ipairs(r.images) do
      local p, bytes = img:save(numbered(target.file, i, #r.images), {overwrite = true})
      if not p then err = bytes break end
      saved[i] = {path = p, bytes = bytes, sha256 = img.sha256}
    end
  else
    local name = r.request_id or r.response_id or unique_name(route and route.name or "image")
    saved, err = imageroute.save(r, target.dir, {name = name})
  end
  if err then fail(1, "imageroute: saving the images failed: " .. oneline(err.message or tostring(err))) end
  for i, s in ipairs(saved) do
    local img = r.images[i]
    s.width, s.height, s.format = img.width, img.height, img.format
  end
  return saved
end

-- The path of a partial image: beside the file target (<stem>-partial-<i>.<format>), or in the
-- directory under `name`.
function M.partial_path(target, name, index, fmt)
  fmt = imageroute.safe_name(fmt or "png")
  if target.file then
    local stem = target.file:match("^(.-)%.[^./]+$") or target.file
    if stem == "" or stem:sub(-1) == "/" then stem = target.file end
    return format("%s-partial-%d.%s", stem, index, fmt)
  end
  return format("%s/%s-partial-%d.%s", target.dir, imageroute.safe_name(name), index, fmt)
end

function M.files_text(files)
  local list = {}
  for i, f in ipairs(files) do list[i] = f.path end
  return #list > 0 and concat(list, ",") or "-"
end

-- ---------------------------------------------------------------------------------------------
-- errors and exit codes

-- True when the error came before anything was sent (a gate, a stop rule, a bad argument).
function M.refused(err)
  if type(err) ~= "table" then return false end
  if err.kind ~= "validation" and err.kind ~= "route" then return false end
  if type(err.attempts) == "number" and err.attempts > 0 then return false end
  return not (type(err.attempt_log) == "table" and #err.attempt_log > 0)
end

-- A call whose line could not be written to the call log says so on stderr (the call itself stands:
-- its result or error is printed as usual). what: "job 3: " and the like, or nil.
function M.warn_log(r, what)
  local e = type(r) == "table" and r.log_error
  if not e then return end
  local msg = type(e) == "table" and (e.message or tostring(e)) or tostring(e)
  io.stderr:write("imageroute: warning: ", what or "", "the call log was not written: ", oneline(msg, 400), "\n")
end

-- The exit code of a failed call: 2 refused before sending (nothing sent), 1 a sent call failed.
function M.exit_code(err)
  return M.refused(err) and 2 or 1
end

-- One clean line for a failed call (no "imageroute" inside, no newline):
--   "generate refused before sending (nothing sent): <message>; fix: <fix>"
--   "generate failed: <message> (http 400, code x, request req_...)"
function M.error_text(what, err)
  if type(err) ~= "table" then return format("%s failed: %s", what, oneline(tostring(err), 600)) end
  local msg = oneline(err.message or tostring(err), 600)
  if M.refused(err) then
    local s = format("%s refused before sending (nothing sent): %s", what, msg)
    if type(err.fix) == "string" and not msg:find("fix: ", 1, true) then s = s .. "; fix: " .. oneline(err.fix) end
    return s
  end
  local extra = {}
  if err.kind then extra[#extra + 1] = tostring(err.kind) end
  if err.status then extra[#extra + 1] = "status " .. tostring(err.status) end
  if err.code and not msg:find(tostring(err.code), 1, true) then extra[#extra + 1] = "code " .. tostring(err.code) end
  if err.request_id then extra[#extra + 1] = "request " .. tostring(err.request_id) end
  if type(err.fix) == "string" then extra[#extra + 1] = "fix: " .. oneline(err.fix) end
  return format("%s failed: %s%s", what, msg, #extra > 0 and (" (" .. concat(extra, ", ") .. ")") or "")
end

-- ---------------------------------------------------------------------------------------------
-- records and lines

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

-- The machine-readable summary of one call (`--json`): never image bytes or base64.
function M.call_record(kind, route, res, err, files, partial_files)
  local r = res or err or {}
  local o = {ok = res ~= nil, call = kind, route = route.name, lane = route.lane, provider = route.provider,
    host = route.host, shape = route.shape, model = r.model or route.model, tool_model = r.tool_model,
    request_id = r.request_id, response_id = r.response_id, http_status = r.http_status or r.status,
    files = files or {}, partial_files = partial_files, usage = plain(r.usage), cost = cost_summary(r.cost),
    latency = r.latency, attempts = r.attempts, output_text = r.output_text ~= "" and r.output_text or nil,
    contract_reason = r.contract_reason}
  -- assistant flows: the function calls asked for, background polls, a format other than asked, moderation
  if type(r.function_calls) == "table" and #r.function_calls > 0 then
    o.function_calls = {}
    for i, c in ipairs(r.function_calls) do
      o.function_calls[i] = {call_id = c.call_id, name = c.name, arguments = c.arguments}
    end
  end
  if type(r.background_mode) == "table" then
    o.background_mode = {response_id = r.background_mode.response_id, polls = r.background_mode.polls}
  end
  o.format_mismatch, o.moderation = plain(r.format_mismatch), plain(r.moderation)
  if err then
    o.refused = M.refused(err)
    o.error = {kind = err.kind, message = err.message, text = M.error_text(kind, err), status = err.status,
      code = err.code, type = err.type, param = err.param, field = err.field, rule = err.rule, fix = err.fix}
  end
  return o
end

-- "cost=0.011 currency=USD basis=usage" (cost=unknown, with max= when bounded)
function M.cost_fields(c)
  if type(c) ~= "table" then return "cost=unknown" end
  local s = "cost=" .. compare.money(c.amount)
  if c.amount == nil and type(c.max_amount) == "number" then s = s .. " max=" .. compare.money(c.max_amount) end
  return s .. " currency=" .. tostring(c.currency or "USD") .. " basis=" .. tostring(c.basis or "-")
end

function M.call_line(kind, route, res, files, partial_files)
  if type(route) == "table" and type(route.routes) == "table" then -- a router: the route that served
    local served = route.routes[1]
    for _, r in ipairs(route.routes) do if r.name == res.route then served = r end end
    local from = type(res.fallback_from) == "table" and #res.fallback_from > 0 and table.concat(res.fallback_from, ",")
    kind = kind .. " router=" .. tostring(route.name) .. (from and (" fallback_from=" .. from) or "")
    route = served
  end
  local parts = {kind, "route=" .. tostring(route.name), "host=" .. tostring(route.host),
    "model=" .. tostring(res.model or route.model)}
  if res.tool_model then parts[#parts + 1] = "tool_model=" .. tostring(res.tool_model) end
  parts[#parts + 1] = "request_id=" .. tostring(res.request_id or "-")
  parts[#parts + 1] = "files=" .. M.files_text(files)
  if partial_files and #partial_files > 0 then parts[#parts + 1] = "partials=" .. M.files_text(partial_files) end
  parts[#parts + 1] = "latency=" .. secs(res.latency)
  parts[#parts + 1] = "attempts=" .. tostring(res.attempts or "-")
  parts[#parts + 1] = M.cost_fields(res.cost)
  if type(res.output_text) == "string" and res.output_text ~= "" then
    parts[#parts + 1] = "text=" .. format("%q", oneline(res.output_text, 100))
  end
  return concat(parts, " ")
end

return M
