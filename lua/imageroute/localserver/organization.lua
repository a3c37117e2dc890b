--- imageroute.localserver.organization: the Usage and Costs API mock, `GET /v1/organization/usage/images`
-- and `GET /v1/organization/costs`, answering from the Images API calls this server has actually
-- served (the recorded `/v1/images/generations` and `/v1/images/edits` requests with a 2xx answer),
-- so a reconciliation can be checked against a real count.
--
-- The shapes follow the official spec: a `UsageResponse` page (`object = "page"`, `data` of
-- `UsageTimeBucket`s, `has_more`, `next_page`) whose buckets hold `UsageImagesResult`s (`images`,
-- `num_model_requests`, and `source`, `size`, `project_id`, `user_id`, `api_key_id`, `model` set
-- when grouped by, null otherwise) or `CostsResult`s (`amount = {value, currency = "usd"}`,
-- `line_item`, `project_id`, `api_key_id`, `quantity`, `quantity_unit`). Query parameters:
-- `start_time` (required, Unix seconds, inclusive), `end_time` (exclusive, default now),
-- `bucket_width` (`1m` | `1h` | `1d` for usage, `1d` for costs; default `1d`), `group_by`, the
-- filters (`models`, `sizes`, `sources`, `project_ids`, `user_ids`, `api_key_ids`), `limit`
-- (buckets per page: usage 1d 7/31, 1h 24/168, 1m 60/1440 default/max; costs 7/180) and `page`
-- (the `next_page` cursor). Repeated names and `name[]` both give lists. Sources: OpenAI API
-- reference, Administration > Usage > Images (https://platform.openai.com/docs/api-reference/usage/images)
-- and Costs (https://platform.openai.com/docs/api-reference/usage/costs), read 2026-12-01; schemas
-- `UsageResponse`, `UsageTimeBucket`, `UsageImagesResult`, `CostsResult` of
-- https://github.com/openai/openai-openapi at f85dbe2.
--
-- What is counted: per served request, `images` = its `n` (default 1), `num_model_requests` = 1,
-- `model`, `size` (the size asked, `1024x1024` for auto), `source` (`image.generation` |
-- `image.edit`), `api_key_id` (`key_` and the first 16 hex digits of the SHA-256 of the bearer key
-- sent), `project_id` (the `OpenAI-Project` header), `user_id` (the `user` field). Its cost is the
-- local token rule (`imageroute.localserver`) priced at `imageroute.prices` token rates for the
-- model (no row: 0), `line_item` `"<model>, image"`, `quantity` the tokens.
--
-- The switch that makes the bill differ: the behaviour `billing` of the usage or costs request
-- (queued with `POST /__script`, or the `x-imageroute-test` header): `bill_failed = true` (every
-- refused image request, 400..599 but 429, counts as one image and is priced as one image at its
-- size and quality, like a gateway that bills failed calls), `markup` (a fraction: every cost
-- times `1 + markup`), `extra_images` (that many images more on the latest served request, in its
-- bucket). Missing `start_time` and bad values answer 400 like the API.
-- @module imageroute.localserver.organization

local core = require("imageroute.core")
local J = require("imageroute.localserver.json")
local http = require("imageroute.localserver.http")
local mock = require("imageroute.localserver.mock")
local S = require("imageroute.localserver.state")
local prices = require("imageroute.prices")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local floor, concat, sort, format = math.floor, table.concat, table.sort, string.format
local NULL, field, int, str, array = J.NULL, J.field, J.int, J.str, J.array
local error_response, json_response = http.error_response, http.json_response
local state = S.state

local M = {}

local WIDTHS = {["1m"] = 60, ["1h"] = 3600, ["1d"] = 86400}
local LIMITS = {["1m"] = {60, 1440}, ["1h"] = {24, 168}, ["1d"] = {7, 31}}
local USAGE_GROUPS = {project_id = true, user_id = true, api_key_id = true, model = true, size = true, source = true}
local COST_GROUPS = {project_id = true, line_item = true, api_key_id = true}

local function unescape(s)
  s = s:gsub("+", " ")
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

--- Parses a query string: name -> value, or a list of values for a repeated name or `name[]`.
-- @tparam string|nil q
-- @treturn table
function M.parse_query(q)
  local out, lists = {}, {}
  for pair in (q or ""):gmatch("[^&]+") do
    local k, v = pair:match("^([^=]*)=?(.*)$")
    k, v = unescape(k), unescape(v)
    local list = k:sub(-2) == "[]"
    if list then k = k:sub(1, -3) end
    if list or out[k] ~= nil then
      if not lists[k] then
        lists[k] = out[k] ~= nil and {out[k]} or {}
        out[k] = lists[k]
      end
      local t = lists[k]
      t[#t + 1] = v
    else
      out[k] = v
    end
  end
  return out
end

local function list_of(v)
  if v == nil then return nil end
  if type(v) == "table" then return v end
  return {v}
end

local function set_of(v)
  local l = list_of(v)
  if not l then return nil end
  local s = {}
  for _, x in ipairs(l) do s[x] = true end
  return s
end

local function bad(msg, param)
  return error_response(400, msg, param, "invalid_value")
end

-- The form fields of a multipart request (parts without a filename).
local function form_of(rec)
  local f = {}
  for _, p in ipairs(rec.parts or {}) do
    if not p.filename and p.name then f[p.name] = p.data end
  end
  return f
end

local function is_image_part(name)
  return name == "image" or name == "image[]" or (name and name:match("^image%[%d+%]$") ~= nil)
end

-- What one recorded request made and cost: nil when it is not an Images API request.
local function served(rec)
  local source = rec.path == "/v1/images/generations" and "image.generation"
    or rec.path == "/v1/images/edits" and "image.edit" or nil
  if not source or rec.method ~= "POST" then return nil end
  local p = rec.parts and form_of(rec) or (type(rec.json) == "table" and rec.json or {})
  local inputs = 0
  if rec.parts then
    for _, part in ipairs(rec.parts) do if is_image_part(part.name) then inputs = inputs + 1 end end
  elseif source == "image.edit" and type(field(p, "images")) == "table" then
    inputs = #field(p, "images")
  end
  local n = int(field(p, "n")) or 1
  local size = mock.norm_size(field(p, "size"))
  local quality = field(p, "quality")
  local model = str(field(p, "model")) or "dall-e-2"
  local tokens = {text_in = mock.text_tokens(str(field(p, "prompt"))), image_in = 256 * inputs,
    image_out = n * mock.image_output_tokens(size, quality)}
  local auth = type(rec.headers) == "table" and rec.headers.authorization or nil
  local key = type(auth) == "string" and auth:match("^[Bb]earer%s+(.+)$") or nil
  return {t = rec.t_start or 0, status = rec.status or 0, source = source, model = model, size = size,
    quality = mock.norm_quality(quality), n = n, tokens = tokens,
    api_key_id = key and ("key_" .. core.sha256(key):sub(1, 16)) or nil,
    project_id = type(rec.headers) == "table" and rec.headers["openai-project"] or nil,
    user_id = str(field(p, "user"))}
end

-- USD of a served request: its tokens at the model's per-1M-token rates; one=true: one image at
-- its size and quality (a billed failure).
local function price(s, one)
  local row = prices.token_row(s.model)
  if one then
    local p = prices.image_price(s.model, s.size, s.quality)
    if p then return p end
    if not row then return 0 end
    return mock.image_output_tokens(s.size, s.quality) * (row.image_out or 0) / row.per
  end
  if not row then return 0 end
  local t = s.tokens
  return (t.text_in * (row.text_in or 0) + t.image_in * (row.image_in or 0) + t.image_out * (row.image_out or 0))
    / row.per
end

-- The served requests that count, with the behaviour's switches applied.
local function entries(B)
  local sw = type(field(B, "billing")) == "table" and field(B, "billing") or {}
  local bill_failed = field(sw, "bill_failed") == true
  local out = {}
  for _, rec in ipairs(state.log) do
    local s = served(rec)
    if s then
      if s.status >= 200 and s.status < 300 then
        s.images, s.cost = s.n, price(s)
        out[#out + 1] = s
      elseif bill_failed and s.status >= 400 and s.status ~= 429 then
        s.images, s.cost, s.failed = 1, price(s, true), true
        out[#out + 1] = s
      end
    end
  end
  local extra = int(field(sw, "extra_images"))
  if extra and extra ~= 0 and #out > 0 then
    local last = out[#out]
    last.images = last.images + extra
  end
  local markup = tonumber(field(sw, "markup"))
  if markup then
    for _, s in ipairs(out) do s.cost = s.cost * (1 + markup) end
  end
  return out
end

-- The window and the page of buckets a query asks for, or an error response.
local function window(q, widths)
  local start = int(q.start_time)
  if not start or tostring(q.start_time):match("[^%d]") then
    return nil, bad(q.start_time == nil and "Missing required parameter: 'start_time'."
      or "Invalid 'start_time': expected Unix seconds.", "start_time")
  end
  local stop = q.end_time ~= nil and int(q.end_time) or os.time()
  if not stop or stop <= start then return nil, bad("Invalid 'end_time': it must be after start_time.", "end_time") end
  local width = q.bucket_width or "1d"
  if not widths[width] then
    return nil, bad(format("Invalid 'bucket_width' '%s'.", tostring(width)), "bucket_width")
  end
  local step = WIDTHS[width]
  local lim = widths[width]
  local limit = lim[1]
  if q.limit ~= nil then
    limit = int(q.limit)
    if not limit or limit < 1 or limit > lim[2] then
      return nil, bad(format("Invalid 'limit': expected 1..%d.", lim[2]), "limit")
    end
  end
  local first = floor(start / step) * step
  if q.page ~= nil then
    local p = tostring(q.page):match("^page_(%d+)$")
    if not p then return nil, bad("Invalid 'page' cursor.", "page") end
    first = tonumber(p)
  end
  return {first = first, stop = stop, step = step, limit = limit}
end

local function page(w, fill)
  local data = {}
  local t = w.first
  while t < w.stop and #data < w.limit do
    local results = fill(t, t + w.step)
    data[#data + 1] = {object = "bucket", start_time = t, end_time = t + w.step, results = array(results)}
    t = t + w.step
  end
  local more = t < w.stop
  return json_response(200, {object = "page", data = array(data), has_more = more,
    next_page = more and ("page_" .. t) or NULL})
end

local function groups_of(q, allowed)
  local g = list_of(q.group_by) or {}
  for _, name in ipairs(g) do
    if not allowed[name] then return nil, bad(format("Invalid 'group_by' value '%s'.", tostring(name)), "group_by") end
  end
  return set_of(g) or {}
end

local function matches(s, q)
  local filters = {models = "model", sizes = "size", sources = "source", project_ids = "project_id",
    user_ids = "user_id", api_key_ids = "api_key_id"}
  for param, f in pairs(filters) do
    local set = set_of(q[param])
    if set and not set[s[f] or ""] then return false end
  end
  return true
end

-- Groups the entries of [t0, t1) by the chosen fields: a list of {key values..., entries}.
local function grouped(list, t0, t1, names, by)
  local out, index = {}, {}
  for _, s in ipairs(list) do
    if s.t >= t0 and s.t < t1 then
      local parts = {}
      for i, name in ipairs(names) do parts[i] = by[name] and tostring(s[name] or "") or "" end
      local k = concat(parts, "\0")
      local g = index[k]
      if not g then
        g = {values = {}, list = {}}
        for _, name in ipairs(names) do if by[name] then g.values[name] = s[name] end end
        index[k] = g
        out[#out + 1] = g
      end
      g.list[#g.list + 1] = s
    end
  end
  return out
end

local USAGE_FIELDS = {"source", "size", "project_id", "user_id", "api_key_id", "model"}

--- `GET /v1/organization/usage/images`.
function M.usage_images(ctx, B)
  local q = M.parse_query(ctx.query)
  local w, err = window(q, LIMITS)
  if not w then return err end
  local by, gerr = groups_of(q, USAGE_GROUPS)
  if not by then return gerr end
  local list = {}
  for _, s in ipairs(entries(B)) do if matches(s, q) then list[#list + 1] = s end end
  return page(w, function(t0, t1)
    local results = {}
    for _, g in ipairs(grouped(list, t0, t1, USAGE_FIELDS, by)) do
      local r = {object = "organization.usage.images.result", images = 0, num_model_requests = 0}
      for _, name in ipairs(USAGE_FIELDS) do
        local v = g.values[name]
        if v == nil then v = NULL end
        r[name] = v
      end
      for _, s in ipairs(g.list) do
        r.images = r.images + s.images
        r.num_model_requests = r.num_model_requests + 1
      end
      results[#results + 1] = r
    end
    return results
  end)
end

local COST_FIELDS = {"line_item", "project_id", "api_key_id"}

--- `GET /v1/organization/costs`.
function M.costs(ctx, B)
  local q = M.parse_query(ctx.query)
  local w, err = window(q, {["1d"] = {7, 180}})
  if not w then return err end
  local by, gerr = groups_of(q, COST_GROUPS)
  if not by then return gerr end
  local list = {}
  for _, s in ipairs(entries(B)) do
    s.line_item = s.model .. ", image"
    if matches(s, {project_ids = q.project_ids, api_key_ids = q.api_key_ids}) then list[#list + 1] = s end
  end
  return page(w, function(t0, t1)
    local results = {}
    local groups = grouped(list, t0, t1, COST_FIELDS, by)
    sort(groups, function(a, b)
      return tostring(a.values.line_item) .. tostring(a.values.project_id) .. tostring(a.values.api_key_id)
        < tostring(b.values.line_item) .. tostring(b.values.project_id) .. tostring(b.values.api_key_id)
    end)
    for _, g in ipairs(groups) do
      local value, tokens = 0, 0
      for _, s in ipairs(g.list) do
        value = value + s.cost
        tokens = tokens + s.tokens.text_in + s.tokens.image_in + s.tokens.image_out
      end
      local r = {object = "organization.costs.result", amount = {value = value, currency = "usd"},
        line_item = g.values.line_item or NULL, project_id = g.values.project_id or NULL,
        api_key_id = g.values.api_key_id or NULL,
        quantity = by.line_item and tokens or NULL, quantity_unit = by.line_item and "tokens" or NULL}
      results[#results + 1] = r
    end
    return results
  end)
end

return M
