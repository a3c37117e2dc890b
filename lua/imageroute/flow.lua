--- Assistant-style multi-step flows: plain functions over `imageroute.generate`, `edit` and
-- `respond` that keep a record of every step (result, request id, timing, files).
--
--    local flow = require("imageroute.flow")
--    local f = flow.new{name = "poster", out = "out"}
--    local concept = f:step("concept", imageroute.respond, text_route, {input = brief, tool = false})
--    local image = f:step("image", imageroute.respond, text_route,
--      {input = concept.output_text, tool_choice = "image_generation", previous_response_id = concept.id})
--    local revised = f:step("revision", imageroute.respond, text_route,
--      {input = "make the sky darker", previous_response_id = image.id, tool_choice = "image_generation"})
--    print(f:report())
--
-- A tool loop (the model calls an app's function, the app answers with a `function_call_output`
-- item, the model then draws) is recorded the same way: each step keeps the `function_calls` the
-- model asked for and the `answers` it sent back (see `examples/tool_loop.lua`).
--
-- A step never raises on an API failure: it returns `nil, err` like the call it wraps, and the
-- record keeps the error, so a flow can decide what to do next.
-- @module imageroute.flow

local M = {}

local Flow = {}
Flow.__index = Flow

local clock = os.clock
local ok_socket, socket = pcall(require, "socket")
if ok_socket and socket.gettime then clock = socket.gettime end

--- Starts a flow record.
-- @tparam[opt] table opts `name` (string, used in file names; default "flow"), `out` (directory:
--   when set, every image a step returns is saved there as `<name>-<step>-<i>.<format>`),
--   `overwrite` (boolean, passed to `image:save`)
-- @treturn Flow
function M.new(opts)
  opts = opts or {}
  return setmetatable({name = opts.name or "flow", out = opts.out, overwrite = opts.overwrite, steps = {},
    started = clock()}, Flow)
end

local function excerpt(s, n)
  if type(s) ~= "string" then return nil end
  s = s:gsub("%s+", " ")
  if #s > n then return s:sub(1, n) .. "..." end
  return s
end

--- Runs one step: `fn(route, params, opts)` (one of `imageroute.generate`, `edit`, `respond`, or
-- any function with the same contract), records it, and saves its images when the flow has `out`.
-- @tparam string name the step's name (e.g. "concept")
-- @tparam function fn the call
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts
-- @treturn table|nil the call's result
-- @treturn[2] table the call's error (or a save error, with the result's images kept in the record)
function Flow:step(name, fn, route, params, opts)
  assert(type(name) == "string", "step name must be a string")
  assert(type(fn) == "function", "step function expected")
  local t0 = clock()
  local res, err = fn(route, params, opts)
  local rec = {
    name = name, route = tostring(route and route.name), ok = res ~= nil, seconds = clock() - t0,
    files = {},
  }
  local r = res or err or {}
  rec.request_id = r.request_id
  rec.response_id = r.response_id or r.id
  rec.latency = r.latency
  rec.attempts = r.attempts
  rec.model = r.model
  rec.shape = r.shape
  rec.text = excerpt(r.output_text or r.content, 160)
  rec.images = r.images and #r.images or 0
  rec.status = r.status
  rec.background = r.background_mode -- responses run in background mode: the polls made
  if type(r.function_calls) == "table" then -- the tool loop: the calls the model asked for
    local calls = {}
    for i, c in ipairs(r.function_calls) do calls[i] = {call_id = c.call_id, name = c.name, arguments = c.arguments} end
    rec.function_calls = calls
  end
  if type(r.output) == "table" then
    local kinds = {}
    for i, item in ipairs(r.output) do kinds[i] = type(item) == "table" and item.type or "?" end
    rec.output = kinds
  end
  rec.answers = M.answered_calls(params) -- the function_call_output items this step sent
  rec.result, rec.error = res, err
  if err then rec.message = tostring(err) end
  self.steps[#self.steps + 1] = rec
  if res and self.out and res.images then
    for i, img in ipairs(res.images) do
      local path = string.format("%s/%s-%s-%d.%s", self.out, self.name, name, i, img.format or "bin")
      local saved, serr = img:save(path, {overwrite = self.overwrite})
      if not saved then
        rec.ok, rec.error, rec.message = false, serr, tostring(serr)
        return nil, serr
      end
      rec.files[#rec.files + 1] = {path = saved, bytes = img.length}
    end
  end
  return res, err
end

--- The `call_id`s of the `function_call_output` input items of a Responses params table (the
-- answers a tool-loop step sends back), or nil when there are none.
-- @tparam table params
-- @treturn {string,...}|nil
function M.answered_calls(params)
  local input = type(params) == "table" and params.input
  if type(input) ~= "table" then return nil end
  local ids = {}
  for _, item in ipairs(input) do
    if type(item) == "table" and item.type == "function_call_output" then ids[#ids + 1] = tostring(item.call_id) end
  end
  return #ids > 0 and ids or nil
end

--- The step record named `name` (the last one, if several share it).
-- @tparam string name
-- @treturn table|nil the record: `name`, `route`, `ok`, `seconds`, `request_id`, `response_id`,
--   `latency`, `attempts`, `model`, `shape`, `text` (excerpt), `images` (count), `files`
--   (`{path =, bytes =}`), `result`, `error`, `message`; on Responses steps also `status`,
--   `output` (the output item types, in order), `function_calls` (`{call_id =, name =, arguments =}`
--   the model asked for), `answers` (the `call_id`s of the `function_call_output` items the step
--   sent) and `background` (for background mode: `{polls =, status =}`)
function Flow:get(name)
  for i = #self.steps, 1, -1 do
    if self.steps[i].name == name then return self.steps[i] end
  end
end

--- The last image any step returned, or nil.
-- @treturn Image|nil
function Flow:last_image()
  for i = #self.steps, 1, -1 do
    local res = self.steps[i].result
    if res and res.images and #res.images > 0 then return res.images[#res.images] end
  end
end

--- True when every step so far succeeded.
-- @treturn boolean
function Flow:ok()
  for _, s in ipairs(self.steps) do
    if not s.ok then return false end
  end
  return true
end

--- A printable report: one line per step.
-- @treturn string
function Flow:report()
  local lines = {}
  for i, s in ipairs(self.steps) do
    local files = {}
    for _, f in ipairs(s.files) do files[#files + 1] = f.path .. " (" .. f.bytes .. " bytes)" end
    local calls = {}
    for _, c in ipairs(s.function_calls or {}) do
      calls[#calls + 1] = tostring(c.name) .. "(" .. tostring(c.call_id) .. ")"
    end
    lines[#lines + 1] = string.format("%s %d %-10s %-4s route=%s shape=%s model=%s request_id=%s response_id=%s "
      .. "latency=%.3fs images=%d%s%s%s%s%s%s", self.name, i, s.name, s.ok and "ok" or "FAIL", s.route, s.shape or "-",
      s.model or "-", s.request_id or "-", s.response_id or "-", s.latency or s.seconds, s.images,
      s.answers and (" answered=" .. table.concat(s.answers, ",")) or "",
      #calls > 0 and (" calls=" .. table.concat(calls, ",")) or "",
      s.background and (" background_polls=" .. tostring(s.background.polls)) or "",
      #files > 0 and (" files=" .. table.concat(files, ",")) or "",
      s.text and (" text=\"" .. s.text .. "\"") or "", s.message and (" error=" .. s.message) or "")
  end
  return table.concat(lines, "\n")
end

return M
