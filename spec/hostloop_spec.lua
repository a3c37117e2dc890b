-- imageroute inside other programs' loops: the socket/timer callbacks, the cqueues and luv
-- adapters in real hosts (a lua-http server on cqueues, a luv app), host yields passing through
-- the scheduler, and descriptors above 1023.
local imageroute = require("imageroute")
local socket = require("socket")
local server = require("support.server")
local fx = require("support.fixtures")

-- Debian packages lua-http's pure-Lua dependencies for Lua 5.1-5.3 only; they load on 5.4.
local function add_lua53_paths()
  for _, v in ipairs{"5.3", "5.2", "5.1"} do
    local p = ("/usr/share/lua/%s/?.lua;/usr/share/lua/%s/?/init.lua"):format(v, v)
    if not package.path:find(p, 1, true) then package.path = package.path .. ";" .. p end
  end
end

describe("host loops", function()
  local s = server.for_block()

  it("on_socket/on_timer drive calls from a hand-written select loop, one to one with libcurl", function()
    local watched, timer_at, seen = {}, nil, {}
    imageroute.on_socket(function(fd, what)
      seen[#seen + 1] = what
      if what == "remove" then watched[fd] = nil else watched[fd] = what end
    end)
    imageroute.on_timer(function(seconds) timer_at = seconds and socket.gettime() + seconds or nil end)
    local route = fx.behaving(s, {delay = 0.3}, {max_retries = 0})
    local results = {}
    for i = 1, 3 do
      imageroute.spawn(function() results[i] = {imageroute.generate(route, {prompt = "p" .. i})} end)
    end
    local t0 = socket.gettime()
    while #results < 3 and socket.gettime() - t0 < 10 do
      local r, w = {}, {}
      for fd, what in pairs(watched) do
        local obj = {getfd = function() return fd end, dirty = function() return false end, fd = fd}
        if what ~= "out" then r[#r + 1] = obj end
        if what ~= "in" then w[#w + 1] = obj end
      end
      local wait = timer_at and math.max(0, timer_at - socket.gettime()) or 1
      local rr, ww = socket.select(r, w, wait)
      for _, o in ipairs(rr) do imageroute.socket_action(o.fd, "in") end
      for _, o in ipairs(ww) do imageroute.socket_action(o.fd, "out") end
      if timer_at and socket.gettime() >= timer_at then timer_at = nil; imageroute.timer_action() end
    end
    local wall = socket.gettime() - t0
    imageroute.on_socket(nil)
    imageroute.on_timer(nil)
    for i = 1, 3 do assert.truthy(results[i][1], tostring(results[i][2])) end
    assert.is_true(wall < 0.9, "three 0.3 s calls ran at once: " .. wall)
    local kinds = {}
    for _, w in ipairs(seen) do kinds[w] = true end
    assert.is_true(kinds["in"] or kinds["inout"] or false)
    assert.is_true(kinds.remove or false)
  end)

  it("a yield that is not imageroute's own passes through spawn to the enclosing coroutine", function()
    local got
    local outer = coroutine.create(function()
      imageroute.spawn(function() got = coroutine.yield("host-value") end)
      return "outer done"
    end)
    local ok, v = coroutine.resume(outer)
    assert.is_true(ok)
    assert.equal("host-value", v)           -- the spawned function's yield reached the host
    ok, v = coroutine.resume(outer, 42)      -- the host answers
    assert.is_true(ok)
    assert.equal("outer done", v)
    assert.equal(42, got)                    -- and the answer came back to the spawned function
  end)

  it("luv: calls from coroutines yield to the uv loop, which keeps ticking", function()
    local uv = require("luv")
    local handle = require("imageroute.loop.luv").attach()
    local route = fx.behaving(s, {delay = 0.5}, {max_retries = 0})
    local t0 = uv.hrtime()
    local results, maxgap, last = {}, 0, uv.hrtime()
    local ticker = uv.new_timer()
    ticker:start(10, 10, function()
      local now = uv.hrtime()
      maxgap = math.max(maxgap, (now - last) / 1e6)
      last = now
    end)
    local guard = uv.new_timer()
    guard:start(10000, 0, function() uv.stop() end)
    for i = 1, 4 do
      coroutine.wrap(function()
        results[i] = {imageroute.generate(route, {prompt = "fox " .. i})}
        if #results == 4 and results[1] and results[2] and results[3] then
          ticker:stop(); ticker:close(); guard:stop(); guard:close(); handle:detach()
        end
      end)()
    end
    uv.run()
    local wall = (uv.hrtime() - t0) / 1e9
    for i = 1, 4 do assert.truthy(results[i] and results[i][1], results[i] and tostring(results[i][2])) end
    assert.is_true(wall < 1.5, "four 0.5 s calls at once took " .. wall)
    assert.is_true(maxgap < 150, "the uv timer stalled " .. maxgap .. " ms")
  end)

  it("cqueues: a lua-http server keeps answering /health while /generate runs a batch", function()
    add_lua53_paths()
    local cqueues = require("cqueues")
    local http_server = require("http.server")
    local http_headers = require("http.headers")
    local request = require("http.request")
    local route = fx.behaving(s, {delay = 1}, {max_retries = 0})
    local cq = cqueues.new()
    local handle = require("imageroute.loop.cqueues").attach(cq)
    local srv = assert(http_server.listen{host = "127.0.0.1", port = 0, cq = cq, onstream = function(_, st)
      local path = st:get_headers():get(":path")
      local body = "ok"
      if path == "/generate" then
        local jobs = {}
        for i = 1, 4 do jobs[i] = {route = route, params = {prompt = "job " .. i}} end
        local ids = {}
        for _, r in ipairs(imageroute.batch(jobs, {max_in_flight = 4})) do
          ids[#ids + 1] = r.ok and r.result.request_id or ("error: " .. tostring(r.error))
        end
        body = table.concat(ids, ",")
      end
      local h = http_headers.new()
      h:append(":status", "200")
      st:write_headers(h, false)
      st:write_chunk(body, true)
    end})
    assert(srv:listen())
    local _, _, port = srv:localname()
    local t0 = cqueues.monotime()
    local generated, gen_time, health, slept
    cq:wrap(function()
      local _, st = assert(request.new_from_uri(("http://127.0.0.1:%d/generate"):format(port)):go(10))
      generated = st:get_body_as_string()
      gen_time = cqueues.monotime() - t0
    end)
    cq:wrap(function()
      health = {}
      cqueues.sleep(0.05)
      while not generated and cqueues.monotime() - t0 < 10 do
        local t = cqueues.monotime()
        local _, st = assert(request.new_from_uri(("http://127.0.0.1:%d/health"):format(port)):go(5))
        assert.equal("ok", st:get_body_as_string())
        health[#health + 1] = cqueues.monotime() - t
        cqueues.sleep(0.05)
      end
      handle:detach()
      srv:close()
    end)
    cq:wrap(function()
      imageroute.spawn(function() -- a host yield inside an imageroute flow is kept
        local t = cqueues.monotime()
        cqueues.sleep(0.2)
        slept = cqueues.monotime() - t
      end)
    end)
    assert(cq:loop())
    local ids = {}
    for id in generated:gmatch("[^,]+") do ids[#ids + 1] = id end
    assert.equal(4, #ids)
    for _, id in ipairs(ids) do assert.matches("^req_", id) end
    assert.is_true(gen_time < 1.8, "4 x 1 s in parallel took " .. gen_time)
    assert.is_true(#health >= 5, "health answered " .. #health .. " times")
    table.sort(health)
    assert.is_true(health[#health] < 0.2, "/health waited " .. health[#health] .. " s")
    assert.is_true(slept >= 0.19, "cqueues.sleep inside spawn returned after " .. tostring(slept))
  end)

  it("works with descriptors above 1023 (poll, not select)", function()
    local script = [[
      local imageroute = require("imageroute")
      local socket = require("socket")
      local keep = {}
      for i = 1, 1100 do keep[i] = assert(io.open("/dev/null")) end
      local route = assert(imageroute.route{name = "t", model = "gpt-image-1", base_url = arg[1],
        max_retries = 0, headers = {["x-imageroute-test"] = '{"delay":1}'}})
      local maxfd = 0
      local jobs = {}
      for i = 1, 8 do jobs[i] = {route = route, params = {prompt = "p" .. i}} end
      imageroute.spawn(function()
        while true do
          local r, w = imageroute.fds()
          for _, fd in ipairs(r) do maxfd = math.max(maxfd, fd) end
          for _, fd in ipairs(w) do maxfd = math.max(maxfd, fd) end
          if imageroute.core.pending() == 0 and maxfd > 0 then return end
          coroutine.yield()
        end
      end, function() end)
      local t0 = socket.gettime()
      local results = imageroute.batch(jobs, {max_in_flight = 8})
      local ok = 0
      for _, r in ipairs(results) do if r.ok then ok = ok + 1 end end
      io.write(string.format("ok=%d wall=%.3f maxfd=%d\n", ok, socket.gettime() - t0, maxfd))
    ]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local p = assert(io.popen("ulimit -n 4096 && lua5.4 " .. path .. " '" .. s.base_url .. "' 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove(path)
    local ok, wall, maxfd = out:match("ok=(%d+) wall=([%d.]+) maxfd=(%d+)")
    assert.truthy(ok, out)
    assert.equal(8, tonumber(ok))
    assert.is_true(tonumber(maxfd) > 1023, "the watched descriptors were " .. out)
    assert.is_true(tonumber(wall) < 2.0, "eight 1 s calls with 1,100 descriptors open took " .. wall)
  end)
end)
