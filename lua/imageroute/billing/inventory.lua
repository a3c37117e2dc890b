--- imageroute.billing.inventory: what each route of a call log was used for, mapped to the official
-- API: the migration table of the route guides this project follows, filled in from real traffic.
--
-- The guides' migration steps: "inventory what the route currently does: text-to-image, image
-- edits, streaming, base64 output, URL output, retries, cost logging, moderation, storage; map each
-- item to Image API or Responses", with, per old capability, its official replacement and the
-- acceptance to check (text-to-image -> Images API generate; image edit -> Images API edit; agent
-- image step -> Responses image_generation; preview streaming -> Images API / Responses partial
-- images; provider fallback -> kept as an explicit fallback). `M.build` reads the log's lines
-- (each attempt, refusals, saves) and, per route, lists the capabilities it shows, how often, an
-- example request id, the replacement, the acceptance, and which official routes of a routes file
-- cover it (an official-lane route of the right shape whose model can do it, from
-- `imageroute.models`). Official API facts: OpenAI API reference, Images
-- (https://platform.openai.com/docs/api-reference/images) and Responses
-- (https://platform.openai.com/docs/api-reference/responses), read 2026-12-01.
-- @module imageroute.billing.inventory

local models = require("imageroute.models")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local concat, sort = table.concat, table.sort

local M = {}

--- The capabilities, in report order: `id`, `label`, `replacement` (the official one), `acceptance`
-- (what to check before moving it), `needs` (what an official route must offer: `shape` =
-- `"images"` | `"responses"` | `"any"`, and optional model facts `edits`, `partial_images`,
-- `max_edit_images`, and `params`: the model takes every size and quality the route was used with).
M.CAPABILITIES = {
  {id = "text_to_image", label = "text-to-image", replacement = "Images API generate",
    acceptance = "same prompt returns and stores consistently at target size/quality",
    needs = {shape = "images", params = true}},
  {id = "edit", label = "image edit, no mask", replacement = "Images API edit",
    acceptance = "reference image, mask, output format and input-image cost are logged",
    needs = {shape = "images", edits = true, params = true}},
  {id = "edit_mask", label = "image edit with a mask", replacement = "Images API edit (mask: a PNG with alpha, "
    .. "applies to the first image)", acceptance = "reference image, mask, output format and input-image cost are "
    .. "logged", needs = {shape = "images", edits = true, params = true}},
  {id = "edit_multi", label = "edit with several input images", replacement = "Images API edit (up to 16 image[] "
    .. "parts)", acceptance = "every reference image sent and its input-image cost logged",
    needs = {shape = "images", edits = true, max_edit_images = true, params = true}},
  {id = "agent_step", label = "agent image step (Responses)", replacement = "Responses image_generation",
    acceptance = "multi-step state, tool calls and image artifacts traceable together",
    needs = {shape = "responses", params = true}},
  {id = "streaming", label = "streaming", replacement = "Images API / Responses partial images",
    acceptance = "preview count, extra tokens, final-output relation explainable", needs = {shape = "any",
    partial_images = true}},
  {id = "partials_received", label = "partial images received", replacement = "Images API / Responses partial "
    .. "images (partial_images 1..3)", acceptance = "preview count, extra tokens, final-output relation explainable",
    needs = {shape = "any", partial_images = true}},
  {id = "b64_output", label = "base64 output", replacement = "Images API b64_json (GPT image models always return "
    .. "base64)", acceptance = "images decoded and saved from the bytes", needs = {shape = "any"}},
  {id = "data_url_output", label = "data-URL output", replacement = "Images API b64_json (plain base64, no data: "
    .. "prefix)", acceptance = "images decoded and saved from the bytes", needs = {shape = "any"}},
  {id = "url_output", label = "URL output (image links)", replacement = "Images API b64_json (GPT image models "
    .. "return no URL: store the bytes yourself)", acceptance = "every image saved where the links pointed were "
    .. "kept, before they expire", needs = {shape = "any"}},
  {id = "retries", label = "retries", replacement = "official SDK retries (408, 409, 429, >= 500), no idempotency "
    .. "key", acceptance = "retries off, or retry_policy = \"safe\", where a second bill matters",
    needs = {shape = "any"}},
  {id = "retries_may_bill", label = "retried attempts that may have billed", replacement = "retry_policy = "
    .. "\"safe\" on the official route", acceptance = "each retried attempt's cost is in the log",
    needs = {shape = "any"}},
  {id = "moderation", label = "moderation outcomes", replacement = "Images API moderation (400 moderation_blocked; "
    .. "moderation = \"low\" | \"auto\")", acceptance = "blocked calls logged with their outcome and cost",
    needs = {shape = "any"}},
  {id = "cost_logging", label = "cost logging", replacement = "usage tokens priced from the published rows; "
    .. "Usage and Costs API to reconcile", acceptance = "imageroute reconcile --official agrees per day and model",
    needs = {shape = "any"}},
  {id = "saves", label = "storage (saved files)", replacement = "the application's own storage of the returned bytes",
    acceptance = "each saved file logged with its path, size and sha256", needs = {shape = "any"}},
  {id = "fallback", label = "provider fallback", replacement = "kept as an explicit fallback, not first-party "
    .. "behaviour", acceptance = "provider name, base URL, price, failed billing and stop rule present",
    needs = {shape = "none"}},
}

local function new_route_row(rec)
  return {route = rec.route, lane = rec.lane, provider = rec.provider, host = rec.host, shape = rec.shape,
    calls = 0, used = {}, max_edit_images = 0, models = {}, sizes = {}, qualities = {}}
end

local function mark(row, id, rec, extra)
  local u = row.used[id]
  if not u then
    u = {count = 0}
    row.used[id] = u
  end
  u.count = u.count + (extra or 1)
  if not u.example and type(rec.request_id) == "string" then u.example = rec.request_id end
end

--- What an official route offers, for `needs`.
local function covers(route, needs, row)
  if needs.shape == "none" then return false end
  if route.lane ~= "official" then return false end
  local shape = route.shape or "images"
  if needs.shape ~= "any" and shape ~= needs.shape then return false end
  local model = shape == "responses" and route.image_model or route.model
  local entry = models.get(model)
  if needs.edits and shape == "images" and entry and entry.edits == false then return false end
  if needs.partial_images and entry and entry.partial_images == false then return false end
  if needs.max_edit_images and entry and entry.max_edit_images and row.max_edit_images > entry.max_edit_images then
    return false
  end
  if needs.params and entry then -- the sizes and qualities the old route was used with
    for q in pairs(row.qualities) do
      if type(entry.quality) == "table" and not models.listed(entry.quality, q) then return false end
    end
    for size in pairs(row.sizes) do
      if not models.size_ok(entry, size) then return false end
    end
  end
  return true
end

--- Builds the inventory of a log.
-- @tparam table records from `imageroute.log.read`
-- @tparam[opt] table routes name -> Route (a routes file, from `imageroute.routes.load`), for coverage
-- @tparam[opt] table order the routes file's names in order
-- @treturn table `routes` (list, by route name: `{route =, lane =, provider =, host =, shape =, calls =,
--   models = {...}, rows = {{id =, label =, count =, example =, replacement =, acceptance =, covered_by =
--   {names}, covered = boolean, note =}}}`; the row `retries_may_bill` also has `may_have_billed`, the
--   most the retried attempts may have cost, in `currency`), `official` (the official routes of the
--   routes file)
function M.build(records, routes, order)
  local by, names = {}, {}
  local function row_for(rec)
    local name = tostring(rec.route)
    local r = by[name]
    if not r then
      r = new_route_row(rec)
      by[name] = r
      names[#names + 1] = name
    end
    r.lane, r.provider, r.host, r.shape = r.lane or rec.lane, r.provider or rec.provider, r.host or rec.host,
      r.shape or rec.shape
    return r
  end
  for _, rec in ipairs(records) do
    if rec.event == "save" then
      mark(row_for(rec), "saves", rec)
    elseif rec.event == "attempt" then
      local r = row_for(rec)
      if rec.retry_reason then
        mark(r, "retries", rec)
        if rec.may_have_billed ~= false then
          mark(r, "retries_may_bill", rec)
          local c = type(rec.cost) == "table" and rec.cost or {}
          local u = r.used.retries_may_bill
          local a = type(c.max_amount) == "number" and c.max_amount or (type(c.amount) == "number" and c.amount)
          if a then u.amount = (u.amount or 0) + a else u.unknown = (u.unknown or 0) + 1 end
          u.currency = u.currency or c.currency
        end
      end
      if rec.final then
        r.calls = r.calls + 1
        if rec.model then r.models[rec.model] = true end
        if rec.tool_model then r.models[rec.tool_model] = true end
        if type(rec.quality) == "string" then r.qualities[rec.quality] = true end
        if type(rec.size) == "string" then r.sizes[rec.size] = true end
        local sent = rec.phase ~= "not_sent"
        if sent then
          if rec.kind == "respond" or rec.shape == "responses" then mark(r, "agent_step", rec)
          elseif rec.kind == "edit" then
            mark(r, rec.mask and "edit_mask" or "edit", rec)
            local n = tonumber(rec.input_images) or 1
            if n > 1 then mark(r, "edit_multi", rec) end
            if n > r.max_edit_images then r.max_edit_images = n end
          elseif rec.kind == "generate" then mark(r, "text_to_image", rec) end
          if rec.stream then mark(r, "streaming", rec) end
          local pr = tonumber(rec.partial_images_received)
          if pr and pr > 0 then mark(r, "partials_received", rec, pr) end
          local o = type(rec.outputs) == "table" and rec.outputs or nil
          if o then
            if (tonumber(o.b64) or 0) > 0 then mark(r, "b64_output", rec, o.b64) end
            if (tonumber(o.data_url) or 0) > 0 then mark(r, "data_url_output", rec, o.data_url) end
            if (tonumber(o.url) or 0) > 0 then mark(r, "url_output", rec, o.url) end
          end
          if rec.error_code == "moderation_blocked" or (type(rec.cost) == "table" and rec.cost.outcome == "moderation")
          then mark(r, "moderation", rec) end
          if type(rec.call_cost) == "table" then mark(r, "cost_logging", rec) end
        end
        if rec.fallback_reason or (type(rec.fallback_from) == "table" and #rec.fallback_from > 0) then
          mark(r, "fallback", rec)
        end
      end
    end
  end
  local official = {}
  for _, name in ipairs(order or {}) do
    local rt = routes and routes[name]
    if rt and rt.lane == "official" and not rt.routes then official[#official + 1] = name end
  end
  local out = {routes = {}, official = official}
  sort(names)
  for _, name in ipairs(names) do
    local r = by[name]
    local models_list = {}
    for m in pairs(r.models) do models_list[#models_list + 1] = m end
    sort(models_list)
    local entry = {route = r.route, lane = r.lane, provider = r.provider, host = r.host, shape = r.shape,
      calls = r.calls, models = models_list, rows = {}}
    for _, cap in ipairs(M.CAPABILITIES) do
      local u = r.used[cap.id]
      if u then
        local by_names = {}
        for _, oname in ipairs(official) do
          if covers(routes[oname], cap.needs, r) then by_names[#by_names + 1] = oname end
        end
        local row = {id = cap.id, label = cap.label, count = u.count, example = u.example,
          replacement = cap.replacement, acceptance = cap.acceptance, covered_by = by_names, covered = #by_names > 0}
        if cap.id == "edit_multi" then row.note = ("up to %d input images per edit"):format(r.max_edit_images) end
        if cap.id == "retries_may_bill" then
          row.may_have_billed, row.currency, row.unknown = u.amount or 0, u.currency or "USD", u.unknown
          row.note = ("they may have billed up to %s %s%s"):format(string.format("%.6g", row.may_have_billed),
            row.currency, u.unknown and (" and " .. u.unknown .. " attempt(s) of unknown price") or "")
        end
        if cap.needs.shape == "none" then row.note = "stays a provider route, declared in a router" end
        entry.rows[#entry.rows + 1] = row
      end
    end
    out.routes[#out.routes + 1] = entry
  end
  return out
end

--- The inventory as text: per route, a table of capability, count, example request id, official
-- replacement, acceptance and coverage.
-- @tparam table inv from `M.build`
-- @tparam function table_text aligned columns (rows of strings -> text)
-- @treturn string
function M.text(inv, table_text)
  local out = {}
  if #inv.official == 0 then
    out[#out + 1] = "no official route in the routes file: nothing covers these capabilities yet\n"
  else
    out[#out + 1] = "official routes: " .. concat(inv.official, ", ") .. "\n"
  end
  for i, r in ipairs(inv.routes) do
    if i > 1 or #out > 0 then out[#out + 1] = "\n" end
    out[#out + 1] = ("route %s  lane=%s provider=%s host=%s shape=%s calls=%d models=%s\n"):format(tostring(r.route),
      tostring(r.lane), tostring(r.provider), tostring(r.host), tostring(r.shape), r.calls,
      #r.models > 0 and concat(r.models, ",") or "-")
    local rows = {{"CAPABILITY", "SEEN", "EXAMPLE", "OFFICIAL REPLACEMENT", "COVERED BY", "ACCEPTANCE"}}
    for _, row in ipairs(r.rows) do
      local label = row.id == "retries_may_bill" and (row.label .. " (" .. row.note .. ")") or row.label
      rows[#rows + 1] = {label, tostring(row.count), row.example or "-", row.replacement,
        row.covered and concat(row.covered_by, ",") or (row.note and ("no (" .. row.note .. ")") or "no"),
        row.acceptance}
    end
    if #r.rows == 0 then rows[#rows + 1] = {"(no call sent)"} end
    out[#out + 1] = table_text(rows) .. "\n"
  end
  return concat(out)
end

return M
