local imageroute = require("imageroute")
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")

describe("the chat shape (provider gateways answering with Markdown image links)", function()
  local s, dir = server.for_block{dir = true}
  local png
  setup(function()
    png = assert(imageroute.generate(fx.route(s), {prompt = "input"})).images[1].bytes
    local f = assert(io.open(dir .. "/in.png", "wb"))
    f:write(png)
    f:close()
  end)

  local function route(extra)
    local cfg = fx.with({shape = "chat", lane = "provider", provider = "local-gateway", model = "gpt-image-2",
      accepted = "the bundled local server, for tests"}, extra)
    return fx.route(s, cfg)
  end

  it("generates: one user message with the prompt, the linked image downloaded", function()
    local res = assert(imageroute.generate(route(), {prompt = "a paper boat", size = "1024x1024", n = 1}))
    local req = s:requests()[1]
    assert.equal("/v1/chat/completions", req.path)
    assert.same({model = "gpt-image-2", messages = {{role = "user", content = "a paper boat"}}}, req.json)
    assert.equal(1, #res.images)
    local img = res.images[1]
    assert.equal("image/png", img.mime)
    assert.truthy(img.url:find("^http://127%.0%.0%.1:%d+/files/"))
    assert.equal(1, img.index)
    assert.truthy(res.content:find("![image](" .. img.url .. ")", 1, true))
    assert.same({{url = img.url, alt = "image"}}, res.links)
    table.sort(res.unsent)
    assert.same({"n", "size"}, res.unsent)
    assert.equal("chat", res.shape)
    assert.truthy(res.request_id:find("^req_"))
    assert.same({"request", "download"}, {res.attempt_log[1].phase, res.attempt_log[2].phase})
  end)

  it("sends params.chat fields at the top of the body", function()
    assert(imageroute.generate(route(), {prompt = "p", chat = {temperature = 0.5, user = "u1"}}))
    local body = s:requests()[1].json
    assert.equal(0.5, body.temperature)
    assert.equal("u1", body.user)
  end)

  it("edits with input images as image_url parts: URLs as given, bytes, paths and Images as data URLs", function()
    local img = imageroute.image(png)
    local given = "data:image/png;base64," .. core.b64encode(png)
    assert(imageroute.edit(route(), {prompt = "make it yellow",
      image = {"https://cdn.example/a.png", given, png, dir .. "/in.png", img}}))
    local content = s:requests()[1].json.messages[1].content
    assert.same({type = "text", text = "make it yellow"}, content[1])
    assert.same({type = "image_url", image_url = {url = "https://cdn.example/a.png"}}, content[2])
    for i = 3, 6 do
      assert.same({type = "image_url", image_url = {url = given}}, content[i])
    end
    assert.equal(6, #content)
  end)

  it("edits from a single data URL", function()
    local url = "data:image/png;base64," .. core.b64encode(png)
    local res = assert(imageroute.edit(route(), {prompt = "p", image = url}))
    assert.equal(1, #res.images)
    assert.equal(2, #s:requests()[1].json.messages[1].content)
  end)

  it("takes a title, several links, and an inline data URL", function()
    s:script{{chat_content = 'Here: ![a cat]({URL} "The cat") and ![a dog](<{URL2}>)'}}
    local res = assert(imageroute.generate(route(), {prompt = "p"}))
    assert.equal(2, #res.images)
    assert.equal("The cat", res.links[1].title)
    assert.equal("a dog", res.links[2].alt)
    assert.are_not.equal(res.images[1].url, res.images[2].url)
    s:reset()
    s:script{{chat_content = "![inline](data:image/png;base64," .. core.b64encode(png) .. ")"}}
    res = assert(imageroute.generate(route(), {prompt = "p"}))
    assert.equal(png, res.images[1].bytes)
    assert.is_nil(res.images[1].url)
  end)

  it("turns a refusal, an empty reply and a reply without an image link into errors quoting it", function()
    s:script{{refusal = "I can't help with that request."}}
    local _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("api", err.kind)
    assert.equal("refusal", err.code)
    assert.truthy(err.message:find("I can't help with that request.", 1, true))
    s:script{{chat_content = "Sorry, the image service is busy; try [this page](https://x.example) later."}}
    _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("decode", err.kind)
    assert.equal("no_image_link", err.code)
    assert.truthy(err.message:find("Sorry, the image service is busy", 1, true))
    s:script{{chat_content = ""}}
    _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("decode", err.kind)
    assert.equal("empty_content", err.code)
    local long = ("no image here "):rep(200)
    s:script{{chat_content = long}}
    _, err = imageroute.generate(route(), {prompt = "p"})
    assert.truthy(#err.message < 400)
  end)

  it("fails clearly when a link is broken, is not an image, or is not https", function()
    s:script{{chat_content = "![x](" .. s.url("/files/missing.png") .. ")"}}
    local _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("http", err.kind)
    assert.equal(404, err.status)
    assert.truthy(err.url:find("/files/missing.png", 1, true))
    s:script{{chat_content = "![x](" .. s.url("/__stats") .. ")"}}
    _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("decode", err.kind)
    assert.truthy(err.message:find("did not return an image", 1, true))
    s:script{{chat_content = "![x](http://cdn.example/a.png)"}}
    _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("decode", err.kind)
    assert.truthy(err.message:find("only https", 1, true))
    s:script{{chat_content = "![x](file:///etc/passwd)"}}
    _, err = imageroute.generate(route(), {prompt = "p"})
    assert.truthy(err.message:find("only https", 1, true))
  end)

  it("keeps the images it already has when a later link fails", function()
    s:script{{chat_content = "![a]({URL}) ![b](" .. s.url("/files/missing.png") .. ")"}}
    local res, err = imageroute.generate(route(), {prompt = "p"})
    assert.is_nil(res)
    assert.equal(404, err.status)
    assert.equal(1, #err.images)
    assert.equal("image/png", err.images[1].mime)
  end)

  it("reads image parts a gateway puts in message.images, after the content's links", function()
    -- a scripted reply: the exact bytes of each part come back, in order
    local other = assert(imageroute.generate(fx.route(s), {prompt = "other"})).images[1].bytes
    s:reset()
    local body = require("imageroute.json").encode{id = "chatcmpl-1", object = "chat.completion", created = 1,
      model = "gpt-image-2", choices = {{index = 0, finish_reason = "stop", message = {role = "assistant",
        content = "Here they are.", images = {
          {type = "image_url", image_url = {url = "data:image/png;base64," .. core.b64encode(png)}},
          {type = "image_url", image_url = {url = "data:image/png;base64," .. core.b64encode(other)}}}}}}}
    s:script{{body = body, content_type = "application/json"}}
    local res = assert(imageroute.generate(route(), {prompt = "p"}))
    assert.equal(2, #res.images)
    assert.equal(png, res.images[1].bytes)
    assert.equal(other, res.images[2].bytes)
    assert.truthy(res.content:find("Here they are.", 1, true))
    -- the local gateway's own switch: a data URL part beside a Markdown link, then a link part
    s:reset()
    s:script{{chat_images = 1, chat_content = "![a]({URL})"}}
    res = assert(imageroute.generate(route(), {prompt = "p"}))
    assert.equal(2, #res.images)
    assert.truthy(res.images[1].url) -- the Markdown link, downloaded
    assert.is_nil(res.images[2].url) -- the data URL part, decoded in place
    s:reset()
    s:script{{chat_images = 1, chat_images_as = "url"}}
    res = assert(imageroute.generate(route(), {prompt = "p"}))
    assert.equal(1, #res.images)
    assert.truthy(res.images[1].url:find("/files/", 1, true))
    assert.equal("download", res.attempt_log[2].phase) -- on the same transfer, under the download policy
  end)

  it("reads image parts streamed in a delta's images", function()
    s:script{{chat_images = 2}}
    local res = assert(imageroute.generate(route(), {prompt = "p", chat = {stream = true}}))
    assert.equal(2, #res.images)
    assert.are_not.equal(res.images[1].sha256, res.images[2].sha256)
    assert.equal("Here is the image you asked for.", res.content)
  end)

  it("takes hostile images fields without harm: not a list, odd parts, more than max_images", function()
    local function reply(images)
      return require("imageroute.json").encode{id = "c", object = "chat.completion", created = 1, model = "m",
        choices = {{index = 0, message = {role = "assistant", content = "![x](data:image/png;base64,"
          .. core.b64encode(png) .. ")", images = images}}}}
    end
    for _, images in ipairs{"a string", 42, {1, 2, {type = "image_url"}, {type = "image_url", image_url = {url = 7}},
      {type = "video", image_url = {url = "http://127.0.0.1:1/x"}}}} do
      s:reset()
      s:script{{body = reply(images), content_type = "application/json"}}
      local res = assert(imageroute.generate(route(), {prompt = "p"}))
      assert.equal(1, #res.images) -- the content's image only
      assert.equal(1, #s:requests())
    end
    local many = {}
    for i = 1, 40 do many[i] = {type = "image_url", image_url = {url = "http://127.0.0.1:1/img" .. i}} end
    s:reset()
    s:script{{body = reply(many), content_type = "application/json"}}
    local _, err = imageroute.generate(route(), {prompt = "p"})
    assert.equal("decode", err.kind)
    assert.truthy(err.message:find("max_images", 1, true), err.message)
    assert.equal(1, #s:requests()) -- none downloaded
  end)

  it("refuses a mask and a missing image", function()
    local _, err = imageroute.edit(route(), {prompt = "p", image = png, mask = png})
    assert.equal("mask", err.field)
    _, err = imageroute.edit(route(), {prompt = "p"})
    assert.equal("image", err.field)
    _, err = imageroute.edit(route(), {prompt = "p", image = "not an image at all\0"})
    assert.equal("image", err.field)
    assert.equal(0, #s:requests())
  end)
end)
