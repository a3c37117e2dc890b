-- The `imageroute` command, run as a user runs it: `lua5.4 bin/imageroute ...` in a scratch
-- directory, stdout, stderr and the exit code captured. `--local` starts the bundled server.
local core = require("imageroute.core")
local server = require("support.server")
local fx = require("support.fixtures")
local json = require("imageroute.json")

local cli = require("support.cli_run") -- run(dir, args [, {env =, stdin =}]) -> rc, stdout, stderr

local ROOT, BIN = cli.ROOT, cli.BIN
local q, write, exists, run, json_lines = cli.q, cli.write, cli.exists, cli.run, cli.json_lines

local function png_size(path)
  local data = fx.read(path)
  assert.equal("\137PNG\r\n\26\n", data:sub(1, 8))
  return core.dimensions(data)
end

describe("the imageroute command", function()
  local dir
  setup(function() dir = fx.tmpdir() end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  it("prints its help and each command's help, exit 0", function()
    local rc, out, err = run(dir, {"--help"})
    assert.equal(0, rc, err)
    assert.truthy(out:find("Usage: imageroute", 1, true))
    for _, c in ipairs{"generate", "edit", "respond", "check", "batch", "log", "compare", "--local", "--routes",
      "OPENAI_API_KEY", "official-responses", "gateway"} do
      assert.truthy(out:find(c, 1, true), c)
    end
    for _, c in ipairs{{"generate"}, {"edit"}, {"respond"}, {"check"}, {"batch"}, {"log", "summary"}, {"compare"}} do
      c[#c + 1] = "--help"
      rc, out = run(dir, c)
      assert.equal(0, rc, table.concat(c, " "))
      assert.truthy(out:find("Usage: imageroute " .. table.concat(c, " ", 1, #c - 1), 1, true), out)
    end
    rc, out = run(dir, {"--version"})
    assert.equal(0, rc)
    assert.truthy(out:find("^imageroute %d"))
  end)

  it("exits 2 with the message on stderr on a usage error", function()
    local cases = {
      {{"generate"}, "missing argument 'prompt'"},
      {{"frobnicate"}, "unknown command"},
      {{"generate", "p", "--n", "zero"}, "-n must be an integer"},
      {{"batch", "f", "--parallel", "0"}, "--parallel must be an integer"},
      {{"compare", "p"}, "--route"},
      {{"generate", "p", "-n", "0"}, "-n must be an integer"},
      {{"log"}, "imageroute log summary"},
      {{}, "command"},
    }
    for _, c in ipairs(cases) do
      local rc, out, err = run(dir, c[1])
      assert.equal(2, rc, table.concat(c[1], " "))
      assert.equal("", out)
      assert.truthy(err:find(c[2], 1, true), err)
    end
  end)

  it("says exactly what to set when there is no routes file and no key (exit 2)", function()
    local rc, out, err = run(dir, {"generate", "a fox"})
    assert.equal(2, rc)
    assert.equal("", out)
    assert.truthy(err:find("export OPENAI_API_KEY=", 1, true), err)
    assert.truthy(err:find("--routes FILE", 1, true), err)
    assert.truthy(err:find("examples/routes.lua", 1, true), err)
    assert.truthy(err:find("imageroute --local generate", 1, true), err)
  end)

  describe("with --local", function()
    local out_dir
    setup(function() out_dir = dir .. "/images/" end) -- a directory: the trailing slash

    it("generates an image in one command: a PNG written, one line printed", function()
      local rc, out, err = run(dir, {"--local", "generate", "a fox", "-o", out_dir})
      assert.equal(0, rc, err)
      local line = out:match("^(generate [^\n]*)\n$")
      assert.truthy(line, out)
      for _, k in ipairs{"route=local ", "host=127.0.0.1 ", "model=gpt-image-1 ", "request_id=req_", "latency=",
        "attempts=1",
        "cost=", "currency=USD", "basis=usage"} do
        assert.truthy(line:find(k, 1, true), k .. " in " .. line)
      end
      local file = line:match("files=(%S+)")
      local rid = line:match("request_id=(%S+)")
      assert.equal(out_dir .. rid .. "-1.png", file)
      local w, h = png_size(file)
      assert.truthy(w > 0 and h > 0)
      -- the option may come after the command too
      rc, out, err = run(dir, {"generate", "a fox", "--local", "-o", out_dir, "--size", "1024x1024"})
      assert.equal(0, rc, err)
      assert.truthy(out:find("^generate route=local "))
    end)

    it("prints a JSON object with --json, without image bytes", function()
      local rc, out, err = run(dir, {"--local", "generate", "a heron", "-o", out_dir, "--json", "--n", "2",
        "--quality", "low"})
      assert.equal(0, rc, err)
      local o = assert(json.decode(out))
      assert.is_true(o.ok)
      assert.equal("local", o.route)
      assert.equal("official", o.lane)
      assert.equal("imageroute-localserver", o.provider)
      assert.equal("127.0.0.1", o.host)
      assert.equal("gpt-image-1", o.model)
      assert.truthy(o.request_id:find("^req_"))
      assert.equal(2, #o.files)
      for _, f in ipairs(o.files) do
        assert.truthy(exists(f.path), f.path)
        assert.equal(64, f.sha256 and #f.sha256)
      end
      assert.truthy(o.usage.total_tokens > 0)
      assert.equal("USD", o.cost.currency)
      assert.equal("usage", o.cost.basis)
      assert.truthy(o.latency > 0)
      assert.equal(1, o.attempts)
      assert.truthy(#out < 4000, #out)
      assert.falsy(out:find("iVBOR", 1, true)) -- no base64 PNG
    end)

    it("saves partial images as they arrive with --stream", function()
      local rc, out, err = run(dir, {"--local", "generate", "a kite", "-o", out_dir, "--stream", "--json"})
      assert.equal(0, rc, err)
      local o = assert(json.decode(out))
      assert.equal(2, #o.partial_files)
      for i, f in ipairs(o.partial_files) do
        assert.equal(out_dir .. o.request_id .. "-partial-" .. (i - 1) .. ".png", f.path)
        png_size(f.path)
      end
      assert.equal(1, #o.files)
      rc, out, err = run(dir, {"--local", "generate", "a kite", "-o", out_dir, "--partial", "3"})
      assert.equal(0, rc, err)
      local partials = out:match("partials=(%S+)")
      assert.truthy(partials, out)
      local n = 0
      for p in partials:gmatch("[^,]+") do n = n + 1; png_size(p) end
      assert.equal(3, n)
    end)

    it("edits images with a mask, and calls the Responses API", function()
      local src = ROOT .. "/examples/assets/mask-1024.png"
      local rc, out, err = run(dir, {"--local", "edit", "add a boat", src, src, "--mask", src, "-o", out_dir})
      assert.equal(0, rc, err)
      assert.truthy(out:find("^edit route=local host=127%.0%.0%.1 model=gpt%-image%-1 request_id=req_"), out)
      png_size(out:match("files=(%S+)"))
      rc, out, err = run(dir, {"--local", "edit", "x", dir .. "/missing.png", "-o", out_dir})
      assert.equal(2, rc)
      assert.equal("", out)
      assert.truthy(err:find("missing.png", 1, true))
      rc, out, err = run(dir, {"--local", "respond", "draw a fox", "-o", out_dir})
      assert.equal(0, rc, err)
      assert.truthy(out:find("^respond route=local%-responses host=127%.0%.0%.1 model=gpt%-5 "
        .. "tool_model=gpt%-image%-1"), out)
      assert.truthy(out:find('text="', 1, true), out)
      png_size(out:match("files=(%S+)"))
    end)

    it("runs a batch file with --parallel, one plain line per job when not a terminal", function()
      local prompts = dir .. "/prompts.txt"
      write(prompts, "# prompts for the batch\na red fox\n\na blue whale\n  a green owl  \n# done\na grey cat\n")
      local rc, out, err = run(dir, {"--local", "batch", prompts, "--parallel", "3", "-o", out_dir},
        {env = "TERM=xterm"})
      assert.equal(0, rc, err)
      assert.falsy(out:find("\r", 1, true))
      local jobs = {}
      for k, i in out:gmatch("%[(%d)/4%] job (%d): generate route=local ") do jobs[#jobs + 1] = k .. ":" .. i end
      assert.equal(4, #jobs, out)
      assert.truthy(out:find("batch: 4 jobs, 4 ok, 0 failed, 4 images", 1, true), out)
      for f in out:gmatch("files=(%S+)") do png_size(f) end
      -- on a terminal (util-linux `script` gives the command one): a live line redrawn with \r
      if os.execute("command -v script >/dev/null 2>&1") then
        local p = assert(io.popen(("cd %s && TERM=xterm script -qec %s /dev/null </dev/null; echo \"rc=$?\""):format(
          q(dir), q(("env -u OPENAI_API_KEY lua5.4 %s --local batch %s --parallel 2 -o %s"):format(q(BIN), q(prompts),
          q(out_dir)))), "r"))
        local tty_out = p:read("a")
        p:close()
        assert.truthy(tty_out:find("rc=0", 1, true), tty_out)
        assert.truthy(tty_out:find("\r\27[Kbatch 0/4 done, 0 failed, ", 1, true), tty_out)
        assert.truthy(tty_out:find("\r\27[Kbatch 4/4 done, 0 failed, [%d.]+s, 4 images, [%d.]+ USD so far"), tty_out)
        assert.falsy(tty_out:find("job %d:"), tty_out)
        assert.truthy(tty_out:find("batch: 4 jobs, 4 ok, 0 failed", 1, true), tty_out)
      end
      -- a job file: routes and calls per job; a failed job makes the exit code 1
      local jl = dir .. "/jobs.jsonl"
      write(jl, '{"prompt": "a cat", "size": "1024x1024"}\n{"prompt": "gw", "route": "local-gateway"}\n'
        .. '{"input": "draw", "route": "official-responses"}\n{"prompt": "", "route": "local"}\n')
      rc, out, err = run(dir, {"--local", "batch", jl, "-o", out_dir, "--json"})
      assert.equal(2, rc) -- the one failure was refused before sending: 2, as for a single call
      assert.truthy(err:find("batch: 4 jobs, 3 ok, 1 failed, ", 1, true), err)
      assert.truthy(err:find("(1 refused before sending)", 1, true), err)
      local by_job = {}
      for line in out:gmatch("[^\n]+") do
        local o = assert(json.decode(line))
        by_job[o.job] = o
      end
      assert.is_true(by_job[1].ok)
      assert.equal("local-gateway", by_job[2].route)
      assert.equal("chat", by_job[2].shape)
      assert.equal("respond", by_job[3].call)
      assert.is_false(by_job[4].ok)
      assert.equal("validation", by_job[4].error.kind)
    end)

    it("summarises the call log the previous commands wrote", function()
      local log = out_dir .. "imageroute-local-calls.jsonl"
      local rc, out, err = run(dir, {"log", "summary", log})
      assert.equal(0, rc, err)
      assert.truthy(out:find("ROUTE%s+CALLS%s+FAILED%s+REFUSED%s+IMAGES%s+COST%s+UNKNOWN%s+P50%s+P95"), out)
      local calls = tonumber(out:match("\nlocal%s+(%d+)"))
      assert.truthy(calls and calls >= 10, out)
      assert.truthy(out:find("\nlocal%-gateway%s+1%s+0%s+0%s+1%s+0%.03 USD"), out)
      -- every line names the host it called; no line of the local server is in the real log
      for _, rec in ipairs(json_lines(log)) do assert.equal("127.0.0.1", rec.host) end
      assert.is_false(exists(out_dir .. "imageroute-calls.jsonl"))
      -- the default log is the one under -o DIR, as JSON too
      rc, out, err = run(dir, {"log", "summary", "--local", "-o", out_dir, "--json"})
      assert.equal(0, rc, err)
      local o = assert(json.decode(out))
      assert.equal(log, o.log)
      assert.equal(calls, o.routes["local"].calls)
      rc, out, err = run(dir, {"log", "summary", dir .. "/nope.jsonl"})
      assert.equal(1, rc)
      assert.equal("", out)
      assert.truthy(err:find("nope.jsonl", 1, true))
    end)

    it("compare logs every call, in a fresh directory too, and warns when the log cannot be written", function()
      local fresh = fx.tmpdir() -- no ./out yet: the calls' log folder is made before they are sent
      local rc, _, err = run(fresh, {"--local", "compare", "a fox", "--route", "local", "--route", "local-gateway",
        "-o", fresh .. "/report"})
      assert.equal(0, rc, err)
      assert.falsy(err:find("warning", 1, true), err)
      local rec = assert(json.decode(fx.read(fresh .. "/report/compare.json")))
      local finals = {}
      for _, l in ipairs(fx.log_records(fresh .. "/out/imageroute-local-calls.jsonl")) do
        if l.event == "attempt" and l.final then finals[l.route] = l.request_id end
      end
      for _, e in ipairs(rec.entries) do assert.equal(e.request_id, finals[e.route], e.route) end
      -- the log path taken by a directory: the calls stand, each route says its line was not written
      os.execute("rm -rf " .. q(fresh .. "/out") .. " && mkdir -p " .. q(fresh .. "/out/imageroute-local-calls.jsonl"))
      rc, _, err = run(fresh, {"--local", "compare", "a fox", "--route", "local", "--route", "local-gateway",
        "-o", fresh .. "/report2"})
      assert.equal(0, rc, err)
      assert.truthy(err:find("warning: route local: the call log was not written", 1, true), err)
      assert.truthy(err:find("warning: route local-gateway: the call log was not written", 1, true), err)
      os.execute("rm -rf " .. q(fresh))
    end)

    it("compares two routes: the report and the record written", function()
      local report = dir .. "/report"
      local rc, out, err = run(dir, {"--local", "compare", "a fox", "--route", "local", "--route", "local-gateway",
        "-o", report, "-s", "1024x1024", "-q", "low"})
      assert.equal(0, rc, err)
      assert.truthy(out:find("compare route=local lane=official provider=imageroute-localserver", 1, true), out)
      assert.truthy(out:find("compare route=local-gateway lane=provider provider=local-gateway", 1, true), out)
      assert.truthy(out:find("report " .. report .. "/compare.html", 1, true), out)
      local rec = assert(json.decode(fx.read(report .. "/compare.json")))
      assert.equal(2, #rec.entries)
      for _, e in ipairs(rec.entries) do
        assert.is_true(e.ok)
        png_size(report .. "/" .. e.images[1].file)
      end
      local html = fx.read(report .. "/compare.html")
      assert.truthy(html:find(rec.entries[1].request_id, 1, true))
      assert.truthy(html:find(rec.entries[2].request_id, 1, true))
      rc, out, err = run(dir, {"--local", "compare", "a fox", "--route", "official,nosuch", "-o", report})
      assert.equal(2, rc)
      assert.equal("", out)
      assert.truthy(err:find("no route 'nosuch'", 1, true), err)
      -- --routes is the routes file in compare too: the old list spelling gets the fix
      rc, out, err = run(dir, {"compare", "a fox", "--routes", "official,gateway"})
      assert.equal(2, rc)
      assert.equal("", out)
      assert.truthy(err:find("--routes names the routes file; choose the routes to compare with --route NAME", 1, true),
        err)
      assert.truthy(err:find("--route official --route gateway", 1, true), err)
    end)
  end)

  describe("with a routes file", function()
    it("checks routes: allowed exits 0, a provider route without acceptance exits 1", function()
      local rc, out, err = run(dir, {"--routes", ROOT .. "/examples/routes.lua", "check", "official-images"})
      assert.equal(0, rc, err)
      assert.truthy(out:find("route official%-images  lane=official  host=api%.openai%.com"), out)
      assert.truthy(out:find("\nGATE%s+STATUS%s+REASON\n"), out)
      for _, g in ipairs{"lane", "host", "owner", "model_mapping", "failed_calls_billed", "output_rights",
        "observability", "billing"} do
        assert.truthy(out:find("\n" .. g .. "%s+pass%s"), g)
      end
      assert.truthy(out:find("\nallowed: yes"), out)
      local routes = dir .. "/routes.lua"
      write(routes, [[return {
        ["bare-gateway"] = {lane = "provider", provider = "someone", shape = "images", model = "gpt-image-1",
          base_url = "https://gateway.example/v1"},
      }]])
      rc, out, err = run(dir, {"check"}) -- ./routes.lua by default
      assert.equal(1, rc, err)
      assert.truthy(out:find("\nowner%s+unknown%s+contract%.owner not recorded"), out)
      assert.truthy(out:find("\nallowed: no %(route 'bare%-gateway' refused"), out)
      rc, out = run(dir, {"check", "--json"})
      assert.equal(1, rc)
      assert.is_false(assert(json.decode(out)).allowed)
      os.remove(routes)
    end)

    it("exits 1 with the error's one line when a call fails (and the JSON error with --json)", function()
      local s = server.start()
      s:script{{status = 400, error = {message = "Invalid size", type = "invalid_request_error", param = "size"}}}
      local routes = dir .. "/fail-routes.lua"
      write(routes, ([[return {
        ["local-images"] = {lane = "official", shape = "images", model = "gpt-image-1", base_url = %q,
          max_retries = 0, api_key_env = "IMAGEROUTE_TEST_KEY"},
        ["closed"] = {lane = "official", shape = "images", model = "gpt-image-1", base_url = "http://127.0.0.1:9/v1",
          max_retries = 0, api_key_env = "IMAGEROUTE_TEST_KEY"},
      }]]):format(s.base_url))
      local rc, out, err = run(dir, {"--routes", routes, "generate", "p", "--route", "local-images", "-o",
        dir .. "/f"})
      s:stop()
      assert.equal(1, rc)
      assert.equal("", out)
      assert.truthy(err:find("^imageroute: generate failed: Invalid size %(api, status 400, request req_[^\n]*%)\n$"),
        err)
      assert.falsy(err:find(fx.KEY, 1, true))
      rc, out = run(dir, {"--routes", routes, "generate", "p", "--route", "closed", "--json", "-o", dir .. "/f"})
      assert.equal(1, rc)
      local o = assert(json.decode(out))
      assert.is_false(o.ok)
      assert.equal("connection", o.error.kind)
      assert.equal("closed", o.route)
      -- several routes and no --route: say which to choose
      rc, out, err = run(dir, {"--routes", routes, "generate", "p"})
      assert.equal(2, rc)
      assert.equal("", out)
      assert.truthy(err:find("choose one with --route", 1, true), err)
      rc, out, err = run(dir, {"--routes", dir .. "/none.lua", "generate", "p"})
      assert.equal(2, rc)
      assert.equal("", out)
      assert.truthy(err:find("none.lua", 1, true), err)
    end)
  end)

  it("runs in-process too: main(argv) returns the exit code", function()
    local command = require("imageroute.cli")
    local tmp = os.tmpname()
    local saved = io.output()
    io.output(tmp)
    local ok, code = pcall(command.main, {"--version"})
    local ok2, code2 = pcall(command.main, {"log", "summary", "--json", ROOT .. "/spec/cli_spec.lua"})
    io.output():close()
    io.output(saved)
    local text = fx.read(tmp)
    os.remove(tmp)
    assert.is_true(ok, code)
    assert.equal(0, code)
    assert.truthy(text:find("^imageroute %d"))
    assert.is_true(ok2, code2)
    assert.equal(0, code2) -- a file with no log lines: no routes
  end)
end)
