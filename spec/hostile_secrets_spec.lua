-- A hostile gateway echoes the key everywhere it can; the key must reach nothing but the
-- Authorization header: no error field (at any depth), no tostring, no result field, no log byte.
-- Also: header injection through keys, OPENAI_ORG_ID / OPENAI_PROJECT_ID and route headers is
-- refused before sending, and keys can come from a string or a function (issue 15).
local imageroute = require("imageroute")
local core = require("imageroute.core")
local json = require("imageroute.json")
local routes = require("imageroute.routes")
local localserver = require("imageroute.localserver")
local server = require("support.server")
local fx = require("support.fixtures")
local H = require("support.hostile")

local PNG_B64 = core.b64encode(localserver.image("hostile"))

-- A route on the local server whose key comes from api_key (fx.route uses api_key_env).
local function kroute(s, extra)
  local cfg = fx.with({name = "local", base_url = s.base_url, model = "gpt-image-1", retry_initial_delay = 0.01,
    retry_max_delay = 0.05, timeout = 10}, extra)
  return assert(imageroute.route(cfg))
end

local function sse(events)
  local out = {}
  for i, e in ipairs(events) do
    out[i] = (e[1] and ("event: " .. e[1] .. "\n") or "") .. "data: " .. assert(json.encode(e[2])) .. "\n\n"
  end
  return table.concat(out)
end

describe("hostile gateway: the key leaks nowhere", function()
  local s, dir = server.for_block{dir = true}

  -- Every way the server can send the key back, as behaviours of the bundled server.
  local function echoes(key)
    return {
      {what = "an API error body (message, code, param, type) and x-request-id", call = "generate",
        b = {status = 400, headers = {["x-request-id"] = key},
          error = {message = "Incorrect API key provided: " .. key, type = key, param = key, code = key}}},
      {what = "a 500 HTML page", call = "generate",
        b = {status = 500, content_type = "text/html; charset=utf-8",
          body = "<html><body><h1>Internal error</h1><p>key=" .. key .. "</p></body></html>"}},
      {what = "a 502 with the key in content-type (cut at 127 bytes) and a short body", call = "generate",
        b = {status = 502, content_type = "text/plain; x=" .. key .. key .. key .. key, body = key}},
      {what = "an SSE error event", call = "generate", params = {stream = true, partial_images = 1},
        b = {status = 200, content_type = "text/event-stream",
          headers = {["x-request-id"] = key},
          body = sse{{"error", {type = "error", error = {message = "denied " .. key, code = key, type = key,
            param = key}}}}}},
      {what = "a success: x-request-id and revised_prompt", call = "generate", ok = true,
        b = {headers = {["x-request-id"] = key}, body = {created = 1, data = {{b64_json = PNG_B64,
          revised_prompt = "as asked by " .. key}}, usage = {[key] = 1, note = key}}}},
      {what = "a 2xx that is no JSON, with x-request-id", call = "generate",
        b = {status = 200, content_type = "text/plain", headers = {["x-request-id"] = key}, body = "hello " .. key}},
    }
  end

  for name, key in pairs(H.KEYS) do
    for _, how in ipairs{"string", "function"} do
      it(("redacts a key with %s (api_key as a %s) from every error and result field and the log"):format(name, how),
        function()
          local logf = ("%s/%s-%s.jsonl"):format(dir, name, how)
          local r = kroute(s, {max_retries = 0,
            api_key = how == "string" and key or function() return key end})
          for _, case in ipairs(echoes(key)) do
            s:reset()
            s:script{case.b}
            local params = {prompt = "a lighthouse"}
            for k, v in pairs(case.params or {}) do params[k] = v end
            local res, err = imageroute[case.call](r, params, {log = logf})
            if case.ok then
              assert.is_nil(err, case.what .. ": " .. tostring(err))
              H.assert_no_leak(res, key, case.what .. ": the result")
              assert.equal("[redacted]", res.request_id, case.what)
              assert.truthy(res.images[1].revised_prompt:find("[redacted]", 1, true), case.what)
            else
              assert.is_nil(res, case.what)
              H.assert_no_leak(err, key, case.what .. ": the error")
              H.assert_no_leak(tostring(err), key, case.what .. ": tostring(err)")
              assert.truthy(tostring(err):find("[redacted]", 1, true), case.what .. ": " .. tostring(err))
            end
            -- the key did reach the server, in the Authorization header only
            local req = s:requests()[1]
            assert.equal("Bearer " .. key, req.headers.authorization, case.what)
          end
          local text = fx.read(logf, "")
          assert.truthy(#text > 0)
          H.assert_no_leak(text, key, "the call log file")
          local lines = select(2, text:gsub("\n", ""))
          assert.equal(#echoes(key), lines) -- one line per call (max_retries = 0): none was lost
        end)
    end
  end

  it("fills every echoed error field with the marker, not with nothing", function()
    local key = H.KEYS.slash
    s:script{{status = 400, headers = {["x-request-id"] = key},
      error = {message = "bad " .. key, type = key, param = key, code = key}}}
    local _, err = imageroute.generate(kroute(s, {api_key = key, max_retries = 0}),
      {prompt = "p"})
    assert.same({"[redacted]", "[redacted]", "[redacted]", "[redacted]", "bad [redacted]"},
      {err.code, err.param, err.type, err.request_id, err.message})
    assert.equal("[redacted]", err.attempt_log[1].request_id)
  end)

  it("redacts on the chat and responses shapes too (errors, and a text-only chat reply)", function()
    local key = H.KEYS.bytes
    local shapes = {
      chat = {shape = "chat", model = "gpt-image-1"},
      responses = {shape = "responses", model = "gpt-5", image_model = "gpt-image-1"},
    }
    for name, extra in pairs(shapes) do
      extra.api_key, extra.max_retries = key, 0
      local r = kroute(s, extra)
      s:reset()
      s:script{{status = 400, headers = {["x-request-id"] = key},
        error = {message = "no: " .. key, code = key, type = key, param = key}}}
      local res, err = imageroute.generate(r, {prompt = "p"})
      assert.is_nil(res, name)
      assert.equal("[redacted]", err.code, name)
      H.assert_no_leak({err, tostring(err)}, key, name .. ": the error")
    end
    s:reset()
    s:script{{headers = {["x-request-id"] = key}, body = {id = "c1", object = "chat.completion", created = 1,
      model = "m", choices = {{index = 0, finish_reason = "stop",
        message = {role = "assistant", content = "I will not draw; your key is " .. key}}}}}}
    local res, err = imageroute.generate(kroute(s, shapes.chat), {prompt = "p"})
    H.assert_no_leak({res, err, tostring(err)}, key, "a text-only chat reply")
    assert.truthy(H.leaks({res, err}, "[redacted]")[1], "the reply's text is there, redacted")
  end)

  it("redacts a key from the environment (api_key_env), in a child process, log included", function()
    local key = H.KEYS.backslash
    local logf = dir .. "/env.jsonl"
    s:script{{status = 429, headers = {["x-request-id"] = key}, error = {message = "slow down " .. key, code = key}},
      {status = 400, error = {message = key, type = key}}}
    local rc, out = H.run_lua("env HOSTILE_KEY=" .. H.shell_bytes(key), ([[
      local imageroute = require("imageroute")
      local r = assert(imageroute.route{base_url = %q, api_key_env = "HOSTILE_KEY", model = "gpt-image-1",
        retry_initial_delay = 0.01, max_retries = 1})
      local _, err = imageroute.generate(r, {prompt = "p"}, {log = %q})
      local json = require("imageroute.json")
      io.write(tostring(err), "\n", json.encode(err.attempt_log), "\n", tostring(err.request_id), "\n")
    ]]):format(s.base_url, logf))
    assert.equal(0, rc, out)
    assert.truthy(out:find("[redacted]", 1, true), out)
    H.assert_no_leak(out, key, "the child's output")
    H.assert_no_leak(fx.read(logf, ""), key, "the call log file")
    assert.equal(2, select(2, fx.read(logf, ""):gsub("\n", "")))
    assert.equal("Bearer " .. key, s:requests()[1].headers.authorization)
  end)

  it("redacts partial images' event fields handed to on_partial", function()
    local key = H.KEYS.plus
    local partial = {type = "image_generation.partial_image", partial_image_index = 0, b64_json = PNG_B64,
      note = "for " .. key}
    local done = {type = "image_generation.completed", b64_json = PNG_B64, note = key}
    s:script{{status = 200, content_type = "text/event-stream",
      body = sse{{"image_generation.partial_image", partial}, {"image_generation.completed", done}}}}
    local seen = {}
    local res, err = imageroute.generate(kroute(s, {api_key = key}),
      {prompt = "p", stream = true, partial_images = 1}, {on_partial = function(img) seen[#seen + 1] = img end})
    assert.is_nil(err, tostring(err))
    assert.equal(1, #seen)
    H.assert_no_leak(seen, key, "the partial images")
    H.assert_no_leak(res, key, "the result")
  end)

  it("redacts a key cut by the 127-byte x-request-id cap (a long key)", function()
    local key = "sk-proj-" .. ("Ab0/+=Cd1"):rep(20) -- 188 bytes
    s:script{{status = 400, headers = {["x-request-id"] = key}, error = {message = "m", code = "c"}}}
    local _, err = imageroute.generate(kroute(s, {api_key = key, max_retries = 0}),
      {prompt = "p"})
    assert.equal("[redacted]", err.request_id)
    H.assert_no_leak(err, key, "the error")
  end)

  -- The key as a server may echo it transformed (base64 at each alignment and as Basic credentials,
  -- URL-safe base64, upper case, percent-encoded): for every hostile key, once in an API error (its
  -- message and x-request-id), once in a success (x-request-id, revised_prompt, a usage field) and
  -- once in a JSON body that is no API error, JSON-escaped (quoted raw in the error message);
  -- nothing of the key can be read back from the result, the errors or the call log.
  for fi, form in ipairs(H.forms("k")) do
    local fname = form[1]
    it(("redacts the key echoed as %s: an error message, a header, a success's JSON fields, the log"):format(fname),
      function()
        for kname, key in pairs(H.KEYS) do
          local text, redacted = H.forms(key)[fi][2], H.forms(key)[fi][3] or "[redacted]"
          local what = kname .. " key as " .. fname
          local logf = ("%s/form%d-%s.jsonl"):format(dir, fi, kname)
          local r = kroute(s, {api_key = key, max_retries = 0})
          s:reset()
          s:script{{status = 401, headers = {["x-request-id"] = text},
            error = {message = "Incorrect API key provided: " .. text .. " (check it)", type = "invalid_request_error",
              code = "invalid_api_key"}},
            {headers = {["x-request-id"] = text}, body = {created = 1, data = {{b64_json = PNG_B64,
              revised_prompt = "as asked by " .. text}}, usage = {note = text, total_tokens = 1}}},
            {status = 500, content_type = "application/json",
              body = '{"detail":"denied: ' .. H.json_escaped(text) .. '"}'}}
          local res, err = imageroute.generate(r, {prompt = "a lighthouse"}, {log = logf})
          assert.is_nil(res, what)
          H.assert_no_transformed_leak({err, tostring(err)}, key, what .. ": the error")
          assert.equal(redacted, err.request_id, what)
          assert.equal("Incorrect API key provided: " .. redacted .. " (check it)", err.message, what)
          res, err = imageroute.generate(r, {prompt = "a lighthouse"}, {log = logf})
          assert.is_nil(err, what .. ": " .. tostring(err))
          H.assert_no_transformed_leak(res, key, what .. ": the result")
          assert.equal(redacted, res.request_id, what)
          assert.equal("as asked by " .. redacted, res.images[1].revised_prompt, what)
          assert.equal(redacted, res.usage.note, what)
          assert.equal(core.sha256(localserver.image("hostile")), res.images[1].sha256, what)
          -- a body that is JSON but no API error, written with escaped slashes: quoted raw in the message
          res, err = imageroute.generate(r, {prompt = "a lighthouse"}, {log = logf})
          assert.is_nil(res, what)
          H.assert_no_transformed_leak({err, tostring(err)}, key, what .. ": the raw body's excerpt")
          assert.equal('HTTP 500 (application/json): {"detail":"denied: ' .. redacted .. '"}', err.message, what)
          assert.equal(3, #s:requests())
          for _, req in ipairs(s:requests()) do assert.equal("Bearer " .. key, req.headers.authorization, what) end
          local log = fx.read(logf, "")
          assert.equal(3, select(2, log:gsub("\n", "")), what)
          H.assert_no_transformed_leak(log, key, what .. ": the call log")
        end
      end)
  end

  it("redacts the key JSON-escaped (\\/, \\uXXXX) in a raw body excerpt, as some servers write JSON", function()
    for kname, key in pairs(H.KEYS) do
      s:reset()
      s:script{{status = 502, content_type = "application/json",
        body = '{"detail":"upstream refused key ' .. H.json_escaped(key) .. '"}'}}
      local _, err = imageroute.generate(kroute(s, {api_key = key, max_retries = 0}), {prompt = "p"})
      H.assert_no_transformed_leak({err, tostring(err)}, key, kname .. " key: the error")
      assert.equal('HTTP 502 (application/json): {"detail":"upstream refused key [redacted]"}', err.message, kname)
    end
  end)

  it("leaves a normal reply's base64 image data alone, even when the image's bytes hold the key", function()
    local key = H.KEYS.plus
    local png = localserver.image("hostile")
    local holding = png .. "user:" .. key -- bytes after IEND: still a PNG, and its base64 encodes the key
    for _, bytes in ipairs{png, holding} do
      s:reset()
      s:script{{headers = {["x-request-id"] = "req_plain"}, body = {created = 1,
        data = {{b64_json = core.b64encode(bytes), revised_prompt = "a lighthouse at dusk"}}}}}
      local res, err = imageroute.generate(kroute(s, {api_key = key}), {prompt = "a lighthouse"})
      assert.is_nil(err, tostring(err))
      local img = res.images[1]
      assert.equal(#bytes, #img.bytes)
      assert.equal(bytes, img.bytes)
      assert.equal(core.sha256(bytes), img.sha256)
      assert.equal("png", img.format)
      assert.same({"req_plain", "a lighthouse at dusk"}, {res.request_id, img.revised_prompt})
      assert.same({}, H.leaks(res, "[redacted]")) -- nothing else was touched either
    end
    -- the same bytes as a string of the outcome are the key in base64: redacted there
    assert.equal("x [redacted]", core.redact("x " .. core.b64encode(holding), key))
  end)

  it("redacts a 1 MiB string of near-matches of every form in bounded time, whatever the key's length", function()
    -- near-matches: a head piece but one byte, pieces (the key but its last byte, upper-cased but its
    -- end, a tail piece, percent-encoded but cut), base64 cut before a needle ends, lone %s; then
    -- the key as Basic credentials at the end
    local key = H.KEYS.slash
    local b = core.b64encode("u:" .. key)
    local units = {key:sub(1, 7) .. "!", key:sub(1, -2) .. "#", key:upper():sub(1, -3) .. "..", "#" .. key:sub(-8),
      H.forms(key:sub(1, 20))[9][2] .. "%", b:sub(1, 12) .. "\"", "%%%7 ", ("A"):rep(30) .. " "}
    local parts, n = {}, 0
    while n < 1024 * 1024 do
      local u = units[#parts % #units + 1]
      parts[#parts + 1] = u
      n = n + #u
    end
    local hostile = table.concat(parts)
    local t0 = os.clock()
    local out = core.redact(hostile .. H.forms(key)[4][2], key)
    local spent = os.clock() - t0
    assert.truthy(out:find(key:sub(1, 7) .. "![redacted]#", 1, true) and out:find("%%%7 ", 1, true))
    assert.equal("Basic [redacted]", out:sub(-16))
    H.assert_no_transformed_leak(out, key, "the redacted string")
    assert.truthy(spent < 1.5, ("%.2f s"):format(spent))
    -- a long key of one repeated byte over text that almost holds it everywhere: linear, not
    -- string length times key length (that took 3 s here)
    key = ("a"):rep(16000) .. "b"
    hostile = (("a"):rep(15999) .. "%61c"):rep(65)
    t0 = os.clock()
    out = core.redact(hostile .. key, key)
    spent = os.clock() - t0
    assert.equal("c[redacted]", out:sub(-11))
    assert.truthy(spent < 1.5, ("%.2f s"):format(spent))
  end)

  it("core.redact: nested, cyclic, string keys, the marker never rebuilding a short key", function()
    local key = H.KEYS.slash
    local t = {a = {b = {c = {key .. "!"}}}, [key] = "v", list = {"x" .. key .. "y" .. key}}
    t.self = t
    assert.equal(t, core.redact(t, key))
    assert.same({"[redacted]!"}, t.a.b.c)
    assert.equal("v", t["[redacted]"])
    assert.equal("x[redacted]y[redacted]", t.list[1])
    assert.equal("a [redacted] b", core.redact("a " .. key .. " b", key))
    assert.equal("cut [redacted]", core.redact("cut " .. key:sub(1, 12), key)) -- a piece cut by a cap
    assert.equal("[redacted] end", core.redact(key:sub(-12) .. " end", key))
    -- a 1-byte key (loopback only) is still redacted, and the marker is one that cannot hold it
    local out = core.redact("a-e-a", "e")
    assert.falsy(out:find("e", 1, true), out)
    local deep = {}
    local cur = deep
    for _ = 1, 100 do cur.next = {}; cur = cur.next end
    cur.s = key
    core.redact(deep, key)
    H.assert_no_leak(deep, key, "a table nested 100 deep")
  end)
end)

describe("header injection is refused before sending", function()
  local s = server.for_block()

  local function no_injected_header()
    for _, req in ipairs(s:requests()) do
      for name in pairs(req.headers) do assert.is_nil(name:find("injected", 1, true), name) end
    end
  end

  it("a route header with CR, LF or NUL in its value or name, naming the field and not the value", function()
    for _, v in ipairs{"a\r\nX-Injected: 1", "a\nX-Injected: 1", "a\rX-Injected: 1", "a\0X-Injected: 1"} do
      local r, err = imageroute.route{base_url = s.base_url, headers = {["X-Team"] = v}}
      assert.is_nil(r)
      assert.equal("validation", err.kind)
      assert.equal("headers", err.field)
      assert.falsy(tostring(err):find("Injected", 1, true), tostring(err))
    end
    local r, err = imageroute.route{base_url = s.base_url, headers = {["X-A\r\nX-Injected"] = "1"}}
    assert.is_nil(r)
    assert.equal("headers", err.field)
    -- a clean header goes through, so the check below can see an injected one
    local ok = fx.route(s, {headers = {["X-Team"] = "blue\tgreen"}})
    assert(imageroute.generate(ok, {prompt = "p"}))
    assert.equal("blue\tgreen", s:requests()[1].headers["x-team"])
    no_injected_header()
  end)

  it("a key with CR, LF or NUL, as a string, from a function or from the environment", function()
    local bad = "sk-hostile-0123456789\r\nX-Injected: 1"
    local r, err = imageroute.route{base_url = s.base_url, api_key = bad}
    assert.is_nil(r)
    assert.same({"validation", "api_key"}, {err.kind, err.field})
    assert.falsy(tostring(err):find("Injected", 1, true), tostring(err))
    for _, k in ipairs{bad, "sk-hostile-0123456789\0X-Injected: 1", "sk-hostile-0123456789\nX"} do
      local fr = kroute(s, {api_key = function() return k end})
      local res, ferr = imageroute.generate(fr, {prompt = "p"})
      assert.is_nil(res)
      assert.same({"validation", "api_key"}, {ferr.kind, ferr.field})
      assert.falsy(tostring(ferr):find("Injected", 1, true), tostring(ferr))
      assert.falsy(tostring(ferr):find("0123456789", 1, true), tostring(ferr))
    end
    local rc, out = H.run_lua("env HOSTILE_KEY=" .. H.shell_bytes(bad), ([[
      local imageroute = require("imageroute")
      local r = assert(imageroute.route{base_url = %q, api_key_env = "HOSTILE_KEY", model = "m"})
      local res, err = imageroute.generate(r, {prompt = "p"})
      io.write(tostring(res), " ", err.kind, " ", err.field, " ", tostring(err))
    ]]):format(s.base_url))
    assert.equal(0, rc, out)
    assert.truthy(out:find("^nil validation api_key_env "), out)
    assert.truthy(out:find("HOSTILE_KEY", 1, true), out) -- names the variable...
    assert.falsy(out:find("Injected", 1, true), out)     -- ...never its value
    assert.equal(0, #s:requests())
  end)

  it("OPENAI_ORG_ID and OPENAI_PROJECT_ID with CR or LF, checked at call time", function()
    local script = ([[
      local imageroute = require("imageroute")
      local r = assert(imageroute.route{base_url = %q, api_key_env = "IMAGEROUTE_TEST_KEY", model = "m"})
      local res, err = imageroute.generate(r, {prompt = "p"})
      io.write(res and "ok" or (err.kind .. " " .. tostring(err.field) .. " " .. tostring(err)))
    ]]):format(s.base_url)
    for _, var in ipairs{"OPENAI_ORG_ID", "OPENAI_PROJECT_ID"} do
      s:reset()
      local rc, out = H.run_lua("env " .. var .. "=" .. H.shell_bytes("org-1\r\nX-Injected: 1"), script)
      assert.equal(0, rc, out)
      assert.truthy(out:find("^validation " .. var), out)
      assert.falsy(out:find("Injected", 1, true), out)
      assert.equal(0, #s:requests())
    end
    -- a clean value is sent, so a server that records headers would show an injected one
    local rc, out = H.run_lua("env OPENAI_ORG_ID=org-clean", script)
    assert.equal(0, rc, out)
    assert.equal("ok", out)
    assert.equal("org-clean", s:requests()[1].headers["openai-organization"])
    no_injected_header()
  end)
end)

describe("keys from anywhere (api_key)", function()
  local s = server.for_block()

  it("a string key is sent, held in C memory, and shown as <set>", function()
    local key = H.KEYS.utf8
    local r = assert(imageroute.route{base_url = s.base_url, model = "gpt-image-1", api_key = key})
    assert(imageroute.generate(r, {prompt = "p"}))
    assert.equal("Bearer " .. key, s:requests()[1].headers.authorization)
    local cfg = r:config()
    assert.equal("<set>", cfg.api_key)
    assert.equal("<set>", r.api_key)
    assert.is_nil(cfg.api_key_env) -- one source only
    H.assert_no_leak({cfg, tostring(r), debug.getuservalue(r, 1), debug.getuservalue(r, 2)}, key, "the route")
    -- handing the shown config back is refused with the reason, never silently sending "<set>"
    local again, err = imageroute.route(cfg)
    assert.is_nil(again)
    assert.equal("api_key", err.field)
    assert.truthy(err.message:find("route:config()", 1, true), err.message)
  end)

  it("a function key is called once per call with the route, and its result is kept nowhere", function()
    local calls, got = 0, nil
    local key = H.KEYS.slash
    local r = assert(imageroute.route{base_url = s.base_url, model = "gpt-image-1",
      api_key = function(route) calls = calls + 1; got = route; return key end})
    assert.equal(0, calls)
    s:script{{status = 500}, {}}
    local res = assert(imageroute.generate(r, {prompt = "p"}, {max_retries = 1}))
    assert.equal(1, calls) -- once per call, not per attempt
    assert.equal(r, got)
    assert.equal(2, #s:requests())
    for _, req in ipairs(s:requests()) do assert.equal("Bearer " .. key, req.headers.authorization) end
    assert(imageroute.generate(r, {prompt = "p"}))
    assert.equal(2, calls)
    H.assert_no_leak({res, r:config(), tostring(r), debug.getuservalue(r, 1)}, key, "the route or result")
  end)

  it("a failing or wrong key function is a validation error that never shows what it returned", function()
    local cases = {
      {function() error("vault unreachable") end, "vault unreachable"},
      {function() return nil end, "returned a nil"},
      {function() return "" end, "empty string"},
      {function() return 12345678901 end, "returned a number"},
      {function() return {token = "sk-in-a-table-0123456789"} end, "returned a table"},
      {function() coroutine.yield() end, "failed"},
    }
    for _, c in ipairs(cases) do
      local r = assert(imageroute.route{base_url = s.base_url, model = "m", api_key = c[1]})
      local res, err = imageroute.generate(r, {prompt = "p"})
      assert.is_nil(res)
      assert.same({"validation", "api_key"}, {err.kind, err.field})
      assert.truthy(err.message:find(c[2], 1, true), err.message)
      assert.falsy(tostring(err):find("12345678901", 1, true))
      assert.falsy(tostring(err):find("sk-in-a-table", 1, true))
    end
    assert.equal(0, #s:requests())
  end)

  it("api_key and api_key_env are exclusive; bad types and short keys are refused at build time", function()
    local function field(cfg)
      local r, err = imageroute.route(cfg)
      assert.is_nil(r)
      return err.field, err.message
    end
    assert.equal("api_key", field{api_key = "sk-0123456789abcdef", api_key_env = "OPENAI_API_KEY"})
    assert.equal("api_key", field{api_key = 42})
    assert.equal("api_key", field{api_key = ""})
    -- a short key to a non-loopback host: refused (nothing is sent, no route is even built)
    local f, msg = field{base_url = "https://api.example/v1", api_key = "sk-1"}
    assert.equal("api_key", f)
    assert.truthy(msg:find("shorter than 8 bytes", 1, true), msg)
    assert.falsy(msg:find("sk-1", 1, true), msg)
    -- on loopback a short key is allowed (local servers), and still redacted everywhere
    s:script{{status = 400, error = {message = "echo zq9", code = "zq9"}}}
    local r = assert(imageroute.route{base_url = s.base_url, model = "m", api_key = "zq9", max_retries = 0})
    local _, err = imageroute.generate(r, {prompt = "p"})
    assert.falsy(tostring(err):find("zq9", 1, true), tostring(err))
    assert.equal("[redacted]", err.code)
  end)

  it("a routes file can hold a key function (it reads os.getenv) that runs under the file's bounds", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(([[return {
      ok = {base_url = %q, model = "m", api_key = function() return os.getenv("IMAGEROUTE_TEST_KEY") end},
      spin = {base_url = %q, model = "m", api_key = function() while true do end end},
    }]]):format(s.base_url, s.base_url))
    f:close()
    local all = assert(routes.load(path))
    assert(imageroute.generate(all.ok, {prompt = "p"}))
    assert.equal("Bearer " .. fx.KEY, s:requests()[1].headers.authorization)
    local t0 = os.clock()
    local res, err = imageroute.generate(all.spin, {prompt = "p"})
    assert.is_nil(res)
    assert.same({"validation", "api_key"}, {err.kind, err.field})
    assert.truthy(err.message:find(path, 1, true), err.message)
    assert.truthy(os.clock() - t0 < 5)
    assert.equal(1, #s:requests())
    os.remove(path)
  end)
end)
