--- imageroute.hostloop: the bridge between the C core's libcurl loop and a host program's own
-- event loop (cqueues, luv, a poll loop, ...), one to one with libcurl's socket and timer model.
--
-- The host says how to watch a socket and how to set a timer; imageroute says which sockets and
-- when:
--
--    imageroute.on_socket(function(fd, what) ... end)  -- what: "in" | "out" | "inout" | "remove"
--    imageroute.on_timer(function(seconds) ... end)    -- one-shot; nil cancels it
--    -- when fd is ready:          imageroute.socket_action(fd, what)
--    -- when the timer fires:      imageroute.timer_action()
--
-- Any descriptor number works. The callbacks are called from Lua, never from inside libcurl, after
-- every imageroute entry point that may change the sockets or the timer. The ready adapters
-- `imageroute.loop.cqueues` and `imageroute.loop.luv` are built on this module; an adapter can
-- also install a waiter (`set_waiter`), so that imageroute calls made from the host's coroutines
-- yield to the host instead of blocking it.
-- @module imageroute.hostloop

local core = require("imageroute.core")

local M = {}

local on_socket_fn, on_timer_fn -- the host's callbacks
local settle = function() end   -- the scheduler's tick (set by imageroute)
local waiter                    -- adapter: waiter(is_ready) blocks the running host coroutine
local spawner                   -- adapter: spawner(fn, on_done, ...) runs fn as a host coroutine
local flushing = false

--- Hands the socket and timer changes queued by the core to the host's callbacks. Called by
-- imageroute after each entry point; harmless to call at any time.
function M.flush()
  if flushing or not (on_socket_fn or on_timer_fn) then return end
  flushing = true
  local ok, err = pcall(function()
    -- a callback may start calls (and so new changes): drain until quiet, boundedly
    for _ = 1, 16 do
      local changes, timer_changed, seconds = core.events()
      if on_socket_fn then
        for _, c in ipairs(changes) do on_socket_fn(c[1], c[2]) end
      end
      core.close_removed() -- the host stopped watching them: now they may close
      if timer_changed and on_timer_fn then on_timer_fn(seconds) end
      if #changes == 0 and not timer_changed then break end
    end
  end)
  flushing = false
  if not ok then error(err, 0) end
end

local function set_watch()
  core.watch(on_socket_fn ~= nil or on_timer_fn ~= nil)
  M.flush()
end

--- Sets the host's socket callback: `fn(fd, what)` with `fd` an integer descriptor and `what`
-- `"in"` (watch for reading), `"out"` (writing), `"inout"` (both) or `"remove"` (stop watching).
-- Setting it reports every socket watched now. `nil` removes it.
-- @tparam function|nil fn
function M.on_socket(fn)
  assert(fn == nil or type(fn) == "function", "on_socket: a function or nil expected")
  on_socket_fn = fn
  set_watch()
end

--- Sets the host's timer callback: `fn(seconds)` asks for one call of `timer_action` after that
-- many seconds (0: as soon as possible), replacing any earlier request; `fn(nil)` cancels it.
-- The timer covers libcurl's own timeouts and the retries that are due. `nil` removes it.
-- @tparam function|nil fn
function M.on_timer(fn)
  assert(fn == nil or type(fn) == "function", "on_timer: a function or nil expected")
  on_timer_fn = fn
  set_watch()
end

--- Tells imageroute that socket `fd` is ready: moves its bytes, hands finished calls and partial
-- images to their coroutines and callbacks, and reports the socket and timer changes.
-- @tparam integer fd the descriptor given to the socket callback
-- @tparam[opt] string what `"in"`, `"out"`, `"inout"`, `"err"`, or nil to let libcurl check
-- @treturn integer how many transfers are still live
function M.socket_action(fd, what)
  local live = core.socket_action(fd, what)
  settle()
  M.flush()
  return live
end

--- Tells imageroute that the timer asked for by the timer callback fired.
-- @treturn integer how many transfers are still live
function M.timer_action()
  local live = core.timer_action()
  settle()
  M.flush()
  return live
end

--- For imageroute's scheduler: the function that resumes coroutines whose calls finished.
-- @tparam function fn
function M.set_settle(fn)
  settle = fn
end

--- For adapters: installs (or with nil removes) the waiter and the spawner.
-- `waiter(is_ready)` must suspend the running host coroutine until `is_ready()` returns true,
-- checking it after each `socket_action`/`timer_action`, and return what followed the true.
-- `spawner(fn, on_done, ...)` runs fn as a host coroutine and returns a handle (or nil to let the
-- scheduler run it).
-- @tparam function|nil wait_fn
-- @tparam[opt] function|nil spawn_fn
function M.set_waiter(wait_fn, spawn_fn)
  waiter, spawner = wait_fn, spawn_fn
end

--- True when a waiter is installed and the running coroutine may yield.
-- @treturn boolean
function M.can_wait()
  return waiter ~= nil and coroutine.isyieldable()
end

--- Waits through the installed waiter.
-- @tparam function is_ready returns true (and the values to return) once the wait is over
function M.wait(is_ready)
  return waiter(is_ready)
end

--- For adapters: the handle `attach` returns. `handle.attached` is true until `handle.detach()`, which
-- (once) removes the waiter, the spawner and the socket and timer callbacks, then calls `cleanup`:
-- imageroute calls made afterwards block as without a host loop.
-- @tparam function cleanup the adapter's own undoing (stop its watchers, wake its waiting coroutines)
-- @treturn table handle `{attached =, detach =}`
function M.handle(cleanup)
  local handle = {attached = true}
  function handle.detach()
    if not handle.attached then return end
    handle.attached = false
    M.set_waiter(nil)
    M.on_socket(nil)
    M.on_timer(nil)
    cleanup()
  end
  return handle
end

--- Runs fn through the adapter's spawner, if there is one.
-- @return the adapter's handle, or nil when imageroute's scheduler should run fn
function M.spawn(fn, on_done, ...)
  if spawner then return spawner(fn, on_done, ...) end
  return nil
end

return M
