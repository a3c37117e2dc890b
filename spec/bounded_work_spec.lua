--- Bounded work per call, whatever the reply says: max_images, deadline, max_call_bytes (route
-- fields and per-call options), ca_file on image downloads, the organization and project ids
-- only on official routes, and the new route fields' validation. All on loopback.

local socket = require("socket")
local cjson = require("cjson")
local imageroute = require("imageroute")
local server = require("support.server")
local tls = require("support.tls")
local fx = require("support.fixtures")

local function rss_kb()
  local f = io.open("/proc/self/status")
  local s = f:read("a")
  f:close()
  return tonumber(s:match("VmRSS:%s*(%d+)"))
end

local function chat_body(content)
  return cjson.encode({id = "chatcmpl-1", object = "chat.completion", created = 1, model = "m",
    choices = {{index = 0, message = {role = "assistant", content = content}, finish_reason = "stop"}}})
end

describe("bounded work per call", function()
  local s, dir = server.for_block{dir = true, reset = false}
  local pki, proxy, NAME
  setup(function()
    pki = tls.pki(dir, {"IP:127.0.0.1"})
    proxy = tls.proxy{addr = "127.0.0.1", cert = pki.cert, key = pki.key, backend = s.port}
    s:script{{b64_mode = "url"}}
    local res = assert(imageroute.generate(fx.route(s), {prompt = "a file to link to"}))
    NAME = res.images[1].url:match("/files/([%w%._%-]+)$")
  end)
  teardown(function() proxy:stop() end)

  local function link()
    return "https://127.0.0.1:" .. proxy.port .. "/files/" .. NAME
  end

  it("a reply with 1000 image links: nothing is fetched, a typed error at once, memory flat", function()
    local parts = {}
    for i = 1, 1000 do parts[i] = ("![image %d](%s?i=%d)"):format(i, link(), i) end
    local route = fx.route(s, {shape = "chat", model = "gpt-image-2", ca_file = pki.ca})
    collectgarbage()
    local rss0, accepts0 = rss_kb(), proxy:accepts()
    s:script{{body = chat_body(table.concat(parts, "\n"))}}
    local t0 = socket.gettime()
    local res, err = imageroute.generate(route, {prompt = "p"})
    local seconds = socket.gettime() - t0
    assert.is_nil(res)
    assert.equal("decode", err.kind)
    assert.equal("too_many_images", err.code)
    assert.truthy(err.message:find("1000", 1, true), err.message)
    assert.equal(accepts0, proxy:accepts(), "a link was downloaded")
    assert.truthy(seconds < 2, seconds)
    collectgarbage()
    local grown = rss_kb() - rss0
    assert.truthy(grown < 20 * 1024, grown .. " kB")
    print(("\n  1000 links: %.3f s, RSS %+d kB, %d downloads"):format(seconds, grown, proxy:accepts() - accepts0))
    -- the same on the images shape (data[].url), and with the per-call option below the default
    local data = {}
    for i = 1, 1000 do data[i] = {url = link() .. "?i=" .. i} end
    s:script{{body = cjson.encode({created = 1, data = data})}}
    local _, err2 = imageroute.generate(fx.route(s, {ca_file = pki.ca}), {prompt = "p"})
    assert.equal("too_many_images", err2.code)
    s:script{{body = chat_body(table.concat(parts, "\n", 1, 3))}}
    _, err2 = imageroute.generate(route, {prompt = "p"}, {max_images = 2})
    assert.equal("too_many_images", err2.code)
    assert.equal(accepts0, proxy:accepts())
    -- at the cap it works (and the links are fetched)
    s:script{{body = chat_body(table.concat(parts, "\n", 1, 2))}}
    res = assert(imageroute.generate(route, {prompt = "p"}, {max_images = 2}))
    assert.equal(2, #res.images)
    assert.equal(accepts0 + 2, proxy:accepts())
  end)

  it("max_images also stops base64 images while they are decoded", function()
    local _, err = imageroute.generate(fx.route(s), {prompt = "p", n = 3}, {max_images = 2})
    assert.equal("decode", err.kind)
    assert.equal("too_many_images", err.code)
    local res = assert(imageroute.generate(fx.route(s, {max_images = 3}), {prompt = "p", n = 3}))
    assert.equal(3, #res.images)
  end)

  it("a deadline shorter than timeout x retries ends the call by the deadline", function()
    s:script{{delay = 5}, {delay = 5}, {delay = 5}, {delay = 5}}
    local route = fx.route(s, {timeout = 1, max_retries = 5})
    local t0 = socket.gettime()
    local _, err = imageroute.generate(route, {prompt = "p"}, {deadline = 2.5})
    local seconds = socket.gettime() - t0
    assert.equal("timeout", err.kind)
    assert.equal("deadline_exceeded", err.code)
    assert.truthy(seconds >= 2.4 and seconds < 3.2, seconds)
    assert.equal(3, err.attempts)
    s:reset()
    -- as a route field
    s:script{{delay = 5}}
    t0 = socket.gettime()
    _, err = imageroute.generate(fx.route(s, {deadline = 0.5, max_retries = 0}), {prompt = "p"})
    assert.equal("deadline_exceeded", err.code)
    assert.truthy(socket.gettime() - t0 < 1.2)
    s:reset()
  end)

  it("a retry whose delay would pass the deadline is not made", function()
    s:script{{status = 503, headers = {["retry-after"] = "3"}}, {}}
    local t0 = socket.gettime()
    local _, err = imageroute.generate(fx.route(s, {max_retries = 2}), {prompt = "p"}, {deadline = 1})
    assert.truthy(socket.gettime() - t0 < 0.8)
    assert.equal(503, err.status)
    assert.equal("deadline", err.retry_skipped)
    assert.equal(1, err.attempts)
    s:reset()
  end)

  it("the deadline covers downloads too", function()
    -- the link points at a port that accepts TCP and then never answers
    local hang = assert(socket.bind("127.0.0.1", 0))
    local _, port = hang:getsockname()
    s:script{{body = chat_body("![x](https://127.0.0.1:" .. port .. "/x.png)")}}
    local t0 = socket.gettime()
    local _, err = imageroute.generate(fx.route(s, {shape = "chat", model = "gpt-image-2", timeout = 30}),
      {prompt = "p"}, {deadline = 1})
    assert.truthy(socket.gettime() - t0 < 1.6)
    assert.equal("deadline_exceeded", err.code)
    hang:close()
  end)

  it("max_call_bytes caps all the bytes held for one call, across the response and downloads", function()
    s:script{{b64_mode = "url", png_bytes = 60000}}
    local _, err = imageroute.generate(fx.route(s), {prompt = "p", n = 2}, {max_call_bytes = 100000})
    assert.equal("http", err.kind)
    assert.equal("call_bytes_exceeded", err.code)
    assert.equal("download", err.attempt_log[#err.attempt_log].phase)
    assert.equal(1, #err.images) -- the first download fitted
    s:script{{b64_mode = "url", png_bytes = 60000}}
    local res = assert(imageroute.generate(fx.route(s, {max_call_bytes = 200000}), {prompt = "p", n = 2}))
    assert.equal(2, #res.images)
    -- 16 links to 2 MB images under an 8 MiB cap: memory stays near the cap
    s:script{{b64_mode = "url", png_bytes = 2000000}}
    local big = assert(imageroute.generate(fx.route(s), {prompt = "p"}))
    local parts = {}
    for i = 1, 16 do parts[i] = ("![%d](%s?i=%d)"):format(i, big.images[1].url, i) end
    big = nil -- luacheck: ignore 311
    collectgarbage()
    local rss0 = rss_kb()
    s:script{{body = chat_body(table.concat(parts, "\n"))}}
    _, err = imageroute.generate(fx.route(s, {shape = "chat", model = "gpt-image-2", max_call_bytes = 8 * 1024 * 1024}),
      {prompt = "p"})
    assert.equal("call_bytes_exceeded", err.code)
    assert.equal(4, #err.images)
    local grown = rss_kb() - rss0
    print(("\n  16 x 2 MB links, max_call_bytes 8 MiB: %d images kept, RSS %+d kB"):format(#err.images, grown))
    assert.truthy(grown < 24 * 1024, grown .. " kB")
  end)

  it("per-call bounds are validated and name the option", function()
    for _, c in ipairs{{deadline = -1}, {deadline = "1"}, {max_images = 0}, {max_images = 1.5},
      {max_call_bytes = 10}} do
      local k = next(c)
      local _, err = imageroute.generate(fx.route(s), {prompt = "p"}, c)
      assert.equal("validation", err.kind)
      assert.equal(k, err.field)
    end
  end)
end)

describe("ca_file on image downloads", function()
  it("is what lets a download verify its server (loopback TLS proxy, self-made CA)", function()
    local s = server.start()
    local dir = fx.tmpdir()
    local pki = tls.pki(dir, {"IP:127.0.0.1"})
    local proxy = tls.proxy{addr = "127.0.0.1", cert = pki.cert, key = pki.key, backend = s.port}
    s:script{{b64_mode = "url"}}
    local name = assert(imageroute.generate(fx.route(s), {prompt = "p"})).images[1].url:match("/files/(.*)$")
    local body = cjson.encode({created = 1, data = {{url = "https://127.0.0.1:" .. proxy.port .. "/files/" .. name}}})
    s:script{{body = body}, {body = body}}
    local _, err = imageroute.generate(fx.route(s, {max_retries = 0}), {prompt = "p"})
    assert.equal("download_failed", err.code)
    local res = assert(imageroute.generate(fx.route(s, {ca_file = pki.ca}), {prompt = "p"}))
    assert.equal(1, #res.images)
    assert.equal(2, proxy:accepts())
    proxy:stop()
    s:stop()
    os.execute("rm -rf " .. dir)
  end)
end)

describe("OPENAI_ORG_ID and OPENAI_PROJECT_ID", function()
  it("go to official routes only, or to a route that sets send_openai_ids", function()
    local s = server.start()
    local script = ([[
      local ir = require("imageroute")
      local base = %q
      local common = {base_url = base, model = "gpt-image-1", api_key_env = "IMAGEROUTE_TEST_KEY", max_retries = 0}
      local function route(extra)
        local cfg = {}
        for k, v in pairs(common) do cfg[k] = v end
        for k, v in pairs(extra) do cfg[k] = v end
        return assert(ir.route(cfg))
      end
      assert(ir.generate(route{name = "official"}, {prompt = "official"}))
      assert(ir.generate(route{name = "gw", lane = "provider", provider = "acme", accepted = "a test"},
        {prompt = "provider"}))
      assert(ir.generate(route{name = "gw2", lane = "provider", provider = "acme", accepted = "a test",
        send_openai_ids = true}, {prompt = "provider asking"}))
    ]]):format(s.base_url)
    local f = io.popen(("OPENAI_ORG_ID=org-secret-123 OPENAI_PROJECT_ID=proj-secret-456 lua5.4 -e %q 2>&1")
      :format(script))
    local out = f:read("a")
    assert(f:close(), out)
    local seen = {}
    for _, r in ipairs(s:requests()) do
      seen[r.json.prompt] = {org = r.headers["openai-organization"], project = r.headers["openai-project"]}
    end
    assert.same({org = "org-secret-123", project = "proj-secret-456"}, seen.official)
    assert.same({}, seen.provider)
    assert.same({org = "org-secret-123", project = "proj-secret-456"}, seen["provider asking"])
    s:stop()
  end)
end)

describe("route fields of the network side", function()
  it("validates download_hosts, allow_private_downloads, resolve, deadline, max_images, max_call_bytes", function()
    local bad = {
      {download_hosts = "cdn.example"}, {download_hosts = {"*"}}, {download_hosts = {"a*.example"}},
      {download_hosts = {"cdn example"}}, {download_hosts = {1}}, {download_hosts = {x = "a.example"}},
      {download_hosts = {"http://a.example"}},
      {allow_private_downloads = "yes"}, {send_openai_ids = 1},
      {resolve = "api.test:443:127.0.0.1"}, {resolve = {"api.test:443"}}, {resolve = {"api.test:0:127.0.0.1"}},
      {resolve = {"api.test:443:not-an-ip"}}, {resolve = {"api.test:443:"}}, {resolve = {"-api.test:443"}},
      {resolve = {"api.test:x:127.0.0.1"}}, {resolve = {"api.test:443:127.0.0.1,::1"}},
      {deadline = 0}, {deadline = -5}, {max_images = 0}, {max_images = 2.5}, {max_call_bytes = 100},
    }
    for _, cfg in ipairs(bad) do
      local k = next(cfg)
      cfg.base_url = "http://127.0.0.1:1/v1"
      local r, err = imageroute.route(cfg)
      assert.is_nil(r, k)
      assert.equal(k, err.field)
    end
    local r = assert(imageroute.route{base_url = "http://127.0.0.1:1/v1",
      download_hosts = {"CDN.Example.", "*.img.test"},
      resolve = {"api.test:443:127.0.0.1", "b.test:8443:[::1]", "c.test:443:::1"}, allow_private_downloads = true,
      deadline = 60, max_images = 4, max_call_bytes = 4096, send_openai_ids = true})
    assert.same({"cdn.example", "*.img.test"}, r.download_hosts)
    assert.same({"api.test:443:127.0.0.1", "b.test:8443:[::1]", "c.test:443:::1"}, r.resolve)
    assert.is_true(r.allow_private_downloads)
    assert.equal(60, r.deadline)
    assert.equal(4, r.max_images)
    local d = assert(imageroute.route{base_url = "http://127.0.0.1:1/v1"})
    assert.equal(1800, d.deadline)
    assert.equal(16, d.max_images)
    assert.equal(1024 * 1024 * 1024, d.max_call_bytes)
    assert.is_false(d.allow_private_downloads)
    assert.is_false(d.send_openai_ids)
    assert.is_nil(d.download_hosts)
    -- config() round-trips
    assert(imageroute.route(r:config()))
  end)
end)
