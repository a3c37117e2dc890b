local imageroute = require("imageroute")
local socket = require("socket")
local server = require("support.server")
local fx = require("support.fixtures")

local API_ERROR = {message = "Invalid size", type = "invalid_request_error", param = "size", code = "invalid_size"}

describe("errors and retries", function()
  local s = server.for_block()

  local function call(route, params)
    return imageroute.generate(route or fx.route(s), params or {prompt = "p"})
  end

  it("gives an API error body's message, type, param and code, and does not retry a 400", function()
    s:script{{status = 400, error = API_ERROR}}
    local res, err = call()
    assert.is_nil(res)
    assert.equal("api", err.kind)
    assert.equal(400, err.status)
    assert.same({"Invalid size", "invalid_request_error", "size", "invalid_size"},
      {err.message, err.type, err.param, err.code})
    assert.truthy(err.request_id:find("^req_"))
    assert.equal(1, err.attempts)
    assert.equal("local", err.route)
    assert.equal(1, #s:requests())
    local line = tostring(err)
    assert.truthy(line:find("^imageroute api error %(400 invalid_size%): Invalid size %["), line)
    assert.truthy(line:find("request_id=req_", 1, true), line)
    assert.falsy(line:find("\n", 1, true))
  end)

  it("reports 401 as an api error without retrying", function()
    s:script{{status = 401, error = {message = "Incorrect API key provided", type = "invalid_request_error",
      code = "invalid_api_key"}}}
    local _, err = call()
    assert.equal("api", err.kind)
    assert.equal(401, err.status)
    assert.equal("invalid_api_key", err.code)
    assert.equal(1, err.attempts)
  end)

  it("reports a moderation block with its code", function()
    s:script{{status = 400, error = {message = "Your request was rejected by the safety system",
      type = "image_generation_user_error", code = "moderation_blocked"}}}
    local _, err = call()
    assert.equal("moderation_blocked", err.code)
  end)

  it("gives a short excerpt of an HTML error page, never the whole body", function()
    s:script{{status = 502, html = true}}
    local _, err = call(fx.route(s, {max_retries = 0}))
    assert.equal("http", err.kind)
    assert.equal(502, err.status)
    assert.truthy(err.message:find("HTTP 502", 1, true))
    assert.truthy(err.message:find("text/html", 1, true))
    assert.truthy(#err.message < 320, #err.message)
    assert.truthy(err.message:find("...", 1, true))
  end)

  it("treats a 200 HTML page, invalid JSON and JSON without images as decode errors", function()
    local cases = {
      {{html = true}, "not JSON"},
      {{body = "{not json"}, "not valid JSON"},
      {{body = '{"created": 1}'}, "no images"},
      {{body = '{"created": 1, "data": []}'}, "no images"},
      {{body = '{"created": 1, "data": [{"b64_json": "!!!not base64!!!"}]}'}, "not valid base64"},
      {{body = '{"created": 1, "data": [{"b64_json": "aGVsbG8gd29ybGQ="}]}'}, "not a PNG, JPEG, WebP or GIF"},
      {{body = '{"created": 1, "data": [{"b64_json": "data:text/plain;base64,aGVsbG8="}]}'}, "not an image"},
      {{body = '{"created": 1, "data": [{"revised_prompt": "x"}]}'}, "neither b64_json nor url"},
    }
    for _, c in ipairs(cases) do
      s:reset()
      s:script{c[1]}
      local res, err = call()
      assert.is_nil(res)
      assert.equal("decode", err.kind, tostring(err))
      assert.truthy(err.message:find(c[2], 1, true), err.message)
      assert.equal(1, err.attempts)
      assert.equal(200, err.status)
    end
  end)

  it("retries 429 after retry-after-ms and then succeeds", function()
    s:script{{status = 429, error = {message = "slow down", type = "requests", code = "rate_limit_exceeded"},
      headers = {["retry-after-ms"] = "120"}}, {}}
    local res = assert(call())
    assert.equal(2, res.attempts)
    local first = res.attempt_log[1]
    assert.equal(429, first.status)
    assert.equal("rate_limited", first.retry_reason)
    assert.near(0.12, first.retry_delay, 1e-9)
    local reqs = s:requests()
    assert.equal(2, #reqs)
    assert.truthy(reqs[2].t_start - reqs[1].t_end >= 0.1, reqs[2].t_start - reqs[1].t_end)
  end)

  it("reads retry-after in seconds and as an HTTP date", function()
    s:script{{status = 429, headers = {["retry-after"] = "1"}}, {}}
    local res = assert(call())
    assert.equal(1, res.attempt_log[1].retry_delay)
    s:reset()
    local when = os.date("!%a, %d %b %Y %H:%M:%S GMT", os.time() + 2)
    s:script{{status = 503, headers = {["retry-after"] = when}}, {}}
    res = assert(call())
    local d = res.attempt_log[1].retry_delay
    assert.truthy(d >= 0.9 and d <= 2.1, d)
    assert.equal("server_error", res.attempt_log[1].retry_reason)
  end)

  it("ignores a server-asked delay above retry_after_max and backs off instead", function()
    s:script{{status = 429, headers = {["retry-after"] = "30"}}, {}}
    local res = assert(call(fx.route(s, {retry_after_max = 5})))
    assert.truthy(res.attempt_log[1].retry_delay <= 0.01, res.attempt_log[1].retry_delay)
  end)

  it("backs off min(initial * 2^n, max) with jitter in [0.75, 1] on 5xx", function()
    s:script{{status = 500}, {status = 502}, {status = 503}, {}}
    local r = fx.route(s, {max_retries = 3, retry_initial_delay = 0.04, retry_max_delay = 0.1})
    local res = assert(call(r))
    assert.equal(4, res.attempts)
    local expect = {0.04, 0.08, 0.1}
    for i = 1, 3 do
      local d = res.attempt_log[i].retry_delay
      assert.truthy(d >= 0.75 * expect[i] - 1e-9 and d <= expect[i] + 1e-9, i .. ": " .. d)
    end
  end)

  it("stops after max_retries with the last status", function()
    s:script{{status = 503}, {status = 503}, {status = 503}, {}}
    local res, err = call()
    assert.is_nil(res)
    assert.equal(503, err.status)
    assert.equal(3, err.attempts)
    assert.equal(3, #err.attempt_log)
    assert.equal(3, #s:requests())
    assert.is_nil(err.attempt_log[3].retry_reason)
  end)

  it("takes max_retries per call", function()
    s:script{{status = 500}, {status = 500}, {}}
    local _, err = imageroute.generate(fx.route(s), {prompt = "p"}, {max_retries = 0})
    assert.equal(1, err.attempts)
  end)

  it("follows x-should-retry both ways", function()
    s:script{{status = 500, headers = {["x-should-retry"] = "false"}}}
    local _, err = call()
    assert.equal(1, err.attempts)
    s:reset()
    s:script{{status = 400, error = API_ERROR, headers = {["x-should-retry"] = "true"}}, {}}
    local res = assert(call())
    assert.equal(2, res.attempts)
    assert.equal("x-should-retry", res.attempt_log[1].retry_reason)
  end)

  it("retries 408 and 409", function()
    s:script{{status = 408}, {status = 409}, {}}
    local res = assert(call())
    assert.equal(3, res.attempts)
  end)

  it("times out as a distinct kind, and retries timeouts", function()
    s:script{{delay = 2}, {delay = 2}}
    local t0 = socket.gettime()
    local _, err = call(fx.route(s, {timeout = 0.3, max_retries = 1}))
    assert.equal("timeout", err.kind)
    assert.equal(2, err.attempts)
    assert.is_nil(err.status)
    assert.truthy(socket.gettime() - t0 < 1.8)
  end)

  it("reports a refused connection as a connection error after the retries", function()
    local sock = socket.bind("127.0.0.1", 0)
    local _, port = sock:getsockname()
    sock:close()
    local r = assert(imageroute.route{base_url = "http://127.0.0.1:" .. port .. "/v1", model = "m",
      api_key_env = fx.KEY_ENV, retry_initial_delay = 0.01})
    local _, err = imageroute.generate(r, {prompt = "p"})
    assert.equal("connection", err.kind)
    assert.equal(3, err.attempts)
    assert.equal("connection", err.attempt_log[1].retry_reason)
  end)

  it("stops a response larger than max_response_bytes", function()
    s:script{{png_bytes = 200000}}
    local _, err = call(fx.route(s, {max_response_bytes = 4096}))
    assert.equal("http", err.kind)
    assert.truthy(err.message:find("max_response_bytes", 1, true))
    assert.equal(1, err.attempts)
  end)

  it("never puts the key in an error, a tostring or an attempt log", function()
    s:script{{status = 401, error = {message = "Incorrect API key provided: " .. fx.KEY, type = "x"}},
      {status = 500, body = "echo " .. fx.KEY, content_type = "text/plain"}}
    local r = fx.route(s, {max_retries = 0})
    local _, e1 = call(r)
    local _, e2 = call(r)
    for _, e in ipairs{e1, e2} do
      assert.falsy(tostring(e):find(fx.KEY, 1, true), tostring(e))
      assert.falsy(fx.dump(e):find(fx.KEY, 1, true))
    end
    assert.truthy(e1.message:find("[redacted]", 1, true))
    assert.falsy(tostring(r):find(fx.KEY, 1, true))
    assert.falsy(fx.dump(r:config()):find(fx.KEY, 1, true))
    local res = assert(call(fx.route(s)))
    assert.falsy(fx.dump(res):find(fx.KEY, 1, true))
  end)
end)
