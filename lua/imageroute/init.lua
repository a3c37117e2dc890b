--- imageroute: image generation and editing through OpenAI's image APIs and OpenAI-compatible
-- provider gateways, with the route (who owns the contract, which request shape, which model
-- label, how it bills) as a first-class object.
--
-- The C core (`imageroute.core`) does transport and bytes: libcurl, multipart, base64 through
-- libb64, saving. This module is the public API on top of it.
--
--    local imageroute = require "imageroute"
--    local route = imageroute.route{name = "official", model = "gpt-image-1"}
--    local res, err = imageroute.generate(route, {prompt = "a lighthouse at dawn", size = "1024x1024"})
--    if not res then error(tostring(err)) end
--    print(res.request_id, res.images[1]:save("out/lighthouse.png"))
--
-- @module imageroute

local core = require "imageroute.core"
local policy = require "imageroute.policy" -- gates, stop rules, cost, the call log; installs route:check()
local dispatch = require "imageroute.dispatch" -- a call's normalised request, body and reply, by shape
local request = require "imageroute.request"
local background = require "imageroute.background" -- Responses background mode: create, poll, cancel
local responses_shape = require "imageroute.shapes.responses"
local router = require "imageroute.router" -- explicit fallback across routes
local limits = require "imageroute.limits" -- client-side rate limits of routes
local budget = require "imageroute.budget" -- spending limits in USD
local state = require "imageroute.state" -- where limits and budgets live (memory, Redis)

local M = {
  _VERSION = core._VERSION,
  core = core,
  log = require "imageroute.log",         -- the call log: set_default, read, summary
  routes = require "imageroute.routes",   -- routes files: load, get
  contract = require "imageroute.contract",
  markdown = require "imageroute.markdown", -- Markdown image links in chat replies
  dataurl = require "imageroute.dataurl",   -- data: URLs
  flow = require "imageroute.flow",         -- records of multi-step flows
  state = state,                            -- state stores: memory(), redis{url =}
}

--- Marks a table (empty or not) as a JSON array, sent as `[]` when empty (`imageroute.json.array`).
-- Replies are decoded with every array of the text marked, so an echoed `summary: []` stays `[]`.
-- @function array
M.array = require("imageroute.json").array
M.is_array = require("imageroute.json").is_array -- is_array(v): true when v is marked as a JSON array

--- Builds a route: one validated, immutable route configuration (a userdata).
--
-- Fields (all optional; the defaults follow OpenAI's official SDKs: the Retries and Timeouts
-- sections of the READMEs of https://github.com/openai/openai-python (3.x) and
-- https://github.com/openai/openai-node (6.x)):
--
-- * `name` (string): how logs and errors name the route; default `"lane/provider/model"`.
-- * `lane` (string): `"official"` (default) | `"provider"` | `"account_pool"`.
-- * `provider` (string): who runs the endpoint; default `"openai"` on the official lane, required otherwise.
-- * `shape` (string): `"images"` (default) | `"responses"` | `"chat"`.
-- * `base_url` (string): the API root; default `$OPENAI_BASE_URL` or `https://api.openai.com/v1`.
--   Must be `https://` (plain `http://` only for loopback hosts), not an endpoint and not a
--   model-level path such as `/v1beta/models/...:generateContent`.
-- * `model` (string): the model label sent when a call does not name one.
-- * `api_key_env` (string): the NAME of the environment variable holding the key, read at call
--   time; default `"OPENAI_API_KEY"` (when `api_key` is not given).
-- * `api_key` (string or function): the key itself, or a function `api_key(route) -> key` called
--   once per call when its request is set up (never inside a transfer callback), for keys held in a
--   secret store or a config file. Give `api_key` or `api_key_env`, not both (`field = "api_key"`).
--   A string is copied into the route's C memory: `route.api_key`, `route:config()` and
--   `tostring(route)` show `"<set>"`, never the key (and `"<set>"` handed back is refused). A
--   function's result is used for that call's Authorization header and its redaction, then
--   dropped: never stored on the route, printed or logged. When the function raises, or returns
--   anything but a usable key, the call is a `validation` error with `field = "api_key"` whose
--   message never holds what it returned. Every key, from any source, is refused (`validation`,
--   naming the field or the variable, never the value) when it holds a CR, LF, NUL, another control
--   byte or a space, and, to a non-loopback host, when it is shorter than 8 bytes. Example:
--
--        local vault = require "my.vault"
--        local route = imageroute.route{name = "official", model = "gpt-image-1",
--          api_key = function(r) return vault.read("openai/" .. r.name) end}
--
--   No string that leaves a call (an error's fields at any depth, `tostring(err)`, a result's
--   fields, headers echoed back, SSE error events, body excerpts, the call log) holds the key: the
--   C core redacts each call's whole outcome with the key it sent (`core.redact`).
-- * `headers` (table): extra request headers, name = value (never `Authorization`); a name must be
--   a token and a value must not hold CR, LF, NUL or other control bytes (tab allowed), checked here.
--   `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` are checked the same way at call time.
-- * `timeout` (number, seconds): total time per attempt, default 600.
-- * `connect_timeout` (number, seconds): default 5.
-- * `max_retries` (integer): retries after the first attempt, default 2.
-- * `budget` (Budget, from `imageroute.budget`): a spending limit checked before every call.
-- * `limits` (table): client-side rate limits, `{requests_per_minute =, images_per_minute =,
--   max_in_flight =}` or `{requests =, images =, window = seconds}`; a call over them waits
--   (yielding to the loop) instead of being sent into a 429 (see `imageroute.limits`).
-- * `state` (store or URL string): where the route's limits live: `imageroute.state.memory()` (the
--   default, this process), `imageroute.state.redis{url = "redis://host:port/db"}` or that URL (shared
--   by every process and machine naming it; see `imageroute.state`).
-- * `on_state_error` (string): `"refuse"` (default: a store that cannot be reached refuses the call,
--   `kind = "state"`, `code = "state_unreachable"`, nothing sent) or `"local"` (this process's memory
--   store stands in for that call; the result and the log carry `state_fallback`).
-- * `retry_policy` (string): `"sdk"` (default: retry as the official SDKs do) or `"safe"`: retry
--   only an attempt that provably was not billed, one that never reached the server (DNS, connect
--   or TLS handshake failure, nothing sent) or that the server said it did not process (429,
--   `x-should-retry: true`). Whatever the policy, each attempt records `may_have_billed`.
-- * `retry_initial_delay`, `retry_max_delay` (seconds): backoff `min(initial * 2^n, max)` times a
--   random factor in [0.75, 1]; defaults 0.5 and 8.
-- * `retry_after_max` (seconds): a server-asked delay above this is ignored; default 60.
-- * `max_response_bytes` (integer, bytes): the cap of one response or download, default 512 MiB.
-- * `max_event_bytes` (integer, bytes): the cap of one server-sent event's data, default 64 MiB.
-- * `low_speed_limit` (integer, bytes per second) and `low_speed_time` (integer, seconds): abort an
--   attempt that moves fewer bytes per second than the limit for that long (a server that drips);
--   off by default, since an image call may legitimately send nothing for minutes.
-- * `ca_file` (string): a CA bundle path for TLS verification (verification is always on), for the
--   API request and for image downloads alike.
-- * `deadline` (number, seconds): the whole call, all attempts, retry waits and image downloads;
--   default 1800. Each attempt's timeouts are cut to what remains, and a retry whose delay would
--   pass the deadline is not made (the last attempt's error then has `retry_skipped = "deadline"`).
--   A call stopped by it is `kind = "timeout"`, `code = "deadline_exceeded"`.
-- * `max_images` (integer): how many images a reply may make the client fetch or decode (base64
--   images, data URLs and links together); default 16. A reply with more is `kind = "decode"`,
--   `code = "too_many_images"`, and nothing beyond the cap is downloaded or decoded.
-- * `max_call_bytes` (integer, bytes): all response and download bytes held for one call; default
--   1 GiB. Over it: `kind = "http"`, `code = "call_bytes_exceeded"`. (`max_response_bytes` caps each
--   one response or download.)
--   `deadline`, `max_images` and `max_call_bytes` are also per-call options (`opts`).
-- * Image downloads (`data[].url`, Markdown links, `image_url` parts) are fetched over `https`
--   (plain `http` only to a loopback host), without the key, without a proxy, and never from a
--   loopback, private, link-local, unique-local, CGNAT, unspecified, multicast or reserved address:
--   the check runs on the resolved address of every connection, redirects included (at most 5,
--   https only, each checked again), so no spelling of an address (integer, octal, IPv4-mapped
--   IPv6, a name that resolves to it) gets around it. Loopback is allowed when the route's own
--   `base_url` host is loopback (the local server). A refused download is `kind = "route"`,
--   `code = "download_refused"`, with one message for every refused address; a download that
--   cannot connect (refused, filtered, TLS failure) is `kind = "connection"`,
--   `code = "download_failed"`, with one message whatever the port did; more than 5 redirects is
--   `code = "too_many_redirects"`.
-- * `download_hosts` (list of strings): host names (`"cdn.example.com"`) or `"*.suffix"` patterns
--   (`"*.example.com"` matches `a.example.com`, not `example.com`); when set, no other host is
--   fetched, and the address rule above still applies to the listed ones.
-- * `allow_private_downloads` (boolean, default false): also allow loopback, private, link-local,
--   unique-local and CGNAT addresses for downloads (a gateway whose images are on an internal
--   host). Unspecified, multicast and reserved addresses stay refused.
-- * `send_openai_ids` (boolean, default false): send `OPENAI_ORG_ID` / `OPENAI_PROJECT_ID` (as
--   `OpenAI-Organization` / `OpenAI-Project`) on a route that is not on the official lane; official
--   routes always send them when set, other routes never do unless they ask.
-- * `resolve` (list of strings): `"HOST:PORT:ADDRESS"` entries in the manner of `curl --resolve`
--   (one IP address per entry, IPv6 bare or in brackets): a connection to HOST:PORT goes to
--   ADDRESS instead, while TLS still verifies HOST (e.g. a test gateway
--   `{"api.test:443:127.0.0.1"}`). Applies to the API request and the downloads of this route's
--   calls only (never to other routes'); the download policy still checks the address.
-- * `billing` (table): `unit` (`"token"` | `"image"` | `"call"` | `"credit"` | `"quote"`), `price`
--   (number, `currency` per unit), `currency` (default `"USD"`), `failed_calls_billed`.
-- * `contract`, `accepted`, `risk_exception`, `description`, `image_model`, `log`: kept for the
--   contract checks and the call log.
--
-- @tparam table config
-- @treturn Route|nil the route
-- @treturn[2] table an error with `kind = "validation"` and `field` naming the offending field
-- @raise when config is not a table
function M.route(config)
  if type(config) == "table" and budget.is_budget(config.budget) then -- the route names its budget
    local c = {}
    for k, v in pairs(config) do c[k] = v end
    c.budget = config.budget.name
    config = c
  end
  if type(config) == "table" and state.is_store(config.state) then -- the route keeps its store's id
    local c = {}
    for k, v in pairs(config) do c[k] = v end
    c.state = config.state.id
    config = c
  elseif type(config) == "table" and type(config.state) == "string" then -- a URL: checked now
    local _, serr = state.resolve(config.state)
    if serr then serr.field = "state"; return nil, serr end
  end
  if type(config) == "table" and config.limits ~= nil then
    local ok, msg = limits.normalise(config.limits)
    if not ok then return nil, core.error("validation", msg, {field = "limits"}) end
  end
  return core.route(config)
end

--- Builds a router: an explicit fallback across routes, usable wherever a route is (see
-- `imageroute.router`).
-- @tparam table config `name`, `routes` (list of Route, tried in order), `fallback_on` (list of
--   `"rate_limit"` | `"server_error"` | `"timeout"` | `"connection"`; default all four)
-- @treturn Router|nil
-- @treturn[2] table a `validation` error with `field`
function M.router(config)
  return router.new(config)
end

--- Builds a budget: a spending limit in USD per run, day or month (UTC), checked before each call
-- of the routes (or router) it is attached to with `budget = b` (see `imageroute.budget`).
-- @tparam table config `name`, `usd`, `per` ("run" | "day" | "month"), `unknown_price`
-- @treturn Budget|nil
-- @treturn[2] table a `validation` error with `field`
function M.budget(config)
  return budget.new(config)
end

--- True when v is a Router.
-- @param v any value
-- @treturn boolean
function M.is_router(v)
  return router.is_router(v)
end

--- True when v is a Route.
-- @param v any value
-- @treturn boolean
function M.is_route(v)
  return core.is_route(v)
end

-- ------------------------------------------------------------------------------------------
-- The scheduler: every transfer runs on the C core's one libcurl multi loop. Calls made inside
-- coroutines started by `run`, `spawn` or `batch` yield to it; calls made elsewhere step the
-- loop until their transfer is done (and meanwhile the scheduler's coroutines progress too).
-- With a host loop attached (`imageroute.loop.*`, or `on_socket`/`on_timer`), calls made from the
-- host's own coroutines wait through the host instead (see `imageroute.hostloop`).

local hostloop = require "imageroute.hostloop"

local YIELD = setmetatable({}, {__tostring = function() return "imageroute.yield" end})
local owned = setmetatable({}, {__mode = "k"}) -- coroutine -> its completion function
local waiting = {}                               -- {co =, ready = fn} waiting on a condition
local ready = {}                                 -- coroutines that yielded for a tick
local last_bytes = setmetatable({}, {__mode = "k"})

--- Hands partial images and progress of transfer x to the call's callbacks (Lua context, never
-- inside libcurl). Callback errors propagate to the caller of step/run.
local function deliver(x, opts)
  if not opts then return end
  if opts.on_partial then
    for _, img in ipairs(x:take_partials()) do opts.on_partial(img, img.partial_image_index) end
  end
  if opts.on_progress then
    local bytes, elapsed = x:progress()
    if last_bytes[x] ~= bytes or x:done() then
      last_bytes[x] = bytes
      opts.on_progress(bytes, elapsed)
    end
  end
end

local raised = setmetatable({}, {__mode = "k"}) -- transfer -> the error its callback raised

--- Delivers like `deliver`, but a callback that raises first stops the transfer at once
-- (`transfer:cancel`: removed from the loop, its connection closed, its outcome a `cancelled`
-- error), so nothing keeps streaming and buffering behind the caller's back; the error is kept
-- to be raised where the call waits (see `outcome`). Returns false when a callback raised.
local function deliver_or_cancel(x, opts)
  if raised[x] ~= nil then return false end
  local ok, e = pcall(deliver, x, opts)
  if ok then return true end
  raised[x] = e
  x:cancel("a callback raised: " .. tostring(e))
  return false
end

--- The outcome of a done transfer: result | nil, err. When a callback raised, the outcome (the
-- cancelled error, or the result if it was already complete) carries the callback's error in
-- `callback_error`, for `reraise` to raise after the call has been logged.
local function outcome(x)
  local res, err = x:result()
  if raised[x] ~= nil then (res or err).callback_error = raised[x] end
  return res, err
end

--- Raises the error of a call's callback (after policy.after logged and priced the call), or
-- passes the outcome through.
local function reraise(res, err)
  local o = res or err
  if type(o) == "table" and o.callback_error ~= nil then
    local e = o.callback_error
    o.callback_error = nil
    error(e, 0)
  end
  return res, err
end

local resume

--- Resumes co with the given values and files it by what it does next (internal). A yield that is not the
-- scheduler's own (a host scheduler's, such as cqueues.sleep) is passed up to the coroutine we
-- run in, when there is one, and its answer handed back; on the main thread it counts as a tick.
-- @local
resume = function(co, ...)
  local r = table.pack(coroutine.resume(co, ...))
  while r[1] and r[2] ~= YIELD and coroutine.status(co) == "suspended" and coroutine.isyieldable() do
    r = table.pack(coroutine.resume(co, coroutine.yield(table.unpack(r, 2, r.n))))
  end
  if coroutine.status(co) == "dead" then
    local done = owned[co]
    owned[co] = nil
    if done then done(table.unpack(r, 1, r.n)) end
    return
  end
  if r[1] and r[2] == YIELD then
    waiting[#waiting + 1] = {co = co, ready = r[3]}
  else
    ready[#ready + 1] = co -- a yield of the caller's own: resumed at the next tick
  end
end

--- Passes over the waiting coroutines: deliver callbacks, resume the ones whose wait is over,
-- until a pass resumes none (the `core.step(0)` after a resume can finish another transfer whose
-- coroutine was already looked at; left for the next tick, a host loop with nothing more to watch
-- would never come back to it). Coroutines that yielded for a tick ask the loop for an immediate
-- wake-up, so a host loop calls again.
local function tick()
  local now_ready = ready
  ready = {}
  for _, co in ipairs(now_ready) do resume(co) end
  for _ = 1, 1000 do
    local progressed, i = false, 1
    while i <= #waiting do
      local w = waiting[i]
      local done, a, b = w.ready()
      if done then
        table.remove(waiting, i)
        resume(w.co, a, b)
        core.step(0) -- send what the coroutine just started, before resuming the next one
        progressed = true
      else
        i = i + 1
      end
    end
    if not progressed then break end
  end
  if #ready > 0 then core.wake_at(core.now()) end
end
hostloop.set_settle(tick)

--- Blocks the calling code until `is_ready()` returns true (then returns what follows its true):
-- yields inside the scheduler's coroutines, waits through the host inside a host's coroutine when
-- a host loop is attached, and steps the loop otherwise.
local function wait_until(is_ready)
  local co, main = coroutine.running()
  if owned[co] then return coroutine.yield(YIELD, is_ready) end
  if not main and hostloop.can_wait() then return hostloop.wait(is_ready) end
  while true do
    local done, a, b = is_ready()
    if done then return a, b end
    core.step(0.5)
    tick()
  end
end

--- Waits for a transfer, delivering its callbacks meanwhile (a callback that raises cancels it).
local function await(xfer, err, opts, keepalive)
  if not xfer then return nil, err end
  hostloop.flush() -- a host loop learns the new transfer's timer now
  return wait_until(function()
    if keepalive then keepalive() end -- renews the call's in-flight lease when due (imageroute.limits)
    deliver_or_cancel(xfer, opts)
    if xfer:done() then return true, outcome(xfer) end
    return false
  end)
end

--- Runs the loop once: moves bytes, waits at most `timeout` seconds for activity, delivers
-- partial images and progress, and resumes the coroutines whose calls finished. For embedding in
-- another event loop together with `fds`.
-- @tparam[opt=0] number timeout seconds
-- @treturn integer how many transfers and coroutines are still pending
function M.step(timeout)
  local live = core.step(timeout or 0)
  tick()
  hostloop.flush()
  return live + #waiting + #ready
end

--- What to wait on when embedding in a loop built on select/poll: the sockets libcurl watches (any
-- descriptor number) and the longest wait. Wait until one of the descriptors is ready or
-- `timeout` passes, then call `imageroute.step(0)`. Loops that take callbacks (cqueues, luv) are
-- better served by `on_socket`/`on_timer` or the ready adapters in `imageroute.loop`.
--
--    while imageroute.pending() > 0 do
--      local r, w, timeout = imageroute.fds()
--      my_loop_wait(r, w, timeout)   -- e.g. poll in your event loop
--      imageroute.step(0)
--    end
--
-- @treturn {integer,...} descriptors to watch for reading
-- @treturn {integer,...} descriptors to watch for writing
-- @treturn number|nil seconds to wait at most (nil: nothing pending)
function M.fds()
  return core.fds()
end

--- How many transfers and scheduler coroutines are pending.
-- @treturn integer
function M.pending()
  return core.pending() + #waiting + #ready
end

M.on_socket = hostloop.on_socket
M.on_timer = hostloop.on_timer
M.socket_action = hostloop.socket_action
M.timer_action = hostloop.timer_action

--- Starts `fn(...)` as a scheduler coroutine without waiting for it; its imageroute calls yield
-- to the loop. Drive it with `step` (or any blocking imageroute call, or `run`), or with a host
-- loop attached. With a host adapter that runs coroutines itself (cqueues), `fn` runs as one of
-- the host's coroutines.
-- @tparam function fn
-- @tparam[opt] function on_done called as `on_done(ok, ...)` with fn's results or its error
-- @return the coroutine
function M.spawn(fn, on_done, ...)
  assert(type(fn) == "function", "spawn: function expected")
  on_done = on_done or function(ok, e) if not ok then error(e, 0) end end
  local hosted = hostloop.spawn(fn, on_done, ...)
  if hosted then return hosted end
  local co = coroutine.create(fn)
  owned[co] = on_done
  resume(co, ...)
  hostloop.flush()
  return co
end

--- Runs functions as coroutines on one thread until all of them return. Inside them the ordinary
-- calls (`generate`, `edit`, `respond`, ...) yield to the shared loop instead of blocking, so
-- several multi-step flows progress at once.
-- @tparam function ... the functions
-- @return the first value each function returned, in order
-- @raise the first error raised by any of the functions, after all of them have ended
function M.run(...)
  local fns = table.pack(...)
  local results, first_err, pending = {}, nil, fns.n
  for i = 1, fns.n do
    M.spawn(fns[i], function(ok, v)
      pending = pending - 1
      if ok then results[i] = v elseif first_err == nil then first_err = v end
    end)
  end
  wait_until(function() return pending == 0 end) -- inside a flow: yields instead of blocking
  if first_err ~= nil then error(first_err, 0) end
  return table.unpack(results, 1, fns.n)
end

--- Runs a list of calls with at most `max_in_flight` in flight, and returns their outcomes in
-- input order. A job's failure never stops the others.
-- @tparam {table,...} jobs each `{call = "generate"|"edit"|"respond" (default "generate"), route =,
--   params =, opts =}`
-- @tparam[opt] table opts `max_in_flight` (integer, default 4), `on_done(i, result, err)`,
--   `on_progress(i, bytes, elapsed_seconds)`, `on_partial(i, image, index)`, `keep_results`
--   (default true; false drops each result after `on_done` and releases its images, see
--   `Image:release`, so a long batch holds only the images in flight: save them in `on_done`;
--   an image kept beyond `on_done` keeps its `path`, `sha256`, `length`, `format`, but not its bytes)
-- @treturn {table,...} one `{ok = boolean, result = table|nil, error = table|nil}` per job
function M.batch(jobs, opts)
  assert(type(jobs) == "table", "batch: a list of jobs expected")
  opts = opts or {}
  local n, next_job, results = #jobs, 0, {}
  local max = opts.max_in_flight or 4
  assert(math.type(max) == "integer" and max >= 1, "batch: max_in_flight must be an integer >= 1")
  local function worker()
    while next_job < n do
      next_job = next_job + 1
      local i, job = next_job, jobs[next_job]
      local jopts = {}
      for k, v in pairs(job.opts or {}) do jopts[k] = v end
      if opts.on_progress then jopts.on_progress = function(b, e) opts.on_progress(i, b, e) end end
      if opts.on_partial then jopts.on_partial = function(img, idx) opts.on_partial(i, img, idx) end end
      local fn = M[job.call or "generate"]
      local res, err
      local scale_ok, scale_err = true, nil
      if core.is_route(job.route) then scale_ok, scale_err = M.contract.scale_allowed(job.route) end
      if job.call ~= nil and job.call ~= "generate" and job.call ~= "edit" and job.call ~= "respond" then
        err = core.error("validation", "unknown call '" .. tostring(job.call) .. "'", {field = "call"})
      elseif not scale_ok then
        res, err = policy.after(job.call or "generate", job.route, job.params, jopts, nil, scale_err)
      else
        local ok
        ok, res, err = pcall(fn, job.route, job.params, jopts)
        if not ok then res, err = nil, core.error("validation", tostring(res), {field = "job"}) end
      end
      if opts.on_done then opts.on_done(i, res, err) end
      if opts.keep_results == false then
        -- the result is dropped: its images' bytes are freed now, not at some later collection
        for _, img in ipairs(res and res.images or err and err.images or {}) do img:release() end
      end
      results[i] = {ok = res ~= nil, result = opts.keep_results ~= false and res or nil, error = err}
    end
  end
  local workers = {}
  for k = 1, math.min(max, n) do workers[k] = worker end
  if #workers > 0 then M.run(table.unpack(workers)) end
  return results
end

--- The name of image i of count for a save_to target: the target itself for one image, else
-- "<stem>-i<.ext>" (the same rule as the C core's).
local function numbered(target, i, count)
  if count <= 1 then return target end
  local stem, ext = target:match("^(.-)(%.[^./]+)$")
  if not stem or stem == "" or stem:sub(-1) == "/" then stem, ext = target, "" end
  return ("%s-%d%s"):format(stem, i, ext)
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

--- Checks opts.save_to before anything is sent: a file path whose names are free (or overwrite).
local function check_save_to(params, opts)
  local to = opts and opts.save_to
  if to == nil then return true end
  local function refuse(msg)
    return nil, core.error("validation", msg, {field = "save_to", fix = "pass opts.save_to = \"dir/name.png\""})
  end
  if type(to) ~= "string" or to == "" or to:sub(-1) == "/" or to:find("\0", 1, true) then
    return refuse("opts.save_to must be a file path such as out/fox.png")
  end
  local dir = to:match("^(.*)/[^/]*$") or "."
  if dir ~= "" and not exists(dir) then return refuse("opts.save_to: the directory " .. dir .. " does not exist") end
  local n = type(params) == "table" and math.tointeger(params.n) or 1
  if not opts.overwrite then
    for i = 1, math.max(1, math.min(n, 16)) do
      local name = numbered(to, i, n)
      if exists(name) then
        return nil, core.error("validation", ("opts.save_to: %s exists (pass opts.overwrite = true to replace it)")
          :format(name), {field = "save_to", path = name})
      end
    end
  end
  return true
end

--- After a call with save_to: the images the core could not decode into files as they arrived
-- (streamed events, downloaded links) are saved now, under the same names.
local function save_rest(res, opts)
  local count = #res.images
  for i, img in ipairs(res.images) do
    if not img.path then
      local p, err = img:save(numbered(opts.save_to, i, count), {overwrite = true})
      if not p then
        err.images = res.images
        return nil, err
      end
    end
  end
  return res
end

local bg_handles = setmetatable({}, {__mode = "k"}) -- opts -> the BackgroundTransfer of start_background

--- A call in background mode (imageroute.background): the create request on the loop, then the
-- polls through imageroute.api, each reply read by the request's shape.
local function run_background(kind, route, params, opts)
  local t = type(opts) == "table" and bg_handles[opts] or background.transfer()
  local env = {route = route, opts = opts, wait_until = wait_until, api = function(...) return M.api(...) end}
  env.final = function(created, polled) return responses_shape.reply_polled(env.req, created, polled) end
  env.start = function()
    local x, err, req = dispatch.start(kind, route, params, opts)
    env.req = req
    return x, err
  end
  env.await = function(x) return dispatch.finish(env.req, await(x, nil, opts)) end
  return background.run(t, env)
end

--- The raw call of one shape: start its transfer on the loop, then wait for it (yielding inside
-- the scheduler's coroutines).
local in_flight = {} -- route name -> calls in flight (the scale rule for routes without observability)

local function raw_call(kind)
  return function(route, params, opts)
    local ok, serr = check_save_to(params, opts)
    if not ok then return nil, serr end
    local name = core.is_route(route) and route.name
    if name and (in_flight[name] or 0) > 0 then -- a second call at once is scale-up
      local sok, scale_err = M.contract.scale_allowed(route)
      if not sok then return nil, scale_err end
    end
    local waited, release, keepalive, lerr, state_fallback = limits.before(route, kind, params, wait_until)
    if lerr then return nil, lerr end -- the state store failed: refused, nothing sent
    if name then in_flight[name] = (in_flight[name] or 0) + 1 end
    local ok2, res, e
    if background.wanted(request.of(kind, route, params, opts)) then -- created, then polled on the loop
      ok2, res, e = pcall(run_background, kind, route, params, opts)
    else
      local x, err, req = dispatch.start(kind, route, params, opts)
      ok2, res, e = pcall(await, x, err, opts, keepalive)
      if ok2 then res, e = dispatch.finish(req, res, e) end
    end
    if name then in_flight[name] = in_flight[name] - 1 end
    if not ok2 then release(); error(res, 0) end
    release(res, e)
    if res and opts and opts.save_to then res, e = save_rest(res, opts) end
    local target = res or e
    if waited > 0 and type(target) == "table" then target.limit_wait = waited end
    if state_fallback and type(target) == "table" then target.state_fallback = state_fallback end
    return res, e
  end
end

local raw_generate = raw_call("generate")

--- Generates images. On an `images` route: `POST {base_url}/images/generations` (JSON). On a
-- `chat` route: `POST {base_url}/chat/completions` with the prompt as one user message; the images
-- are the Markdown image links of the reply, downloaded (result `content`, `links`, and `unsent`:
-- the params a chat request has no place for); a `content` given as a list of parts gives its
-- text parts as the text and its `image_url` parts as image links, in document order with the
-- Markdown links (`links[i].type = "image_url"`). On a `responses` route: `respond` with the
-- prompt as input and the tool forced.
--
-- On every shape, a 2xx reply without an image is a `decode` error that carries the text that came
-- back: `err.content` (chat, code `no_image_link` or `empty_content`), `err.output_text` and
-- `err.response_id` (responses, code `no_image`); the message quotes an excerpt. (`respond`, unlike
-- `generate` and `edit`, may end with text or tool calls only, and then succeeds.)
--
-- The body holds exactly the fields the caller set in `params` (API field names: `prompt`, `n`,
-- `size`, `quality`, `background`, `output_format`, `output_compression`, `moderation`, `user`,
-- ...; OpenAI API reference, Images > Create image,
-- https://platform.openai.com/docs/api-reference/images/create, read 2026-12-01; schema
-- `CreateImageRequest` of https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21), plus
-- `model` from the route when
-- `params.model` is not set. Nothing is defaulted, nothing is sent as null.
--
-- Before sending, the route's contract gates and the stop rules are checked (`imageroute.policy`;
-- a refusal is a `route` or `validation` error and nothing is sent); after, the result or error
-- gets its `cost` and the call is logged when a log file applies (`imageroute.log`).
--
-- @tparam Route route
-- @tparam table params API fields; `prompt` (non-empty string) is required
-- @tparam[opt] table opts per-call options: `timeout`, `connect_timeout` (seconds), `max_retries`,
--   `deadline` (seconds), `max_images`, `max_call_bytes` (bytes) (see `route`),
--   `log` (a log path for this call, or false), `allow_preview`, `skip_rules` (see imageroute.rules),
--   `on_partial(image, index)` (with `params.stream = true` and `params.partial_images`: each
--   partial image as its event arrives, index 0-based; `image.event` holds the event's other fields),
--   `on_progress(bytes, elapsed_seconds)`, `save_to` (a file path: each final image is decoded
--   straight into a temporary file in that directory as its base64 arrives and renamed to the
--   path at the end, with n > 1 to `name-1.ext`, `name-2.ext`, ...; nothing is left behind on
--   failure; the result's Images carry `path` and read their bytes from the file only when asked;
--   images that arrive otherwise, streamed events or downloaded links, are saved at the end under
--   the same names), `overwrite` (with `save_to`: replace existing files; without it a call whose
--   target exists is refused before sending)
--   A callback (on_partial, on_progress) that raises stops the transfer at once (its
--   connection closed, nothing more buffered); the call is priced and logged as a `cancelled` error,
--   then the callback's error is raised to the caller (inside `run`/`spawn`/`batch` coroutines too).
-- @treturn table result:
--
-- * `images` (list of Image): decoded bytes (`image.bytes`, `image.length` in bytes), `mime`,
--   `format` (sniffed from magic bytes), `width`, `height`, `sha256`, `index` (1-based position in
--   `data`), `revised_prompt`, `url` (when downloaded), and `image:save(path [, opts])`: atomic
--   (a temporary file renamed into place), `opts.overwrite` to replace a file, `opts.durable` to
--   fsync before the rename; returns path, bytes or nil, err (`kind = "io"`).
-- * `request_id` (the `x-request-id` header), `http_status`, `created` (Unix seconds), `usage`,
--   `size`, `quality`, `background`, `output_format` (as the API returned them), `model` (sent),
--   `shape`, `endpoint`, `route` (name), `latency` (seconds, all attempts and downloads),
--   `attempts` (HTTP attempts made), `attempt_log` (one table per attempt), `bytes_received`.
-- @treturn[2] nil
-- @treturn[2] table error: `kind` (`"api"` | `"http"` | `"timeout"` | `"connection"` |
--   `"decode"` | `"validation"` | `"route"` | `"cancelled"`), `message`, `cost`, `status`, `type`,
--   `code`, `param`, `request_id`, `response_id` (responses, when known), `attempts`, `attempt_log`,
--   `route`, and `images` when some were received before the failure; `tostring(err)` is
--   one line and never holds the key.
-- @raise when route is not a Route or params is not a table
function M.generate(route, params, opts)
  if router.is_router(route) then return router.call("generate", M.generate, route, params, opts) end
  return reraise(policy.call("generate", raw_generate, route, params, opts))
end

local raw_edit = raw_call("edit")

--- Edits images. On an `images` route: `POST {base_url}/images/edits` (multipart,
-- OpenAI API reference, Images > Create image edit,
-- https://platform.openai.com/docs/api-reference/images/createEdit, read 2026-12-01; schema
-- `CreateImageEditRequest` of https://github.com/openai/openai-openapi at f85dbe2, 2026-08-21). On a
-- `chat` route: one user message with
-- the prompt as a text part and each image as an `image_url` part (an http(s) or data: URL string
-- as given; bytes, paths and Images as data URLs); no mask. On a `responses` route: the prompt and
-- images as `input_text`/`input_image` items, the mask as the tool's `input_image_mask`.
--
-- `params.image` is one image or a list of up to 16; each is a file path, the image bytes, or
-- `{data = bytes | path = path, filename =, mime =}`. One image is sent as the part `image`,
-- several as repeated `image[]` parts. `params.mask` takes the same forms. The type is sniffed
-- from the first bytes; anything but PNG, JPEG or WebP is refused before sending. Every other
-- field is sent as a form field (numbers without a decimal point when integral, booleans as
-- `true`/`false`), `model` first.
--
-- @tparam Route route
-- @tparam table params API fields; `prompt` and `image` are required
-- @tparam[opt] table opts as for `generate`
-- @treturn table result, as for `generate`
-- @treturn[2] nil
-- @treturn[2] table error, as for `generate`
-- @raise when route is not a Route or params is not a table
function M.edit(route, params, opts)
  if router.is_router(route) then return router.call("edit", M.edit, route, params, opts) end
  return reraise(policy.call("edit", raw_edit, route, params, opts))
end

local raw_respond = raw_call("respond")

--- Calls the Responses API with the `image_generation` tool: `POST {base_url}/responses`
-- (OpenAI API reference, Responses > Create a response,
-- https://platform.openai.com/docs/api-reference/responses, read 2026-12-01; the function calling
-- guide, https://platform.openai.com/docs/guides/function-calling; schema `CreateResponse` of
-- https://github.com/openai/openai-openapi).
--
-- The route's `model` (or `params.model`) is the top-level TEXT model, e.g. `gpt-5`; an image
-- model there (`gpt-image-*`, `dall-e-*`, `chatgpt-image-*`) is refused before sending. The image
-- model goes in the tool: `params.image_model`, else `params.tool.model`, else the route's
-- `image_model`. Tool options may be given flat in `params` or in `params.tool` (not both):
-- `size`, `quality`, `background`, `output_format`, `output_compression`, `moderation`,
-- `partial_images`, `input_fidelity`, `input_image_mask` (an image: bytes, path or Image; or
-- `{image_url =}` / `{file_id =}`), `action`. `tool_choice = "image_generation"` forces the tool.
--
-- The app's own tools: `params.tools` (e.g. `{type = "function", name =, parameters =}`) is sent as
-- given, and the `image_generation` tool is added to it from the flat / `params.tool` options, unless
-- the list already holds an `image_generation` tool (then options outside it are refused: they would
-- not be sent). `params.tool = false` sends no image tool (options for it are refused).
--
-- A parameter is sent exactly where the caller put it. `moderation` and `background` are both
-- top-level `CreateResponse` fields and tool options, told apart by type: `moderation = {model =,
-- policy =}` (an object) and `background = true` (background mode, see `start_background`) stay at
-- the top level; `moderation = "low"` and `background = "transparent"` (strings) are the tool's. A
-- value of neither type, or the same option both flat and in `params.tool`, is refused before sending
-- (`validation`, `rule = "ambiguous_placement"`) with an error naming both places, e.g.
-- `params.tool.moderation` vs top-level `moderation`. Nothing is dropped without an error.
--
-- `params.input` is a string, or a list of content items (strings become `input_text`; Images,
-- and `{type = "input_image", image = bytes|path}`, become `input_image` with a data URL;
-- `{type = "input_image", image_url = "https://...", detail = "high"}` is sent as is), or a list of
-- input items: messages `{role =, content = {...}}`, `{type = "function_call_output", call_id =,
-- output =}` (the tool loop's answer), reply items echoed back from `result.output` (their empty
-- arrays stay `[]`: see `imageroute.array`). `previous_response_id` continues a conversation. Every
-- other field is sent as given.
--
-- The tool loop: the model asks for a function (`result.function_calls`), the app runs it and calls
-- `respond` again with `previous_response_id = result.id` and one `function_call_output` item per
-- call; the model then goes on (draws the image). See `examples/tool_loop.lua`.
--
-- @tparam Route route
-- @tparam table params
-- @tparam[opt] table opts as for `generate`, and for background mode `poll_interval` (seconds between
--   polls, default 2; the call's `deadline` bounds creation and polls)
-- @treturn table result: `id` (= `response_id`), `status`, `output_text` (string, the message
--   text joined), `images` (Image list; each with `call_id`, `status`, `revised_prompt`, `size`,
--   `quality`, `output_format`, `background`, and `format_mismatch = {requested =, got =}` when its
--   bytes are not the `output_format` asked), `output` (every output item in order as returned; an
--   `image_generation_call` has `image`, the Image, instead of its base64 `result`),
--   `function_calls` (one `{call_id =, name =, arguments =, args =}` per `function_call` item:
--   `arguments` the JSON string as returned, `args` its decoded table or nil when it is not valid
--   JSON), `image_calls` (one `{id, status[, error]}` per `image_generation_call`), `moderation` (the
--   response's moderation results, when it has them), `usage`, `incomplete_details`, `model`,
--   `tool_model`, `request_id`, `latency` (seconds), `attempts`, `attempt_log`, `route`,
--   `shape = "responses"`, `format_mismatch` (the first one, for the log), and in background mode
--   `background_mode = {response_id =, polls =, poll_log =, created_status =}`.
-- @treturn[2] nil
-- @treturn[2] table error as for `generate`; a response with `status = "failed"`, or an
--   `image_generation_call` with no image, is an `api` error with `code`, `response_id`,
--   `output_text`, `image_calls`, `output`, `function_calls`, and the `images` that did arrive; a
--   response blocked by moderation (`incomplete_details.reason = "content_filter"`, or flagged with
--   nothing produced) is an `api` error with `code = "moderation_blocked"` and `moderation =
--   {blocked = true, reason =, input =, output =}`, never retried and priced as a moderation outcome,
--   never as a success; the 403 of an organization that must be verified is an `api` error with
--   `code = "organization_not_verified"` and a `fix` naming
--   https://platform.openai.com/settings/organization/general, never retried.
-- @raise when route is not a Route or params is not a table
function M.respond(route, params, opts)
  if router.is_router(route) then return router.call("respond", M.respond, route, params, opts) end
  return reraise(policy.call("respond", raw_respond, route, params, opts))
end

--- Starts a `respond` call in background mode (`background = true`: for long generations; a
-- high-quality image can take minutes) without waiting for it, and returns its Transfer: created on
-- the loop, then polled (`GET /responses/{id}`) every `opts.poll_interval` seconds (default 2)
-- within the call's deadline (`opts.deadline`, else the route's), with the gates, stop rules, cost
-- and log of every call. `transfer:wait()` returns the same result as a foreground `respond` (plus
-- `background_mode`); `transfer:cancel([reason])` stops it (`POST /responses/{id}/cancel` once the
-- response exists; the outcome is a `cancelled` error with `response_id` and `cancel_status`);
-- `transfer.response_id` and `transfer.status` follow it. `respond(route, {..., background = true})`
-- is the same call, waited for. See `imageroute.background` (OpenAI API reference, Responses,
-- https://platform.openai.com/docs/api-reference/responses, and the background mode guide,
-- https://platform.openai.com/docs/guides/background, read 2026-12-01).
--
--    local t = imageroute.start_background(assistant, {input = "A detailed city map", quality = "high"})
--    local res, err = t:wait()   -- or, from another flow or a timer: t:cancel()
--
-- @tparam Route route a route (not a router: a fallback cannot take over a response in flight)
-- @tparam table params as for `respond` (copied; `background = true` is set)
-- @tparam[opt] table opts as for `respond` (copied), `poll_interval`
-- @treturn table the Transfer (`done`, `result`, `wait`, `cancel`, `progress`, `take_partials`,
--   `response_id`, `status`, `polls`)
-- @raise when route is not a Route or params is not a table
function M.start_background(route, params, opts)
  assert(core.is_route(route), "start_background: a Route expected")
  assert(type(params) == "table", "start_background: params must be a table")
  local p, o = {}, {}
  for k, v in pairs(params) do p[k] = v end
  for k, v in pairs(opts or {}) do o[k] = v end
  p.background = true
  local t = background.transfer()
  t.waiter = wait_until
  bg_handles[o] = t
  M.spawn(function() return M.respond(route, p, o) end, function(ok, res, err)
    if ok then t:finish(res, err) else t:finish(nil, nil); t.raised = res end
  end)
  return t
end

local json = require "imageroute.json"

--- A generic API request on a route's transport: any endpoint under the route's `base_url`
-- (`GET /models/{model}`, `GET /responses/{id}`, `POST /responses/{id}/cancel`, the organization
-- usage and costs endpoints, ...), on the same libcurl loop and scheduler as every call (inside
-- `run`/`spawn`/`batch` coroutines it yields; with a host loop it waits through the host).
--
-- It uses the route's key (`api_key` / `api_key_env`, e.g. `api_key_env = "OPENAI_ADMIN_KEY"` for
-- the organization endpoints), `headers`, timeouts, retries (`max_retries`, `retry_policy`),
-- `deadline`, `max_response_bytes`, the redaction of the key, and the route's acceptance gates
-- (`imageroute.contract`: a route refused for calls is refused here, nothing sent). No stop rule,
-- price, budget or call log applies (nothing here makes an image); the route's client-side rate
-- limits (`limits`) count it as one request.
--
--    local m = assert(imageroute.api(route, {path = "/models/gpt-image-2"}))
--    print(m.status, m.body.id, m.request_id)
--    local u = assert(imageroute.api(admin, {path = "/organization/usage/images",
--      query = {start_time = 1764547200, group_by = {"model", "size"}, limit = 7}}))
--
-- @tparam Route route
-- @tparam table req `method` (`"GET"` (default) | `"POST"` | `"DELETE"`), `path` (string, appended to
--   `base_url`: starts with `/`, printable ASCII, no space, `?`, `#`, `\`, `.` or `..` segment),
--   `query` (table `name = value`, a value a string, number or boolean, or a list of them for a
--   repeated name; names sent sorted, both URL-encoded by libcurl), `body` (the JSON text, a string,
--   sent with `Content-Type: application/json`; or a table, encoded here with `imageroute.json`; not
--   with GET)
-- @tparam[opt] table opts `timeout`, `connect_timeout` (seconds), `max_retries`, `deadline` (seconds)
-- @treturn table result: `status` (HTTP status, integer), `headers` (table: lowercased name -> value,
--   a repeated header's values joined with `", "`), `text` (the body as it came), `body` (the body
--   decoded as JSON by `imageroute.json`, or nil when it is empty or not JSON), `request_id`
--   (`x-request-id`), `latency` (seconds, all attempts), `attempts`, `attempt_log`, `endpoint` (the
--   path), `route` (name), `bytes_received`, `shape = "api"`. No image is read from the reply.
-- @treturn[2] nil
-- @treturn[2] table error, with the kinds and codes of every call (`api` for an OpenAI error body,
--   with `type`, `code`, `param`; `http` for another non-2xx; `timeout`, `connection`,
--   `validation` (`field` = `"method"`, `"path"`, `"query"`, `"body"`, or a key field), `route`
--   (a gate), `cancelled`), `status`, `request_id`, `text` (the error body as it came, at most
--   64 KiB), `attempts`, `attempt_log`; every string redacted of the key.
-- @raise when route is not a Route or req is not a table
function M.api(route, req, opts)
  assert(core.is_route(route), "api: a Route expected")
  assert(type(req) == "table", "api: req must be a table")
  if type(req.body) == "table" then
    local r = {}
    for k, v in pairs(req) do r[k] = v end
    local text, why = json.encode(req.body) -- returns nil, why (never raises)
    if not text then
      return nil, core.error("validation", "req.body cannot be sent as JSON: " .. tostring(why), {field = "body"})
    end
    r.body = text
    req = r
  end
  local ok, gate_err = M.contract.allow(route) -- the route's gates (no stop rule: nothing here makes an image)
  if not ok then return nil, gate_err end
  local waited, release, keepalive, lerr = limits.before(route, "api", {}, wait_until)
  if lerr then return nil, lerr end -- the state store failed: refused, nothing sent
  local x, err = core.start_api(route, req, opts)
  local okw, res, e = pcall(await, x, err, opts, keepalive)
  if not okw then release(); error(res, 0) end
  release(res, e)
  if waited > 0 and type(res or e) == "table" then (res or e).limit_wait = waited end
  if res and res.text ~= "" then
    local ct = res.headers["content-type"]
    if ct == nil or ct:find("json", 1, true) then
      res.body = json.decode(res.text) -- nil when the text is not JSON
    end
  end
  return res, e
end

-- ------------------------------------------------------------------------------------------
-- Streaming as an iterator

local STREAM_KINDS = {generate = true, edit = true, respond = true}

local Stream = {}
Stream.__index = Stream

-- Stream:close() (documented with the Stream type, ldoc/types.lua). Ends the stream's call now:
-- a transfer still running is stopped (its connection closed, nothing more is received) and the
-- call is logged as a `connection` error with `code = "stream_closed"`
-- (its cost follows the route's `failed_calls_billed.timeout`: the request was sent, so it may be
-- billed). Called by the generic `for` when the loop is left early (`break`, `return`, an error)
-- on Lua 5.4, through the iterator's to-be-closed value; on Lua 5.3 call it yourself (or let the
-- garbage collector stop the transfer). Idempotent; a stream that already ended is left as is.
function Stream:close()
  if self.finished then return end
  self.finished = true
  local x = self.xfer
  self.xfer, self.queue = nil, {}
  if not x then return end
  local _, elapsed, attempt = x:progress()
  local bytes = x:progress()
  getmetatable(x).__close(x) -- removes the transfer from the loop and frees its connection
  local msg = "the stream was closed before the call finished (the request was sent and may be billed)"
  local err = core.error("connection", msg, {code = "stream_closed", route = self.route.name,
    attempts = attempt, latency = elapsed, bytes_received = bytes,
    attempt_log = {{attempt = attempt, phase = "request", error_kind = "connection", error = msg, bytes = bytes,
      latency = elapsed}}})
  policy.after(self.kind, self.route, self.params, self.opts, nil, err)
end
Stream.__close = Stream.close

-- The iterator function: the next (kind, value) of stream s.
local function stream_next(s)
  if s.queue[1] then return "partial", table.remove(s.queue, 1) end
  if s.finished then return nil end
  local x = s.xfer
  if x then
    wait_until(function()
      for _, img in ipairs(x:take_partials()) do s.queue[#s.queue + 1] = img end
      return s.queue[1] ~= nil or x:done()
    end)
    if s.queue[1] then return "partial", table.remove(s.queue, 1) end
    s.xfer = nil
    local res, err = dispatch.finish(s.req, x:result())
    if res and s.opts.save_to then res, err = save_rest(res, s.opts) end
    s.res, s.err = policy.after(s.kind, s.route, s.params, s.opts, res, err)
  end
  s.finished = true
  if s.res then return "result", s.res end
  return "error", s.err
end

--- Streams one call as an iterator: partial images as they arrive, then the outcome.
--
--    for kind, value in imageroute.stream(route, {prompt = "a fox", partial_images = 2}) do
--      if kind == "partial" then value:save(("out/fox-partial-%d.png"):format(value.partial_image_index))
--      elseif kind == "result" then value.images[1]:save("out/fox.png")
--      else io.stderr:write(tostring(value), "\n") end -- kind == "error"
--    end
--
-- The call is `generate`, `edit` or `respond` (`opts.call`; default `edit` when `params.image` is
-- set, `respond` when `params.input` is set, else `generate`), made on a copy of `params` with
-- `stream = true` (`partial_images` as the caller set it: without it the Images API sends no
-- partials, and the Responses tool refuses to stream, see `imageroute.rules`). Every value comes
-- from the ordinary call path: the route's gates and stop rules before sending (a refusal is the
-- one `"error"`, nothing sent), `cost`, `contract_reason` and the call log after.
--
-- Kinds, in order: zero or more `"partial"` (value: the partial Image, with
-- `partial_image_index`, 0-based, and `event`, the event's other fields), then exactly one
-- `"result"` (the result, as `generate`/`edit`/`respond` return it) or `"error"` (the error); then
-- the loop ends. A chat route streams no partial images: only the `"result"` or `"error"` comes.
--
-- Waiting: inside a flow (a coroutine run by `imageroute.spawn`, `run` or `batch`) the iterator
-- yields to the scheduler while no event is there, so other flows progress; in a host loop's
-- coroutine with an adapter attached it waits through the host; elsewhere it steps the loop
-- (0.5 s at most per step, other flows progressing meanwhile).
--
-- Leaving the loop early: the fourth value returned is the stream object, to-be-closed in Lua
-- 5.4's generic `for`, so `break` (or an error in the body) calls `stream:close()`: the transfer is
-- stopped at once and the call is logged as closed (see `Stream:close`). Without a `for` (calling the
-- iterator by hand) or on Lua 5.3, call `close()` yourself.
-- @tparam Route route
-- @tparam table params API fields, as for `generate` / `edit` / `respond` (copied; `stream = true` is set)
-- @tparam[opt] table opts per-call options as for `generate` (`on_partial` is not used: partials
--   come from the iterator), and `call` (`"generate"` | `"edit"` | `"respond"`)
-- @treturn function the iterator, returning `kind, value`
-- @treturn table the stream object: `close()`, and after the end `res` or `err`
-- @treturn nil the generic `for`'s control value
-- @treturn table the stream object again, the to-be-closed value
-- @raise when route is not a Route, params is not a table, or `opts.call` is unknown
function M.stream(route, params, opts)
  assert(core.is_route(route), "stream: a Route expected")
  assert(type(params) == "table", "stream: params must be a table")
  opts = opts or {}
  local kind = opts.call or (params.image ~= nil and "edit") or (params.input ~= nil and "respond") or "generate"
  assert(STREAM_KINDS[kind], "stream: opts.call must be \"generate\", \"edit\" or \"respond\"")
  local p = {}
  for k, v in pairs(params) do p[k] = v end
  p.stream = true
  local o = {}
  for k, v in pairs(opts) do if k ~= "call" and k ~= "on_partial" then o[k] = v end end
  local s = setmetatable({kind = kind, route = route, params = p, opts = o, queue = {}}, Stream)
  local ok, err = policy.before(kind, route, p, o)
  if ok then ok, err = check_save_to(p, o) end
  if ok then
    local x, serr, req = dispatch.start(kind, route, p, o)
    s.req = req
    if x then
      s.xfer = x
      hostloop.flush() -- a host loop learns the new transfer's timer now
    else
      ok, err = nil, serr
    end
  end
  if not ok then
    s.res, s.err = policy.after(kind, route, p, o, nil, err)
    s.finished = true
    s.pending_error = true
  end
  local function iter()
    if s.pending_error then
      s.pending_error = nil
      return "error", s.err
    end
    return stream_next(s)
  end
  return iter, s, nil, s
end

--- Makes a file name safe to join under a directory: letters, digits, '-', '_' and '.', no
-- leading dot, at most 80 characters. Names derived from prompts or ids go through this, so they
-- can never climb out of the output directory.
-- @tparam string s
-- @treturn string
function M.safe_name(s)
  s = tostring(s):gsub("[^%w%-_%.]+", "-"):gsub("^[%.%-]+", ""):gsub("%.%.+", ".")
  if #s > 80 then s = s:sub(1, 80) end
  if s == "" then s = "image" end
  return s
end

--- Saves every image of a result (or of an error that carries `images`) into a directory, as
-- `<name>-<i>.<format>`, atomically, never replacing a file unless `opts.overwrite`.
-- @tparam table result a result or an error with `images`
-- @tparam string dir an existing directory
-- @tparam[opt] table opts `name` (default: the result's request id, else "image"; made safe with
--   `safe_name`), `overwrite` (boolean), `durable` (boolean: fsync each file before its rename)
-- @treturn {table,...} one `{path =, bytes =, sha256 =}` per image (bytes: integer)
-- @treturn[2] nil
-- @treturn[2] table error (`kind = "io"`, `path`, `errno`) that still carries `images` (nothing
--   is lost: save them elsewhere) and `saved` (the files written before the failure)
function M.save(result, dir, opts)
  assert(type(result) == "table" and type(result.images) == "table", "save: a result with images expected")
  assert(type(dir) == "string", "save: a directory expected")
  opts = opts or {}
  local base = M.safe_name(opts.name or result.request_id or result.response_id or "image")
  local saved = {}
  for i, img in ipairs(result.images) do
    local path = string.format("%s/%s-%d.%s", dir, base, i, img.format or "bin")
    local p, err = img:save(path, {overwrite = opts.overwrite, durable = opts.durable})
    if not p then
      err.images = result.images
      err.saved = saved
      return nil, err
    end
    saved[#saved + 1] = {path = p, bytes = err, sha256 = img.sha256}
  end
  return saved
end

--- Wraps image bytes (read from a file, say) as an Image, with `save`, `mime`, `format`.
-- @tparam string bytes
-- @treturn Image
function M.image(bytes)
  return core.image(bytes)
end

--- Reads an image file into an Image.
-- @tparam string path
-- @treturn Image|nil
-- @treturn[2] table error with `kind = "io"`
function M.load_image(path)
  local f, msg = io.open(path, "rb")
  if not f then return nil, core.error("io", msg, {path = path}) end
  local bytes = f:read("a")
  f:close()
  return core.image(bytes)
end

return M
