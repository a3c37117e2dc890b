--- imageroute.scheduler: every transfer runs on the C core's one libcurl multi loop. Calls made inside
-- coroutines started by `run`, `spawn` or `batch` yield to it; calls made elsewhere step the
-- loop until their transfer is done (and meanwhile the scheduler's coroutines progress too).
-- With a host loop attached (`imageroute.loop.*`, or `on_socket`/`on_timer`), calls made from the
-- host's own coroutines wait through the host instead (see `imageroute.hostloop`).
--
-- `imageroute.step`, `fds`, `pending`, `spawn`, `run`, `on_socket`, `on_timer`, `socket_action` and
-- `timer_action` are this module's functions; the calls wait with `await` / `wait_until`.
-- @module imageroute.scheduler

local core = require("imageroute.core")

local M = {}

local hostloop = require("imageroute.hostloop")

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
  if not main and hostloop.can_wait() then
    -- a wake-up the wait asks for (core.wake_at: a limit's window, a slot poll, a lease renewal due,
    -- a background poll) must reach the host's timer, or the host sleeps past it: handed over now
    -- and after every check that keeps waiting (is_ready may ask for the next one)
    hostloop.flush()
    return hostloop.wait(function()
      local r = table.pack(is_ready())
      if not r[1] then hostloop.flush() end
      return table.unpack(r, 1, r.n)
    end)
  end
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


--- Waits until `is_ready()` returns true, then returns what follows its true (see above).
-- @tparam function is_ready
M.wait_until = wait_until

--- Waits for a started transfer (nil, err passed through), delivering `opts.on_partial` and
-- `opts.on_progress` meanwhile; a callback that raises cancels it.
-- @tparam Transfer|nil xfer
-- @param err the error when nothing was started
-- @tparam[opt] table opts
-- @treturn table|nil result
-- @treturn[2] table error
M.await = await

--- Raises the error of a call's callback (after the call was logged and priced), or passes the
-- outcome through.
M.reraise = reraise

return M
