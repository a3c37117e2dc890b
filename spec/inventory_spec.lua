-- imageroute log inventory: the migration table filled in from a call log the spec produces with
-- real calls to the local server: every capability the route guides list, mapped to its official
-- replacement, with the official routes of a routes file that cover it.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.json")
local inventory = require("imageroute.billing.inventory")
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")

local MASK = cli.ROOT .. "/examples/assets/mask-1024.png"

local function rows_of(inv, route)
  for _, r in ipairs(inv.routes) do
    if r.route == route then
      local by = {}
      for _, row in ipairs(r.rows) do by[row.id] = row end
      return by, r
    end
  end
end

describe("imageroute log inventory", function()
  local s, dir, log
  setup(function()
    s = server.start()
    dir = fx.tmpdir()
    log = dir .. "/calls.jsonl"
  end)
  teardown(function()
    s:stop()
    os.execute("rm -rf " .. cli.q(dir))
  end)

  it("lists what each route did, from real traffic, and which official route covers it", function()
    local pool = fx.route(s, {name = "pool", lane = "provider", provider = "pool", shape = "images",
      model = "gpt-image-2", accepted = "spec", max_retries = 1, log = log})
    local gw = fx.route(s, {name = "gw", lane = "provider", provider = "gw", shape = "chat", model = "gpt-image-2",
      accepted = "spec", max_retries = 0, log = log})
    local resp = fx.route(s, {name = "assistant", shape = "responses", model = "gpt-5", image_model = "gpt-image-1",
      log = log})
    -- the pool: text-to-image (saved), a retry after a 500, edits with and without mask, several
    -- images, streaming with partial images, a moderation block
    s:script({{status = 500}, {}})
    local res = assert(imageroute.generate(pool, {prompt = "a fox", quality = "low"}))
    assert(res.images[1]:save(dir .. "/fox.png"))
    assert(imageroute.edit(pool, {prompt = "add snow", image = MASK}))
    assert(imageroute.edit(pool, {prompt = "add snow", image = {MASK, MASK, MASK}, mask = MASK}))
    assert(imageroute.generate(pool, {prompt = "a fox", stream = true, partial_images = 2}))
    s:script({{status = 400, error = {message = "blocked by the safety system", code = "moderation_blocked"}}})
    assert.is_nil((imageroute.generate(pool, {prompt = "a fox"})))
    -- the gateway: a link to download, and a data URL
    assert(imageroute.generate(gw, {prompt = "a boat"}))
    local png = fx.read(MASK)
    s:script({{chat_content = "![image](data:image/png;base64," .. core.b64encode(png):gsub("\n", "") .. ")"}})
    assert(imageroute.generate(gw, {prompt = "a boat"}))
    -- a router falling back from the pool to the gateway
    local both = assert(imageroute.router{name = "both", routes = {pool, gw}, fallback_on = {"server_error"}})
    s:script({{status = 500}, {status = 500}, {}})
    assert(imageroute.generate(both, {prompt = "a kite"}))
    -- an agent step on the Responses API
    assert(imageroute.respond(resp, {input = "draw an owl", tool_choice = "image_generation"}))

    local routes = {
      ["official-images"] = assert(imageroute.route{name = "official-images", model = "gpt-image-1"}),
      ["official-responses"] = assert(imageroute.route{name = "official-responses", shape = "responses",
        model = "gpt-5", image_model = "gpt-image-2"}),
      dalle = assert(imageroute.route{name = "dalle", model = "dall-e-3"}),
      gateway = gw,
    }
    local order = {"official-images", "official-responses", "dalle", "gateway"}
    local inv = inventory.build(assert(imageroute.log.read(log)), routes, order)
    assert.same({"official-images", "official-responses", "dalle"}, inv.official)
    local p, entry = rows_of(inv, "pool")
    assert.equal("provider", entry.lane)
    assert.equal(4, p.text_to_image.count) -- fox (retried: one call), streamed fox, blocked fox, the router's kite
    assert.equal(1, p.edit.count)
    assert.equal(1, p.edit_mask.count)
    assert.equal(1, p.edit_multi.count)
    assert.equal("up to 3 input images per edit", p.edit_multi.note)
    assert.equal(1, p.streaming.count)
    assert.equal(2, p.partials_received.count)
    assert.is_true(p.b64_output.count >= 4)
    assert.is_true(p.retries.count >= 1)
    assert.is_true(p.retries_may_bill.count >= 1)
    assert.equal("number", type(p.retries_may_bill.may_have_billed))
    assert.truthy(p.retries_may_bill.note:find("may have billed up to", 1, true))
    assert.equal(1, p.moderation.count)
    assert.equal(1, p.saves.count)
    assert.truthy(p.text_to_image.example:match("^req_"))
    assert.same({"official-images"}, p.text_to_image.covered_by) -- dall-e-3 takes no edits, gateway not official
    assert.same({"official-images"}, p.edit_mask.covered_by)
    assert.equal("Images API edit", p.edit.replacement)
    assert.same({"official-images", "official-responses"}, p.streaming.covered_by) -- dall-e-3 does not stream
    local g = rows_of(inv, "gw")
    assert.is_true(g.url_output.count >= 1)
    assert.equal(1, g.data_url_output.count)
    assert.equal(1, g.fallback.count)
    assert.is_false(g.fallback.covered)
    assert.equal("kept as an explicit fallback, not first-party behaviour", g.fallback.replacement)
    local a = rows_of(inv, "assistant")
    assert.same({"official-responses"}, a.agent_step.covered_by)
    assert.equal("Responses image_generation", a.agent_step.replacement)
    local text = inventory.text(inv, require("imageroute.cli.common").table_text)
    assert.truthy(text:find("route pool  lane=provider", 1, true), text)
    assert.truthy(text:find("image edit with a mask", 1, true), text)
  end)

  it("a data URL in b64_json is counted as data-URL output, not base64, in the log and the inventory", function()
    local dlog = dir .. "/dataurl.jsonl"
    local pool = fx.route(s, {name = "dpool", lane = "provider", provider = "pool", shape = "images",
      model = "gpt-image-2", accepted = "spec", max_retries = 0, log = dlog})
    local png = fx.read(MASK)
    local b64 = core.b64encode(png):gsub("\n", "")
    -- one reply: a data URL in data[1].b64_json, plain base64 in data[2].b64_json
    s:script({{body = {created = 1, data = {{b64_json = "data:image/png;base64," .. b64}, {b64_json = b64}}}}})
    local res = assert(imageroute.generate(pool, {prompt = "a fox", n = 2}))
    assert.equal(2, #res.images)
    assert.equal(core.sha256(png), res.images[1].sha256)
    assert.equal("image/png", res.images[1].data_url_mime)  -- what the data: URL declared
    assert.is_nil(res.images[2].data_url_mime)
    -- decoded straight into its file (save_to): the same
    s:script({{body = {created = 1, data = {{b64_json = "data:image/png;base64," .. b64}}}}})
    res = assert(imageroute.generate(pool, {prompt = "a fox"}, {save_to = dir .. "/dataurl.png"}))
    assert.equal("image/png", res.images[1].data_url_mime)
    assert.equal(core.sha256(png), res.images[1].sha256)
    -- streamed: the completed event's b64_json as a data URL
    s:script({{b64_mode = "dataurl"}})
    res = assert(imageroute.generate(pool, {prompt = "a fox", stream = true, partial_images = 1}))
    assert.equal("image/png", res.images[1].data_url_mime)
    local finals = {}
    for _, r in ipairs(assert(imageroute.log.read(dlog))) do
      if r.event == "attempt" and r.final then finals[#finals + 1] = r.outputs end
    end
    assert.same({{b64 = 1, url = 0, data_url = 1}, {b64 = 0, url = 0, data_url = 1}, {b64 = 0, url = 0, data_url = 1}},
      finals)
    local inv = inventory.build(assert(imageroute.log.read(dlog)))
    local p = rows_of(inv, "dpool")
    assert.equal(3, p.data_url_output.count)
    assert.equal(1, p.b64_output.count) -- only the plain one
    -- and the command says so
    local rc, out, err = cli.run(dir, {"log", "inventory", dlog, "--json"})
    assert.equal(0, rc, err)
    local j = assert(json.decode(out))
    local seen = {}
    for _, row in ipairs(j.routes[1].rows) do seen[row.id] = row.count end
    assert.equal(3, seen.data_url_output)
    assert.equal(1, seen.b64_output)
  end)

  it("the command: a routes file's log, JSON too; without a routes file coverage is unknown", function()
    local routes = dir .. "/inv-routes.lua"
    cli.write(routes, ([[return {["official-images"] = {lane = "official", shape = "images", model = "gpt-image-1",
      base_url = %q, api_key_env = "IMAGEROUTE_TEST_KEY", log = %q}}]]):format(s.base_url, log))
    local rc, out, err = cli.run(dir, {"--routes", routes, "log", "inventory"})
    assert.equal(0, rc, err)
    assert.truthy(out:find("call log " .. log, 1, true), out)
    assert.truthy(out:find("official routes: official-images", 1, true), out)
    assert.truthy(out:find("CAPABILITY", 1, true), out)
    rc, out, err = cli.run(dir, {"--routes", routes, "log", "inventory", log, "--json"})
    assert.equal(0, rc, err)
    local j = assert(json.decode(out))
    assert.equal(3, #j.routes)
    rc, out = cli.run(dir, {"log", "inventory", log})
    assert.equal(0, rc)
    assert.truthy(out:find("no official route in the routes file", 1, true), out)
    rc = cli.run(dir, {"log", "inventory", dir .. "/missing.jsonl"})
    assert.equal(1, rc)
    for _, c in ipairs{{"log", "inventory"}, {"probe"}, {"reconcile"}} do
      c[#c + 1] = "--help"
      rc, out = cli.run(dir, c)
      assert.equal(0, rc, table.concat(c, " "))
      assert.truthy(out:find("Usage: imageroute " .. table.concat(c, " ", 1, #c - 1), 1, true), out)
    end
  end)
end)
