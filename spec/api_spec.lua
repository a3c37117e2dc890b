local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.json")
local server = require("support.server")
local fx = require("support.fixtures")

describe("api (a generic API request on a route's transport)", function()
  local s = server.for_block()

  it("GETs a path under base_url with the route's key and headers, and decodes the JSON reply", function()
    s:script{{body = '{"id":"gpt-image-2","object":"model","owned_by":"openai","tags":[]}',
      headers = {["X-Extra"] = "yes"}}}
    local route = fx.route(s, {headers = {["x-team"] = "art"}})
    local res = assert(imageroute.api(route, {path = "/models/gpt-image-2"}))
    local req = s:requests()[1]
    assert.equal("GET", req.method)
    assert.equal("/v1/models/gpt-image-2", req.path)
    assert.equal("Bearer " .. fx.KEY, req.headers["authorization"])
    assert.equal("art", req.headers["x-team"])
    assert.equal(200, res.status)
    assert.equal("gpt-image-2", res.body.id)
    assert.equal("openai", res.body.owned_by)
    assert.is_true(json.is_array(res.body.tags)) -- decoded by imageroute.json: [] stays an array
    assert.equal("yes", res.headers["x-extra"])
    assert.truthy(res.headers["content-type"]:find("application/json", 1, true))
    assert.equal(res.text, res.text:match("^%b{}$"))
    assert.truthy(res.request_id:find("^req_"))
    assert.equal(res.request_id, res.headers["x-request-id"])
    assert.equal(1, res.attempts)
    assert.equal(1, #res.attempt_log)
    assert.equal("request", res.attempt_log[1].phase)
    assert.truthy(res.latency >= 0 and res.latency < 10)
    assert.equal("/models/gpt-image-2", res.endpoint)
    assert.equal("local", res.route)
    assert.equal("api", res.shape)
    assert.is_nil(res.images)
  end)

  it("URL-encodes the query (names sorted, a list repeats its name) and sends no body on GET", function()
    s:script{{body = {object = "page", data = {}}}}
    assert(imageroute.api(fx.route(s), {path = "/organization/usage/images",
      query = {start_time = 1764547200, group_by = {"model", "size"}, ["a b"] = "x&y=z/é", limit = 7, on = true}}))
    local req = s:requests()[1]
    assert.equal("/v1/organization/usage/images", req.path)
    assert.equal("a%20b=x%26y%3Dz%2F%C3%A9&group_by=model&group_by=size&limit=7&on=true&start_time=1764547200",
      req.query)
    assert.equal(0, req.body_bytes)
  end)

  it("POSTs a JSON body (text or a table) with Content-Type, and POSTs an empty body", function()
    s:script{{body = {id = "resp_1", status = "cancelled"}}, {body = {ok = true}}, {body = {ok = true}}}
    local res = assert(imageroute.api(fx.route(s), {method = "POST", path = "/responses/resp_1/cancel"}))
    assert.equal("cancelled", res.body.status)
    local r1 = s:requests()[1]
    assert.equal("POST", r1.method)
    assert.equal("/v1/responses/resp_1/cancel", r1.path)
    assert.equal(0, r1.body_bytes)
    assert(imageroute.api(fx.route(s), {method = "POST", path = "/things", body = '{"a":[1,2]}'}))
    assert(imageroute.api(fx.route(s), {method = "POST", path = "/things", body = {list = json.array()}}))
    local r2, r3 = s:requests()[2], s:requests()[3]
    assert.equal("application/json", r2.headers["content-type"])
    assert.same({a = {1, 2}}, r2.json)
    assert.equal(#'{"list":[]}', r3.body_bytes)
  end)

  it("refuses a table body that cannot be JSON before sending (nothing reaches the server)", function()
    local cyclic = {}
    cyclic.self = cyclic
    for _, body in ipairs{{n = 0 / 0}, {f = print}, cyclic} do
      local res, err = imageroute.api(fx.route(s), {method = "POST", path = "/things", body = body})
      assert.is_nil(res)
      assert.equal("validation", err.kind)
      assert.equal("body", err.field)
    end
    assert.equal(0, #s:requests())
  end)

  it("sends DELETE", function()
    s:script{{body = {id = "file_1", deleted = true}}}
    local res = assert(imageroute.api(fx.route(s), {method = "DELETE", path = "/files/file_1"}))
    assert.equal("DELETE", s:requests()[1].method)
    assert.is_true(res.body.deleted)
  end)

  it("keeps a reply that is not JSON as text, with body nil", function()
    s:script{{body = "plain words", content_type = "text/plain"}, {body = "", content_type = "application/json"}}
    local res = assert(imageroute.api(fx.route(s), {path = "/x"}))
    assert.equal("plain words", res.text)
    assert.is_nil(res.body)
    res = assert(imageroute.api(fx.route(s), {path = "/x"}))
    assert.equal("", res.text)
    assert.is_nil(res.body)
  end)

  it("gives a non-2xx the typed error of every call, with its status, request id and body text", function()
    s:script{{status = 404, error = {message = "The model 'nope' does not exist", type = "invalid_request_error",
      code = "model_not_found"}}}
    local res, err = imageroute.api(fx.route(s), {path = "/models/nope"})
    assert.is_nil(res)
    assert.equal("api", err.kind)
    assert.equal(404, err.status)
    assert.equal("model_not_found", err.code)
    assert.equal("invalid_request_error", err.type)
    assert.truthy(err.request_id:find("^req_"))
    assert.equal("model_not_found", json.decode(err.text).error.code)
    assert.equal(1, err.attempts)
    assert.equal("/models/nope", err.endpoint)
  end)

  it("retries as the route says (a 500, then a success), and not with retry_policy = safe", function()
    s:script{{status = 500}, {body = {ok = true}}}
    local res = assert(imageroute.api(fx.route(s), {path = "/models"}))
    assert.equal(2, res.attempts)
    assert.equal("server_error", res.attempt_log[1].retry_reason)
    s:reset()
    s:script{{status = 500}, {body = {ok = true}}}
    local _, err = imageroute.api(fx.route(s, {retry_policy = "safe"}), {path = "/models"})
    assert.equal("api", err.kind)
    assert.equal(500, err.status)
    assert.equal(1, err.attempts)
  end)

  it("redacts the key from the reply's text, headers and error body", function()
    local echo = '{"error":{"message":"bad key ' .. fx.KEY .. '","type":"x"}}'
    s:script{{status = 401, body = echo}, {body = '{"k":"' .. fx.KEY .. '"}', headers = {["x-echo"] = fx.KEY}}}
    local _, err = imageroute.api(fx.route(s), {path = "/me"})
    assert.equal(401, err.status)
    assert.falsy(err.text:find(fx.KEY, 1, true))
    assert.falsy(err.message:find(fx.KEY, 1, true))
    local res = assert(imageroute.api(fx.route(s), {path = "/me"}))
    assert.falsy(res.text:find(fx.KEY, 1, true))
    assert.falsy(res.headers["x-echo"]:find(fx.KEY, 1, true))
    assert.is_string(res.body.k)
    assert.falsy(res.body.k:find(fx.KEY, 1, true))
  end)

  it("caps the reply at max_response_bytes and stops at the deadline", function()
    s:script{{body = string.rep("x", 5000), content_type = "text/plain"}}
    local _, err = imageroute.api(fx.route(s, {max_response_bytes = 2000}), {path = "/big"})
    assert.equal("http", err.kind)
    assert.truthy(err.message:find("max_response_bytes", 1, true))
    s:script{{body = {ok = true}, delay = 2}}
    local t0 = core.now()
    _, err = imageroute.api(fx.route(s, {max_retries = 0}), {path = "/slow"}, {deadline = 0.3})
    assert.equal("timeout", err.kind)
    assert.equal("deadline_exceeded", err.code)
    assert.truthy(core.now() - t0 < 1.5)
  end)

  it("refuses bad requests before sending", function()
    local route = fx.route(s)
    local cases = {
      {{method = "PUT", path = "/x"}, "method"},
      {{path = "models"}, "path"},
      {{path = "/models?x=1"}, "path"},
      {{path = "/a b"}, "path"},
      {{path = "/v1/../admin"}, "path"},
      {{path = "/./x"}, "path"},
      {{path = "/x", body = "{}"}, "body"},
      {{method = "POST", path = "/x", body = 5}, "body"},
      {{path = "/x", query = {a = {}}} , nil},
      {{path = "/x", query = {a = {1, {}}}}, "query"},
      {{path = "/x", query = {[1] = "a"}}, "query"},
      {{path = "/x", query = "a=1"}, "query"},
    }
    for _, c in ipairs(cases) do
      s:script{{body = {ok = true}}}
      local res, err = imageroute.api(route, c[1])
      if c[2] == nil then
        assert.truthy(res, tostring(err))
      else
        assert.is_nil(res)
        assert.equal("validation", err.kind)
        assert.equal(c[2], err.field)
        assert.equal(0, err.attempts)
      end
    end
    assert.equal(1, #s:requests())
    assert.has_error(function() imageroute.api({}, {path = "/x"}) end)
    assert.has_error(function() imageroute.api(route, "/x") end)
  end)

  it("applies the route's gates: a provider route without its contract is refused, nothing sent", function()
    local gw = fx.route(s, {lane = "provider", provider = "acme"})
    local res, err = imageroute.api(gw, {path = "/models"})
    assert.is_nil(res)
    assert.equal("route", err.kind)
    assert.equal(0, #s:requests())
  end)

  it("runs on the shared loop: inside run, several requests are in flight at once", function()
    s:script{{body = {n = 1}, delay = 0.3}, {body = {n = 2}, delay = 0.3}, {body = {n = 3}, delay = 0.3}}
    local route = fx.route(s)
    local t0 = core.now()
    local a, b, c = imageroute.run(
      function() return assert(imageroute.api(route, {path = "/a"})).body.n end,
      function() return assert(imageroute.api(route, {path = "/b"})).body.n end,
      function() return assert(imageroute.api(route, {path = "/c"})).body.n end)
    local got = {a, b, c}
    table.sort(got)
    assert.same({1, 2, 3}, got)
    assert.truthy(core.now() - t0 < 0.8, core.now() - t0)
  end)

  it("start_api gives a Transfer on the loop", function()
    s:script{{body = {ok = true}}}
    local x = assert(core.start_api(fx.route(s), {path = "/models"}))
    assert.truthy(tostring(x):find("Transfer(api", 1, true))
    local res = assert(x:wait())
    assert.equal(200, res.status)
    assert.equal('{"ok":true}', res.text)
  end)
end)
