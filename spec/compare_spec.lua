-- imageroute.compare: the same request to several routes, the HTML report and the JSON record,
-- checked as a user sees the report: opened in headless Chromium (Debian `chromium`).
local imageroute = require("imageroute")
local compare = require("imageroute.compare")
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")
local J = require("imageroute.json")

local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function chromium()
  for _, name in ipairs{"chromium", "chromium-browser"} do
    local p = io.popen("command -v " .. name .. " 2>/dev/null")
    local path = p:read("l")
    p:close()
    if path and path ~= "" then return path end
  end
  return nil
end

local CHROMIUM_FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
  .. "--disable-background-networking --disable-component-update --disable-sync --disable-dev-shm-usage"

--- Runs headless Chromium on a file URL with extra arguments; returns its stdout.
local function run_chromium(bin, profile, args, html)
  local cmd = ("HOME=%s timeout 90 %s %s --user-data-dir=%s %s %s 2>/dev/null </dev/null"):format(q(profile),
    q(bin), CHROMIUM_FLAGS, q(profile), args, q("file://" .. html))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  return out
end

local function absolute(path)
  if path:sub(1, 1) == "/" then return path end
  local p = assert(io.popen("pwd"))
  local cwd = p:read("l")
  p:close()
  return cwd .. "/" .. path
end

describe("compare", function()
  local s, dir
  setup(function()
    s = server.start()
    dir = absolute(fx.tmpdir())
  end)
  teardown(function()
    s:stop()
    os.execute("rm -rf " .. q(dir))
  end)
  before_each(function() s:reset() end)

  local function official(extra) return fx.route(s, extra) end
  local function gateway(extra)
    local cfg = fx.with({name = "gateway", lane = "provider", provider = "local-gateway", shape = "chat",
      accepted = "the local server standing in for a gateway", max_retries = 0,
      billing = {unit = "call", price = 0.03, currency = "USD"}}, extra)
    return fx.route(s, cfg)
  end

  it("sends the same request to every route, at the same time", function()
    local slow_a = fx.behaving(s, {delay = 0.3}, {name = "official"})
    local slow_b = fx.behaving(s, {delay = 0.3}, {name = "official-2"})
    local rec = compare.run("a red fox", {slow_a, slow_b}, {size = "1024x1024", quality = "low"})
    assert.is_true(rec.ok)
    local reqs = s:requests()
    assert.equal(2, #reqs)
    -- both in flight together, not one after the other
    assert.truthy(reqs[1].t_start < reqs[2].t_end and reqs[2].t_start < reqs[1].t_end)
    assert.truthy(rec.wall_time > 0)
    assert.same(reqs[1].json, reqs[2].json)
    assert.same({model = "gpt-image-1", prompt = "a red fox", size = "1024x1024", quality = "low"}, reqs[1].json)
    assert.equal(2, s:stats().max_in_flight)
    assert.equal("generate", rec.call)
    assert.same({prompt = "a red fox", size = "1024x1024", quality = "low"}, rec.params)
    assert.equal(2, #rec.entries)
    for i, e in ipairs(rec.entries) do
      assert.equal(i == 1 and "official" or "official-2", e.route)
      assert.truthy(e.request_id:find("^req_"))
      assert.equal(1, e.attempts)
      assert.truthy(e.latency >= 0.3)
      assert.equal("usage", e.cost.basis)
      assert.equal("USD", e.cost.currency)
      assert.equal(1, #e.images)
      assert.equal(64, e.images[1].width)
    end
  end)

  it("sends the same input images and mask to every route (edit)", function()
    local src = assert(imageroute.generate(official(), {prompt = "source"})).images[1]
    local mask = fx.read("examples/assets/mask-1024.png")
    s:reset()
    local rec = compare.run("add a boat", {official(), official({name = "second"})},
      {images = {src, "examples/assets/mask-1024.png"}, mask = mask, size = "1024x1024"})
    assert.is_true(rec.ok, rec.entries[1].error and rec.entries[1].error.text)
    assert.equal("edit", rec.call)
    assert.equal(2, #rec.inputs)
    assert.equal("mask-1024.png", rec.inputs[2].name)
    assert.equal(#mask, rec.mask.bytes)
    assert.equal(core.sha256(mask), rec.mask.sha256)
    local reqs = s:requests()
    assert.equal(2, #reqs)
    local function uploads(r)
      local out = {}
      for _, p in ipairs(r.parts) do
        if p.name == "image[]" or p.name == "mask" then out[#out + 1] = p.name .. ":" .. p.data_b64 end
      end
      return out
    end
    assert.equal(3, #uploads(reqs[1]))
    assert.same(uploads(reqs[1]), uploads(reqs[2]))
    assert.falsy(compare.to_json(rec):find(core.b64encode(mask):sub(1, 40), 1, true))
  end)

  it("records a failing route without losing the others", function()
    local broken = fx.behaving(s, {status = 400, error = {message = "Invalid size", type = "invalid_request_error"}},
      {name = "broken", max_retries = 0})
    local rec = compare.run("a fox", {official(), broken})
    assert.is_false(rec.ok)
    assert.is_true(rec.entries[1].ok)
    local e = rec.entries[2]
    assert.is_false(e.ok)
    assert.equal("api", e.error.kind)
    assert.equal(400, e.error.status)
    assert.truthy(e.error.text:find("Invalid size", 1, true))
    assert.equal(0, #e.images)
    local html = assert(compare.write(rec, dir .. "/failed"))
    local page = fx.read(html)
    assert.truthy(page:find('data-images-total="1"', 1, true))
    assert.truthy(page:find("no image", 1, true))
    assert.truthy(page:find("Invalid size", 1, true))
  end)

  it("raises on wrong arguments", function()
    assert.has_error(function() compare.run("", {official()}) end)
    assert.has_error(function() compare.run("p", {}) end)
    assert.has_error(function() compare.run("p", {"official"}) end)
    assert.has_error(function() compare.run("p", {official(), official()}) end) -- the same name twice
    assert.has_error(function() compare.run("p", {official()}, {mask = "m.png"}) end)
    local rec, err = compare.run("p", {official()}, {images = dir .. "/missing.png"})
    assert.is_nil(rec)
    assert.equal("io", err.kind)
  end)

  it("writes a self-contained report that renders in headless Chromium", function()
    local bin = chromium()
    assert(bin, "chromium is not installed: apt-get install chromium (the compare report is checked in "
      .. "headless Chromium)")
    local routes = {official({name = "official"}), gateway()}
    local rec = compare.run("a lighthouse at dawn", routes, {size = "1024x1024", quality = "low"})
    assert.is_true(rec.ok)
    local report = dir .. "/report"
    local html, json = compare.write(rec, report)
    assert.equal(report .. "/compare.html", html)
    assert.equal(report .. "/compare.json", json)

    -- the page: no network needed (no external URL, stylesheet, script or font), images beside it
    local page = fx.read(html)
    -- (a cited source may show its address as text: only what the browser would fetch counts)
    for _, attr in ipairs{"src%s*=%s*[\"']?%s*https?://", "href%s*=%s*[\"']?%s*https?://", "url%(%s*[\"']?https?://",
      "@import"} do
      assert.falsy(page:find(attr), "the page refers to the network: " .. attr)
    end
    assert.falsy(page:find("<link", 1, true))
    assert.falsy(page:find("<script src", 1, true))
    for _, e in ipairs(rec.entries) do
      local file = e.images[1].file
      assert.truthy(page:find('src="' .. file .. '"', 1, true), file)
      assert.equal(e.images[1].bytes, #fx.read(report .. "/" .. file))
    end
    -- the record: the same entries, no image bytes
    local text = fx.read(json)
    local back = assert(J.decode(text))
    assert.equal(2, #back.entries)
    assert.equal(rec.entries[2].request_id, back.entries[2].request_id)
    assert.equal("provider", back.entries[2].cost.basis)
    assert.equal(0.03, back.entries[2].cost.amount)
    assert.truthy(#text < 20000, #text)

    local profile = dir .. "/chromium-profile"
    os.execute("mkdir -p " .. q(profile))
    -- the DOM after load: every image decoded (complete, naturalWidth > 0), the table with the request ids
    local dom = run_chromium(bin, profile, "--dump-dom", html)
    assert.truthy(dom:find("<table", 1, true), "chromium printed no DOM: " .. dom:sub(1, 300))
    local loaded = tonumber(dom:match('data%-images%-loaded="(%d+)"'))
    local total = tonumber(dom:match('data%-images%-total="(%d+)"'))
    assert.equal(#routes, total)
    assert.equal(#routes, loaded, "images not rendered (broken) in Chromium")
    assert.truthy(dom:find('id="compare"', 1, true))
    for _, e in ipairs(rec.entries) do
      assert.truthy(dom:find(e.request_id, 1, true), e.request_id)
      assert.truthy(dom:find(">" .. e.route .. "<", 1, true), e.route)
    end
    for _, label in ipairs{"lane", "provider", "model", "request id", "latency", "attempts", "cost", "cost basis"} do
      assert.truthy(dom:find('<th scope="row">' .. label .. "</th>", 1, true), label)
    end
    assert.truthy(dom:find("0.03 USD", 1, true))

    -- a screenshot: a real PNG of the window's size
    local shot = dir .. "/shot.png"
    run_chromium(bin, profile, "--screenshot=" .. q(shot) .. " --window-size=1200,900", html)
    local f = io.open(shot, "rb")
    assert(f, "chromium wrote no screenshot")
    local png = f:read("a")
    f:close()
    assert.equal("\137PNG\r\n\26\n", png:sub(1, 8))
    local w, h = core.dimensions(png)
    assert.equal(1200, w)
    assert.equal(900, h)
    assert.truthy(#png > 10000, #png) -- not a blank page
  end)

  it("encodes JSON with sorted keys and no userdata", function()
    assert.equal('{"a":[1,2],"b":{"c":"x/y"},"images":[],"n":1.5}',
      compare.to_json({b = {c = "x/y"}, a = {1, 2}, n = 1.5, images = {}, f = print, img = core.image(
        fx.read("examples/assets/mask-1024.png"))}))
    assert.equal("0.03", compare.money(0.03))
    assert.equal("unknown", compare.money(nil))
    assert.equal("unknown (at most 0.04 USD)", compare.cost_text({max_amount = 0.04, currency = "USD"}))
  end)
end)
