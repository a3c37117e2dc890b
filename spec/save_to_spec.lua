-- Streaming images straight into their files: the per-call option save_to.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")

describe("save_to", function()
  local s = server.for_block()

  it("decodes each final image into its file and reads the bytes from it only when asked", function()
    local dir = fx.tmpdir()
    local res = assert(imageroute.generate(fx.behaving(s, {png_bytes = 400000}), {prompt = "two", n = 2},
      {save_to = dir .. "/fox.png"}))
    assert.same({"fox-1.png", "fox-2.png"}, fx.ls(dir)) -- no temporary file left
    for i, img in ipairs(res.images) do
      local path = dir .. "/fox-" .. i .. ".png"
      assert.equal(path, img.path)
      local bytes = fx.read(path)
      assert.equal(#bytes, img.length)
      assert.equal(core.sha256(bytes), img.sha256)
      assert.equal("png", img.format)
      assert.is_number(img.width)
      assert.equal(bytes, img.bytes)
    end
    -- the bytes live in the file, not in the Image: removing the file makes reading them fail
    os.remove(dir .. "/fox-2.png")
    assert.has_error(function() return res.images[2].bytes end)
    -- a copy can still be saved from the file
    assert(res.images[1]:save(dir .. "/copy.png"))
    assert.equal(fx.read(dir .. "/fox-1.png"), fx.read(dir .. "/copy.png"))
  end)

  it("one image takes the path itself; an existing target is refused before sending", function()
    local dir = fx.tmpdir()
    local res = assert(imageroute.generate(fx.route(s), {prompt = "one"}, {save_to = dir .. "/one.png"}))
    assert.equal(dir .. "/one.png", res.images[1].path)
    local before = #s:requests()
    local _, err = imageroute.generate(fx.route(s), {prompt = "again"}, {save_to = dir .. "/one.png"})
    assert.equal("validation", err.kind)
    assert.equal("save_to", err.field)
    assert.equal(before, #s:requests())
    assert(imageroute.generate(fx.route(s), {prompt = "again"}, {save_to = dir .. "/one.png", overwrite = true}))
    local _, err2 = imageroute.generate(fx.route(s), {prompt = "x"}, {save_to = dir .. "/no/such/dir/x.png"})
    assert.equal("save_to", err2.field)
  end)

  it("leaves nothing behind when the reply breaks off mid-image", function()
    local dir = fx.tmpdir()
    local _, err = imageroute.generate(fx.behaving(s, {png_bytes = 2000000, truncate = true}, {max_retries = 0}),
      {prompt = "cut"}, {save_to = dir .. "/cut.png"})
    assert.truthy(err)
    assert.same({}, fx.ls(dir))
  end)

  it("saves streamed and responses images under the same names at the end", function()
    local dir = fx.tmpdir()
    local res = assert(imageroute.generate(fx.route(s), {prompt = "streamed", stream = true, partial_images = 1},
      {save_to = dir .. "/s.png", on_partial = function() end}))
    assert.equal(dir .. "/s.png", res.images[1].path)
    assert.equal(res.images[1].sha256, core.sha256(fx.read(dir .. "/s.png")))
    local assistant = fx.route(s, {shape = "responses", model = "gpt-5", image_model = "gpt-image-1"})
    local r2 = assert(imageroute.respond(assistant, {input = "draw an owl", tool_choice = "image_generation"},
      {save_to = dir .. "/owl.png"}))
    assert.equal(dir .. "/owl.png", r2.images[1].path)
    assert.equal(r2.images[1].sha256, core.sha256(fx.read(dir .. "/owl.png")))
    assert.same({"owl.png", "s.png"}, fx.ls(dir))
  end)
end)
