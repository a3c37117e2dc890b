--- imageroute.localserver.faults: behaviours and fault injection. Taking a request's behaviour
-- (the `/__script` queue first, else the `x-imageroute-test` header), the reply a behaviour imposes
-- by itself (`error`, `html`, `body`, a `status` >= 400), and the API's rate limits
-- (x-ratelimit-* headers on every /v1 answer; `rate_limit` 429s). The transport faults (`delay`,
-- `drop`, `truncate`, `reset`, `drip`, `pace`) are applied where the answer is sent
-- (`imageroute.localserver.serve`, `imageroute.localserver.http`).
-- @module imageroute.localserver.faults

local socket = require("socket")
local J = require("imageroute.localserver.json")
local http = require("imageroute.localserver.http")
local S = require("imageroute.localserver.state")

local format, rep = string.format, string.rep
local gettime = socket.gettime
local type, tostring, tonumber = type, tostring, tonumber
local NULL, encode, decode, val, field, int, str = J.NULL, J.encode, J.decode, J.val, J.field, J.int, J.str
local error_response, default_error_type = http.error_response, http.default_error_type
local state = S.state

local HTML_PAGE = [[<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>502 Bad Gateway</title>
<style>body{font-family:sans-serif;margin:4em auto;max-width:40em;color:#333}h1{font-size:1.6em}</style>
</head>
<body>
<h1>502 Bad Gateway</h1>
<p>The upstream server returned an invalid response. This page comes from the imageroute local
server's "html" behaviour, which imitates a gateway or CDN error page served instead of JSON.</p>
<!-- %s -->
</body>
</html>
]]

local function html_page()
  local filler = rep("padding to make this page about two kilobytes long. ", 30)
  return format(HTML_PAGE, filler)
end

-- The response a behaviour imposes by itself (error, html, body, status >= 400), or nil.
local function behaviour_response(B)
  local status = int(field(B, "status"))
  local berr = field(B, "error")
  if type(berr) == "table" then
    status = status or 400
    return {status = status, content_type = "application/json", body = encode({error = {
      message = str(field(berr, "message")) or "Simulated error.",
      type = str(field(berr, "type")) or default_error_type(status),
      param = val(berr.param) or NULL, code = val(berr.code) or NULL,
    }})}
  end
  if field(B, "html") == true then
    return {status = status or 200, content_type = "text/html; charset=utf-8", body = html_page()}
  end
  local body = field(B, "body")
  if body ~= nil then
    if type(body) ~= "string" then body = encode(body) end
    return {status = status or 200, content_type = str(field(B, "content_type")) or "application/json",
      body = body}
  end
  if status and status >= 400 then
    return error_response(status, format("Simulated HTTP %d.", status))
  end
  return nil
end

-- Take this request's behaviour: queue first, else the x-imageroute-test header.
local function take_behaviour(ctx)
  if #state.queue > 0 then return table.remove(state.queue, 1) end
  local h = ctx.headers["x-imageroute-test"]
  if h and h ~= "" then
    local B, err = decode(h)
    if type(B) ~= "table" then return nil, "invalid x-imageroute-test header: " .. tostring(err or "not an object") end
    return B
  end
  return {}
end

-- The API's rate-limit headers and 429s. Every /v1 answer carries x-ratelimit-* headers; with the
-- behaviour `rate_limit = {requests = N, window = seconds}` the server counts the requests that
-- carry that behaviour in a fixed window shared by all connections and answers 429 past N, like
-- the real API: an OpenAI error body (code rate_limit_exceeded, type requests) and retry-after.

local function fmt_duration(seconds)
  if seconds < 1 then return ("%dms"):format(math.floor(seconds * 1000 + 0.5)) end
  local m = math.floor(seconds / 60)
  local sec = seconds - m * 60
  if m > 0 then return ("%dm%ds"):format(m, math.floor(sec + 0.5)) end
  return ("%.3gs"):format(sec)
end

local function rate_limit(B)
  local cfg = field(B, "rate_limit")
  local limit, window = 500, 60
  if type(cfg) == "table" then
    limit = int(field(cfg, "requests")) or limit
    window = tonumber(field(cfg, "window")) or window
  end
  local key = limit .. "/" .. window
  state.rl_windows = state.rl_windows or {} -- "N/window" -> {start =, count =}
  local w = state.rl_windows[key]
  local now = gettime()
  if not w or now - w.start >= window then
    w = {start = now, count = 0}
    state.rl_windows[key] = w
  end
  local over = type(cfg) == "table" and w.count >= limit
  if not over then w.count = w.count + 1 end
  local reset = math.max(0, w.start + window - now)
  local headers = {
    ["x-ratelimit-limit-requests"] = tostring(limit),
    ["x-ratelimit-remaining-requests"] = tostring(math.max(0, limit - w.count)),
    ["x-ratelimit-reset-requests"] = fmt_duration(reset),
    ["x-ratelimit-limit-tokens"] = "250000",
    ["x-ratelimit-remaining-tokens"] = "249000",
    ["x-ratelimit-reset-tokens"] = "240ms",
  }
  if not over then return headers, nil end
  headers["retry-after"] = tostring(math.max(1, math.ceil(reset)))
  local resp = error_response(429, format("Rate limit reached for images in organization org-local on " ..
    "requests per min (RPM): Limit %d, Used %d, Requested 1. Please try again in %s.", limit, w.count,
    fmt_duration(reset)), NULL, "rate_limit_exceeded", "requests")
  return headers, resp
end

return {behaviour_response = behaviour_response, take_behaviour = take_behaviour, rate_limit = rate_limit,
  html_page = html_page, fmt_duration = fmt_duration}
