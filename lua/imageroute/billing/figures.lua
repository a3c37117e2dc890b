--- imageroute.billing.figures: the latest billing test and reconciliation of a route, read back from
-- its call log (the `probe` and `reconcile` lines of `imageroute.billing.probe` and the
-- `imageroute reconcile` command), for the comparison report (`imageroute.compare`).
-- @module imageroute.billing.figures

local log = require("imageroute.log")

local type, ipairs, pcall = type, ipairs, pcall

local M = {}

--- The figures of one route in a list of log records.
-- @tparam table records from `imageroute.log.read`
-- @tparam string name the route's name
-- @treturn table|nil nil when the log holds neither; else `probe` (the latest: `probe_id`, `started`,
--   `ended`, `estimated` (`success`, `if_failed_billed`, `if_failed_free`, `currency`), `calls`
--   (`{role =, request_id =, status =, outcome =}`)) and `reconcile` (the latest: `mode`
--   (`"provider"` | `"official"`), `time`, `probe_id`, `billed`, `expected`, `currency`, `answers`,
--   `flat_held`, `matched`, `verdict`, `line`; official: `ok`, `log_images`, `api_images`, `log_usd`,
--   `api_usd`, `differences`)
function M.of(records, name)
  local probe, rec
  for _, r in ipairs(records) do
    if r.route == name then
      if r.event == "probe" then probe = r elseif r.event == "reconcile" then rec = r end
    end
  end
  if not probe and not rec then return nil end
  local out = {}
  if probe then
    local calls = {}
    for i, c in ipairs(probe.calls or {}) do
      calls[i] = {role = c.role, request_id = c.request_id, status = c.status, outcome = c.outcome}
    end
    out.probe = {probe_id = probe.probe_id, started = probe.started, ended = probe.ended, estimated = probe.estimated,
      calls = calls}
  end
  if rec then
    out.reconcile = {mode = rec.mode, time = rec.time, probe_id = rec.probe_id, billed = rec.billed,
      expected = rec.expected, currency = rec.currency, answers = rec.answers, flat_held = rec.flat_held,
      matched = rec.matched, verdict = rec.verdict, line = rec.line, ok = rec.ok, log_images = rec.log_images,
      api_images = rec.api_images, log_usd = rec.log_usd, api_usd = rec.api_usd, differences = rec.differences}
  end
  return out
end

--- The figures of a route from its own call log (the call options' `log`, else the route's).
-- Never raises: an unreadable log gives nil.
-- @tparam Route route
-- @tparam[opt] table opts call options (`log`)
-- @treturn table|nil as `M.of`
function M.for_route(route, opts)
  local ok, path = pcall(log.path_for, route, opts)
  if not ok or type(path) ~= "string" then return nil end
  local records = log.read(path)
  if type(records) ~= "table" then return nil end
  return M.of(records, route.name)
end

return M
