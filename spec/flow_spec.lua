local imageroute = require("imageroute")
local flow = require("imageroute.flow")
local server = require("support.server")
local fx = require("support.fixtures")

describe("imageroute.flow", function()
  local s, dir = server.for_block{dir = true}

  it("runs brief -> concept -> image -> revision -> edit, recording each step and saving files", function()
    local assistant = fx.route(s, {name = "assistant", shape = "responses", model = "gpt-5",
      image_model = "gpt-image-1"})
    local images = fx.route(s, {name = "images"})
    local f = flow.new{name = "t", out = dir}
    local concept = assert(f:step("concept", imageroute.respond, assistant, {input = "a brief", tool = false}))
    local image = assert(f:step("image", imageroute.respond, assistant, {input = concept.output_text,
      previous_response_id = concept.id, tool_choice = "image_generation"}))
    local revision = assert(f:step("revision", imageroute.respond, assistant, {input = "darker",
      previous_response_id = image.id, tool_choice = "image_generation"}))
    local edit = assert(f:step("edit", imageroute.edit, images, {prompt = "add a boat", image = revision.images[1]}))
    assert.is_true(f:ok())
    assert.equal(4, #f.steps)
    local reqs = s:requests()
    assert.equal(concept.id, reqs[2].json.previous_response_id)
    assert.equal(image.id, reqs[3].json.previous_response_id)
    assert.equal("/v1/images/edits", reqs[4].path)
    local c = f:get("concept")
    assert.equal(concept.request_id, c.request_id)
    assert.equal(concept.id, c.response_id)
    assert.equal(0, c.images)
    assert.same({}, c.files)
    local r = f:get("revision")
    assert.equal(1, r.images)
    assert.equal(dir .. "/t-revision-1.png", r.files[1].path)
    assert.equal(revision.images[1].bytes, fx.read(r.files[1].path))
    assert.equal(edit.images[1], f:last_image())
    local report = f:report()
    assert.equal(4, select(2, report:gsub("\n", "")) + 1)
    assert.truthy(report:find("t 2 image", 1, true))
    assert.truthy(report:find(image.request_id, 1, true))
    assert.truthy(report:find(dir .. "/t-edit-1.png", 1, true))
  end)

  it("records a failed step without raising", function()
    s:script{{status = 400, error = {message = "bad", type = "invalid_request_error"}}}
    local f = flow.new{name = "fail"}
    local res, err = f:step("one", imageroute.generate, fx.route(s), {prompt = "p"})
    assert.is_nil(res)
    assert.equal("api", err.kind)
    assert.is_false(f:ok())
    assert.equal(err, f:get("one").error)
    assert.truthy(f:report():find("FAIL", 1, true))
  end)

  it("reports a save failure and keeps the result", function()
    local f = flow.new{name = "x", out = dir .. "/no/such/dir"}
    local res, err = f:step("gen", imageroute.generate, fx.route(s), {prompt = "p"})
    assert.is_nil(res)
    assert.equal("io", err.kind)
    assert.equal(1, #f:get("gen").result.images)
  end)
end)
