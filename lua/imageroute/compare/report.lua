--- imageroute.compare.report: writing a comparison record. `html` renders the self-contained page
-- (images side by side, route, lane, provider, model, request id, latency, attempts, cost and its
-- basis under each), `write` puts the images, `compare.html` and `compare.json` in a directory;
-- `money`, `cost_text` and `mkdir` are shared with the command line's output.
-- @module imageroute.compare.report

local imageroute = require("imageroute")
local core = require("imageroute.core")
local to_json = require("imageroute.compare.json").to_json

local type, pairs, ipairs, tostring, concat, sort, format =
  type, pairs, ipairs, tostring, table.concat, table.sort, string.format

local M = {}

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

--- A route's latest billing test as one short text (`imageroute.billing.figures`).
-- @tparam table|nil p the `probe` figures
-- @treturn string e.g. `"probe-... 2026-12-01T10:00:00Z: 2 calls (success, rejected), estimated 0.03 USD"`
function M.probe_text(p)
  if type(p) ~= "table" then return "-" end
  local e = type(p.estimated) == "table" and p.estimated or {}
  local outcomes = {}
  for i, c in ipairs(p.calls or {}) do outcomes[i] = tostring(c.outcome or c.role) end
  return ("%s %s: %d call(s) (%s), estimated %s %s"):format(tostring(p.probe_id), tostring(p.started), #outcomes,
    concat(outcomes, ", "), M.money(e.success), tostring(e.currency or "USD"))
end

--- A route's latest reconciliation as one short text.
-- @tparam table|nil r the `reconcile` figures
-- @treturn string e.g. `"billed 0.03 USD, estimated 0.03 USD: flat price held; rejected=no"`
function M.reconcile_text(r)
  if type(r) ~= "table" then return "-" end
  if r.mode == "official" then
    return ("usage %s images, log %s; costs %s USD, log %s USD: %s"):format(tostring(r.api_images),
      tostring(r.log_images), M.money(r.api_usd), M.money(r.log_usd), r.ok and "agree" or
      (tostring(r.differences) .. " difference(s)"))
  end
  local answers = {}
  for k, v in pairs(type(r.answers) == "table" and r.answers or {}) do
    answers[#answers + 1] = k .. "=" .. tostring(v)
  end
  sort(answers)
  local cur = tostring(r.currency or "USD")
  return ("billed %s %s, estimated %s %s%s%s"):format(M.money(r.billed), cur, M.money(r.expected), cur,
    r.flat_held == true and ": flat price held" or r.flat_held == false and ": flat price did NOT hold" or
    (r.matched and ": matches" or ": no match"), #answers > 0 and ("; failed calls billed: " .. concat(answers, ", "))
    or "")
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
    asked[#asked + 1] = html_escape(k) .. " = <code>" .. html_escape(type(v) == "table" and to_json(v) or v)
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
  local billed = false
  for _, e in ipairs(entries) do billed = billed or e.billing ~= nil end
  if billed then -- the routes' billing test and reconciliation, from their call logs
    row("billing test", function(e) return esc(M.probe_text(e.billing and e.billing.probe)) end)
    row("reconciled", function(e) return esc(M.reconcile_text(e.billing and e.billing.reconcile)) end)
  end
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
  local json_path, jerr = write_file(dir .. "/compare.json", to_json(record, "  ") .. "\n")
  if not json_path then return nil, jerr end
  return html_path, json_path
end


return M
