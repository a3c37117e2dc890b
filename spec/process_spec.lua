-- The local server's process helper (imageroute.localserver.process: start on a free loopback
-- port, wait until it listens, stop by pid), shared by the command line, the specs and the
-- benchmarks; and luasocket, which only the local server and that helper need.
local socket = require("socket")
local process = require("imageroute.localserver.process")

local src = debug.getinfo(1, "S").source
local ROOT = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/[^/]*$") or "."

local function health(port)
  local c = assert(socket.connect("127.0.0.1", port))
  c:settimeout(5)
  assert(c:send("GET /__health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
  local text = c:receive("*a")
  c:close()
  return text
end

describe("imageroute.localserver.process", function()
  it("starts the local server (lua -e, this process's paths) on a free port and stops it by pid", function()
    local s = assert(process.start{lua = "lua5.4"})
    assert.is_true(s.port > 0)
    assert.equal("http://127.0.0.1:" .. s.port .. "/v1", s.base_url)
    assert.truthy(health(s.port):find('"port":' .. s.port, 1, true))
    assert.is_false(process.gone(s.pid))
    s:stop()
    assert.is_true(process.gone(s.pid))
    assert.is_nil(io.open(s.log_file)) -- its log is removed
    assert.is_nil(socket.connect("127.0.0.1", s.port))
    s:stop() -- idempotent
  end)

  it("starts bin/imageroute-localserver as a script, and gives its output back when it never listens", function()
    local s = assert(process.start{lua = "lua5.4", script = ROOT .. "/bin/imageroute-localserver"})
    assert.truthy(health(s.port):find('"ok":true', 1, true))
    s:stop()
    assert.is_true(process.gone(s.pid))

    local t0 = socket.gettime()
    local none, why, log = process.start{lua = "lua5.4", script = ROOT .. "/bin/imageroute-localserver",
      host = "not a host name"}
    assert.is_nil(none)
    assert.equal("exited", why)
    assert.truthy(log:find("cannot listen", 1, true), log)
    assert.is_true(socket.gettime() - t0 < 5) -- it saw the process go, without waiting out the timeout
  end)

  it("reports a server that does not write its port in time, and stops it", function()
    local pid = assert(process.spawn({"lua5.4", "-e", "os.execute('sleep 30')"}))
    local port, why = process.wait_port(pid, os.tmpname(), 0.3)
    assert.is_nil(port)
    assert.equal("timeout", why)
    process.stop(pid, 1)
    assert.is_true(process.gone(pid))
  end)
end)

describe("luasocket", function()
  it("is required by the local server and its process helper only", function()
    -- every module of the tree, loaded in a Lua where `require("socket")` is recorded and refused
    local mods = {}
    local p = assert(io.popen("cd " .. ROOT .. " && find lua -name '*.lua' | sort"))
    for f in p:lines() do
      mods[#mods + 1] = f:gsub("^lua/", ""):gsub("%.lua$", ""):gsub("/init$", ""):gsub("/", ".")
    end
    p:close()
    local script = os.tmpname()
    local f = assert(io.open(script, "w"))
    f:write([[
      table.insert(package.searchers, 1, function(name)
        if name == "socket" or name:match("^socket%.") then
          io.write("socket wanted\n")
          error("no luasocket here")
        end
      end)
      for m in io.read("a"):gmatch("%S+") do
        local ok, err = pcall(require, m)
        io.write(m, " ", ok and "ok" or tostring(err):match("no luasocket here") and "socket" or "other", "\n")
      end
    ]])
    f:close()
    local input = os.tmpname()
    f = assert(io.open(input, "w"))
    f:write(table.concat(mods, "\n"))
    f:close()
    p = assert(io.popen("lua5.4 " .. script .. " < " .. input .. " 2>&1"))
    local out = p:read("a")
    p:close()
    os.remove(script)
    os.remove(input)
    local needs = {}
    for m, how in out:gmatch("(%S+) (%a+)\n") do
      if how == "socket" then needs[#needs + 1] = m end
    end
    table.sort(needs)
    -- the modules that need it, and only them; the library and the command line load without it
    for _, m in ipairs(needs) do assert.matches("^imageroute%.localserver", m) end
    assert.truthy(out:find("\nimageroute ok\n", 1, true) or out:find("^imageroute ok\n"), out)
    assert.truthy(out:find("\nimageroute.cli ok\n", 1, true), out)
    assert.truthy(out:find("\nimageroute.localserver socket\n", 1, true), out)
    assert.truthy(out:find("\nimageroute.localserver.process socket\n", 1, true), out)
  end)
end)
