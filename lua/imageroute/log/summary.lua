--- imageroute.log.summary: reading a call log back (`imageroute.log.read`, `imageroute.log.summary`).
--
-- The records and their fields are described in `imageroute.log`, which re-exports both functions.
-- @module imageroute.log.summary

local core = require("imageroute.core")
local json = require("imageroute.json")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local sort, ceil = table.sort, math.ceil
local io_open = io.open

local M = {}

--- Reads a log file.
-- @tparam string path
-- @treturn table|nil the records, in file order
-- @treturn integer|table how many lines were not valid JSON | the error (`kind = "io"`)
function M.read(path)
  local f, msg = io_open(path, "rb")
  if not f then return nil, core.error("io", msg, {path = path}) end
  local list, bad = {}, 0
  while true do -- f:read, not f:lines: a read error (a directory, EIO) is returned, never raised
    local line, rerr = f:read("l")
    if not line then
      f:close()
      if rerr then return nil, core.error("io", rerr, {path = path}) end
      break
    end
    if line ~= "" then
      local rec = json.decode(line)
      if type(rec) == "table" then list[#list + 1] = rec else bad = bad + 1 end
    end
  end
  return list, bad
end

local function percentile(sorted, p)
  local n = #sorted
  if n == 0 then return nil end
  local k = ceil(p / 100 * n)
  if k < 1 then k = 1 end
  return sorted[k]
end

--- Per-route totals of a log.
-- @tparam table|string records_or_path the records (from `read`) or a log file path
-- @treturn table route name -> `{calls =, failures =, refused =, images =, attempts =, retries =,
--   cost =, currency =, cost_unknown =, saved =, saved_bytes =, p50_latency =, p95_latency =}`:
--   `calls` counts calls (their final lines), `failures` calls that ended in an error (`refused`
--   those refused before sending), `images` images returned, `cost` the sum of every known attempt
--   cost (in `currency`), `cost_unknown` the calls whose cost is not fully known, latencies in seconds
--   over whole calls (nearest-rank percentiles)
-- @treturn[2] nil
-- @treturn[2] table the read error
function M.summary(records_or_path)
  local records = records_or_path
  if type(records) == "string" then
    local e
    records, e = M.read(records)
    if not records then return nil, e end
  end
  local out, lat = {}, {}
  local function totals(name)
    local t = out[name]
    if not t then
      t = {calls = 0, failures = 0, refused = 0, images = 0, attempts = 0, retries = 0, cost = 0, cost_unknown = 0,
        saved = 0, saved_bytes = 0}
      out[name] = t
      lat[name] = {}
    end
    return t
  end
  for _, rec in ipairs(records) do
    local name = tostring(rec.route)
    local t = totals(name)
    if rec.event == "save" then
      t.saved = t.saved + 1
      t.saved_bytes = t.saved_bytes + (tonumber(rec.bytes) or 0)
    elseif rec.event == "attempt" then
      if rec.phase ~= "not_sent" and rec.phase ~= "download" then t.attempts = t.attempts + 1 end
      if rec.retry_reason then t.retries = t.retries + 1 end
      local c = rec.cost
      if type(c) == "table" and type(c.amount) == "number" then
        t.cost = t.cost + c.amount
        t.currency = t.currency or c.currency
      end
      if rec.final then
        t.calls = t.calls + 1
        if rec.ok == false then
          t.failures = t.failures + 1
          if rec.phase == "not_sent" then t.refused = t.refused + 1 end
        end
        t.images = t.images + (tonumber(rec.images) or 0)
        local cc = rec.call_cost
        if type(cc) ~= "table" or type(cc.amount) ~= "number" then t.cost_unknown = t.cost_unknown + 1 end
        if type(rec.call_latency) == "number" then lat[name][#lat[name] + 1] = rec.call_latency end
      end
    end
  end
  for name, t in pairs(out) do
    local l = lat[name]
    sort(l)
    t.p50_latency, t.p95_latency = percentile(l, 50), percentile(l, 95)
  end
  return out
end

return M
