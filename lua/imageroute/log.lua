--- imageroute.log: the call log, one JSON line per attempt, appended to a file the user names.
--
-- Where: the per-call `opts.log`, else the route's `log` field (a path, or `{path =, prompt_limit =}`),
-- else the global default set with `log.set_default(path)`; `false` at any level turns logging off.
--
-- Each attempt line (`event = "attempt"`) holds: `time` (UTC, ISO 8601), `call_id`, `kind`, `route`,
-- `lane`, `provider`, `host` (the host of the route's `base_url`, e.g. `api.openai.com` or
-- `127.0.0.1`), `shape`, `endpoint`, `model`, `tool_model`, `size`, `quality`, `n` (asked),
-- `images` (returned; on the call's final line), `output_format`, `stream` and `partial_images`
-- (asked), `partial_images_received`, `request_id`, `response_id`, `status` (HTTP), `error_kind`
-- (`"http"` on a retried attempt answered with a status >= 400: only the final body is read),
-- `error_code`, `error` (a short, scrubbed message), `rule` (a refusal's rule), `attempt` (1-based; 0
-- when refused before sending), `attempts`, `final` and `ok` (on the call's last line), `phase`
-- (`request` | `download` | `not_sent`),
-- `retry_reason`, `retry_delay` (s), `latency` (s, this attempt), `call_latency` (s, the whole call,
-- final line), `bytes` (received by this attempt), `bytes_received` (the call), `billing_unit`,
-- `cost` (this attempt's part: `amount`, `currency`, `basis`, `estimated`, `outcome`, `billed`,
-- `source`, `date`), `format_mismatch` (final line, when an image came back in another format than
-- asked: `{requested =, got =, count =}`), `function_calls` (final line: how many the model asked for),
-- `background_polls`, `moderation_blocked` (final line), `call_cost` (final line: `amount`,
-- `known_amount`, `max_amount`, `currency`),
-- `accepted` / `risk_exception` (the route's recorded reasons), `prompt_sha256`, `prompt_chars`, and
-- `prompt` only when it is at most `prompt_limit` characters (default 200). For billing checks
-- (`imageroute.billing`): `key_id` (the first 8 hex digits of the SHA-256 of the key sent, never
-- the key: from the call's own `key_id` when it carries one, else from the route's `api_key_env`),
-- `project` (the `OPENAI_PROJECT_ID` sent as `OpenAI-Project`, when it is), `input_images` and
-- `mask` (edits), and on the final line `outputs` (`{b64 =, url =, data_url =}`: how the images came).
--
-- Saving an image of a logged call appends `event = "save"` with `host`, `path`, `bytes`, `sha256`.
--
-- Never logged: the API key, base64 (long base64-like runs are elided from messages), a prompt longer
-- than the limit. The key: a call's outcome was redacted by the C core with the key that was sent
-- (`core.redact`, every string at any depth); as a last guard the records are redacted again here,
-- as Lua values BEFORE they are JSON-encoded (so a key holding `/`, which cjson writes as `\/`, is
-- still found), with the route's key found as for sending (`api_key` or `api_key_env`; a key
-- function is not called again: it runs once per call, when the request is set up).
--
-- The line is always written: numbers that are not finite (an `inf` from a reply's `1e400`) are
-- dropped from the record and their paths listed in `non_finite`; values JSON cannot hold
-- (functions, userdata, tables nested deeper than 16, keys that are neither strings nor numbers)
-- become short markers; and when a record still cannot be encoded, or cannot even be built, a
-- minimal line (`v`, `event`, `time`, `call_id`, `kind`, `route`, `host`, `ok`, `final`, `log_error`) takes
-- its place. Each call's lines are appended with one `write(2)` on an `O_APPEND` descriptor
-- (`core.append`), so several processes can share a file.
-- @module imageroute.log

local request = require("imageroute.request")
local core = require("imageroute.core")
local summary = require("imageroute.log.summary")
local json = require("imageroute.json")

local type, pairs, ipairs, tostring, tonumber, pcall, next =
  type, pairs, ipairs, tostring, tonumber, pcall, next
local concat, sort, floor = table.concat, table.sort, math.floor
local io_open, os_date, os_time = io.open, os.date, os.time

local M = {}

--- Prompts longer than this (characters) are logged by hash only; 0 never logs the text.
M.prompt_limit = 200

--- Longest error message kept in a line (characters).
M.message_limit = 300

local default_path

--- Sets (or clears, with nil or false) the global log file.
-- @tparam string|nil path
function M.set_default(path)
  if path ~= nil and path ~= false and type(path) ~= "string" then error("log path must be a string", 2) end
  default_path = path or nil
end

--- The global log file, or nil.
function M.get_default()
  return default_path
end

local gettime = os_time
do
  local ok, socket = pcall(require, "socket")
  if ok and type(socket) == "table" and socket.gettime then gettime = socket.gettime end
end

local pid = 0
do
  local f = io_open("/proc/self/stat", "r")
  if f then
    pid = tonumber((f:read("l") or ""):match("^(%d+)")) or 0
    f:close()
  end
end
local counter = 0

--- A new call id: unique across processes (time, process id, a counter and a random part).
-- @treturn string
function M.new_call_id()
  counter = counter + 1
  return ("%x-%x-%x-%06x"):format(os_time(), pid, counter, math.random(0, 0xffffff))
end
local new_call_id = M.new_call_id

local function iso_time(t)
  local s = floor(t)
  return os_date("!%Y-%m-%dT%H:%M:%S", s) .. (".%03dZ"):format(floor((t - s) * 1000))
end

--- Where a call's lines go.
-- @tparam Route route
-- @tparam[opt] table opts the call's options (`opts.log`: a path, or false; `opts.prompt_limit`)
-- @treturn string|nil path
-- @treturn table settings (`prompt_limit`: per call, else the route's, else `M.prompt_limit`)
function M.path_for(route, opts)
  local settings = {prompt_limit = M.prompt_limit}
  local r = route.log
  if type(r) == "table" and tonumber(r.prompt_limit) then settings.prompt_limit = tonumber(r.prompt_limit) end
  if type(opts) == "table" and tonumber(opts.prompt_limit) then settings.prompt_limit = tonumber(opts.prompt_limit) end
  local o
  if type(opts) == "table" then o = opts.log end
  if o == false then return nil, settings end
  if type(o) == "string" then return o, settings end
  if r == false then return nil, settings end
  if type(r) == "string" then return r, settings end
  if type(r) == "table" then
    if r.path == false then return nil, settings end
    if type(r.path) == "string" then return r.path, settings end
  end
  return default_path, settings
end

--- Shortens a message for the log: long base64-like runs elided, at most `message_limit` characters.
-- @tparam string s
-- @treturn string
local function elide_base64(s)
  return (s:gsub("[%w+/=_%-]+", function(run)
    if #run >= 64 then return "[" .. #run .. " chars elided]" end
  end))
end

function M.scrub(s)
  if type(s) ~= "string" then return s end
  s = elide_base64(s)
  if #s > M.message_limit then s = s:sub(1, M.message_limit) .. "..." end
  return s
end

-- What the call asked, from its normalised request (imageroute.request).
local function asked(kind, route, params)
  local req = request.of(kind, route, params)
  local a = {model = req.top_model, size = req.size, quality = req.quality, output_format = req.output_format,
    partial_images = req.partial_images, stream = req.stream or nil, prompt = req.prompt}
  if req.shape == "responses" then a.tool_model = req.tool_model else a.n = req.n_asked end
  return a
end

local function cost_part(p, currency)
  if type(p) ~= "table" then return nil end
  return {amount = p.amount, currency = currency, basis = p.basis, estimated = p.estimated ~= false and
    p.basis ~= "not_sent", outcome = p.outcome, billed = p.billed, unit = p.unit, source = p.source, date = p.date}
end

local function count(v)
  if type(v) == "table" then return #v end
  if type(v) == "number" then return v end
  return nil
end

--- The id of a key in the log: the first 8 hex digits of its SHA-256 (never the key).
-- @tparam string key
-- @treturn string|nil
function M.key_id(key)
  if type(key) ~= "string" or key == "" then return nil end
  return core.sha256(key):sub(1, 8)
end

-- The key id and project id of a call: the call's own key_id when it carries one, else the key of
-- the route's api_key_env; the project as sent (official lane, or send_openai_ids).
local function who(route, r)
  local id = type(r.key_id) == "string" and r.key_id or nil
  if not id and type(route.api_key_env) == "string" then id = M.key_id(os.getenv(route.api_key_env)) end
  local project
  if route.lane == "official" or route.send_openai_ids then
    project = os.getenv("OPENAI_PROJECT_ID")
    if project == "" then project = nil end
  end
  return id, project
end

-- How the images of a result came: base64, a downloaded URL, a data URL (a link, or a base64
-- field holding one: the core sets the Image's data_url_mime).
local function outputs(r)
  if type(r.images) ~= "table" or #r.images == 0 then return nil end
  local o = {b64 = 0, url = 0, data_url = 0}
  local links = type(r.links) == "table" and r.links or nil
  for i, img in ipairs(r.images) do
    local ok, url = pcall(function() return img.url end)
    local dok, dmime = pcall(function() return img.data_url_mime end)
    local link = links and type(links[i]) == "table" and links[i].url
    local u = (ok and type(url) == "string" and url) or (type(link) == "string" and link) or nil
    if (u and u:sub(1, 5) == "data:") or (dok and dmime) then o.data_url = o.data_url + 1
    elseif u then o.url = o.url + 1
    else o.b64 = o.b64 + 1 end
  end
  return o
end

--- The log records of one call: one per attempt (one for a call refused before sending).
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @tparam table|nil res the result
-- @tparam table|nil err the error
-- @tparam[opt] table settings `prompt_limit`, `call_id`
-- @treturn table list of records (plain tables, ready for JSON)
function M.records(kind, route, params, opts, res, err, settings)
  settings = settings or {}
  local r = res or err or {}
  local a = asked(kind, route, params)
  local limit = settings.prompt_limit or (type(opts) == "table" and tonumber(opts.prompt_limit)) or M.prompt_limit
  local prompt = a.prompt
  local billing = route.billing
  local cost = type(r.cost) == "table" and r.cost or nil
  local currency = cost and cost.currency or (billing and billing.currency) or "USD"
  local call_id = settings.call_id or new_call_id()
  local now = gettime()
  local base = {
    v = 1, event = "attempt", time = iso_time(now), call_id = call_id, kind = kind,
    route = route.name, lane = route.lane, provider = route.provider, host = route.host, shape = route.shape,
    endpoint = r.endpoint, model = r.model or a.model, tool_model = r.tool_model or a.tool_model,
    size = a.size, quality = a.quality, n = a.n, output_format = a.output_format,
    stream = a.stream, partial_images = a.partial_images,
    billing_unit = (cost and cost.unit) or (billing and billing.unit),
    accepted = route.accepted, risk_exception = route.risk_exception, contract_reason = r.contract_reason,
    router = type(opts) == "table" and opts.router or nil,
    scale_exception = route.scale_exception,
  }
  base.key_id, base.project = who(route, r)
  if kind == "edit" and type(params) == "table" then
    local img = params.image
    base.input_images = (type(img) == "table" and img.data == nil and img.path == nil) and #img or (img and 1)
    base.mask = params.mask ~= nil or nil
  end
  if prompt then
    base.prompt_sha256 = core.sha256(prompt)
    base.prompt_chars = utf8.len(prompt) or #prompt
    if limit > 0 and base.prompt_chars <= limit then base.prompt = elide_base64(prompt) end
  end
  local log = type(r.attempt_log) == "table" and r.attempt_log or {}
  local out = {}
  local function finalise(rec)
    rec.final = true
    rec.ok = err == nil
    rec.attempts = r.attempts or #log
    rec.images = count(r.images) or 0
    rec.size = r.size or rec.size
    if type(r.images) == "table" and r.images[1] and r.size == nil then
      local ok, s = pcall(function() return r.images[1].size end)
      if ok and type(s) == "string" then rec.size = s end
    end
    rec.quality = r.quality or rec.quality
    rec.output_format = r.output_format or rec.output_format
    rec.partial_images_received = r.partial_images_received
    rec.outputs = outputs(r)
    rec.response_id = r.response_id or r.id
    rec.call_latency = r.latency
    rec.bytes_received = r.bytes_received
    rec.http_status = r.http_status or (err and err.status)
    rec.rate_limit = type(r.rate_limit) == "table" and r.rate_limit or nil
    rec.fallback_from = type(r.fallback_from) == "table" and #r.fallback_from > 0 and r.fallback_from or nil
    rec.fallback_reason = type(opts) == "table" and opts.fallback_reason or nil
    rec.state_fallback = r.state_fallback -- the memory store stood in for an unreachable one
    -- assistant flows: a format other than the one asked, the function calls, background polls, a block
    rec.format_mismatch = type(r.format_mismatch) == "table" and r.format_mismatch or nil
    rec.function_calls = type(r.function_calls) == "table" and #r.function_calls > 0 and #r.function_calls or nil
    rec.background_polls = type(r.background_mode) == "table" and r.background_mode.polls or nil
    rec.moderation_blocked = type(r.moderation) == "table" and r.moderation.blocked == true or nil
    if err then
      rec.error_kind, rec.error_code, rec.error = err.kind, err.code, M.scrub(err.message)
      rec.rule, rec.gate = err.rule, err.gate
    end
    if cost then
      rec.call_cost = {amount = cost.amount, known_amount = cost.known_amount, max_amount = cost.max_amount,
        currency = currency, basis = cost.basis, estimated = cost.estimated}
    end
  end
  if #log == 0 then
    local rec = {}
    for k, v in pairs(base) do rec[k] = v end
    rec.attempt = 0
    rec.phase = "not_sent"
    rec.cost = cost_part(cost and {amount = cost.amount, basis = cost.basis, estimated = cost.estimated,
      outcome = cost.outcome, billed = cost.billed, unit = cost.unit}, currency)
    finalise(rec)
    out[1] = rec
    return out
  end
  local final = #log
  for i, e in ipairs(log) do
    local rec = {}
    for k, v in pairs(base) do rec[k] = v end
    rec.attempt, rec.phase, rec.status = e.attempt, e.phase, e.status
    rec.request_id = e.request_id
    rec.latency, rec.bytes = e.latency, e.bytes
    rec.retry_reason, rec.retry_delay = e.retry_reason, e.retry_delay
    rec.may_have_billed = e.may_have_billed
    if e.error_kind then rec.error_kind, rec.error = e.error_kind, M.scrub(e.error)
    elseif type(e.status) == "number" and e.status >= 400 then rec.error_kind = "http" end
    if cost and type(cost.attempts) == "table" then rec.cost = cost_part(cost.attempts[i], currency) end
    if i == final then
      finalise(rec)
      if e.phase == "download" then rec.request_id = r.request_id or rec.request_id end
    end
    out[i] = rec
  end
  return out
end

local MAX_DEPTH = 16
local huge = math.huge

-- A copy of v that JSON can hold: non-finite numbers dropped (their paths added to `dropped`),
-- functions/userdata/threads as markers, depth bounded, keys strings or numbers only, cycles cut.
local function json_safe(v, path, dropped, depth, seen)
  local t = type(v)
  if t == "number" then
    if v ~= v or v == huge or v == -huge then
      dropped[#dropped + 1] = path
      return nil
    end
    return v
  elseif t == "string" or t == "boolean" then
    return v
  elseif t == "table" then
    if seen[v] then return "<cycle>" end
    if depth >= MAX_DEPTH then return "<nested too deep>" end
    seen[v] = true
    local out = {}
    for k, x in next, v do
      local kt = type(k)
      if kt == "string" or (kt == "number" and k == k and k ~= huge and k ~= -huge) then
        out[k] = json_safe(x, path == "" and tostring(k) or (path .. "." .. tostring(k)), dropped, depth + 1, seen)
      end
    end
    seen[v] = nil
    return out
  elseif t == "nil" then
    return nil
  end
  return "<" .. t .. ">"
end

--- A record made safe for JSON: see the module doc (non-finite numbers dropped and listed in
-- `non_finite`, markers for what JSON cannot hold).
-- @tparam table rec
-- @treturn table a new table
function M.json_safe(rec)
  local dropped = {}
  local out = json_safe(rec, "", dropped, 0, {})
  if type(out) ~= "table" then out = {value = out} end
  if #dropped > 0 then
    sort(dropped)
    out.non_finite = dropped
  end
  return out
end

-- The line that stands in for a record that could not be encoded (or built).
local function fallback(rec, why)
  rec = type(rec) == "table" and rec or {}
  local function str(v) return type(v) == "string" and v or nil end
  local out = {v = 1, event = str(rec.event) or "attempt", time = str(rec.time) or iso_time(gettime()),
    call_id = str(rec.call_id), kind = str(rec.kind), route = str(rec.route), final = rec.final == true or nil,
    ok = type(rec.ok) == "boolean" and rec.ok or nil, log_error = M.scrub(tostring(why))}
  local s = json.encode(out)
  return s or '{"v":1,"event":"attempt","log_error":"the record could not be encoded"}'
end

-- One JSON line per record, the key redacted from every value before encoding (route: its key is
-- found as for sending; see core.redact).
local function encode_lines(records, route)
  local lines = {}
  for i, rec in ipairs(records) do
    local ok, safe = pcall(M.json_safe, rec)
    local s, e
    if ok then
      if route then pcall(core.redact, safe, route) end
      s, e = json.encode(safe)
    else
      e = safe
    end
    if not s then
      s = fallback(rec, "cannot encode the log record: " .. tostring(e))
      if route then s = core.redact(s, route) end
    end
    lines[i] = s .. "\n"
  end
  return concat(lines)
end

--- Appends one call's lines (one per attempt) to its log file, in one write.
-- @tparam string kind
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts the call's options (`opts.log` overrides the route's and the default path)
-- @tparam table|nil res
-- @tparam table|nil err
-- @tparam[opt] table settings `call_id` (to tie later save lines to the call)
-- @treturn true|nil true when written (or nothing to write: no log path applies)
-- @treturn string|table the path written to (or nil) | the error (`kind = "io"`)
function M.write(kind, route, params, opts, res, err, settings)
  local path, s = M.path_for(route, opts)
  if not path then return true, nil end
  if settings then
    for k, v in pairs(settings) do s[k] = v end
  end
  local okr, records = pcall(M.records, kind, route, params, opts, res, err, s)
  if not okr then -- never lose the line: a minimal record says what happened
    local r = res or err
    local function field(t, k) -- raw: the outcome just failed to be read normally
      local v = type(t) == "table" and rawget(t, k) or nil
      return type(v) == "string" and v or nil
    end
    records = {{v = 1, event = "attempt", time = iso_time(gettime()), call_id = s.call_id, kind = kind,
      route = route.name, host = route.host, final = true, ok = err == nil and res ~= nil,
      error_kind = field(err, "kind"), request_id = field(r, "request_id"),
      log_error = "cannot build the log record: " .. M.scrub(tostring(records))}}
  end
  local text = encode_lines(records, route)
  local ok, aerr = core.append(path, text)
  if not ok then return nil, aerr end
  return true, path
end

--- Appends a save record (`event = "save"`): the file's path, size and sha256.
-- @tparam string log_path the log file
-- @tparam Route route
-- @tparam Image image the image saved
-- @tparam string file_path where it was saved
-- @tparam integer bytes its size (bytes)
-- @tparam[opt] table extra `call_id`, `request_id`, ...
-- @treturn true|nil
-- @treturn table error (`kind = "io"`)
function M.saved(log_path, route, image, file_path, bytes, extra)
  local rec = {v = 1, event = "save", time = iso_time(gettime()), route = route.name, host = route.host,
    lane = route.lane, provider = route.provider, path = file_path, bytes = bytes}
  local ok = pcall(function()
    rec.sha256, rec.format, rec.index = image.sha256, image.format, image.index
    rec.width, rec.height = image.width, image.height
  end)
  if not ok then rec.sha256 = nil end
  for k, v in pairs(extra or {}) do rec[k] = v end
  return core.append(log_path, encode_lines({rec}, route))
end

--- Appends one record of another kind (`event = "probe"`, `"reconcile"`, ...) as one line, made
-- safe for JSON and redacted with the route's key like the call lines. `v`, `time` (UTC, ISO 8601)
-- and `route`, `host`, `lane`, `provider` are filled in when missing.
-- @tparam string log_path the log file
-- @tparam Route|nil route
-- @tparam table rec the record (`event` required)
-- @treturn true|nil
-- @treturn table error (`kind = "io"`)
function M.event(log_path, route, rec)
  local out = {v = 1, time = iso_time(gettime())}
  if route then
    out.route, out.host, out.lane, out.provider = route.name, route.host, route.lane, route.provider
  end
  for k, v in pairs(rec) do out[k] = v end
  return core.append(log_path, encode_lines({out}, route))
end

--- Makes every image of a call log its saves: `Image:save` (defined once, in the C core) calls the
-- image's `on_save(image, path, bytes)` hook after a successful save; this sets it to append a save
-- record (a failure to write it is kept in `image.log_error`).
-- @tparam string log_path
-- @tparam Route route
-- @tparam table images list of Image
-- @tparam[opt] table extra fields for the save records (`call_id`, `request_id`)
function M.watch_saves(log_path, route, images, extra)
  if type(images) ~= "table" then return end
  for _, img in ipairs(images) do
    pcall(function()
      img.on_save = function(self, p, n)
        local ok, e = M.saved(log_path, route, self, p, n, extra)
        if not ok then self.log_error = e end
      end
    end)
  end
end

--- Reads a log file: `imageroute.log.summary.read`.
-- @function read
M.read = summary.read

--- Per-route totals of a log: `imageroute.log.summary.summary`.
-- @function summary
M.summary = summary.summary

return M
