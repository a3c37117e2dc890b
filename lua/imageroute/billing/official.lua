--- imageroute.billing.official: the call log against the official API's Usage and Costs (the
-- `official` half of `imageroute.billing.reconcile`, which re-exports `queries` and `official`; the
-- endpoints, their sources and the shape of the comparison are described there).
-- @module imageroute.billing.official

local reconcile = require("imageroute.billing.reconcile")

local type, pairs, ipairs, tostring, tonumber, format, select =
  type, pairs, ipairs, tostring, tonumber, string.format, select
local floor, abs, concat, sort = math.floor, math.abs, table.concat, table.sort
local day_of, minute_of, money = reconcile.day_of, reconcile.minute_of, reconcile.money

local M = {}


--- The queries `M.official` sends, for a window.
-- @tparam number since Unix seconds
-- @tparam number till Unix seconds (exclusive)
-- @tparam[opt] table by `keys`, `projects` (booleans, default true): group by `api_key_id` and
--   `project_id` (not when the log holds no key ids, or no project ids: the rows would never meet)
-- @treturn table `{usage = {path =, query =}, costs = {path =, query =}, bucket_width =}`: minute
--   buckets when the window is at most a day (so differences can be told call by call), else days
function M.queries(since, till, by)
  by = by or {}
  local usage_groups, cost_groups = {"model"}, {}
  if by.keys ~= false then usage_groups[#usage_groups + 1] = "api_key_id" end
  if by.projects ~= false then
    usage_groups[#usage_groups + 1] = "project_id"
    cost_groups[#cost_groups + 1] = "project_id"
  end
  if by.keys ~= false then cost_groups[#cost_groups + 1] = "api_key_id" end
  local width = (till - since) <= 86400 and "1m" or "1d"
  local step = width == "1m" and 60 or 86400
  local start = floor(since / step) * step
  local stop = -floor(-till / step) * step
  local dstart = floor(since / 86400) * 86400
  local dstop = -floor(-till / 86400) * 86400
  return {
    bucket_width = width,
    usage = {path = "/organization/usage/images", query = {start_time = start, end_time = stop, bucket_width = width,
      group_by = usage_groups, limit = width == "1m" and 1440 or 31}},
    costs = {path = "/organization/costs", query = {start_time = dstart, end_time = dstop, bucket_width = "1d",
      group_by = #cost_groups > 0 and cost_groups or nil, limit = 180}},
  }
end

-- Every bucket of a paginated UsageResponse: fetch(path, query) -> page | nil, err.
local function all_buckets(fetch, q)
  local buckets, page, n = {}, nil, 0
  repeat
    local query = {}
    for k, v in pairs(q.query) do query[k] = v end
    query.page = page
    local body, err = fetch(q.path, query)
    if not body then return nil, err end
    if type(body) ~= "table" or type(body.data) ~= "table" then
      return nil, {kind = "decode", message = q.path .. ": the answer is not a UsageResponse page (no data list)"}
    end
    for _, b in ipairs(body.data) do buckets[#buckets + 1] = b end
    page = body.has_more and type(body.next_page) == "string" and body.next_page or nil
    n = n + 1
  until not page or n >= 100
  return buckets
end

local function row_key(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...)) or "-") end
  return concat(parts, "|")
end

--- Compares the log with the organization's usage and costs.
-- @tparam table records from `imageroute.log.read`
-- @tparam function fetch `fetch(path, query) -> decoded page | nil, err`: one GET with the admin key
-- @tparam table opts `since`, `until` (Unix seconds, required), `route` (only this route's calls),
--   `host` (only the calls to this host: the admin route's), `key_map` (log key_id -> API api_key_id),
--   `tolerance` (USD, default `imageroute.billing.reconcile.TOLERANCE`), `routes`
--   (name -> Route: prices the failed calls as if billed, to explain a difference)
-- @treturn table `ok` (every row within tolerance), `bucket_width`, `since`, `until`, `images` (rows per
--   day, model, key and project: `{day =, model =, api_key_id =, key_id =, project =, log =, api =,
--   log_requests =, api_requests =, diff =}`), `costs` (rows per day, project and key: `{day =,
--   project =, api_key_id =, key_id =, log =, log_unknown =, api =, diff =}`), `differences` (call by
--   call: `{bucket =, model =, log =, api =, calls = {{request_id =, time =, images =, status =,
--   outcome =}}, text =}`), `responses` (the Responses tool calls of the window: not in the images usage),
--   `key_map` (as used, pairs found by elimination included), `queries`
-- @treturn[2] nil
-- @treturn[2] table the error of a request
function M.official(records, fetch, opts)
  local since, till = opts.since, opts["until"]
  local tol = opts.tolerance or reconcile.TOLERANCE
  local q = M.queries(since, till)
  local dcalls = reconcile.calls(records, {since = q.costs.query.start_time, ["until"] = q.costs.query.end_time,
    route = opts.route, lane = "official", routes = opts.routes, host = opts.host})
  local has_keys, has_projects = false, false
  for _, c in ipairs(dcalls) do
    has_keys = has_keys or c.key_id ~= nil
    has_projects = has_projects or c.project ~= nil
  end
  q = M.queries(since, till, {keys = has_keys, projects = has_projects})
  local usage, uerr = all_buckets(fetch, q.usage)
  if not usage then return nil, uerr end
  local costs, cerr = all_buckets(fetch, q.costs)
  if not costs then return nil, cerr end
  local step = q.bucket_width == "1m" and 60 or 86400
  local calls = reconcile.calls(records, {since = q.usage.query.start_time, ["until"] = q.usage.query.end_time,
    route = opts.route, lane = "official", routes = opts.routes, host = opts.host})
  -- the API's key ids: log key ids map to them (given, or by elimination)
  local key_map = {}
  for k, v in pairs(opts.key_map or {}) do key_map[k] = v end
  local api_keys, log_keys = {}, {}
  for _, b in ipairs(usage) do
    for _, res in ipairs(b.results or {}) do
      if res.api_key_id then api_keys[res.api_key_id] = true end
    end
  end
  for _, c in ipairs(calls) do if c.key_id then log_keys[c.key_id] = true end end
  local mapped = {}
  for _, v in pairs(key_map) do mapped[v] = true end
  local free_api, free_log = {}, {}
  for k in pairs(api_keys) do if not mapped[k] then free_api[#free_api + 1] = k end end
  for k in pairs(log_keys) do if not key_map[k] then free_log[#free_log + 1] = k end end
  local by_elimination
  if #free_api == 1 and #free_log == 1 then
    key_map[free_log[1]] = free_api[1]
    by_elimination = {key_id = free_log[1], api_key_id = free_api[1]}
  end
  local function api_key(c) return c.key_id and key_map[c.key_id] or (c.key_id and ("log:" .. c.key_id)) end

  local out = {bucket_width = q.bucket_width, since = since, ["until"] = till, images = {}, costs = {},
    differences = {}, responses = {}, key_map = key_map, by_elimination = by_elimination, queries = q, ok = true}
  -- images per day, model, key, project; and per bucket for the call-by-call list
  local rows, order = {}, {}
  local buckets, border = {}, {}
  local function row(day, model, key, project)
    local k = row_key(day, model, key, project)
    local r = rows[k]
    if not r then
      r = {day = day, model = model, api_key_id = key, project = project, log = 0, api = 0, log_requests = 0,
        api_requests = 0}
      rows[k] = r
      order[#order + 1] = k
    end
    return r
  end
  local function bucket(start, model, key, project)
    local k = row_key(start, model, key, project)
    local r = buckets[k]
    if not r then
      r = {start = start, bucket = step == 60 and minute_of(start) or day_of(start), model = model,
        api_key_id = key, project = project, log = 0, api = 0, calls = {}}
      buckets[k] = r
      border[#border + 1] = k
    end
    return r
  end
  for _, c in ipairs(calls) do
    if c.kind == "respond" or c.shape == "responses" then
      out.responses[#out.responses + 1] = {request_id = c.request_id, time = c.time, images = c.images,
        model = c.tool_model or c.model}
    else
      local key = api_key(c)
      local r = row(day_of(c.t), c.model, key, c.project)
      r.key_id = c.key_id
      r.log = r.log + (c.images or 0)
      if c.ok then r.log_requests = r.log_requests + 1 end
      local bk = bucket(floor(c.t / step) * step, c.model, key, c.project)
      bk.log = bk.log + (c.images or 0)
      bk.calls[#bk.calls + 1] = {request_id = c.request_id, time = c.time, images = c.images, status = c.status,
        outcome = c.outcome}
    end
  end
  for _, b in ipairs(usage) do
    for _, res in ipairs(b.results or {}) do
      if res.object == nil or res.object == "organization.usage.images.result" then
        local start = tonumber(b.start_time) or 0
        local r = row(day_of(start), res.model, res.api_key_id, res.project_id)
        r.api = r.api + (tonumber(res.images) or 0)
        r.api_requests = r.api_requests + (tonumber(res.num_model_requests) or 0)
        local bk = bucket(floor(start / step) * step, res.model, res.api_key_id, res.project_id)
        bk.api = bk.api + (tonumber(res.images) or 0)
      end
    end
  end
  for _, k in ipairs(order) do
    local r = rows[k]
    r.diff = r.api - r.log
    if r.diff ~= 0 then out.ok = false end
    out.images[#out.images + 1] = r
  end
  sort(out.images, function(a, b)
    return row_key(a.day, a.model, a.api_key_id) < row_key(b.day, b.model, b.api_key_id)
  end)
  sort(border, function(a, b)
    return buckets[a].start < buckets[b].start or (buckets[a].start == buckets[b].start and a < b)
  end)
  for _, k in ipairs(border) do
    local bk = buckets[k]
    if bk.api ~= bk.log then
      local d = {bucket = bk.bucket, model = bk.model, api_key_id = bk.api_key_id, project = bk.project, log = bk.log,
        api = bk.api, calls = bk.calls}
      if #bk.calls == 0 then
        d.text = ("%s %s: the usage shows %d image(s), the log no call (another client on this key or project?)")
          :format(bk.bucket, tostring(bk.model), bk.api)
      elseif #bk.calls == 1 then
        local c = bk.calls[1]
        d.text = ("%s %s: call %s (status %s, %s) logged %d image(s), the usage shows %d"):format(bk.bucket,
          tostring(bk.model), tostring(c.request_id), tostring(c.status), tostring(c.outcome), c.images or 0, bk.api)
      else
        local ids = {}
        for i, c in ipairs(bk.calls) do ids[i] = tostring(c.request_id) .. "=" .. tostring(c.images or 0) end
        d.text = ("%s %s: %d calls logged %d image(s) (%s), the usage shows %d"):format(bk.bucket, tostring(bk.model),
          #bk.calls, bk.log, concat(ids, ", "), bk.api)
      end
      local failed = {}
      for _, c in ipairs(bk.calls) do
        if c.outcome ~= "success" then
          failed[#failed + 1] = tostring(c.request_id) .. " (" .. tostring(c.outcome) .. ")"
        end
      end
      if #failed > 0 and #failed == bk.api - bk.log then
        d.billed_failed = failed
        d.text = d.text .. "; the usage counts the failed call(s) " .. concat(failed, ", ") .. ": they were billed"
      end
      out.differences[#out.differences + 1] = d
    end
  end
  -- dollars per day, project and key
  local crows, corder = {}, {}
  local function crow(day, project, key)
    local k = row_key(day, project, key)
    local r = crows[k]
    if not r then
      r = {day = day, project = project, api_key_id = key, log = 0, log_unknown = 0, api = 0}
      crows[k] = r
      corder[#corder + 1] = k
    end
    return r
  end
  local grouped_by_key = false
  for _, b in ipairs(costs) do
    for _, res in ipairs(b.results or {}) do if res.api_key_id then grouped_by_key = true end end
  end
  for _, c in ipairs(dcalls) do
    local r = crow(day_of(c.t), c.project, grouped_by_key and api_key(c) or nil)
    r.key_id = c.key_id
    if c.amount then r.log = r.log + c.amount else r.log_unknown = r.log_unknown + 1 end
    if c.outcome ~= "success" then
      r.failed = r.failed or {}
      r.failed[#r.failed + 1] = c
    end
  end
  for _, b in ipairs(costs) do
    for _, res in ipairs(b.results or {}) do
      local amount = type(res.amount) == "table" and tonumber(res.amount.value) or 0
      local r = crow(day_of(tonumber(b.start_time) or 0), res.project_id, res.api_key_id)
      r.api = r.api + amount
      r.currency = type(res.amount) == "table" and res.amount.currency or nil
    end
  end
  for _, k in ipairs(corder) do
    local r = crows[k]
    r.diff = r.api - r.log
    if abs(r.diff) > tol then
      out.ok = false
      -- does the difference equal the failed calls of that day, priced as billed?
      local sum, ids, known = 0, {}, true
      for _, c in ipairs(r.failed or {}) do
        if (c.amount or 0) == 0 then
          if c.price_if_billed then sum = sum + c.price_if_billed else known = false end
          ids[#ids + 1] = tostring(c.request_id)
        end
      end
      if #ids > 0 and known and abs(r.diff - sum) <= tol then
        r.explained = ("the difference is the failed call(s) %s priced as billed (%s)"):format(concat(ids, ", "),
          money(sum))
        out.differences[#out.differences + 1] = {bucket = r.day, calls = r.failed, text = r.day .. " costs: "
          .. r.explained}
      else
        out.differences[#out.differences + 1] = {bucket = r.day, text = ("%s costs: the log says %s, the costs %s "
          .. "(%s): calls not in the log, or priced otherwise"):format(r.day, money(r.log), money(r.api),
          format("%+.6f", r.diff))}
      end
    end
    out.costs[#out.costs + 1] = r
  end
  sort(out.costs, function(a, b)
    return row_key(a.day, a.project, a.api_key_id) < row_key(b.day, b.project, b.api_key_id)
  end)
  return out
end

return M
