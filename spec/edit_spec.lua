local imageroute = require("imageroute")
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")

-- magic bytes are what the client sniffs; the local server does not decode the pixels
local JPEG = "\255\216\255\224\0\16JFIF\0" .. ("j"):rep(300)
local WEBP = "RIFF\0\0\0\0WEBPVP8 " .. ("w"):rep(300)

describe("edit (Images API, multipart) against the local server", function()
  local s, dir = server.for_block{dir = true}
  local png, png_path
  setup(function()
    png = assert(imageroute.generate(fx.route(s), {prompt = "source"})).images[1].bytes
    png_path = dir .. "/source-image.png"
    local f = assert(io.open(png_path, "wb"))
    f:write(png)
    f:close()
  end)

  local function parts_by_name(req)
    local out = {}
    for _, p in ipairs(req.parts) do
      out[p.name] = out[p.name] or {}
      table.insert(out[p.name], p)
    end
    return out
  end

  it("sends one image from a path as the part 'image', byte for byte", function()
    local res = assert(imageroute.edit(fx.route(s), {prompt = "make it blue", image = png_path}))
    assert.equal(1, #res.images)
    local req = s:requests()[1]
    assert.equal("/v1/images/edits", req.path)
    assert.truthy(req.headers["content-type"]:find("^multipart/form%-data; boundary="))
    assert.is_nil(req.headers.expect)
    local p = parts_by_name(req)
    assert.equal(1, #p.image)
    assert.is_nil(p["image[]"])
    assert.equal("source-image.png", p.image[1].filename)
    assert.equal("image/png", p.image[1].content_type)
    assert.equal(png, core.b64decode(p.image[1].data_b64))
    assert.equal("gpt-image-1", p.model[1].value)
    assert.equal("make it blue", p.prompt[1].value)
    assert.equal("model", req.parts[1].name) -- model first
    assert.are_not.equal(png, res.images[1].bytes)
  end)

  it("sends several images as repeated 'image[]' parts with sniffed types, and a mask", function()
    assert(imageroute.edit(fx.route(s), {prompt = "combine", image = {png, JPEG, WEBP}, mask = png_path}))
    local p = parts_by_name(s:requests()[1])
    assert.is_nil(p.image)
    assert.equal(3, #p["image[]"])
    assert.same({"image_1.png", "image_2.jpg", "image_3.webp"},
      {p["image[]"][1].filename, p["image[]"][2].filename, p["image[]"][3].filename})
    assert.same({"image/png", "image/jpeg", "image/webp"},
      {p["image[]"][1].content_type, p["image[]"][2].content_type, p["image[]"][3].content_type})
    assert.equal(JPEG, core.b64decode(p["image[]"][2].data_b64))
    assert.equal(WEBP, core.b64decode(p["image[]"][3].data_b64))
    assert.equal(1, #p.mask)
    assert.equal("source-image.png", p.mask[1].filename)
    assert.equal(png, core.b64decode(p.mask[1].data_b64))
  end)

  it("takes {data =, filename =, mime =} and sends every other field as a form field", function()
    assert(imageroute.edit(fx.route(s), {
      prompt = "p", image = {data = png, filename = "mine.png", mime = "image/png"},
      n = 2, size = "1024x1024", quality = "low", stream = false, output_compression = 50, model = "gpt-image-1.5",
    }))
    local req = s:requests()[1]
    local p = parts_by_name(req)
    assert.equal("mine.png", p.image[1].filename)
    local fields = {}
    for _, part in ipairs(req.parts) do
      if type(part.filename) ~= "string" then fields[#fields + 1] = part.name .. "=" .. part.value end
    end
    assert.same({"model=gpt-image-1.5", "n=2", "output_compression=50", "prompt=p", "quality=low",
      "size=1024x1024", "stream=false"}, fields)
  end)

  it("sends a single-item list as 'image'", function()
    assert(imageroute.edit(fx.route(s), {prompt = "p", image = {png}}))
    local p = parts_by_name(s:requests()[1])
    assert.equal(1, #p.image)
    assert.equal("image.png", p.image[1].filename)
  end)

  it("refuses what is not a PNG, JPEG or WebP before sending", function()
    local r = fx.route(s)
    local cases = {
      {{prompt = "p"}, "image", "required"},
      {{prompt = "p", image = "GIF89a" .. ("\0"):rep(20)}, "image", "not a PNG, JPEG or WebP"},
      {{prompt = "p", image = "<html>not an image</html>\0"}, "image", "not a PNG, JPEG or WebP"},
      {{prompt = "p", image = dir .. "/missing.png"}, "image", "cannot read"},
      {{prompt = "p", image = png, mask = "plain text\0"}, "mask", "not a PNG, JPEG or WebP"},
      {{prompt = "p", image = {png, "nope\0"}}, "image[2]", "not a PNG"},
      {{prompt = "p", image = {}}, "image", "empty"},
      {{prompt = "p", image = png, extra = {1, 2}}, "extra", "string, number or boolean"},
      {{prompt = "p", image = 5}, "image", "path, the image bytes"},
    }
    for _, c in ipairs(cases) do
      local res, err = imageroute.edit(r, c[1])
      assert.is_nil(res)
      assert.equal("validation", err.kind, tostring(err))
      assert.equal(c[2], err.field, tostring(err))
      assert.truthy(err.message:find(c[3], 1, true), err.message)
    end
    local many = {}
    for i = 1, 17 do many[i] = png end
    local _, err = imageroute.edit(r, {prompt = "p", image = many})
    assert.truthy(err.message:find("at most 16", 1, true))
    assert.equal(0, #s:requests())
  end)

  it("sends 16 images", function()
    local many = {}
    for i = 1, 16 do many[i] = png end
    assert(imageroute.edit(fx.route(s), {prompt = "p", image = many}))
    assert.equal(16, #parts_by_name(s:requests()[1])["image[]"])
  end)

  it("uploads a multi-MB image intact", function()
    local big = png .. string.rep("\0\1\2\3\4\5\6\7", 512 * 1024) -- 4 MiB trailing data, still a PNG by magic
    assert(imageroute.edit(fx.route(s), {prompt = "p", image = big}))
    local p = parts_by_name(s:requests()[1])
    assert.equal(#big, p.image[1].size)
    assert.equal(big, core.b64decode(p.image[1].data_b64))
  end)
end)
