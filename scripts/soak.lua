--- Soak run (not a test): many calls, 16 in flight, against the local server with a mix of faults.
-- Reports failures by kind, retries, peak RSS at the start and the end (growth means a leak), and
-- open file descriptors.
--
--    lua5.4 scripts/soak.lua [calls=5000] [in_flight=16]     (make soak)
local imageroute = require("imageroute")
local socket = require("socket")

package.path = "spec/?.lua;" .. package.path
local server = require("support.server")

local calls = tonumber(arg[1]) or 5000
local in_flight = tonumber(arg[2]) or 16

local function status_kb(field)
  for line in io.lines("/proc/self/status") do
    local v = line:match("^" .. field .. ":%s+(%d+)")
    if v then return tonumber(v) end
  end
end

local open_fds = require("imageroute.sys").open_fds

-- the faults, by weight: most calls succeed, the rest exercise retries and every error path
local mix = {
  {w = 60, b = {}},
  {w = 6, b = {status = 429, headers = {["retry-after-ms"] = "5"}}},
  {w = 6, b = {status = 503}},
  {w = 4, b = {status = 400, error = {message = "bad", type = "invalid_request_error"}}},
  {w = 4, b = {html = true, status = 502}},
  {w = 4, b = {body = "{not json"}},
  {w = 4, b = {truncate = true}},
  {w = 3, b = {b64_mode = "dataurl"}},
  {w = 3, b = {b64_mode = "url"}},
  {w = 3, b = {delay = 2}},            -- over the 1 s timeout
  {w = 3, b = {stream = true}},        -- see below: a streamed call with partial images
}
local total_w = 0
for _, m in ipairs(mix) do total_w = total_w + m.w end

local s = server.start()
local routes = {}
local json = require("imageroute.json").encode
for i, m in ipairs(mix) do
  routes[i] = assert(imageroute.route{name = "soak-" .. i, base_url = s.base_url, model = "gpt-image-1",
    timeout = 1, max_retries = 2, retry_initial_delay = 0.005, retry_max_delay = 0.02,
    headers = {["x-imageroute-test"] = json(m.b.stream and {} or m.b)}})
end

math.randomseed(42)
local jobs = {}
for i = 1, calls do
  local pick, r = math.random(total_w), 0
  for k, m in ipairs(mix) do
    r = r + m.w
    if pick <= r then
      local params = {prompt = "soak " .. (i % 97)}
      if m.b.stream then params.stream, params.partial_images = true, 2 end
      jobs[i] = {route = routes[k], params = params}
      break
    end
  end
end

collectgarbage()
local rss0, fds0 = status_kb("VmRSS"), open_fds()
local t0, c0 = socket.gettime(), os.clock()
local kinds, retries, images, partials, done = {}, 0, 0, 0, 0 -- luacheck: ignore done
local rss_first
-- in waves of 250 so that the results of one wave can be collected: what grows across waves is a leak
for first = 1, calls, 250 do
  local wave = {}
  for i = first, math.min(calls, first + 249) do wave[#wave + 1] = jobs[i] end
  imageroute.batch(wave, {max_in_flight = in_flight,
    on_partial = function() partials = partials + 1 end,
    on_done = function(_, res, err)
      done = done + 1
      local r = res or err
      retries = retries + math.max(0, (r.attempts or 1) - 1)
      if res then images = images + #res.images else kinds[err.kind] = (kinds[err.kind] or 0) + 1 end
    end})
  wave = nil -- luacheck: ignore
  collectgarbage()
  rss_first = rss_first or status_kb("VmRSS")
end
collectgarbage()
local wall, cpu = socket.gettime() - t0, os.clock() - c0
local rss1, hwm, fds1 = status_kb("VmRSS"), status_kb("VmHWM"), open_fds()
s:stop()

local failed = 0
local kind_list = {}
for k, n in pairs(kinds) do failed = failed + n kind_list[#kind_list + 1] = k .. "=" .. n end
table.sort(kind_list)
print(string.format("soak: %d calls, %d in flight, %.1f s wall, %.1f s CPU", calls, in_flight, wall, cpu))
print(string.format("soak: %d succeeded (%d images, %d partial images), %d failed (%s), %d retries",
  calls - failed, images, partials, failed, table.concat(kind_list, " "), retries))
print(string.format("soak: RSS before %d KiB, after the first wave %d KiB, at the end %d KiB (peak %d KiB); "
  .. "open fds before %d, at the end %d", rss0, rss_first or 0, rss1, hwm, fds0, fds1))
