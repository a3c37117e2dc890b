-- route:check{live = true} and `imageroute check --live`: GET /models/{model} on the route's own
-- transport, one row per model, against the local server.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")

local function row(rep, gate)
  for _, r in ipairs(rep.rows) do if r.gate == gate then return r end end
end

describe("live readiness check", function()
  local s = server.for_block()

  it("a model the API returns is a pass row; the request is GET /models/{model}, nothing else", function()
    local rep = fx.route(s, {model = "gpt-image-1"}):check{live = true}
    local r = row(rep, "live")
    assert.equal("pass", r.status)
    assert.equal("gpt-image-1", r.model)
    assert.equal(200, r.http_status)
    assert.truthy(r.request_id:find("^req_"))
    assert.is_true(rep.ok)
    assert.is_true(rep.live_ok)
    assert.is_true(rep.allowed)
    local reqs = s:requests()
    assert.equal(1, #reqs)
    assert.equal("GET", reqs[1].method)
    assert.equal("/v1/models/gpt-image-1", reqs[1].path)
  end)

  it("a model the account cannot see is a fail row (404); the gates still decide allowed", function()
    local rep = fx.route(s, {model = "gpt-image-99"}):check{live = true}
    local r = row(rep, "live")
    assert.equal("fail", r.status)
    assert.equal(404, r.http_status)
    assert.matches("not available to this account", r.reason)
    assert.is_false(rep.ok)
    assert.is_false(rep.live_ok)
    assert.is_true(rep.allowed)
  end)

  it("a Responses route asks about its text model and its image model", function()
    local rep = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-2"}):check{live = true}
    assert.equal("pass", row(rep, "live").status)
    assert.equal("gpt-image-2", row(rep, "live_image_model").model)
    assert.equal("pass", row(rep, "live_image_model").status)
    assert.equal(2, #s:requests())
  end)

  it("without live nothing is sent; a 401 and an unreachable host are told apart", function()
    local rep = fx.route(s):check()
    assert.is_nil(row(rep, "live"))
    assert.equal(0, #s:requests())
    s:script{{status = 401, error = {message = "Incorrect API key provided", type = "invalid_request_error",
      code = "invalid_api_key"}}}
    local r = row(fx.route(s, {max_retries = 0}):check{live = true}, "live")
    assert.equal("fail", r.status)
    assert.matches("401", r.reason)
    local closed = fx.route(s, {base_url = "http://127.0.0.1:9/v1", max_retries = 0})
    r = row(closed:check{live = true}, "live")
    assert.equal("unknown", r.status)
    assert.matches("no answer", r.reason)
  end)

  it("a router checks each target live", function()
    local good = fx.route(s, {name = "good", model = "gpt-image-1"})
    local bad = fx.route(s, {name = "bad", model = "gpt-image-99"})
    local rep = assert(imageroute.router{name = "both", routes = {good, bad}}):check{live = true}
    assert.equal("pass", rep.rows[1].status)
    assert.equal("fail", rep.rows[2].status)
    assert.matches("not available", rep.rows[2].reason)
    assert.is_true(rep.allowed)
    assert.is_false(rep.live_ok)
  end)

  it("imageroute check --live adds the row and exits 1 when the model is not available", function()
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. cli.q(dir)))
    local ok_routes = cli.routes_file(dir, s, "ok")
    local rc, out, err = cli.run(dir, {"--routes", ok_routes, "check", "ok", "--live"})
    assert.equal(0, rc, err)
    assert.truthy(out:find("\nlive%s+pass%s+GET /models/gpt%-image%-1"), out)
    local missing = cli.routes_file(dir, s, "missing", 'model = "gpt-image-99"')
    rc, out = cli.run(dir, {"--routes", missing, "check", "missing", "--live"})
    assert.equal(1, rc)
    assert.truthy(out:find("\nlive%s+fail%s"), out)
    rc, out = cli.run(dir, {"--routes", missing, "check", "missing"}) -- without --live: the gates only
    assert.equal(0, rc)
    assert.falsy(out:find("\nlive"), out)
    os.execute("rm -rf " .. cli.q(dir))
  end)
end)
