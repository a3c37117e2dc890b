-- The command's habits, each shown by running it (bin/imageroute in a scratch directory): -o FILE
-- or DIR/, `-` for standard input, short flags, exit 2 for a refusal before sending with its fix in
-- one line, the ticking progress line, --local logged apart.
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")
local json = require("imageroute.json")

local run, run_tty, exists, is_dir = cli.run, cli.run_tty, cli.exists, cli.is_dir

local function png(path)
  local data = fx.read(path)
  assert.equal("\137PNG\r\n\26\n", data:sub(1, 8), path)
  return data
end

describe("imageroute command habits", function()
  local s, dir = server.for_block{dir = true}

  it("-o FILE writes that file; several images FILE-1, FILE-2; -o DIR/ and an existing directory", function()
    local rc, out, err = run(dir, {"--local", "generate", "a lighthouse", "-o", "lighthouse.png"})
    assert.equal(0, rc, err)
    assert.truthy(out:find(" files=lighthouse.png ", 1, true), out)
    png(dir .. "/lighthouse.png")
    assert.is_false(is_dir(dir .. "/lighthouse.png"))
    -- several images: numbered beside the name; a missing parent directory is created
    rc, out, err = run(dir, {"--local", "generate", "a fox", "-n", "2", "-o", "sub/fox.png"})
    assert.equal(0, rc, err)
    assert.truthy(out:find(" files=sub/fox%-1%.png,sub/fox%-2%.png "), out)
    assert.are_not.equal(png(dir .. "/sub/fox-1.png"), nil)
    png(dir .. "/sub/fox-2.png")
    assert.is_false(exists(dir .. "/sub/fox.png"))
    -- an existing file is replaced, as curl -o does
    rc, out, err = run(dir, {"--local", "generate", "again", "-o", "lighthouse.png"})
    assert.truthy(out:find(" files=lighthouse.png ", 1, true), out)
    assert.equal(0, rc, err)
    -- -o DIR/: a directory (created), files named after the request id
    rc, out, err = run(dir, {"--local", "generate", "a heron", "-o", "shots/"})
    assert.equal(0, rc, err)
    local rid = out:match("request_id=(%S+)")
    assert.truthy(out:find(" files=shots/" .. rid .. "%-1%.png "), out)
    png(dir .. "/shots/" .. rid .. "-1.png")
    -- an existing directory without the slash is a directory too
    rc, out, err = run(dir, {"--local", "generate", "a crane", "-o", "shots"})
    assert.equal(0, rc, err)
    rid = out:match("request_id=(%S+)")
    png(dir .. "/shots/" .. rid .. "-1.png")
    -- streaming with -o FILE: the partial images beside it
    rc, out, err = run(dir, {"--local", "generate", "a kite", "--partial", "2", "-o", "kite.png", "--json"})
    assert.equal(0, rc, err)
    local o = assert(json.decode(out))
    assert.equal("kite.png", o.files[1].path)
    assert.same({"kite-partial-0.png", "kite-partial-1.png"}, {o.partial_files[1].path, o.partial_files[2].path})
    png(dir .. "/kite-partial-1.png")
  end)

  it("- reads the prompt, the input or the batch file from standard input", function()
    local routes = cli.routes_file(dir, s, "stdin")
    local rc, out, err = run(dir, {"--routes", routes, "generate", "-", "-o", "in/"},
      {stdin = "a fox in the snow, read from a pipe\n"})
    assert.equal(0, rc, err)
    assert.truthy(out:find("^generate route=stdin "), out)
    assert.equal("a fox in the snow, read from a pipe", s:requests()[1].json.prompt)
    -- an empty standard input is refused before anything is sent
    s:reset()
    rc, out, err = run(dir, {"--routes", routes, "generate", "-"}, {stdin = "\n"})
    assert.equal(2, rc)
    assert.equal("", out)
    assert.truthy(err:find("standard input ('-') is empty", 1, true), err)
    assert.equal(0, #s:requests())
    -- batch -: prompts, one per line
    rc, out, err = run(dir, {"--routes", routes, "batch", "-", "-o", "in"}, {stdin = "# two\nfirst one\nsecond one\n"})
    assert.equal(0, rc, err)
    assert.truthy(out:find("batch: 2 jobs, 2 ok, 0 failed, 2 images", 1, true), out)
    local prompts = {}
    for _, r in ipairs(s:requests()) do prompts[#prompts + 1] = r.json.prompt end
    table.sort(prompts)
    assert.same({"first one", "second one"}, prompts)
    -- batch -: JSON lines, told by the first character
    s:reset()
    rc, out, err = run(dir, {"--routes", routes, "batch", "-", "-o", "in", "--json"},
      {stdin = '{"prompt": "one", "size": "1024x1536"}\n'})
    assert.equal(0, rc, err)
    assert.equal("1024x1536", s:requests()[1].json.size)
    assert.is_true(assert(json.decode(out)).ok)
  end)

  it("short flags -n, -s, -q mean --n, --size, --quality", function()
    local routes = cli.routes_file(dir, s, "short")
    local rc, _, err = run(dir, {"--routes", routes, "generate", "p", "-n", "2", "-s", "1536x1024", "-q", "low",
      "-o", "short/"})
    assert.equal(0, rc, err)
    local j = s:requests()[1].json
    assert.same({2, "1536x1024", "low"}, {j.n, j.size, j.quality})
    rc, _, err = run(dir, {"--routes", routes, "generate", "p", "--n", "1", "--size", "1024x1024", "--quality",
      "high", "-o", "short/"})
    assert.equal(0, rc, err)
    j = s:requests()[2].json
    assert.same({1, "1024x1024", "high"}, {j.n, j.size, j.quality})
  end)

  it("a call refused before sending exits 2 with the fix in one line; a sent call that fails exits 1", function()
    local routes = cli.routes_file(dir, s, "refuse")
    -- a stop rule: partial_images outside 0..3
    local rc, out, err = run(dir, {"--routes", routes, "generate", "p", "--partial", "9"})
    assert.equal(2, rc)
    assert.equal("", out)
    assert.truthy(err:find("^imageroute: generate refused before sending %(nothing sent%): [^\n]*partial_images = 9 "
      .. "is outside 0%.%.3[^\n]*fix: send an integer partial_images from 0 to 3[^\n]*\n$"), err)
    assert.falsy(err:find("imageroute validation error", 1, true), err)
    assert.falsy(err:find("failed", 1, true), err)
    assert.equal(0, #s:requests())
    -- --json says it too
    rc, out = run(dir, {"--routes", routes, "generate", "p", "--partial", "9", "--json"})
    assert.equal(2, rc)
    local o = assert(json.decode(out))
    assert.is_true(o.refused)
    assert.equal("partial_images_range", o.error.rule)
    -- a route gate: a provider route whose contract was not accepted
    local gate = dir .. "/gate-routes.lua"
    cli.write(gate, ([[return {gw = {lane = "provider", provider = "someone", shape = "images",
      model = "gpt-image-1", base_url = %q, api_key_env = "IMAGEROUTE_TEST_KEY"}}]]):format(s.base_url))
    rc, out, err = run(dir, {"--routes", gate, "generate", "p"})
    assert.equal(2, rc)
    assert.equal("", out)
    assert.truthy(err:find("^imageroute: generate refused before sending %(nothing sent%): [^\n]*\n$"), err)
    assert.truthy(err:find("fix: ", 1, true), err)
    assert.equal(0, #s:requests())
    -- compare: a route refused before sending (the report is still written) exits 2 too
    local both = dir .. "/both-routes.lua"
    cli.write(both, ([[return {
      ok = {lane = "official", shape = "images", model = "gpt-image-1", base_url = %q, max_retries = 0,
        api_key_env = "IMAGEROUTE_TEST_KEY"},
      gw = {lane = "provider", provider = "someone", shape = "images", model = "gpt-image-1", base_url = %q,
        api_key_env = "IMAGEROUTE_TEST_KEY"}}]]):format(s.base_url, s.base_url))
    rc, out, err = run(dir, {"--routes", both, "compare", "p", "--route", "ok", "--route", "gw", "-o", "cmp"})
    assert.equal(2, rc, err)
    assert.truthy(out:find("report cmp/compare.html", 1, true), out)
    assert.truthy(err:find("^imageroute: route gw: refused before sending %(nothing sent%): [^\n]*\n$"), err)
    assert.equal(1, #s:requests())
    s:reset()
    -- setup errors: one line each, no stutter
    rc, out, err = run(dir, {"--routes", dir .. "/none.lua", "generate", "p"})
    assert.equal(2, rc)
    assert.equal("", out)
    assert.truthy(err:find("^imageroute: [^\n]*none%.lua[^\n]*\n$"), err)
    assert.falsy(err:find("imageroute: imageroute", 1, true), err)
    cli.write(dir .. "/a-file", "x")
    rc, out, err = run(dir, {"--routes", routes, "generate", "p", "-o", "a-file/sub/"})
    assert.equal(2, rc) -- the output directory cannot be made: a setup error, found before sending
    assert.equal("", out)
    assert.truthy(err:find("^imageroute: [^\n]*a%-file/sub[^\n]*\n$"), err)
    assert.falsy(err:find("imageroute: imageroute", 1, true), err)
    assert.equal(0, #s:requests()) -- nothing sent
        -- sent and failed: 1, one line
    s:script{{status = 500, error = {message = "The server had an error", type = "server_error"}}}
    rc, out, err = run(dir, {"--routes", routes, "generate", "p"})
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find("^imageroute: generate failed: The server had an error %(api, status 500, "
      .. "request req_[^\n]*%)\n$"), err)
  end)

  it("the progress line ticks every half second while a call is silent, on a terminal only", function()
    local routes = cli.routes_file(dir, s, "slow", [[headers = {["x-imageroute-test"] = '{"delay": 1.7}'}]])
    cli.write(dir .. "/one.txt", "a slow prompt\n")
    local rc, screen = run_tty(dir, {"--routes", routes, "batch", "one.txt", "-o", "slow/"})
    if rc == nil then pending("util-linux script is not installed") return end
    assert.equal(0, rc, screen)
    local ticks = {}
    for t in screen:gmatch("\r\27%[Kbatch 0/1 done, 0 failed, (%d+%.%d)s, 0 images, [%d.]+ USD so far") do
      ticks[#ticks + 1] = tonumber(t)
    end
    -- the server is silent for 1.7 s: the clock moved at least 3 times meanwhile, by about half a second
    assert.truthy(#ticks >= 4, screen)
    assert.truthy(ticks[#ticks] >= 1.4, screen)
    for i = 2, #ticks do assert.truthy(ticks[i] - ticks[i - 1] <= 0.65, screen) end
    assert.truthy(screen:find("\r\27%[Kbatch 1/1 done, 0 failed, [%d.]+s, 1 images, [%d.]+ USD so far"), screen)
    assert.truthy(screen:find("batch: 1 jobs, 1 ok, 0 failed, 1 images in slow", 1, true), screen)
    -- one call on a terminal: the same line on stderr, cleared before the result line
    rc, screen = run_tty(dir, {"--routes", routes, "generate", "p", "-o", "slow/"})
    assert.equal(0, rc, screen)
    local n = 0
    for _ in screen:gmatch("\r\27%[Kgenerate 0/1 done, 0 failed, %d+%.%ds") do n = n + 1 end
    assert.truthy(n >= 3, screen)
    assert.truthy(screen:find("\r\27%[Kgenerate route=slow "), screen)
    -- not on a terminal: no redraws, the job's line and the summary line
    local rc2, out, err = run(dir, {"--routes", routes, "batch", "one.txt", "-o", "slow/"})
    assert.equal(0, rc2, err)
    assert.falsy(out:find("\r", 1, true))
    assert.falsy(err:find("\r", 1, true))
    assert.truthy(out:find("^%[1/1%] job 1: generate route=slow [^\n]*\n"
      .. "batch: 1 jobs, 1 ok, 0 failed, 1 images in slow, cost [%d.]+ USD, [%d.]+s\n$"), out)
  end)

  it("--local is logged as what it is: routes named local*, the host in every line, a log of its own", function()
    local logs = dir .. "/logs/"
    local rc, out, err = run(dir, {"--local", "generate", "a fox", "-o", logs})
    assert.equal(0, rc, err)
    assert.truthy(out:find("^generate route=local host=127%.0%.0%.1 "), out)
    -- no real call yet: the summary of the real log says where the local calls are
    rc, out, err = run(dir, {"log", "summary", "-o", logs})
    assert.equal(1, rc)
    assert.equal("", out)
    assert.truthy(err:find("the --local calls are in " .. logs .. "imageroute-local-calls.jsonl", 1, true), err)
    rc, out, err = run(dir, {"--local", "respond", "draw", "-o", logs})
    assert.truthy(out:find("^respond route=local%-responses host=127%.0%.0%.1 "), out)
    assert.equal(0, rc, err)
    -- a real call through the built-in official route (here pointed at a test server on loopback)
    rc, out, err = run(dir, {"generate", "a real one", "-o", logs},
      {env = ("OPENAI_API_KEY=%s OPENAI_BASE_URL=%s"):format(fx.KEY, s.base_url)})
    assert.equal(0, rc, err)
    assert.truthy(out:find("^generate route=official host=127%.0%.0%.1 "), out)
    local local_lines = cli.json_lines(logs .. "imageroute-local-calls.jsonl")
    local calls = 0
    for _, l in ipairs(local_lines) do
      if l.event == "attempt" then calls = calls + 1 end
      assert.truthy(l.route == "local" or l.route == "local-responses", l.route)
      assert.equal("imageroute-localserver", l.provider)
      assert.equal("127.0.0.1", l.host)
    end
    assert.equal(2, calls)
    local real = cli.json_lines(logs .. "imageroute-calls.jsonl")
    assert.equal("attempt", real[1].event)
    assert.same({"official", "openai", "127.0.0.1"}, {real[1].route, real[1].provider, real[1].host})
    -- log summary of the real log: no local route, no local cost
    rc, out, err = run(dir, {"log", "summary", "-o", logs, "--json"})
    assert.equal(0, rc, err)
    local sum = assert(json.decode(out)).routes
    assert.truthy(sum.official)
    assert.is_nil(sum["local"])
    assert.is_nil(sum["local-responses"])
    rc, out, err = run(dir, {"--local", "log", "summary", "-o", logs, "--json"})
    assert.equal(0, rc, err)
    sum = assert(json.decode(out)).routes
    assert.is_nil(sum.official)
    assert.equal(1, sum["local"].calls)
    -- the official names still find the local routes under --local
    rc, out, err = run(dir, {"--local", "generate", "p", "--route", "official", "-o", logs})
    assert.equal(0, rc, err)
    assert.truthy(out:find("^generate route=local "), out)
  end)
end)
