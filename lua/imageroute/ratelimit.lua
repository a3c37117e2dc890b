--- imageroute.ratelimit: the `x-ratelimit-*` response headers, parsed.
--
-- The OpenAI API sends, with each response, the request and token limits of the organization for
-- the model and what is left of them (OpenAI API docs, Guides > Rate limits, "Rate limits in
-- headers", https://platform.openai.com/docs/guides/rate-limits, read 2026-12-01):
-- `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests`, `x-ratelimit-reset-requests`
-- and the same three for tokens. Resets are durations such as `"6m0s"`, `"1s"` or `"20ms"`.
-- @module imageroute.ratelimit

local M = {}

local UNIT = {h = 3600, m = 60, s = 1, ms = 0.001, us = 1e-6, ["µs"] = 1e-6, ns = 1e-9}

--- Parses a duration as the API writes it ("6m0s", "1h2m3.5s", "20ms", "1s") into seconds.
-- A plain number is taken as seconds.
-- @tparam string s
-- @treturn number|nil seconds (nil when s is not a duration)
function M.seconds(s)
  if type(s) ~= "string" or #s > 40 then return nil end
  local n = tonumber(s)
  if n then return (n >= 0 and n < 1e9) and n or nil end
  local total, pos, seen = 0, 1, false
  while pos <= #s do
    local num, unit, e = s:match("^(%d+%.?%d*)(%a+)()", pos)
    if not num then num, unit, e = s:match("^(%d+%.?%d*)(µs)()", pos) end
    if not num or not UNIT[unit] then return nil end
    total = total + tonumber(num) * UNIT[unit]
    pos, seen = e, true
  end
  return seen and total or nil
end

local function count(s)
  local n = tonumber(s)
  if n and n >= 0 and n < 1e15 and n == math.floor(n) then return math.tointeger(n) end
  return nil
end

--- Turns the raw header values (as the core captured them, keyed `limit_requests`, ...) into
-- numbers: `limit_requests`, `remaining_requests`, `limit_tokens`, `remaining_tokens` (integers)
-- and `reset_requests`, `reset_tokens` (seconds). Values that do not parse are left out.
-- @tparam table raw
-- @treturn table|nil the parsed table, nil when nothing parsed
function M.parse(raw)
  if type(raw) ~= "table" then return nil end
  local out, any = {}, false
  for _, k in ipairs{"limit_requests", "remaining_requests", "limit_tokens", "remaining_tokens"} do
    out[k] = count(raw[k])
    any = any or out[k] ~= nil
  end
  for _, k in ipairs{"reset_requests", "reset_tokens"} do
    out[k] = M.seconds(raw[k])
    any = any or out[k] ~= nil
  end
  return any and out or nil
end

return M
