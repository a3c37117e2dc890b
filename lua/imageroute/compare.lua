--- imageroute.compare: a controlled comparison of routes. The same prompt, size, quality and input
-- images go to every route, once, concurrently; the record says, per route, what came back and what
-- it cost; `write` turns it into a self-contained HTML page (the images beside it, side by side,
-- with route, lane, provider, model, request id, latency, attempts, cost and its basis under each)
-- and a JSON file. This is how a provider route is tried against the official one before traffic
-- moves.
--
--    local imageroute = require "imageroute"
--    local compare = require "imageroute.compare"
--    local rec = compare.run("a lighthouse at dawn", {official, gateway}, {size = "1024x1024", quality = "low"})
--    local html, json = assert(compare.write(rec, "out/compare"))
--    print(html)   --> out/compare/compare.html (opens offline: no network, no external files)
--
-- The command line does the same: `imageroute compare PROMPT --routes A,B[,C]`.
-- @module imageroute.compare

local imageroute = require "imageroute"
local core = require "imageroute.core"

local type, pairs, ipairs, tostring, tonumber, concat, sort, format =
  type, pairs, ipairs, tostring, tonumber, table.concat, table.sort, string.format
local math_type = math.type

local M = {}

-- ---------------------------------------------------------------------------------------------
-- JSON with sorted keys (stable, diffable files)

-- Keys whose value is a list: an empty table under them is written as [] (else {}).
local LIST_KEYS = {entries = true, images = true, inputs = true, files = true, partial_files = true,
  attempts = true, rows = true, reports = true, jobs = true, image_calls = true}

local function json_string(s)
  local out = core.json_encode(s)
  if not out then out = core.json_encode((s:gsub("[\128-\255]", "?"))) end
  return (out:gsub("\\/", "/"))
end

local function is_list(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math_type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local function encode(v, key, indent, depth, seen, out)
  local tv = type(v)
  if tv == "string" then out[#out + 1] = json_string(v)
  elseif tv == "number" then
    if v ~= v or v == math.huge or v == -math.huge then out[#out + 1] = "null"
    elseif math_type(v) == "integer" then out[#out + 1] = format("%d", v)
    else out[#out + 1] = format("%.14g", v):gsub("^(%-?%d+)$", "%1.0") end
  elseif tv == "boolean" then out[#out + 1] = tostring(v)
  elseif tv == "table" then
    if seen[v] then error("to_json: a cycle", 0) end
    seen[v] = true
    local nl = indent and ("\n" .. indent:rep(depth + 1)) or ""
    local close = indent and ("\n" .. indent:rep(depth)) or ""
    local sep = indent and ": " or ":"
    if is_list(v) then
      out[#out + 1] = "["
      for i, x in ipairs(v) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = nl
        encode(x, nil, indent, depth + 1, seen, out)
      end
      out[#out + 1] = close .. "]"
    else
      local keys = {}
      for k, x in pairs(v) do
        local tx = type(x)
        if (type(k) == "string" or math_type(k) == "integer") and tx ~= "function" and tx ~= "userdata"
          and tx ~= "thread" then
          keys[#keys + 1] = tostring(k)
        end
      end
      if #keys == 0 then
        out[#out + 1] = LIST_KEYS[key] and "[]" or "{}"
      else
        sort(keys)
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          local x = v[k]
          if x == nil then x = v[tonumber(k)] end
          out[#out + 1] = nl .. json_string(k) .. sep
          encode(x, k, indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "}"
      end
    end
    seen[v] = nil
  else
    out[#out + 1] = "null"
  end
end

--- Encodes plain data as JSON with sorted keys. Functions and userdata (an Image, a Route) are left
-- out, so a record or a result summary can be written as is; the command line's `--json` uses it.
-- @param value a string, number, boolean or table of those
-- @tparam[opt] string indent e.g. `"  "` for an indented text; compact when nil
-- @treturn string JSON text
-- @raise on a table cycle
function M.to_json(value, indent)
  local out = {}
  encode(value, nil, indent, 0, {}, out)
  return concat(out)
end

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
    contract_reason = r.contract_reason, output_text = type(r.output_text) == "string" and r.output_text ~= ""
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
--   Image, which `write` saves and the JSON leaves out).
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
    record.entries[i] = e
    all_ok = all_ok and e.ok
  end
  record.ok = all_ok
  return record
end

-- ---------------------------------------------------------------------------------------------
-- write

local function html_escape(s)
  return (tostring(s):gsub("[&<>\"']", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;",
    ["'"] = "&#39;"}))
end

--- An amount of money as text: up to 6 decimals, trailing zeros dropped ("0.03", "0.01089").
-- @tparam number|nil amount
-- @treturn string
function M.money(amount)
  if type(amount) ~= "number" then return "unknown" end
  local s = format("%.6f", amount):gsub("0+$", ""):gsub("%.$", ".0")
  return s
end

--- The cost of an entry (or a result's `cost`) as one short text: amount, currency, basis.
-- @tparam table|nil cost
-- @treturn string e.g. `"0.03 USD (provider, estimated)"`, `"unknown (at most 0.04 USD)"`
function M.cost_text(cost)
  if type(cost) ~= "table" then return "unknown" end
  local cur = cost.currency or "USD"
  if cost.amount == nil then
    local s = "unknown"
    if type(cost.max_amount) == "number" then s = s .. " (at most " .. M.money(cost.max_amount) .. " " .. cur .. ")" end
    return s
  end
  return M.money(cost.amount) .. " " .. cur
end

local function basis_text(cost)
  if type(cost) ~= "table" then return "-" end
  local parts = {tostring(cost.basis or "-")}
  if cost.estimated == false then parts[#parts + 1] = "reported" else parts[#parts + 1] = "estimated" end
  if cost.unit then parts[#parts + 1] = "per " .. cost.unit end
  local s = concat(parts, ", ")
  if cost.source then s = s .. "; " .. cost.source .. (cost.date and (", " .. cost.date) or "") end
  if cost.reason then s = s .. "; " .. cost.reason end
  if cost.excludes then s = s .. "; excludes " .. cost.excludes end
  return s
end

local function write_file(path, text)
  local tmp = path .. ".tmp"
  local f, msg = io.open(tmp, "wb")
  if not f then return nil, core.error("io", "cannot write " .. path .. ": " .. tostring(msg), {path = path}) end
  local ok, werr = f:write(text)
  local closed, cerr = f:close()
  if not ok or not closed then
    os.remove(tmp)
    return nil, core.error("io", "cannot write " .. path .. ": " .. tostring(werr or cerr), {path = path})
  end
  local renamed, rerr = os.rename(tmp, path)
  if not renamed then
    os.remove(tmp)
    return nil, core.error("io", "cannot write " .. path .. ": " .. tostring(rerr), {path = path})
  end
  return path
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

--- Creates a directory and its parents (`mkdir -p`).
-- @tparam string dir
-- @treturn true|nil
-- @treturn[2] table error (`kind = "io"`)
function M.mkdir(dir)
  if type(dir) ~= "string" or dir == "" then error("mkdir: a directory expected", 2) end
  if os.execute("mkdir -p -- " .. shell_quote(dir) .. " 2>/dev/null") then return true end
  return nil, core.error("io", "cannot create the directory " .. dir, {path = dir})
end

local CSS = [[
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#1b1b1b;
background:#fafafa}
h1{font-size:20px;margin:0 0 8px}
p.meta{margin:2px 0;color:#444;font-size:14px}
p.prompt{font-size:16px;margin:8px 0 16px}
table.compare{border-collapse:collapse;background:#fff;table-layout:fixed;width:100%;max-width:1400px}
table.compare col.label{width:120px}
table.compare th,table.compare td{border:1px solid #d0d0d0;padding:6px 10px;vertical-align:top;font-size:13px;
text-align:left;overflow-wrap:anywhere}
table.compare thead th{background:#f0f0f0;font-size:14px}
table.compare tbody th{background:#f7f7f7;white-space:nowrap;font-weight:600}
td.images{text-align:center;background:#fff}
td.images img{width:320px;height:auto;max-width:100%;image-rendering:pixelated;border:1px solid #ccc;
display:block;margin:0 auto 4px}
td.images .caption{color:#555;font-size:12px}
td.noimage{color:#a00;text-align:center;height:120px;vertical-align:middle}
td.failed{color:#a00}
td.ok{color:#070}
p.note{margin-top:12px;color:#444;font-size:13px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12px}
]]

local SCRIPT = [[
(function () {
  function count() {
    var imgs = document.images, loaded = 0;
    for (var i = 0; i < imgs.length; i++) {
      if (imgs[i].complete && imgs[i].naturalWidth > 0) loaded++;
    }
    document.body.dataset.imagesLoaded = String(loaded);
    document.body.dataset.imagesTotal = String(imgs.length);
  }
  window.addEventListener("load", count);
  for (var i = 0; i < document.images.length; i++) {
    document.images[i].addEventListener("load", count);
    document.images[i].addEventListener("error", count);
  }
})();
]]

local function fmt_latency(s)
  if type(s) ~= "number" then return "-" end
  return format("%.3f s", s)
end

--- Renders a record (after its images were given `file` names) as a self-contained HTML page.
-- @tparam table record from `run` (images with `file`, relative to the page)
-- @treturn string HTML
function M.html(record)
  local entries = record.entries or {}
  local total = 0
  for _, e in ipairs(entries) do
    for _, img in ipairs(e.images or {}) do if img.file then total = total + 1 end end
  end
  local h = {}
  local function add(...) for _, s in ipairs{...} do h[#h + 1] = s end end
  local title = "imageroute compare: " .. (record.prompt or "")
  if #title > 120 then title = title:sub(1, 117) .. "..." end
  add('<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
    '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
    '<meta name="generator" content="imageroute ', html_escape(record.imageroute or imageroute._VERSION), '">\n',
    "<title>", html_escape(title), "</title>\n<style>\n", CSS, "</style>\n</head>\n")
  add('<body data-images-total="', tostring(total), '" data-images-loaded="0" data-routes="',
    tostring(#entries), '">\n')
  add("<h1>Route comparison</h1>\n")
  add('<p class="prompt">Prompt: <strong>', html_escape(record.prompt or ""), "</strong></p>\n")
  local p = record.params or {}
  local asked = {}
  local keys = {}
  for k in pairs(p) do if k ~= "prompt" then keys[#keys + 1] = k end end
  sort(keys)
  for _, k in ipairs(keys) do
    local v = p[k]
    asked[#asked + 1] = html_escape(k) .. " = <code>" .. html_escape(type(v) == "table" and M.to_json(v) or v)
      .. "</code>"
  end
  add('<p class="meta">Call: <code>', html_escape(record.call or "generate"), "</code>; the same request to every ",
    "route, one run", #asked > 0 and ("; " .. concat(asked, ", ")) or "", ".</p>\n")
  for i, inp in ipairs(record.inputs or {}) do
    add('<p class="meta">Input image ', tostring(i), ": <code>", html_escape(inp.name or "-"), "</code> (",
      html_escape(tostring(inp.width or "?") .. "x" .. tostring(inp.height or "?")), ", ",
      tostring(inp.bytes or "?"), " bytes, sha256 <code>", html_escape((inp.sha256 or ""):sub(1, 16)),
      "</code>)</p>\n")
  end
  if record.mask then
    add('<p class="meta">Mask: <code>', html_escape(record.mask.name or "-"), "</code> (", tostring(record.mask.bytes),
      " bytes)</p>\n")
  end
  add('<p class="meta">Run ', html_escape(record.created or ""), ", wall time ", fmt_latency(record.wall_time),
    ".</p>\n")

  add('<table class="compare" id="compare">\n<colgroup><col class="label">')
  for _ = 1, #entries do add('<col class="route">') end
  add('</colgroup>\n<thead><tr><th scope="col">route</th>')
  for _, e in ipairs(entries) do
    add('<th scope="col">', html_escape(e.route or "-"), "</th>")
  end
  add("</tr></thead>\n<tbody>\n")
  -- the images, side by side
  add('<tr class="images"><th scope="row">image</th>')
  for _, e in ipairs(entries) do
    local imgs = {}
    for _, img in ipairs(e.images or {}) do if img.file then imgs[#imgs + 1] = img end end
    if #imgs == 0 then
      add('<td class="noimage">no image</td>')
    else
      add('<td class="images">')
      for _, img in ipairs(imgs) do
        add('<img src="', html_escape(img.file), '" alt="', html_escape((e.route or "") .. " image " .. img.index),
          '"', img.width and (' width="' .. img.width .. '"') or "", img.height and (' height="' .. img.height .. '"')
          or "", '>', '<div class="caption">', html_escape(tostring(img.width or "?") .. "x" ..
          tostring(img.height or "?")), " ", html_escape(img.format or ""), ", ", tostring(img.bytes or "?"),
          " bytes</div>")
      end
      add("</td>")
    end
  end
  add("</tr>\n")
  local function row(label, fn, class)
    add("<tr", class and (' class="' .. class .. '"') or "", '><th scope="row">', html_escape(label), "</th>")
    for _, e in ipairs(entries) do
      local text, cell_class = fn(e)
      add("<td", cell_class and (' class="' .. cell_class .. '"') or "", ">", text, "</td>")
    end
    add("</tr>\n")
  end
  local function esc(v) return v == nil and "-" or html_escape(v) end
  row("route", function(e) return esc(e.route) end)
  row("lane", function(e) return esc(e.lane) end)
  row("provider", function(e) return esc(e.provider) end)
  row("shape", function(e) return esc(e.shape) end)
  row("host", function(e) return esc(e.host) end)
  row("model", function(e)
    return esc(e.model) .. (e.tool_model and (" + image tool " .. esc(e.tool_model)) or "")
  end)
  row("request id", function(e) return "<code>" .. esc(e.request_id) .. "</code>" end)
  row("latency", function(e) return esc(fmt_latency(e.latency)) end)
  row("attempts", function(e) return esc(e.attempts) end)
  row("cost", function(e) return esc(M.cost_text(e.cost)) end)
  row("cost basis", function(e) return esc(basis_text(e.cost)) end)
  row("result", function(e)
    if e.ok then return "ok", "ok" end
    return esc(e.error and (e.error.text or e.error.message) or "failed"), "failed"
  end, "result")
  add("</tbody>\n</table>\n")
  add('<p class="note">The record: <a href="compare.json">compare.json</a>. Costs are estimates unless the basis ',
    "says reported.</p>\n")
  add("<script>\n", SCRIPT, "</script>\n</body>\n</html>\n")
  return concat(h)
end

--- Writes a record as a report directory: the images (`<i>-<route>-<k>.<format>`), `compare.html`
-- (self-contained: inline CSS and script, images referenced beside it, nothing fetched from the
-- network) and `compare.json` (the record without image bytes; each image with its `file`).
-- Existing files of the same names are replaced.
--
-- The page's script sets `data-images-loaded` (images with `complete && naturalWidth > 0`) and
-- `data-images-total` on `<body>` once loaded, for headless checks.
-- @tparam table record from `run`
-- @tparam string dir the report directory (created when missing)
-- @treturn string the HTML file's path
-- @treturn string the JSON file's path
-- @treturn[2] nil
-- @treturn[2] table error (`kind = "io"`, `path`)
-- @raise when record is not a record or dir not a string
function M.write(record, dir)
  if type(record) ~= "table" or type(record.entries) ~= "table" then error("compare.write: a record expected", 2) end
  if type(dir) ~= "string" or dir == "" then error("compare.write: a directory expected", 2) end
  local ok, err = M.mkdir(dir)
  if not ok then return nil, err end
  for i, e in ipairs(record.entries) do
    for k, img in ipairs(e.images or {}) do
      if img.image then
        local name = format("%d-%s-%d.%s", i, imageroute.safe_name(e.route or "route"), k,
          imageroute.safe_name(img.format or "bin"))
        local saved, serr = img.image:save(dir .. "/" .. name, {overwrite = true})
        if not saved then return nil, serr end
        img.file = name
      end
    end
  end
  local html_path, herr = write_file(dir .. "/compare.html", M.html(record))
  if not html_path then return nil, herr end
  local json_path, jerr = write_file(dir .. "/compare.json", M.to_json(record, "  ") .. "\n")
  if not json_path then return nil, jerr end
  return html_path, json_path
end

return M
