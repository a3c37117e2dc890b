local imageroute = require("imageroute")
local rules = require("imageroute.rules")
local models = require("imageroute.models")
local policy = require("imageroute.policy")
local server = require("support.server")
local fx = require("support.fixtures")

-- magic bytes are all the rules (and the C core) look at
local JPEG = "\255\216\255\224\0\16JFIF\0" .. ("j"):rep(300)
local WEBP = "RIFF\0\0\0\0WEBPVP8 " .. ("w"):rep(300)
local MASK_PATH = "examples/assets/mask-1024.png"
local PNG = fx.read(MASK_PATH)

local function route(extra)
  local cfg = fx.with({name = "r", base_url = "http://127.0.0.1:9/v1", model = "gpt-image-1",
    api_key_env = fx.KEY_ENV}, extra)
  return assert(imageroute.route(cfg))
end

local function responses(extra)
  local cfg = fx.with({shape = "responses", model = "gpt-5", image_model = "gpt-image-1"}, extra)
  return route(cfg)
end

local PROVIDER = {lane = "provider", provider = "acme", accepted = "spec gateway"}

-- {description, kind, route, params, opts, rule, field}
local function refusals()
  local many = {}
  for i = 1, 17 do many[i] = PNG end
  return {
    {"an image model as the top-level Responses model", "respond", responses(), {input = "x", model = "gpt-image-2"},
      nil, "image_model_on_top", "model"},
    {"an image model on top of a responses route (generate)", "generate", responses{model = "gpt-image-1"},
      {prompt = "x"}, nil, "image_model_on_top", "model"},
    {"a dated snapshot on top", "respond", responses(), {input = "x", model = "gpt-image-2-2026-04-21"}, nil,
      "image_model_on_top", "model"},
    {"an edit on dall-e-3", "edit", route{model = "dall-e-3"}, {prompt = "x", image = PNG}, nil,
      "edit_unsupported", "model"},
    {"response_format to a GPT image model", "generate", route(), {prompt = "x", response_format = "url"}, nil,
      "response_format_gpt_image", "response_format"},
    {"response_format to gpt-image-2 in an edit", "edit", route{model = "gpt-image-2"},
      {prompt = "x", image = PNG, response_format = "b64_json"}, nil, "response_format_gpt_image", "response_format"},
    {"a transparent JPEG", "generate", route(), {prompt = "x", background = "transparent", output_format = "jpeg"},
      nil, "transparent_jpeg", "output_format"},
    {"a transparent JPEG in the Responses tool", "respond", responses(),
      {input = "x", tool = {background = "transparent", output_format = "jpeg"}}, nil, "transparent_jpeg",
      "output_format"},
    {"transparent on dall-e-2", "generate", route{model = "dall-e-2"}, {prompt = "x", background = "transparent"},
      nil, "transparent_unsupported", "background"},
    {"transparent on gpt-image-2 (preview) without opting in", "generate", route{model = "gpt-image-2"},
      {prompt = "x", background = "transparent", output_format = "png"}, nil, "transparent_preview", "background"},
    {"transparent on the gpt-image-2 tool without opting in", "respond", responses{image_model = "gpt-image-2"},
      {input = "x", background = "transparent"}, nil, "transparent_preview", "background"},
    {"transparent on the gpt-image-2 snapshot", "generate", route{model = "gpt-image-2-2026-04-21"},
      {prompt = "x", background = "transparent"}, nil, "transparent_preview", "background"},
    {"n = 0", "generate", route(), {prompt = "x", n = 0}, nil, "n_range", "n"},
    {"n = 11", "generate", route(), {prompt = "x", n = 11}, nil, "n_range", "n"},
    {"n = 1.5", "generate", route(), {prompt = "x", n = 1.5}, nil, "n_range", "n"},
    {"n as a string", "generate", route(), {prompt = "x", n = "2"}, nil, "n_range", "n"},
    {"n > 1 on dall-e-3", "generate", route{model = "dall-e-3"}, {prompt = "x", n = 2}, nil, "n_max", "n"},
    {"partial_images = 4", "generate", route(), {prompt = "x", stream = true, partial_images = 4}, nil,
      "partial_images_range", "partial_images"},
    {"partial_images = -1", "edit", route(), {prompt = "x", image = PNG, partial_images = -1}, nil,
      "partial_images_range", "partial_images"},
    {"partial_images = 4 in the tool", "respond", responses(), {input = "x", stream = true, partial_images = 4}, nil,
      "partial_images_range", "partial_images"},
    {"partial_images on dall-e-2", "generate", route{model = "dall-e-2"}, {prompt = "x", partial_images = 1}, nil,
      "partial_images_unsupported", "partial_images"},
    {"streaming the tool with partial_images = 0", "respond", responses(),
      {input = "x", stream = true, partial_images = 0}, nil, "stream_partial_images", "partial_images"},
    {"streaming the tool without partial_images", "generate", responses(), {prompt = "x", stream = true}, nil,
      "stream_partial_images", "partial_images"},
    {"gpt-image-2: a side not divisible by 16", "generate", route{model = "gpt-image-2"},
      {prompt = "x", size = "1000x1000"}, nil, "size", "size"},
    {"gpt-image-2: a ratio above 3:1", "generate", route{model = "gpt-image-2"}, {prompt = "x", size = "3520x1152"},
      nil, "size", "size"},
    {"gpt-image-2: a ratio below 1:3", "generate", route{model = "gpt-image-2"}, {prompt = "x", size = "512x1552"},
      nil, "size", "size"},
    {"gpt-image-2: more than 3840x2160", "generate", route{model = "gpt-image-2"}, {prompt = "x", size = "3840x2176"},
      nil, "size", "size"},
    {"gpt-image-2: a side above 3840", "generate", route{model = "gpt-image-2"}, {prompt = "x", size = "4096x1536"},
      nil, "size", "size"},
    {"gpt-image-2: not WxH", "generate", route{model = "gpt-image-2"}, {prompt = "x", size = "big"}, nil, "size",
      "size"},
    {"gpt-image-1: a size off its list", "generate", route(), {prompt = "x", size = "1792x1024"}, nil, "size", "size"},
    {"dall-e-3: a size off its list", "generate", route{model = "dall-e-3"}, {prompt = "x", size = "1536x1024"}, nil,
      "size", "size"},
    {"dall-e-2: a size off its list", "edit", route{model = "dall-e-2"}, {prompt = "x", image = PNG, size = "auto"},
      nil, "size", "size"},
    {"a size off the tool model's list", "respond", responses(), {input = "x", tool = {size = "512x512"}}, nil,
      "size", "size"},
    {"a quality the model does not know", "generate", route(), {prompt = "x", quality = "hd"}, nil, "quality",
      "quality"},
    {"input_fidelity on gpt-image-1-mini", "edit", route{model = "gpt-image-1-mini"},
      {prompt = "x", image = PNG, input_fidelity = "high"}, nil, "input_fidelity_unsupported", "input_fidelity"},
    {"input_fidelity on the gpt-image-1-mini tool", "respond", responses(),
      {input = "x", image_model = "gpt-image-1-mini", input_fidelity = "low"}, nil, "input_fidelity_unsupported",
      "input_fidelity"},
    {"input_fidelity on dall-e-2", "edit", route{model = "dall-e-2"}, {prompt = "x", image = PNG,
      input_fidelity = "low"}, nil, "input_fidelity_unsupported", "input_fidelity"},
    {"17 edit images", "edit", route(), {prompt = "x", image = many}, nil, "edit_images_max", "image"},
    {"17 edit images on an unknown model", "edit", route{model = "acme-image"}, {prompt = "x", image = many}, nil,
      "edit_images_max", "image"},
    {"2 edit images on dall-e-2", "edit", route{model = "dall-e-2"}, {prompt = "x", image = {PNG, PNG}}, nil,
      "edit_images_max", "image"},
    {"a JPEG mask", "edit", route(), {prompt = "x", image = PNG, mask = JPEG}, nil, "mask_not_png", "mask"},
    {"a WebP mask given as {data =}", "edit", route(), {prompt = "x", image = PNG, mask = {data = WEBP}}, nil,
      "mask_not_png", "mask"},
    {"a JPEG mask on a responses route", "edit", responses(), {prompt = "x", image = PNG, mask = JPEG}, nil,
      "mask_not_png", "mask"},
    {"a JPEG data URL as the tool's mask", "respond", responses(),
      {input = "x", input_image_mask = {image_url = "data:image/jpeg;base64,/9j/4AAQ"}}, nil, "mask_not_png", "mask"},
  }
end

describe("stop rules (imageroute.rules)", function()
  it("refuses each case with an error naming the rule, the field and the fix", function()
    for _, c in ipairs(refusals()) do
      local ok, err = rules.check(c[2], c[3], c[4], c[5])
      assert.is_nil(ok, c[1])
      assert.equal("validation", err.kind, c[1])
      assert.equal(c[6], err.rule, c[1] .. ": " .. tostring(err))
      assert.equal(c[7], err.field, c[1])
      assert.equal("string", type(err.fix), c[1])
      assert.truthy(err.message:find("stop rule " .. c[6], 1, true), err.message)
      assert.truthy(err.message:find("fix: " .. err.fix, 1, true), err.message)
      assert.equal(0, err.attempts)
      assert.equal("r", err.route)
      assert.truthy(tostring(err):find("^imageroute validation error: stop rule "), tostring(err))
    end
  end)

  it("says where a model fact comes from", function()
    local _, err = rules.check("generate", route{model = "dall-e-3"}, {prompt = "x", n = 2})
    assert.truthy(err.source:find("openai-openapi.yaml", 1, true), err.source)
    assert.truthy(err.message:find("dall-e-3 takes n up to 1", 1, true), err.message)
  end)

  it("lets through what the models take", function()
    local cases = {
      {"generate", route(), {prompt = "x", size = "1536x1024", quality = "high", n = 10}},
      {"generate", route{model = "gpt-image-2"}, {prompt = "x", size = "3840x2160"}},
      {"generate", route{model = "gpt-image-2"}, {prompt = "x", size = "2160x3840"}},
      {"generate", route{model = "gpt-image-2"}, {prompt = "x", size = "1536x864"}},
      {"generate", route{model = "gpt-image-2"}, {prompt = "x", size = "3072x1024"}},
      {"generate", route{model = "gpt-image-2"}, {prompt = "x", size = "auto"}},
      {"generate", route{model = "dall-e-3"}, {prompt = "x", size = "1792x1024", quality = "hd", n = 1,
        response_format = "url"}},
      {"generate", route{model = "dall-e-2"}, {prompt = "x", size = "256x256", n = 10, response_format = "b64_json"}},
      {"generate", route(), {prompt = "x", background = "transparent", output_format = "png"}},
      {"generate", route(), {prompt = "x", background = "transparent", output_format = "webp"}},
      {"generate", route(), {prompt = "x", background = "opaque", output_format = "jpeg"}},
      {"generate", route(), {prompt = "x", stream = true, partial_images = 0}},
      {"generate", route(), {prompt = "x", stream = true, partial_images = 3}},
      {"edit", route(), {prompt = "x", image = PNG, input_fidelity = "high", mask = PNG}},
      {"edit", route(), {prompt = "x", image = PNG, mask = MASK_PATH}},
      {"edit", route{model = "gpt-image-1.5"}, {prompt = "x", image = {PNG, JPEG, WEBP}, input_fidelity = "low"}},
      {"edit", route{model = "dall-e-2"}, {prompt = "x", image = PNG, size = "512x512"}},
      {"respond", responses(), {input = "x", stream = true, partial_images = 1}},
      {"respond", responses(), {input = "x", stream = true, tool = false}},
      {"respond", responses(), {input = "x", size = "1024x1536", quality = "low", input_image_mask = {file_id = "f"}}},
      {"respond", responses(), {input = "x", input_image_mask = {image_url = "data:image/png;base64,iVBORw0KGgo"}}},
      -- an explicit tools list is sent as is: its image_generation entry is what is checked
      {"respond", responses(), {input = "x", size = "512x512",
        tools = {{type = "image_generation", model = "gpt-image-1", size = "1024x1024"}}}},
      -- a JPEG that cannot be told apart here is left to the C core (which checks every image)
      {"edit", route(), {prompt = "x", image = PNG, mask = "no such file.png"}},
    }
    for i, c in ipairs(cases) do
      local ok, err = rules.check(c[1], c[2], c[3])
      assert.is_true(ok, "case " .. i .. ": " .. tostring(err))
    end
  end)

  it("takes an opt-in for preview features, per call", function()
    local r = route{model = "gpt-image-2"}
    local params = {prompt = "x", background = "transparent", output_format = "png"}
    assert.is_nil((rules.check("generate", r, params)))
    assert.is_true(rules.check("generate", r, params, {allow_preview = true}))
    assert.is_true(rules.check("respond", responses{image_model = "gpt-image-2"},
      {input = "x", background = "transparent"}, {allow_preview = true}))
  end)

  it("passes unknown model labels (provider aliases) through", function()
    local r = route{model = "acme-image-pro"}
    assert.is_true(rules.check("generate", r, {prompt = "x", size = "999x333", quality = "ultra", n = 4,
      background = "transparent", response_format = "url"}))
    assert.is_true(rules.check("edit", r, {prompt = "x", image = PNG, input_fidelity = "high", size = "7x7"}))
    assert.is_true(rules.check("respond", responses{image_model = "acme-image-pro"},
      {input = "x", size = "999x333", input_fidelity = "high"}))
  end)

  it("lets a provider gateway take response_format (a documented gateway extension)", function()
    assert.is_true(rules.check("generate", route(PROVIDER), {prompt = "x", response_format = "url"}))
    assert.is_true(rules.check("generate", route{model = "gpt-image-2", lane = "provider", provider = "acme"},
      {prompt = "x", response_format = "url"}))
  end)

  it("checks nothing on the chat shape, whose body carries only the prompt and images", function()
    local r = route{shape = "chat", lane = "provider", provider = "acme"}
    assert.is_true(rules.check("generate", r, {prompt = "x", size = "1x1", n = 99, quality = "hd"}))
  end)

  it("waives a rule named in opts.skip_rules, as a list or a set", function()
    local params = {prompt = "x", size = "1792x1024"}
    assert.is_true(rules.check("generate", route(), params, {skip_rules = {"size"}}))
    assert.is_true(rules.check("generate", route(), params, {skip_rules = {size = true}}))
    assert.is_nil((rules.check("generate", route(), params, {skip_rules = {"quality"}})))
  end)
end)

describe("the model capability table (imageroute.models)", function()
  it("gives every entry its source and date, and resolves aliases", function()
    local n = 0
    for label, e in pairs(models.models) do
      if type(e) == "table" then
        n = n + 1
        assert.truthy(type(e.source) == "string" and #e.source > 10, label)
        assert.truthy(type(e.date) == "string" and e.date:find("^%d%d%d%d%-%d%d"), label)
      else
        assert.equal("table", type(models.models[models.canonical(label)]), label)
      end
    end
    assert.truthy(n >= 7)
    for _, m in ipairs{"gpt-image-2", "gpt-image-1.5", "gpt-image-1", "gpt-image-1-mini", "dall-e-3", "dall-e-2",
      "chatgpt-image-latest"} do
      assert.truthy(models.get(m), m)
    end
    assert.equal(models.get("gpt-image-2"), models.get("gpt-image-2-2026-04-21"))
    assert.is_nil(models.get("acme-image"))
  end)

  it("knows image models by entry and by label", function()
    for _, m in ipairs{"gpt-image-2", "gpt-image-9", "dall-e-4", "chatgpt-image-latest"} do
      assert.is_true(models.is_image_model(m), m)
    end
    for _, m in ipairs{"gpt-5", "gpt-4.1", "acme-image"} do
      assert.is_false(models.is_image_model(m), m)
    end
  end)

  it("applies the gpt-image-2 size rule", function()
    local e = models.get("gpt-image-2")
    assert.is_true((models.size_ok(e, "1024x1024")))
    local ok, note = models.size_ok(e, "3840x2160")
    assert.is_true(ok)
    assert.truthy(note:find("experimental", 1, true))
    assert.is_false((models.size_ok(e, "1024x1000")))
    assert.is_false((models.size_ok(e, "0x1024")))
  end)
end)

describe("stop rules refuse before any request reaches the local server", function()
  local s = server.for_block()

  local dispatch = require("imageroute.dispatch")
  local CALLS = {}
  for _, k in ipairs{"generate", "edit", "respond"} do CALLS[k] = function(...) return dispatch.call(k, ...) end end

  local function on_server(r)
    local cfg = r:config()
    cfg.base_url, cfg.host = s.base_url, nil -- host is derived from base_url
    return assert(imageroute.route(cfg))
  end

  it("through policy.call (the hooks init.lua runs around every call)", function()
    for _, c in ipairs(refusals()) do
      local r = on_server(c[3])
      local res, err = policy.call(c[2], CALLS[c[2]], r, c[4], c[5])
      assert.is_nil(res, c[1])
      assert.equal(c[6], err.rule, c[1])
      assert.equal(0, err.cost.amount, c[1])
      assert.equal("not_sent", err.cost.basis, c[1])
    end
    assert.equal(0, #s:requests())
    -- and a call the rules let through does reach it
    assert(policy.call("generate", CALLS.generate, fx.route(s), {prompt = "x", size = "1024x1024"}))
    assert.equal(1, #s:requests())
  end)

  -- These need init.lua to run policy.before / policy.after around generate, edit and respond.
  it("through imageroute.generate, edit and respond (needs the init.lua wiring)", function()
    for _, c in ipairs(refusals()) do
      local res, err = imageroute[c[2]](on_server(c[3]), c[4], c[5])
      assert.is_nil(res, c[1])
      assert.equal(c[6], err.rule, c[1] .. ": " .. tostring(err))
    end
    assert.equal(0, #s:requests())
    assert(imageroute.generate(fx.route(s, {model = "gpt-image-2"}),
      {prompt = "x", background = "transparent", output_format = "png"}, {allow_preview = true}))
    assert.equal(1, #s:requests())
  end)
end)
