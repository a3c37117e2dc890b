-- Shared state: limits and budgets in a real redis-server (started here on a free loopback port,
-- stopped by its pid), shared by several lua5.4 processes; leases that a crashed process stops
-- renewing expire; a store that cannot be reached refuses the call unless on_state_error = "local".
local imageroute = require("imageroute")
local core = require("imageroute.core")
local state = require("imageroute.state")
local server = require("support.server")
local fx = require("support.fixtures")
local redis = require("support.redis")
local socket = require("socket")

local ROOT = (function()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/[^/]*$") or "."
  return dir
end)()
local WORKER = ROOT .. "/spec/support/state_worker.lua"

-- runs the workers (argument lists) at once, waits for all; returns their output lines
local function run_workers(list)
  local outs, cmd = {}, {}
  for i, args in ipairs(list) do
    outs[i] = os.tmpname()
    local q = {}
    for k, a in ipairs(args) do q[k] = "'" .. tostring(a) .. "'" end
    cmd[#cmd + 1] = ("lua5.4 %s %s >%s 2>&1 &"):format(WORKER, table.concat(q, " "), outs[i])
  end
  assert(os.execute(table.concat(cmd, " ") .. " wait"))
  local lines = {}
  for i, f in ipairs(outs) do
    lines[i] = {}
    for l in io.lines(f) do lines[i][#lines[i] + 1] = l end
    os.remove(f)
  end
  return lines
end

local function tally(lines)
  local n = {ok = 0, err = {}, max_ms = 0, total_ms = 0, store_calls = 0}
  for _, proc in ipairs(lines) do
    for _, l in ipairs(proc) do
      if l == "ok" then n.ok = n.ok + 1
      elseif l:match("^err ") then n.err[#n.err + 1] = l
      elseif l:match("^stats ") then
        local calls, ms, total = l:match("^stats (%d+) ([%d.]+) ([%d.]+)")
        n.store_calls = n.store_calls + tonumber(calls)
        n.max_ms = math.max(n.max_ms, tonumber(ms))
        n.total_ms = n.total_ms + tonumber(total)
      else error("worker said: " .. l) end
    end
  end
  return n
end

-- the most requests the server received within any `window` seconds
local function most_in_window(s, window)
  local t = {}
  for _, r in ipairs(s:requests()) do t[#t + 1] = r.t_start end
  table.sort(t)
  local most, j = 0, 1
  for i = 1, #t do
    while t[i] - t[j] >= window do j = j + 1 end
    most = math.max(most, i - j + 1)
  end
  return most, #t
end

describe("the Redis URL", function()
  it("is parsed here: user, password, host, port, database; rediss:// and bad URLs are refused", function()
    assert.same({host = "127.0.0.1", port = 6379, db = 0}, state.parse_url("redis://127.0.0.1"))
    assert.same({host = "cache.internal", port = 6380, db = 3, user = "app", password = "p@ss:w"},
      state.parse_url("redis://app:p%40ss:w@cache.internal:6380/3"))
    assert.same({host = "::1", port = 7000, db = 0, password = "secret"},
      state.parse_url("redis://:secret@[::1]:7000/"))
    local _, tls = state.parse_url("rediss://127.0.0.1:6380/0")
    assert.matches("rediss:// %(Redis over TLS%) is not supported", tls)
    for _, bad in ipairs{"http://x", "redis://", "redis://h:0", "redis://h:70000", "redis://h/x", "redis://h:p",
      "redis://h/1/2", "redis://h o"} do
      assert.is_nil((state.parse_url(bad)), bad)
    end
    local _, err = imageroute.route{name = "tls-state", state = "rediss://127.0.0.1:6380/0"}
    assert.equal("state", err.field)
    assert.matches("not supported", err.message)
    local _, berr = imageroute.budget{name = "tls-budget", usd = 1, state = "rediss://h"}
    assert.equal("state", berr.field)
    local _, verr = imageroute.route{name = "bad-policy", on_state_error = "ignore"}
    assert.equal("on_state_error", verr.field)
    -- a routes file: its stores are URLs, checked when it loads
    local dir = fx.tmpdir()
    local f = assert(io.open(dir .. "/routes.lua", "w"))
    f:write('return {official = {model = "gpt-image-1", state = "rediss://127.0.0.1:6380/0"}}')
    f:close()
    local _, ferr = imageroute.routes.load(dir .. "/routes.lua")
    os.execute("rm -rf " .. dir)
    assert.equal("state", ferr.field)
    assert.matches("route 'official': rediss://", ferr.message)
  end)
end)

describe("an install without the Redis module", function()
  it("builds and runs everything else; a Redis store says what is missing", function()
    -- a cpath holding the core alone, as `make build WITH_REDIS=0` or the main rock installs it
    local dir = fx.tmpdir()
    local core_so = package.searchpath("imageroute.core", package.cpath)
    assert(os.execute(("mkdir -p %s/imageroute && ln -s \"$(readlink -f %s)\" %s/imageroute/core.so"):format(dir,
      core_so, dir)))
    local s = server.start()
    local script = ([[
      local imageroute = require("imageroute")
      assert(not pcall(require, "imageroute.redis"))
      local store, err = imageroute.state.redis{url = "redis://127.0.0.1:1/0"}
      assert(store == nil and err.kind == "state" and err.code == "redis_unavailable", tostring(err))
      local route = assert(imageroute.route{name = "m", base_url = %q, model = "gpt-image-1", api_key = "sk-x",
        limits = {requests = 5, window = 1}, budget = imageroute.budget{name = "b", usd = 1}})
      local res = assert(imageroute.generate(route, {prompt = "p", size = "1024x1024", quality = "low"}))
      print(err.message, #res.images)
    ]]):format(s.base_url)
    local p = assert(io.popen(("LUA_CPATH='%s/?.so;;' lua5.4 -e %q 2>&1"):format(dir, script)))
    local out = p:read("a")
    p:close()
    s:stop()
    os.execute("rm -rf " .. dir)
    assert.matches("the C module imageroute.redis %(hiredis%) is not installed.*\t1\n$", out)
  end)
end)

redis.describe("state in Redis", function()
  local s = server.for_block()
  local r = redis.for_block()
  before_each(function() r:call("FLUSHDB") end)

  it("holds a limit of N requests per window across 4 processes (counted at the server)", function()
    local N, W = 4, 1
    local lines = run_workers{
      {"limit", s.base_url, r.url, N, W, 3}, {"limit", s.base_url, r.url, N, W, 3},
      {"limit", s.base_url, r.url, N, W, 3}, {"limit", s.base_url, r.url, N, W, 3}}
    local n = tally(lines)
    assert.equal(12, n.ok, table.concat(n.err, "; "))
    -- admission is at the client, arrival at the server: a few ms of transport jitter apart
    local most, total = most_in_window(s, W - 0.05)
    assert.equal(12, total)
    assert.is_true(most <= N, ("at most %d in any window, got %d"):format(N, most))
    -- store calls are short (a fraction of a ms on a quiet host: make bench), a few ms on average
    -- with 4 clients, the server and Redis starting at once on a busy host; the longest within the
    -- default timeouts (connect 50 ms + command 50 ms) and some scheduling slack
    local mean = n.total_ms / n.store_calls
    assert.is_true(mean < 25, "store calls take a few ms on average: " .. mean)
    assert.is_true(n.max_ms < 150, "no store call held the loop beyond its timeouts: " .. n.max_ms)
    -- the same 4 processes with their limits in memory: each holds its own window, 4 x N get through
    s:reset()
    local control = tally(run_workers{
      {"limit", s.base_url, "memory", N, W, 3}, {"limit", s.base_url, "memory", N, W, 3},
      {"limit", s.base_url, "memory", N, W, 3}, {"limit", s.base_url, "memory", N, W, 3}})
    assert.equal(12, control.ok)
    local most_mem = most_in_window(s, W - 0.05)
    assert.is_true(most_mem > N, "without a shared store the limit does not hold: " .. most_mem)
  end)

  it("refuses, across processes, the call that would exceed a shared budget", function()
    -- 0.50 USD at a flat 0.10 per call: five calls fit among the 12 asked by 4 processes
    local n = tally(run_workers{
      {"budget", s.base_url, r.url, 0.5, 3}, {"budget", s.base_url, r.url, 0.5, 3},
      {"budget", s.base_url, r.url, 0.5, 3}, {"budget", s.base_url, r.url, 0.5, 3}})
    assert.equal(5, n.ok)
    assert.equal(7, #n.err)
    for _, e in ipairs(n.err) do assert.equal("err budget budget_exceeded", e) end
    assert.equal(5, #s:requests())
    -- the account in Redis, as this process's budget of the same name reads it
    local b = assert(imageroute.budget{name = "shared-budget", usd = 0.5, state = r.url})
    local st = b:status()
    assert.is_near(0.5, st.spent, 1e-9)
    assert.equal(0, st.reserved)
    assert.is_near(0, st.left, 1e-9)
    assert.equal(r.url, st.store)
    -- a "run" budget in Redis lasts until reset
    assert.truthy(b:reset())
    assert.equal(0, b:status().spent)
    assert.equal(0, r:call("EXISTS", "imageroute:budget:shared-budget:run"))
  end)

  it("frees the slot of a process that crashed once its lease expires, and keeps it while renewed", function()
    local ttl = 0.6
    local p = assert(io.popen(("lua5.4 %s hold %s %s %s >/dev/null 2>&1 & echo $!"):format(WORKER, s.base_url,
      r.url, ttl)))
    local pid = assert(tonumber(p:read("l")))
    p:close()
    local store = assert(imageroute.state.redis{url = r.url})
    local deadline = socket.gettime() + 10
    while #s:requests() == 0 and socket.gettime() < deadline do socket.sleep(0.02) end
    assert.equal(1, #s:requests(), "the holder's call reached the server")
    socket.sleep(3 * ttl) -- three TTLs: only renewals keep the lease
    assert.equal(0, store:free_slots("route:leased", 1), "the running call renews its lease")
    os.execute("kill -9 " .. pid)
    deadline = socket.gettime() + 5
    while not redis.process_gone(pid) and socket.gettime() < deadline do socket.sleep(0.01) end
    local t0 = core.now()
    local route = fx.route(s, {name = "leased", state = store, limits = {max_in_flight = 1}})
    local res = assert(imageroute.generate(route, {prompt = "after the crash"}))
    local waited = core.now() - t0
    assert.truthy(res.limit_wait, "the slot was still leased when the call came")
    assert.is_true(waited <= ttl + 0.5, "freed within the lease TTL: " .. waited)
    assert.equal(1, store:free_slots("route:leased", 1))
  end)

  it("refuses the call when the store is down, serves it from memory with on_state_error = local", function()
    local port = redis.free_port()
    local down = assert(imageroute.state.redis{url = ("redis://127.0.0.1:%d/0"):format(port)})
    local route = fx.route(s, {name = "down-refuse", state = down, limits = {requests = 5, window = 1}})
    local t0 = core.now()
    local _, err = imageroute.generate(route, {prompt = "x"})
    local dt = core.now() - t0
    assert.equal("state", err.kind)
    assert.equal("state_unreachable", err.code)
    assert.matches("Connection refused", err.message)
    assert.equal(0, #s:requests(), "nothing sent")
    assert.is_true(dt < 0.05, "refused at once: " .. dt)
    local lenient = fx.route(s, {name = "down-local", state = down, on_state_error = "local",
      limits = {requests = 5, window = 1}})
    local res = assert(imageroute.generate(lenient, {prompt = "x"}))
    assert.matches("on_state_error = local", res.state_fallback)
    assert.equal(1, #s:requests())
    -- a budget kept in the store that is down: refused (no silent overspend), or local when allowed
    local b = assert(imageroute.budget{name = "down-budget", usd = 1, state = down})
    local flat = {lane = "provider", provider = "acme", accepted = "test", budget = b,
      billing = {unit = "call", price = 0.10, currency = "USD", source = "test", date = "2026-12-01"}}
    flat.name = "down-budget-refuse"
    local _, berr = imageroute.generate(fx.route(s, flat), {prompt = "x"})
    assert.equal("state", berr.kind)
    assert.equal(1, #s:requests())
    flat.name, flat.on_state_error = "down-budget-local", "local"
    local bres = assert(imageroute.generate(fx.route(s, flat), {prompt = "x"}))
    assert.matches("down%-budget", bres.state_fallback)
    assert.equal(2, #s:requests())
    -- a server that accepts the connection and never answers: refused within the command timeout
    local mute = assert(socket.bind("127.0.0.1", 0))
    local _, mport = mute:getsockname()
    local quiet = assert(imageroute.state.redis{url = ("redis://127.0.0.1:%d/0"):format(mport), timeout = 0.02})
    local mroute = fx.route(s, {name = "mute-refuse", state = quiet, limits = {requests = 5, window = 1}})
    t0 = core.now()
    local _, merr = imageroute.generate(mroute, {prompt = "x"})
    dt = core.now() - t0
    mute:close()
    assert.equal("state_unreachable", merr.code)
    assert.is_true(dt >= 0.015 and dt < 0.1, "bounded by the 20 ms command timeout: " .. dt)
    assert.equal(2, #s:requests())
  end)

  it("makes 4 store calls per limited, budgeted call: the settle tells what is left", function()
    local store = assert(imageroute.state.redis{url = r.url})
    local b = assert(imageroute.budget{name = "four-calls", usd = 1, state = store})
    local route = fx.route(s, {name = "four-calls", state = store, budget = b, lane = "provider", provider = "acme",
      accepted = "test", limits = {requests = 100, images = 100, window = 60, max_in_flight = 4},
      billing = {unit = "call", price = 0.10, currency = "USD", source = "test", date = "2026-12-01"}})
    assert(imageroute.generate(route, {prompt = "warm up"}, {log = false})) -- loads the scripts
    local before = store.stats.calls
    local res = assert(imageroute.generate(route, {prompt = "counted"}, {log = false}))
    -- reserve, admit (windows and a lease), release of the lease, settle (which returns the account)
    assert.equal(4, store.stats.calls - before)
    assert.is_near(0.80, res.budgets[1].left, 1e-9)
    assert.is_near(0.10, res.budgets[1].charged, 1e-9)
    assert.is_near(b:status().left, res.budgets[1].left, 1e-12) -- the same figure a separate read gives
    -- both stores answer a settle with the account as settled
    for _, st in ipairs{store, imageroute.state.memory()} do
      assert.is_true((st:reserve("budget:settled:run", 1, 0.5)))
      local a = st:settle("budget:settled:run", 0.5, 0.2)
      assert.is_near(0.2, a.spent, 1e-9)
      assert.equal(0, a.reserved)
      assert.same(a, st:account("budget:settled:run"))
    end
  end)

  it("keeps an account's reservations atomic and reads a store that a URL names", function()
    local store = assert(state.resolve(r.url))
    assert.equal(store, state.resolve(r.url)) -- one store per URL in a process
    assert.same({true, 1}, {store:reserve("budget:t:run", 1, 0.4)})
    assert.same({true, 0.6}, {store:reserve("budget:t:run", 1, 0.4)})
    local fits, left = store:reserve("budget:t:run", 1, 0.4)
    assert.is_false(fits)
    assert.is_near(0.2, left, 1e-9)
    assert(store:settle("budget:t:run", 0.4, 0.25))
    local a = store:account("budget:t:run")
    assert.is_near(0.25, a.spent, 1e-9)
    assert.is_near(0.4, a.reserved, 1e-9)
    -- the server lost its scripts (a restart, SCRIPT FLUSH): loaded again
    r:call("SCRIPT", "FLUSH")
    assert.is_true((store:reserve("budget:t:run", 1, 0.1)))
    assert.truthy(store.stats.calls > 0)
  end)
end)
