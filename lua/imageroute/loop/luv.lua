--- imageroute.loop.luv: runs imageroute on a luv (libuv) loop.
--
--    local uv = require("luv")
--    local handle = require("imageroute.loop.luv").attach()
--    coroutine.wrap(function()
--      local res = assert(imageroute.generate(route, {prompt = "a fox"}))  -- yields meanwhile
--      handle:detach()
--    end)()
--    uv.run()
--
-- After `attach`, libcurl's sockets are watched with uv poll handles and its timer with a uv
-- timer on the default loop, and an imageroute call made from a coroutine (one the program
-- resumes, as luv programs do) yields that coroutine until its transfer is done, then resumes it
-- from the loop; calls made outside coroutines still block as usual. `spawn`, `run` and `batch`
-- work as without a host loop, driven by the uv loop.
-- @module imageroute.loop.luv

local uv = require("luv")
local hostloop = require("imageroute.hostloop")

local M = {}

local EVENTS = {["in"] = "r", out = "w", inout = "rw"}
local unpack = table.unpack

local function what_of(events)
  if not events then return nil end
  local r, w = events:find("r", 1, true), events:find("w", 1, true)
  if r and w then return "inout" elseif r then return "in" elseif w then return "out" end
  return nil
end

--- Attaches imageroute to luv's default loop.
-- @treturn table handle with `:detach()` (closes the uv handles; later calls block as usual)
function M.attach()
  local polls = {}         -- fd -> uv poll handle
  local timer = uv.new_timer()
  local sleepers = {}      -- {co =, is_ready =}

  -- resumes the coroutines whose calls are over (after every socket or timer action)
  local function wake_sleepers()
    local i = 1
    while i <= #sleepers do
      local s = sleepers[i]
      local r = table.pack(s.is_ready())
      if r[1] then
        table.remove(sleepers, i)
        local ok, err = coroutine.resume(s.co, unpack(r, 2, r.n))
        if not ok then error(debug.traceback(s.co, err), 0) end
      else
        i = i + 1
      end
    end
  end

  hostloop.on_socket(function(fd, what)
    local p = polls[fd]
    if what == "remove" then
      if p then
        polls[fd] = nil
        p:stop()
        p:close()
      end
      return
    end
    if not p then
      p = uv.new_socket_poll(fd)
      polls[fd] = p
    end
    p:start(EVENTS[what], function(_, events)
      hostloop.socket_action(fd, what_of(events))
      wake_sleepers()
    end)
  end)
  hostloop.on_timer(function(seconds)
    timer:stop()
    if seconds then
      timer:start(math.max(0, math.ceil(seconds * 1000)), 0, function()
        hostloop.timer_action()
        wake_sleepers()
      end)
    end
  end)
  hostloop.set_waiter(function(is_ready)
    local r = table.pack(is_ready())
    if r[1] then return unpack(r, 2, r.n) end
    sleepers[#sleepers + 1] = {co = coroutine.running(), is_ready = is_ready}
    return coroutine.yield()
  end)

  return hostloop.handle(function() -- detach closes the uv handles
    for fd, p in pairs(polls) do
      polls[fd] = nil
      p:stop()
      p:close()
    end
    timer:stop()
    timer:close()
  end)
end

return M
