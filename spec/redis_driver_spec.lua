-- imageroute.redis, the optional C module over hiredis: replies turned into Lua values, errors
-- returned (never raised while a command is half done), a timed-out or broken connection closed.
local redis = require("support.redis")
local socket = require("socket")

redis.describe("imageroute.redis", function()
  local r = redis.for_block()
  local driver
  setup(function() driver = require("imageroute.redis") end)

  it("turns replies into Lua values and keeps the connection after an error reply", function()
    local c = assert(driver.connect("127.0.0.1", r.port, 0.2, 0.2))
    assert.matches("^0%.14%.", driver.hiredis_version)
    assert.same({true, "OK"}, {c:call("SET", "k", 42)})           -- a number argument as its text
    assert.same({true, "42"}, {c:call("GET", "k")})
    assert.same({true, 43}, {c:call("INCR", "k")})
    local ok, v = c:call("GET", "missing")
    assert.is_true(ok)
    assert.is_nil(v)
    local _, arr = c:call("EVAL", "return {1, {'a', false}, 'b'}", 0)
    assert.same({1, {"a", false, n = 2}, "b", n = 3}, arr) -- a nil element (Lua false in a script) is false
    local _, mixed = c:call("MGET", "k", "missing", "k")
    assert.same({"43", false, "43", n = 3}, mixed)
    local eok, msg, kind = c:call("NOSUCHCOMMAND", "x")
    assert.is_nil(eok)
    assert.matches("unknown command", msg)
    assert.equal("reply", kind)
    assert.same({true, "PONG"}, {c:call("PING")}) -- still usable
    local bin = "a\0b\255"
    c:call("SET", "bin", bin)
    assert.same({true, bin}, {c:call("GET", "bin")})
    c:close()
    c:close() -- idempotent
    assert.is_true(c:closed())
    assert.same({nil, "the Redis connection is closed", "io"}, {c:call("PING")})
  end)

  it("raises on wrong arguments before sending; a reply nested deeper than hiredis reads is an io error", function()
    local c = assert(driver.connect("127.0.0.1", r.port, 0.2, 0.2))
    assert.has_error(function() c:call() end)
    assert.has_error(function() c:call("SET", {}, 1) end)
    local many = {}
    for i = 1, 70 do many[i] = "x" end
    assert.has_error(function() c:call("MGET", table.unpack(many)) end)
    assert.has_error(function() driver.connect("127.0.0.1", 0) end)
    local _, seven = c:call("EVAL", "return {{{{{{{1}}}}}}}", 0)
    assert.equal(1, seven[1][1][1][1][1][1][1])
    local ok, msg, kind = c:call("EVAL", "return {{{{{{{{{{1}}}}}}}}}}", 0)
    assert.is_nil(ok)
    assert.equal("io", kind)
    assert.matches("depth > 7", msg)
    assert.is_true(c:closed(), "a reply hiredis could not read leaves the stream out of step: dropped")
  end)

  it("returns io errors: nothing listening, a server that never answers, a connection the server closed", function()
    local _, msg, kind = driver.connect("127.0.0.1", redis.free_port(), 0.2, 0.2)
    assert.equal("io", kind)
    assert.matches("Connection refused", msg)
    local mute = assert(socket.bind("127.0.0.1", 0))
    local _, mport = mute:getsockname()
    local c = assert(driver.connect("127.0.0.1", tonumber(mport), 0.2, 0.03))
    local t0 = socket.gettime()
    local ok, tmsg, tkind = c:call("PING")
    local dt = socket.gettime() - t0
    mute:close()
    assert.is_nil(ok)
    assert.equal("io", tkind)
    assert.is_string(tmsg)
    assert.is_true(dt >= 0.025 and dt < 0.2, "bounded by the 30 ms timeout: " .. dt)
    assert.is_true(c:closed(), "a timed-out context is dropped (its reply could come later)")
    local k = assert(driver.connect("127.0.0.1", r.port, 0.2, 0.2))
    local _, id = k:call("CLIENT", "ID")
    assert.same({true, 1}, {k:call("CLIENT", "KILL", "ID", id, "SKIPME", "no")}) -- kills this very connection
    local _, kmsg, kkind = k:call("PING")
    assert.equal("io", kkind)
    assert.is_string(kmsg)
    assert.is_true(k:closed())
    assert.matches("closed", tostring(k))
  end)
end)
