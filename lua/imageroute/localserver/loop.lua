--- imageroute.localserver.loop: one thread, non-blocking luasocket sockets, `socket.select` and
-- one coroutine per connection. A connection coroutine waits with `wait` / `sleep` (it yields the
-- socket, the mode and a deadline to the loop); `run` listens and drives them.
-- @module imageroute.localserver.loop

local socket = require("socket")
local S = require("imageroute.localserver.state")

local format = string.format
local gettime = socket.gettime
local max, min = math.max, math.min
local co_create, co_resume, co_status, co_yield =
  coroutine.create, coroutine.resume, coroutine.status, coroutine.yield
local pairs, ipairs, tostring, tonumber = pairs, ipairs, tostring, tonumber
local io_open, os_rename, os_remove, os_exit = io.open, os.rename, os.remove, os.exit
local state, logf = S.state, S.logf

local L = {}

-- Wait until `sock` is ready for `mode` ("r"/"w") or until `deadline` (socket.gettime() seconds).
-- Returns "ready" or "timeout".
local function wait(sock, mode, deadline)
  return co_yield(sock, mode, deadline)
end

local function sleep(seconds)
  if seconds and seconds > 0 then wait(nil, nil, gettime() + seconds) end
end
L.wait, L.sleep = wait, sleep

local MAX_CONNECTIONS = 900 -- stays below FD_SETSIZE for select()

local function process_alive(pid)
  local f = io_open("/proc/" .. pid .. "/stat", "r")
  if not f then return false end
  local line = f:read("l") or ""
  f:close()
  local st = line:match("^%d+ %b() (%a)")
  return st ~= "Z" and st ~= "X"
end

--- Listen and serve forever (never returns; raises if it cannot listen).
-- @tparam table opts as for `imageroute.localserver.serve`
-- @tparam function handle_connection called in a new coroutine with each accepted client socket
function L.run(opts, handle_connection)
  opts = opts or {}
  state.quiet = opts.quiet and true or false
  local host = opts.host or "127.0.0.1"
  local server, err = socket.bind(host, tonumber(opts.port) or 0, 1024) -- sets reuseaddr
  if not server then error(format("localserver: cannot listen on %s:%s: %s", host, tostring(opts.port), err)) end
  server:settimeout(0)
  local _, port = server:getsockname()
  state.port = tonumber(port)
  if opts.port_file then
    local tmp = opts.port_file .. ".tmp"
    local f = assert(io_open(tmp, "w"))
    f:write(tostring(state.port), "\n")
    f:close()
    assert(os_rename(tmp, opts.port_file))
  end
  logf("imageroute localserver listening on http://%s:%d/v1", host, state.port)

  local tasks = {}   -- coroutine -> {sock, mode, deadline}
  local ntasks = 0
  local owner_pid = tonumber(opts.owner_pid)
  local next_owner_check = 0

  local function step(co, arg)
    local ok, sock, mode, deadline = co_resume(co, arg)
    if not ok then logf("localserver: coroutine error: %s", tostring(sock)) end
    if not ok or co_status(co) == "dead" then
      if tasks[co] then tasks[co] = nil; ntasks = ntasks - 1 end
      return
    end
    local w = tasks[co]
    if not w then w = {}; tasks[co] = w; ntasks = ntasks + 1 end
    w[1], w[2], w[3] = sock, mode, deadline
  end

  while true do
    local recvt, sendt, owner = {}, {}, {}
    local nearest
    if ntasks < MAX_CONNECTIONS then recvt[1] = server end
    for co, w in pairs(tasks) do
      local sock, mode, deadline = w[1], w[2], w[3]
      if sock then
        owner[sock] = co
        if mode == "w" then sendt[#sendt + 1] = sock else recvt[#recvt + 1] = sock end
      end
      if deadline and (not nearest or deadline < nearest) then nearest = deadline end
    end
    local now = gettime()
    local timeout = 1.0
    if nearest then timeout = min(timeout, max(0, nearest - now)) end
    local readable, writable = socket.select(recvt, sendt, timeout)
    local ready = {}
    for _, sock in ipairs(readable) do
      if sock == server then
        for _ = 1, 64 do
          local client = server:accept()
          if not client then break end
          client:settimeout(0)
          client:setoption("tcp-nodelay", true)
          step(co_create(handle_connection), client)
        end
      elseif owner[sock] then
        ready[owner[sock]] = true
      end
    end
    for _, sock in ipairs(writable) do
      if owner[sock] then ready[owner[sock]] = true end
    end
    now = gettime()
    local runs = {}
    for co, w in pairs(tasks) do
      if ready[co] then runs[#runs + 1] = {co, "ready"}
      elseif w[3] and w[3] <= now then runs[#runs + 1] = {co, "timeout"} end
    end
    for _, r in ipairs(runs) do
      if tasks[r[1]] then step(r[1], r[2]) end
    end
    if owner_pid and now >= next_owner_check then
      next_owner_check = now + 1
      if not process_alive(owner_pid) then
        logf("localserver: owner process %d is gone, exiting", owner_pid)
        if opts.port_file then os_remove(opts.port_file) end
        os_exit(0)
      end
    end
  end
end

return L
