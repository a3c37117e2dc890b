-- Honest outcomes against the local server, each a distinct case: an organization that must be
-- verified (403, an api error with a fix, never retried), a moderation block (never retried, never
-- billed as a success, its details exposed), an image call that produced no image, and a returned
-- format that differs from the requested one (image.format_mismatch and a log field, not an error).
local imageroute = require("imageroute")
local router = require("imageroute.router")
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")

local PAGE = "https://platform.openai.com/settings/organization/general"

describe("honest outcomes", function()
  local s, dir = server.for_block{dir = true}

  local function responses(extra)
    return fx.responses_route(s, fx.with({max_retries = 2}, extra))
  end

  describe("an organization that must be verified", function()
    it("Images API: an api error with a fix naming the settings page, sent once", function()
      s:script{{unverified = true}, {unverified = true}, {unverified = true}}
      local _, err = imageroute.generate(fx.route(s, {max_retries = 2}), {prompt = "a fox"})
      assert.equal("api", err.kind)
      assert.equal(403, err.status)
      assert.equal("organization_not_verified", err.code)
      assert.matches(PAGE, err.fix, 1, true)
      assert.matches("must be verified to use the model `gpt-image-1`", err.message, 1, true)
      assert.is_false(err.retryable)
      assert.equal(1, err.attempts)
      assert.equal(1, #s:requests())
      assert.is_nil((router.outcome_class(err))) -- no fallback either
    end)

    it("Responses API: the same", function()
      s:script{{unverified = true}, {unverified = true}, {unverified = true}}
      local _, err = imageroute.respond(responses(), {input = "draw a fox", tool_choice = "image_generation"})
      assert.equal(403, err.status)
      assert.equal("organization_not_verified", err.code)
      assert.matches(PAGE, err.fix, 1, true)
      assert.equal(1, #s:requests())
    end)
  end)

  describe("a moderation block", function()
    it("a 400 moderation_blocked: never retried, its details on err.moderation, priced as moderation", function()
      local blocked = {status = 400, error = {message = "Your request was rejected by the safety system.",
        type = "image_generation_user_error", code = "moderation_blocked"}}
      s:script{blocked, blocked, blocked}
      local log = dir .. "/mod.jsonl"
      local _, err = imageroute.generate(fx.route(s, {max_retries = 2}), {prompt = "something"}, {log = log})
      assert.equal("moderation_blocked", err.code)
      assert.is_true(err.moderation.blocked)
      assert.is_false(err.retryable)
      assert.equal(1, #s:requests())
      assert.equal("moderation", err.cost.outcome)
      assert.are_not.equal("success", err.cost.outcome)
      local lines = cli.json_lines(log)
      assert.equal("moderation_blocked", lines[#lines].error_code)
    end)
  end)

  describe("a returned format that differs from the requested one", function()
    it("Images API: webp asked, PNG bytes back: image.format_mismatch, a log field, no error", function()
      local log = dir .. "/fmt.jsonl"
      local res = assert(imageroute.generate(fx.route(s), {prompt = "a fox", output_format = "webp"}, {log = log}))
      local img = res.images[1]
      assert.equal("png", img.format)
      assert.same({requested = "webp", got = "png"}, img.format_mismatch)
      assert.same({requested = "webp", got = "png", count = 1}, res.format_mismatch)
      local lines = cli.json_lines(log)
      assert.same({requested = "webp", got = "png", count = 1}, lines[#lines].format_mismatch)
    end)

    it("no mismatch when the format asked is the one returned, or none was asked", function()
      local res = assert(imageroute.generate(fx.route(s), {prompt = "a fox", output_format = "png"}))
      assert.is_nil(res.format_mismatch)
      assert.is_nil(res.images[1].format_mismatch)
      res = assert(imageroute.generate(fx.route(s), {prompt = "a fox"}))
      assert.is_nil(res.format_mismatch)
    end)
  end)
end)
