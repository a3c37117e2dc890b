-- Bounded memory: image:release() frees an image's bytes at once and keeps what describes it;
-- batch with keep_results = false releases each result's images after on_done.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")

describe("releasing images", function()
  local s = server.for_block()

  it("release frees the bytes and keeps length, sha256, format, size and path", function()
    local res = assert(imageroute.generate(fx.route(s), {prompt = "a lighthouse"}))
    local img = res.images[1]
    local bytes, sha, len = img.bytes, img.sha256, img.length
    assert.is_true(#bytes > 0)
    local dir = fx.tmpdir()
    local path = assert(img:save(dir .. "/a.png"))
    img:release()
    assert.is_true(img.released)
    assert.equal(sha, img.sha256)
    assert.equal(len, img.length)
    assert.equal(len, #img)
    assert.equal("png", img.format)
    assert.is_number(img.width)
    assert.equal(path, img.path)
    assert.has_error(function() return img.bytes end, "image was released (image:release())")
    assert.has_error(function() img:save(dir .. "/b.png") end)
    img:release() -- twice is harmless
    assert.matches("^imageroute.Image%(png, %d+ bytes", tostring(img))
    -- a released Image given as an edit input is refused before sending, not read
    local before = #s:requests()
    local _, err = imageroute.edit(fx.route(s), {prompt = "x", image = img})
    assert.equal("validation", err.kind)
    assert.equal(before, #s:requests())
    assert.equal(bytes, fx.read(path)) -- the file holds what the bytes were
  end)

  it("batch with keep_results = false releases each result's images after on_done", function()
    local kept, saved = {}, {}
    local dir = fx.tmpdir()
    local jobs = {}
    for i = 1, 4 do jobs[i] = {route = fx.route(s), params = {prompt = "job " .. i}} end
    imageroute.batch(jobs, {keep_results = false, max_in_flight = 2, on_done = function(i, res)
      local img = res.images[1]
      saved[i] = assert(img:save(dir .. "/" .. i .. ".png"))
      assert.is_false(img.released) -- still whole inside on_done
      kept[i] = img
    end})
    for i = 1, 4 do
      assert.is_true(kept[i].released)
      assert.equal(saved[i], kept[i].path)
      assert.equal(kept[i].length, #fx.read(saved[i]))
    end
  end)
end)
