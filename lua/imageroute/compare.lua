--- imageroute.compare: a controlled comparison of routes. The same prompt, size, quality and input
-- images go to every route, once, concurrently; the record says, per route, what came back and what
-- it cost; `write` turns it into a self-contained HTML page (the images beside it, side by side,
-- with route, lane, provider, model, request id, latency, attempts, cost and its basis under each)
-- and a JSON file. This is how a provider route is tried against the official one before traffic
-- moves.
--
--    local imageroute = require("imageroute")
--    local compare = require("imageroute.compare")
--    local rec = compare.run("a lighthouse at dawn", {official, gateway}, {size = "1024x1024", quality = "low"})
--    local html, json = assert(compare.write(rec, "out/compare"))
--    print(html)   --> out/compare/compare.html (opens offline: no network, no external files)
--
-- The command line does the same: `imageroute compare PROMPT --routes A,B[,C]`.
--
-- `run` is here; the report (`html`, `write`, `money`, `cost_text`, `mkdir`) is in
-- `imageroute.compare.report`, the sorted-key JSON (`to_json`) in `imageroute.compare.json`.
-- @module imageroute.compare

local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.compare.json")
local report = require("imageroute.compare.report")
local figures = require("imageroute.billing.figures")

local type, pairs, ipairs, tostring, format = type, pairs, ipairs, tostring, string.format

local M = {}

-- `to_json` (plain data as JSON with sorted keys) from `imageroute.compare.json`; `money`,
-- `cost_text`, `mkdir`, `html` and `write` from `imageroute.compare.report`.
M.to_json = json.to_json
for _, name in ipairs{"money", "cost_text", "mkdir", "html", "write"} do M[name] = report[name] end

-- ---------------------------------------------------------------------------------------------
-- run

local function iso_now()
  local ok, socket = pcall(require, "socket")
  local t = ok and socket.gettime and socket.gettime() or os.time()
  local s = math.floor(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", s) .. format(".%03dZ", math.floor((t - s) * 1000))
end

local function clock()
  local ok, socket = pcall(require, "socket")
  if ok and socket.gettime then return socket.gettime() end
  return os.time()
end

-- An input image given as a path, bytes, an Image or {data =|path =, filename =}: read once, so
-- every route receives the same bytes. Returns the upload table and its description for the record.
local function load_input(v, i, what)
  local data, name
  if type(v) == "string" then
    local mime = core.sniff(v)
    if mime then
      data, name = v, format("%s-%d", what, i)
    else
      local f, msg = io.open(v, "rb")
      if not f then return nil, core.error("io", what .. ": " .. tostring(msg), {path = v}) end
      data = f:read("a")
      f:close()
      name = v:match("([^/]+)$") or v
    end
  elseif type(v) == "table" then
    if type(v.data) == "string" then data, name = v.data, v.filename or format("%s-%d", what, i)
    elseif type(v.path) == "string" then
      return load_input(v.path, i, what)
    else
      error(what .. " #" .. i .. ": a path, bytes or {data =, filename =} expected", 3)
    end
  elseif type(v) == "userdata" then
    local ok, bytes = pcall(function() return v.bytes end)
    if not ok or type(bytes) ~= "string" then error(what .. " #" .. i .. ": an image expected", 3) end
    data, name = bytes, format("%s-%d.%s", what, i, v.format or "png")
  else
    error(what .. " #" .. i .. ": a path, bytes or Image expected", 3)
  end
  local mime, fmt = core.sniff(data)
  local w, h = core.dimensions(data)
  local desc = {name = name, bytes = #data, sha256 = core.sha256(data), mime = mime, format = fmt,
    width = w, height = h}
  return {data = data, filename = name, mime = mime}, desc
end

local COST_KEYS = {"amount", "currency", "unit", "basis", "estimated", "source", "date", "outcome", "billed",
  "reason", "known_amount", "max_amount", "excludes", "note"}

local function cost_of(c)
  if type(c) ~= "table" then return nil end
  local out = {}
  for _, k in ipairs(COST_KEYS) do out[k] = c[k] end
  return out
end

local function plain(v, depth)
  depth = depth or 0
  if type(v) ~= "table" or depth > 6 then
    if type(v) == "userdata" or type(v) == "function" then return nil end
    return v
  end
  local out = {}
  for k, x in pairs(v) do out[k] = plain(x, depth + 1) end
  return out
end

local function entry_of(route, call, res, err)
  local r = res or err or {}
  local e = {
    route = route.name, lane = route.lane, provider = route.provider, shape = route.shape, host = route.host,
    model = r.model or route.model, tool_model = r.tool_model or (route.shape == "responses" and route.image_model)
      or nil,
    call = call, ok = res ~= nil and type(res.images) == "table" and #res.images > 0,
    request_id = r.request_id, response_id = r.response_id, http_status = r.http_status or r.status,
    latency = r.latency, attempts = r.attempts, usage = plain(r.usage), cost = cost_of(r.cost),
    contract_reason = r.contract_reason, log_error = r.log_error and (r.log_error.message or tostring(r.log_error)),
    output_text = type(r.output_text) == "string" and r.output_text ~= ""
      and r.output_text or nil,
    images = {},
  }
  if err then
    e.error = {kind = err.kind, message = err.message, status = err.status, code = err.code, type = err.type,
      rule = err.rule, text = tostring(err)}
  elseif not e.ok then
    e.error = {kind = "decode", message = "the route answered without an image", text = "no image in the answer"}
  end
  for k, img in ipairs(type(r.images) == "table" and r.images or {}) do
    local row = {index = k, image = img}
    pcall(function()
      row.mime, row.format, row.width, row.height = img.mime, img.format, img.width, img.height
      row.bytes, row.sha256, row.revised_prompt = img.length or #img.bytes, img.sha256, img.revised_prompt
    end)
    e.images[k] = row
  end
  return e
end

--- Sends the same request to every route, once, all at the same time (through `imageroute.batch`),
-- and records what came back. With `opts.images` the call is `edit` (the images, and the mask, are read
-- once and the same bytes go to every route); otherwise `generate` (which, on a `responses` route,
-- forces the image tool, and on a `chat` route asks for the image in one user message).
--
-- @tparam string prompt the prompt (non-empty)
-- @tparam {Route,...} routes the routes to compare, in column order (at least one; names unique)
-- @tparam[opt] table opts the comparison options:
--
-- * `size`, `quality`, `n`, `output_format` (strings / integer): sent to every route when set;
-- * `params` (table): further API fields, the same for every route;
-- * `images` (a path, bytes, Image, or a list of those): input images (the call becomes `edit`);
-- * `mask` (a path, bytes or Image);
-- * `call_opts` (table): per-call options for every call (`timeout`, `max_retries`, `log`, ...);
-- * `max_in_flight` (integer, default: every route at once);
-- * `on_done(i, result, err)`: called as each route finishes.
-- @treturn table record: `version` (1), `created` (UTC, ISO 8601), `prompt`, `call` (`"generate"` |
--   `"edit"`), `params` (what every route was sent, without image bytes), `inputs` and `mask` (each
--   `{name, bytes, sha256, mime, format, width, height}`), `wall_time` (seconds), `ok` (every route
--   returned an image), `entries`: one per route, in order: `route`, `lane`, `provider`, `shape`,
--   `host`, `model`, `tool_model`, `call`, `ok`, `request_id`, `response_id`, `http_status`, `latency`
--   (seconds), `attempts`, `usage`, `cost` (`amount`, `currency`, `basis`, `estimated`, `unit`,
--   `source`, `date`, `reason`, `known_amount`, `max_amount`, ...), `contract_reason`, `output_text`,
--   `error` (`kind`, `message`, `status`, `code`, `type`, `text` = the one-line `tostring(err)`), and
--   `images` (each `{index, mime, format, width, height, bytes, sha256, image}`; `image` is the
--   Image, which `write` saves and the JSON leaves out), and `billing` when the route's call log holds
--   a billing test or a reconciliation (`probe`, `reconcile`: see `imageroute.billing.figures`).
-- @treturn[2] nil
-- @treturn[2] table error (`kind = "io"`) when an input image cannot be read
-- @raise when prompt is not a non-empty string, routes is not a non-empty list of Routes with unique
--   names, or an option has the wrong type
function M.run(prompt, routes, opts)
  if type(prompt) ~= "string" or prompt == "" then error("compare.run: prompt must be a non-empty string", 2) end
  if type(routes) ~= "table" or #routes == 0 then error("compare.run: a non-empty list of routes expected", 2) end
  opts = opts or {}
  if type(opts) ~= "table" then error("compare.run: opts must be a table", 2) end
  local names = {}
  for i, r in ipairs(routes) do
    if not core.is_route(r) then error("compare.run: routes[" .. i .. "] is not a Route", 2) end
    if names[r.name] then error("compare.run: route '" .. tostring(r.name) .. "' is listed twice", 2) end
    names[r.name] = true
  end
  if opts.params ~= nil and type(opts.params) ~= "table" then error("compare.run: opts.params must be a table", 2) end

  local params = {}
  for k, v in pairs(opts.params or {}) do params[k] = v end
  params.prompt = prompt
  for _, k in ipairs{"size", "quality", "n", "output_format"} do
    if opts[k] ~= nil then params[k] = opts[k] end
  end
  local record = {version = 1, created = iso_now(), prompt = prompt, inputs = {}, entries = {},
    imageroute = imageroute._VERSION}
  local call = "generate"
  if opts.images ~= nil then
    local list = opts.images
    if type(list) ~= "table" or list.data or list.path then list = {list} end
    if #list == 0 then error("compare.run: opts.images is an empty list", 2) end
    local uploads = {}
    for i, v in ipairs(list) do
      local up, desc = load_input(v, i, "image")
      if not up then return nil, desc end
      uploads[i], record.inputs[i] = up, desc
    end
    params.image = #uploads == 1 and uploads[1] or uploads
    call = "edit"
  end
  if opts.mask ~= nil then
    if call ~= "edit" then error("compare.run: a mask needs input images (opts.images)", 2) end
    local up, desc = load_input(opts.mask, 1, "mask")
    if not up then return nil, desc end
    params.mask, record.mask = up, desc
  end
  record.call = call
  local shown = {}
  for k, v in pairs(params) do
    if k ~= "image" and k ~= "mask" then shown[k] = plain(v) end
  end
  record.params = shown

  local jobs = {}
  for i, r in ipairs(routes) do
    jobs[i] = {call = call, route = r, params = params, opts = opts.call_opts}
  end
  local t0 = clock()
  local results = imageroute.batch(jobs, {max_in_flight = opts.max_in_flight or #routes, on_done = opts.on_done})
  record.wall_time = clock() - t0
  local all_ok = true
  for i, r in ipairs(routes) do
    local e = entry_of(r, call, results[i].result, results[i].error)
    e.billing = figures.for_route(r, opts.call_opts) -- the route's latest probe and reconcile, if any
    record.entries[i] = e
    all_ok = all_ok and e.ok
  end
  record.ok = all_ok
  return record
end

return M
