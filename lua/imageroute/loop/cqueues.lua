--- imageroute.loop.cqueues: runs imageroute inside a cqueues controller.
--
--    local cqueues = require("cqueues")
--    local cq = cqueues.new()
--    local handle = require("imageroute.loop.cqueues").attach(cq)
--    cq:wrap(function()
--      local res = assert(imageroute.generate(route, {prompt = "a fox"}))  -- yields to cq meanwhile
--    end)
--    assert(cq:loop())
--    handle:detach()
--
-- After `attach`, imageroute calls made from any of cq's coroutines yield to cq until their
-- transfer is done (other coroutines, a lua-http server say, keep running); `spawn`, `run` and
-- `batch` run their functions as cq's coroutines, so a cqueues yield inside them (cqueues.sleep,
-- a socket read) works as anywhere in cq. One coroutine of cq watches libcurl's sockets and timer
-- (`imageroute.on_socket`/`on_timer`). Calls made outside cq's coroutines still block as usual.
-- Attach one controller at a time.
-- @module imageroute.loop.cqueues

local cqueues = require("cqueues")
local condition = require("cqueues.condition")
local hostloop = require("imageroute.hostloop")

local M = {}

local EVENTS = {["in"] = "r", out = "w", inout = "rw"}
local unpack = table.unpack

--- Attaches imageroute to a cqueues controller.
-- @param cq a controller from `cqueues.new()`
-- @treturn table handle with `:detach()` (stops watching; calls made later block as usual)
function M.attach(cq)
  assert(cq and cq.wrap, "attach: a cqueues controller expected")
  local watched = {}            -- fd -> pollable {pollfd =, events =}
  local timer_at                -- monotonic seconds, or nil
  local wake = condition.new()  -- the sockets or the timer changed
  local settled = condition.new() -- imageroute moved: waiting coroutines check their call
  -- detach stops watching: wakes the watcher and the waiting coroutines
  local handle = hostloop.handle(function() wake:signal(); settled:signal() end)

  hostloop.on_socket(function(fd, what)
    if what == "remove" then
      watched[fd] = nil
      cqueues.cancel(fd) -- before libcurl closes it (imageroute defers the close until now)
    else
      watched[fd] = {pollfd = fd, events = EVENTS[what]}
    end
    wake:signal()
  end)
  hostloop.on_timer(function(seconds)
    timer_at = seconds and cqueues.monotime() + seconds or nil
    wake:signal()
  end)

  hostloop.set_waiter(function(is_ready)
    while true do
      local r = table.pack(is_ready())
      if r[1] then return unpack(r, 2, r.n) end
      settled:wait()
    end
  end, function(fn, on_done, ...)
    local args = table.pack(...)
    local co = coroutine.create(function()
      local r = table.pack(pcall(fn, unpack(args, 1, args.n)))
      settled:signal() -- whoever waits on this function's end (run, batch) checks again
      on_done(unpack(r, 1, r.n))
    end)
    cq:attach(co)
    return co
  end)

  cq:wrap(function()
    while handle.attached do
      local list = {wake}
      for _, p in pairs(watched) do list[#list + 1] = p end
      if timer_at then list[#list + 1] = math.max(0, timer_at - cqueues.monotime()) end
      local ready = {cqueues.poll(unpack(list))}
      if not handle.attached then break end
      for _, p in ipairs(ready) do
        if type(p) == "table" and watched[p.pollfd] == p then hostloop.socket_action(p.pollfd) end
      end
      if timer_at and cqueues.monotime() >= timer_at then
        timer_at = nil
        hostloop.timer_action()
      end
      settled:signal()
    end
  end)

  return handle
end

return M
