-- The fault matrix: every fault gives a typed error with status, request id when there is one,
-- and the attempts made; no crash; nothing half-written on disk; no image lost.
local imageroute = require("imageroute")
local socket = require("socket")
local server = require("support.server")
local fx = require("support.fixtures")

local function free_port()
  local sock = assert(socket.bind("127.0.0.1", 0))
  local _, port = sock:getsockname()
  sock:close()
  return port
end

describe("the fault matrix", function()
  local s, dir = server.for_block{dir = true}
  local log_path
  setup(function()
    log_path = dir .. "/faults.jsonl"
    imageroute.log.set_default(log_path) -- every call of this block is logged
  end)
  teardown(function() imageroute.log.set_default(nil) end)

  --- A typed error with the attempts made, and one log line per attempt, none with the key.
  local function expect(err, kind, attempts)
    assert.is_table(err)
    assert.equal(kind, err.kind, tostring(err))
    assert.equal(attempts, err.attempts, tostring(err))
    assert.equal(attempts, #err.attempt_log)
    assert.truthy(#tostring(err) < 600)
    assert.is_string(err.call_id, "the call was not logged")
    local lines = 0
    for _, rec in ipairs(assert(imageroute.log.read(log_path))) do
      if rec.call_id == err.call_id and rec.event == "attempt" then
        lines = lines + 1
        if rec.final then assert.equal(kind, rec.error_kind) end
      end
    end
    assert.equal(attempts, lines)
    assert.falsy(fx.read(log_path):find(fx.KEY, 1, true))
    return err
  end

  it("a truncated body (Content-Length longer than what arrives) is a retried connection error", function()
    s:script{{truncate = true}, {truncate = true}, {truncate = true}}
    local _, err = imageroute.generate(fx.route(s), {prompt = "p"})
    expect(err, "connection", 3)
    assert.equal(200, err.status)
    assert.truthy(err.request_id:find("^req_"))
    assert.equal("connection", err.attempt_log[1].retry_reason)
  end)

  it("recovers when a retry succeeds after a truncated body", function()
    s:script{{truncate = true}, {}}
    local res = assert(imageroute.generate(fx.route(s), {prompt = "p"}))
    assert.equal(2, res.attempts)
  end)

  it("a reset in the middle of the body and of a stream", function()
    s:script{{reset = true}}
    local _, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "p"})
    expect(err, "connection", 1)
    s:script{{reset = true}}
    local parts = 0
    _, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "p", stream = true, partial_images = 3},
      {on_partial = function() parts = parts + 1 end})
    expect(err, "connection", 1)
  end)

  it("a server that accepts and never answers hits the total timeout", function()
    s:script{{delay = 5}}
    local t0 = socket.gettime()
    local _, err = imageroute.generate(fx.route(s, {timeout = 0.4, max_retries = 0}), {prompt = "p"})
    expect(err, "timeout", 1)
    assert.truthy(socket.gettime() - t0 < 2)
    assert.is_nil(err.status)
  end)

  it("a server that drips bytes hits the low-speed limit", function()
    s:script{{drip = {bytes = 8, interval = 0.4}}}
    local t0 = socket.gettime()
    local _, err = imageroute.generate(fx.route(s, {low_speed_limit = 1000, low_speed_time = 1, max_retries = 0}),
      {prompt = "p"})
    expect(err, "timeout", 1)
    assert.truthy(err.message:lower():find("slow", 1, true), err.message)
    assert.truthy(socket.gettime() - t0 < 4)
  end)

  it("connection refused and an unresolvable host are connection errors after the retries", function()
    local r = assert(imageroute.route{base_url = "http://127.0.0.1:" .. free_port() .. "/v1", model = "m",
      api_key_env = fx.KEY_ENV, retry_initial_delay = 0.01})
    local _, err = imageroute.generate(r, {prompt = "p"})
    expect(err, "connection", 3)
    local r2 = assert(imageroute.route{base_url = "https://imageroute-test.invalid/v1", model = "m",
      lane = "provider", provider = "nobody", accepted = "a test of DNS failure",
      api_key_env = fx.KEY_ENV, retry_initial_delay = 0.01, connect_timeout = 2})
    _, err = imageroute.generate(r2, {prompt = "p"})
    expect(err, "connection", 3)
    assert.truthy(err.message:find("resolve", 1, true), err.message)
  end)

  it("a response larger than max_response_bytes, an image download too, and an SSE event over its cap", function()
    s:script{{png_bytes = 100000}}
    local _, err = imageroute.generate(fx.route(s, {max_response_bytes = 50000}), {prompt = "p"})
    expect(err, "http", 1)
    assert.truthy(err.message:find("max_response_bytes", 1, true))
    s:script{{png_bytes = 100000, b64_mode = "url"}}
    _, err = imageroute.generate(fx.route(s, {max_response_bytes = 50000}), {prompt = "p"})
    assert.equal("http", err.kind)
    assert.truthy(err.message:find("max_response_bytes", 1, true), err.message)
    assert.equal("download", err.attempt_log[#err.attempt_log].phase)
    s:script{{png_bytes = 100000}}
    _, err = imageroute.generate(fx.route(s, {max_event_bytes = 20000}), {prompt = "p", stream = true,
      partial_images = 1})
    expect(err, "http", 1)
    assert.truthy(err.message:find("larger than its cap", 1, true), err.message)
  end)

  it("image URLs that answer 404, are not images, or use another scheme", function()
    local cases = {
      {'{"created":1,"data":[{"url":"' .. s.url("/files/nothing.png") .. '"}]}', "http", "HTTP 404"},
      {'{"created":1,"data":[{"url":"' .. s.url("/__stats") .. '"}]}', "decode", "did not return an image"},
      {'{"created":1,"data":[{"url":"file:///etc/passwd"}]}', "decode", "only https"},
      {'{"created":1,"data":[{"url":"ftp://127.0.0.1/x.png"}]}', "decode", "only https"},
      {'{"created":1,"data":[{"url":"http://example.com/x.png"}]}', "decode", "only https"},
    }
    for _, c in ipairs(cases) do
      s:script{{body = c[1]}}
      local _, err = imageroute.generate(fx.route(s), {prompt = "p"})
      assert.equal(c[2], err.kind, tostring(err))
      assert.truthy(err.message:find(c[3], 1, true), err.message)
    end
  end)

  it("does not follow a redirect of an API call, so the key goes nowhere else", function()
    local other = server.start()
    s:script{{status = 307, headers = {location = other.base_url .. "/images/generations"}}}
    local _, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "p"})
    assert.equal(307, err.status)
    assert.equal(0, #other:requests())
    other:stop()
  end)

  it("never writes a partial file, and a failed save loses no image", function()
    local res = assert(imageroute.generate(fx.route(s), {prompt = "p", n = 2}))
    local saved, err = imageroute.save(res, dir .. "/missing-dir")
    assert.is_nil(saved)
    assert.equal("io", err.kind)
    assert.equal(res.images, err.images)
    assert.same({}, err.saved)
    saved = assert(imageroute.save(res, dir, {name = "../../etc/passwd"}))
    assert.equal(2, #saved)
    assert.equal(dir .. "/etc-passwd-1.png", saved[1].path)
    assert.equal(res.images[2].sha256, saved[2].sha256)
    assert.equal(res.images[1].bytes, fx.read(saved[1].path))
    -- saving again refuses to overwrite and says which file
    local _, err2 = imageroute.save(res, dir, {name = "../../etc/passwd"})
    assert.truthy(err2.message:find("exists", 1, true))
    local listing = io.popen("ls -A " .. dir .. " | grep -v faults.jsonl"):read("a")
    assert.equal("etc-passwd-1.png\netc-passwd-2.png\n", listing)
  end)

  it("names derived from prompts or ids cannot climb out of the directory", function()
    local cases = {
      {"../../x", "x"}, {"/etc/passwd", "etc-passwd"}, {"a b/c", "a-b-c"}, {"..", "image"},
      {".hidden", "hidden"}, {("x"):rep(200), ("x"):rep(80)}, {"req_abc-123.v2", "req_abc-123.v2"},
    }
    for _, c in ipairs(cases) do
      assert.equal(c[2], imageroute.safe_name(c[1]))
      assert.falsy(imageroute.safe_name(c[1]):find("/", 1, true))
    end
  end)

  it("a crash in the middle of a save leaves no file or the whole file", function()
    local target = dir .. "/big.png"
    local size = 64 * 1024 * 1024
    local script = string.format([[
      local ir = require("imageroute")
      local img = ir.image("\137PNG\r\n\26\n" .. string.rep("x", %d - 8))
      io.stdout:write("ready\n") io.stdout:flush()
      assert(img:save(%q, {overwrite = true}))
      io.stdout:write("saved\n") io.stdout:flush()
      while true do assert(img:save(%q, {overwrite = true})) end
    ]], size, target, target)
    for round = 1, 3 do
      local pidfile = os.tmpname()
      local outf = os.tmpname()
      os.execute(string.format("lua5.4 -e %q > %s 2>&1 & echo $! > %s", script, outf, pidfile))
      local pid = fx.read(pidfile):match("%d+")
      socket.sleep(0.3 + 0.2 * round)
      os.execute("kill -9 " .. pid)
      socket.sleep(0.2)
      local f = io.open(target, "rb")
      if f then
        local n = f:seek("end")
        f:close()
        assert.equal(size, n, "round " .. round)
      end
      os.remove(pidfile)
      os.remove(outf)
    end
    os.execute("rm -f " .. dir .. "/big.png*")
  end)
end)

describe("TLS", function()
  local dir, port, pid
  setup(function()
    dir = fx.tmpdir()
    port = free_port()
    assert(os.execute(("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
      .. "-addext subjectAltName=IP:127.0.0.1 -keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1"):format(dir, dir)))
    local p = io.popen(("openssl s_server -quiet -www -accept 127.0.0.1:%d -cert %s/cert.pem -key %s/key.pem "
      .. ">/dev/null 2>&1 </dev/null & echo $!"):format(port, dir, dir))
    pid = p:read("l")
    p:close()
    for _ = 1, 100 do
      local c = socket.connect("127.0.0.1", port)
      if c then c:close() break end
      socket.sleep(0.05)
    end
  end)
  teardown(function()
    os.execute("kill " .. pid)
    os.execute("rm -rf " .. dir)
  end)

  it("verifies certificates always, and takes a CA bundle path", function()
    local base = "https://127.0.0.1:" .. port .. "/v1"
    local r = assert(imageroute.route{base_url = base, model = "m", api_key_env = fx.KEY_ENV, max_retries = 0})
    local _, err = imageroute.generate(r, {prompt = "p"})
    assert.equal("connection", err.kind)
    assert.truthy(err.message:find("certificate", 1, true), err.message)
    local trusted = assert(imageroute.route{base_url = base, model = "m", api_key_env = fx.KEY_ENV,
      max_retries = 0, timeout = 3, ca_file = dir .. "/cert.pem"})
    local _, err2 = imageroute.generate(trusted, {prompt = "p"})
    -- past the handshake: whatever the test server answers, it is not a certificate problem
    assert.falsy(tostring(err2):find("certificate", 1, true), tostring(err2))
  end)
end)
