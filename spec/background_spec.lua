-- Background mode against the local server: created with background: true, polled on the same
-- loop with GET /responses/{id} within the deadline, cancellable, the final result the same as a
-- foreground call.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")

describe("background mode", function()
  local s = server.for_block()
  local route
  setup(function() route = fx.responses_route(s, {image_model = "gpt-image-2", max_retries = 0}) end)

  local OPTS = {poll_interval = 0.02}

  it("create, poll until completed: the same result as the same call in the foreground", function()
    local fg = assert(imageroute.respond(route, {input = "draw a fox", tool_choice = "image_generation"}))
    s:reset()
    s:script{{background_polls = 2}}
    local bg = assert(imageroute.respond(route, {input = "draw a fox", tool_choice = "image_generation",
      background = true}, OPTS))
    local reqs = s:requests()
    assert.equal(4, #reqs) -- the create, two in_progress polls, the completed poll
    assert.equal("POST", reqs[1].method)
    assert.is_true(reqs[1].json.background)
    assert.is_nil(reqs[1].json.tools[1].background) -- background mode is the top level's, never the tool's
    for i = 2, 4 do
      assert.equal("GET", reqs[i].method)
      assert.equal("/v1/responses/" .. bg.id, reqs[i].path)
    end
    assert.equal("completed", bg.status)
    assert.equal(2 + 1, bg.background_mode.polls)
    assert.equal("queued", bg.background_mode.created_status)
    -- the same result fields and the same image as the foreground call
    for _, k in ipairs{"shape", "model", "tool_model", "output_text"} do assert.equal(fg[k], bg[k], k) end
    assert.equal(#fg.images, #bg.images)
    assert.equal(fg.images[1].sha256, bg.images[1].sha256)
    assert.equal(fg.images[1].format, bg.images[1].format)
    assert.truthy(bg.images[1].call_id:find("^ig_"))
    assert.same({"image_generation_call", "message"}, {bg.output[1].type, bg.output[2].type})
    assert.equal(bg.images[1], bg.output[1].image)
    assert.same({{id = bg.images[1].call_id, status = "completed"}}, bg.image_calls)
    assert.truthy(bg.request_id:find("^req_"))
    assert.equal("success", bg.cost.outcome)
  end)

  it("polls on the loop: other flows progress while it waits", function()
    s:script{{background_polls = 5}}
    local other_done_at, bg_done_at
    imageroute.run(function()
      assert(imageroute.respond(route, {input = "draw", tool_choice = "image_generation", background = true},
        {poll_interval = 0.05}))
      bg_done_at = imageroute.core.now()
    end, function()
      assert(imageroute.respond(route, {input = "hello", tool = false}))
      other_done_at = imageroute.core.now()
    end)
    assert.truthy(other_done_at < bg_done_at)
  end)

  it("on a route with max_in_flight = 1 the polls run inside the call's slot (never wait for it)", function()
    local limited = fx.responses_route(s, {name = "bg-limited", image_model = "gpt-image-2", max_retries = 0,
      limits = {max_in_flight = 1, requests = 100, window = 60}})
    s:script{{background_polls = 2}}
    local done, res, err
    imageroute.spawn(function()
      return imageroute.respond(limited, {input = "x", tool_choice = "image_generation", background = true},
        {poll_interval = 0.02, deadline = 30})
    end, function(_, r, e) done, res, err = true, r, e end)
    local t0 = imageroute.core.now()
    while not done and imageroute.core.now() - t0 < 30 do imageroute.step(0.05) end -- a stuck poll ends the test
    assert.is_true(done, "the background call did not finish within 30 s")
    assert.is_nil(err)
    assert.equal("completed", res.status)
    assert.equal(3, res.background_mode.polls)
  end)

  -- Inside a host loop the loop alone wakes the polls (each call in a process of its own, see
  -- spec/support/hostloop_worker.lua). The slow call asks for its wake-up while the fast one's,
  -- earlier, is pending: the core keeps one wake-up time, so the slow poll must ask again when that
  -- one has fired, or it sleeps until the worker's guard (15 s).
  for _, loop in ipairs{"cqueues", "luv"} do
    local present = os.execute(("lua5.4 -e 'require(%q)' >/dev/null 2>&1"):format(loop))
    local case = present and it or function(name) pending(name .. " (" .. loop .. " is not installed)") end
    case(loop .. ": two background calls polled at different paces, woken by the host loop alone", function()
      local root = debug.getinfo(1, "S").source:sub(2):match("^(.*)/spec/[^/]*$") or "."
      local p = assert(io.popen(("lua5.4 %s/spec/support/hostloop_worker.lua %s background '%s' - 0.05 0.3 2>&1")
        :format(root, loop, s.base_url)))
      local out = p:read("a")
      p:close()
      local wall, st1, st2 = out:match("^background ([%d.]+) (%S+) (%S+)\n$")
      assert.truthy(wall, out)
      assert.equal("completed", st1)
      assert.equal("completed", st2)
      assert.is_true(tonumber(wall) < 4, "both calls took " .. wall .. " s (the slow one needs about 1.2 s)")
      assert.equal(2 + 2 + 4, #s:requests()) -- two creates, 2 polls of the fast call, 4 of the slow one
    end)
  end

  it("cancel: the Transfer's cancel sends POST /responses/{id}/cancel and ends the call", function()
    s:script{{background_polls = 1000}}
    local t = imageroute.start_background(route, {input = "draw", tool_choice = "image_generation"},
      {poll_interval = 0.02})
    local t0 = imageroute.core.now()
    while t.polls < 2 and imageroute.core.now() - t0 < 5 do imageroute.step(0.01) end -- the loop runs it
    assert.truthy(t.response_id:find("^resp_"))
    assert.equal("in_progress", t.status)
    assert.is_true(t:cancel("enough"))
    local res, err = t:wait()
    assert.is_nil(res)
    assert.equal("cancelled", err.kind)
    assert.equal("cancelled", err.code)
    assert.equal("cancelled", err.cancel_status)
    assert.equal(t.response_id, err.response_id)
    local last = s:requests()[#s:requests()]
    assert.equal("POST", last.method)
    assert.equal("/v1/responses/" .. t.response_id .. "/cancel", last.path)
    assert.is_true(t:done())
    assert.is_false(t:cancel())
  end)

  it("the deadline: a timeout error after a cancel is sent, within the route's deadline", function()
    s:script{{background_polls = 1000}}
    local t0 = imageroute.core.now()
    local _, err = imageroute.respond(route, {input = "draw", tool_choice = "image_generation", background = true},
      {poll_interval = 0.02, deadline = 0.3})
    local took = imageroute.core.now() - t0
    assert.equal("timeout", err.kind)
    assert.equal("deadline_exceeded", err.code)
    assert.truthy(took < 2, took)
    assert.truthy(err.background_mode.polls >= 2)
    local last = s:requests()[#s:requests()]
    assert.equal("/v1/responses/" .. err.response_id .. "/cancel", last.path)
  end)

  it("generate on a responses route in background mode ends with the image, as in the foreground", function()
    local res = assert(imageroute.generate(route, {prompt = "a kite", background = true}, OPTS))
    assert.equal(1, #res.images)
    assert.equal(2, res.background_mode.polls) -- one in_progress poll (the default of the local server), then done
  end)

  it("imageroute respond --background-mode: the same call from the command line", function()
    local cli = require("support.cli_run")
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. cli.q(dir)))
    local routes = dir .. "/routes.lua"
    cli.write(routes, ([[return {bg = {lane = "official", shape = "responses", model = "gpt-5",
      image_model = "gpt-image-1", base_url = %q, max_retries = 0, api_key_env = "IMAGEROUTE_TEST_KEY"}}]])
      :format(s.base_url))
    local rc, out, err = cli.run(dir, {"--routes", routes, "respond", "draw a fox", "--background-mode",
      "--background", "opaque", "-o", dir .. "/fox.png", "--json"})
    assert.equal(0, rc, err)
    local res = assert(require("imageroute.json").decode(out))
    assert.equal(2, res.background_mode.polls)
    local create = s:requests()[1].json
    assert.is_true(create.background)
    assert.equal("opaque", create.tools[1].background)
    assert.truthy(cli.exists(dir .. "/fox.png"))
    os.execute("rm -rf " .. cli.q(dir))
  end)

  it("a background response that ends blocked by moderation is the same error as in the foreground", function()
    s:script{{moderation_block = true}}
    local _, err = imageroute.respond(route, {input = "draw", tool_choice = "image_generation", background = true},
      OPTS)
    assert.equal("moderation_blocked", err.code)
    assert.is_true(err.moderation.blocked)
  end)
end)
