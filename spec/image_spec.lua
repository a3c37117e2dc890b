local imageroute = require("imageroute")
local core = require("imageroute.core")
local fx = require("support.fixtures")

-- A real 1x1 PNG, hand-assembled from the spec's chunk layout (zlib stored block)
local PNG_1x1 = table.concat{
  "\137PNG\r\n\26\n",
  "\0\0\0\13IHDR\0\0\0\1\0\0\0\1\8\2\0\0\0\144\119\83\222",
  "\0\0\0\12IDAT\8\215\99\248\207\192\0\0\3\1\1\0\24\221\141\176",
  "\0\0\0\0IEND\174\66\96\130",
}


describe("base64 through libb64", function()
  local cases = {
    {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"}, {"foobar", "Zm9vYmFy"},
    {("\255\0"):rep(100), nil},
  }
  for i, c in ipairs(cases) do
    it("round-trips case " .. i, function()
      local enc = core.b64encode(c[1])
      if c[2] then assert.equal(c[2], enc) end
      assert.falsy(enc:find("\n", 1, true)) -- libb64's line breaks are stripped
      assert.equal(c[1], core.b64decode(enc))
    end)
  end
  local invalid = {"YWJj!!ZGVm", "Zg=", "Zg===", "Z", "Zm9v=Zm9v", "Zm8=Zg=="}
  for _, s in ipairs(invalid) do
    it("refuses " .. s, function()
      local v, err = core.b64decode(s)
      assert.is_nil(v)
      assert.truthy(err:find("invalid base64", 1, true))
    end)
  end
  it("ignores whitespace", function()
    assert.equal("foobar", core.b64decode("Zm9v\nYmFy\r\n"))
  end)
end)

describe("Image", function()
  it("sniffs type and size from the bytes", function()
    local img = imageroute.image(PNG_1x1)
    assert.equal("image/png", img.mime)
    assert.equal("png", img.format)
    assert.equal(1, img.width)
    assert.equal(1, img.height)
    assert.equal(#PNG_1x1, img.length)
    assert.equal(#PNG_1x1, #img)
    assert.equal(PNG_1x1, img.bytes)
    assert.equal("image/jpeg", (core.sniff("\255\216\255\224rest")))
    assert.equal("image/webp", (core.sniff("RIFF\0\0\0\0WEBPVP8 ")))
    assert.is_nil(core.sniff("<html>"))
  end)

  it("saves atomically and refuses to overwrite unless asked", function()
    local dir = fx.tmpdir()
    local img = imageroute.image(PNG_1x1)
    local path, n = img:save(dir .. "/a.png")
    assert.equal(dir .. "/a.png", path)
    assert.equal(#PNG_1x1, n)
    assert.equal(PNG_1x1, fx.read(path))
    local other = imageroute.image(PNG_1x1 .. "extra")
    local p2, err = other:save(dir .. "/a.png")
    assert.is_nil(p2)
    assert.equal("io", err.kind)
    assert.truthy(err.message:find("exists", 1, true))
    assert.equal(PNG_1x1, fx.read(path)) -- untouched
    assert.truthy(other:save(dir .. "/a.png", {overwrite = true, durable = true}))
    assert.equal(PNG_1x1 .. "extra", fx.read(path))
    -- no temporary files left behind
    local ls = io.popen("ls -A " .. dir):read("a")
    assert.equal("a.png\n", ls)
    os.execute("rm -rf " .. dir)
  end)

  it("reports a missing directory as an io error", function()
    local img = imageroute.image(PNG_1x1)
    local p, err = img:save("/nonexistent-dir-imageroute/x.png")
    assert.is_nil(p)
    assert.equal("io", err.kind)
    assert.equal("/nonexistent-dir-imageroute/x.png", err.path)
    assert.truthy(err.errno > 0)
  end)

  it("closes: the bytes are released, the length kept", function()
    local img = imageroute.image(PNG_1x1)
    -- `<close>` is Lua 5.4 syntax (a 5.3 parser rejects the whole file): compiled only there; 5.3 calls
    -- the metamethod a to-be-closed variable would call
    if _VERSION == "Lua 5.3" then getmetatable(img).__close(img)
    else assert(load("do local i <close> = ... end", "=close", "t"))(img) end
    assert.is_true(img.released)
    assert.equal(#PNG_1x1, #img)
    assert.has_error(function() img:save(os.tmpname()) end)
  end)
end)
