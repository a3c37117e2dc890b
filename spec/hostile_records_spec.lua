-- Records a hostile reply or a hostile file must not break: costs stay finite (or unknown with a
-- reason), every call's log line is written, saves honour the umask and any legal name and leave
-- nothing behind, and a routes file cannot hang the loader.
local imageroute = require("imageroute")
local core = require("imageroute.core")
local log = require("imageroute.log")
local cost = require("imageroute.cost")
local routes = require("imageroute.routes")
local localserver = require("imageroute.localserver")
local server = require("support.server")
local fx = require("support.fixtures")
local H = require("support.hostile")

local PNG = localserver.image("records")
local PNG_B64 = core.b64encode(PNG)
local huge = math.huge

local function finite(v) return type(v) == "number" and v == v and v ~= huge and v ~= -huge end

-- Every number in v (any depth) is finite; returns the path of the first that is not.
local function non_finite_in(v, path, seen)
  seen = seen or {}
  path = path or "value"
  if type(v) == "number" then return (not finite(v)) and path or nil end
  if type(v) ~= "table" or seen[v] then return nil end
  seen[v] = true
  for k, x in pairs(v) do
    local p = non_finite_in(x, path .. "." .. tostring(k), seen)
    if p then return p end
  end
  return nil
end

local records = fx.log_records

describe("hostile numbers: cost and the log", function()
  local s, dir = server.for_block{dir = true}

  local function reply(usage_json)
    return {status = 200, content_type = "application/json",
      body = '{"created":1e400,"data":[{"b64_json":"' .. PNG_B64 .. '"}],"usage":' .. usage_json .. '}'}
  end

  local cases = {
    {"output_tokens 1e400 (inf once decoded), created 1e400",
      '{"input_tokens":10,"output_tokens":1e400,"total_tokens":1e400}'},
    {"output_tokens 1e308", '{"input_tokens":10,"output_tokens":1e308,"total_tokens":1e308}'},
    {"a negative count", '{"input_tokens":-50,"output_tokens":100,"total_tokens":50}'},
    {"details at 1e400", '{"input_tokens":10,"output_tokens":100,"input_tokens_details":{"text_tokens":1e400,' ..
      '"image_tokens":0},"output_tokens_details":{"image_tokens":-1e400,"text_tokens":0}}'},
    {"a reported usage.cost of 1e400", '{"cost":1e400,"output_tokens":100}'},
    {"a reported usage.cost of -1", '{"cost":-1,"output_tokens":100}'},
    {"counts that are strings", '{"input_tokens":"10","output_tokens":"lots"}'},
  }
  for _, c in ipairs(cases) do
    it("prices a reply with " .. c[1] .. " finitely or not at all, and logs it", function()
      local logf = dir .. "/n-" .. c[1]:gsub("%W", "_") .. ".jsonl"
      s:script{reply(c[2])}
      local res, err = imageroute.generate(fx.route(s, {model = "gpt-image-1"}), {prompt = "p", size = "1024x1024",
        quality = "low"}, {log = logf})
      assert.is_nil(err, tostring(err))
      assert.equal(1, #res.images)
      local amount = res.cost.amount
      assert.truthy(amount == nil or finite(amount), tostring(amount))
      if amount == nil then assert.truthy(res.cost.reason, "an unknown cost says why") end
      assert.is_nil(non_finite_in(res.cost), non_finite_in(res.cost))
      assert.truthy(res.cost.note or res.cost.reason, "the ignored field is named")
      assert.truthy(tostring(res.cost.note or res.cost.reason):find("usage.", 1, true),
        tostring(res.cost.note or res.cost.reason))
      local list = records(logf)
      assert.equal(1, #list)
      assert.is_true(list[1].final)
      assert.is_true(list[1].ok)
      assert.is_nil(non_finite_in(list[1]))
    end)
  end

  it("prices a sane reply on its usage (the checks above do not throw good numbers away)", function()
    s:script{reply('{"input_tokens":10,"output_tokens":272,"input_tokens_details":{"text_tokens":10,' ..
      '"image_tokens":0},"output_tokens_details":{"image_tokens":272,"text_tokens":0}}')}
    local res = assert(imageroute.generate(fx.route(s, {model = "gpt-image-1"}), {prompt = "p"}))
    assert.equal("usage", res.cost.basis)
    assert.truthy(finite(res.cost.amount) and res.cost.amount > 0)
    assert.is_nil(res.cost.note and res.cost.note:find("ignored", 1, true))
  end)

  it("a provider token price times a 1e308 total is unknown with a reason, never inf", function()
    s:script{reply('{"total_tokens":1e308,"output_tokens":1}')}
    local r = fx.route(s, {lane = "provider", provider = "p", accepted = "test",
      billing = {unit = "token", price = 0.001}})
    local res = assert(imageroute.generate(r, {prompt = "p"}))
    assert.is_nil(res.cost.amount)
    assert.truthy(res.cost.reason:find("total_tokens", 1, true), res.cost.reason)
    -- and the pure function agrees
    local c = cost.of("generate", r, {prompt = "p"}, {usage = {total_tokens = huge}, images = {},
      attempt_log = {{attempt = 1, status = 200, phase = "request"}}})
    assert.is_nil(c.amount)
  end)

  it("always writes the line: non-finite numbers dropped and listed, odd values as markers", function()
    local logf = dir .. "/odd.jsonl"
    local r = fx.route(s)
    local res = {attempt_log = {{attempt = 1, status = 200, phase = "request", latency = huge, bytes = 0 / 0,
      request_id = "req_1"}},
      latency = -huge, attempts = 1, images = {}, request_id = "req_1",
      cost = {amount = 0 / 0, currency = "USD", basis = "usage", known_amount = huge}}
    assert(log.write("generate", r, {prompt = "p", size = function() end}, {log = logf}, res, nil))
    local list = records(logf)
    assert.equal(1, #list)
    assert.equal("req_1", list[1].request_id)
    assert.is_true(list[1].final)
    assert.is_nil(list[1].latency)
    assert.same({"bytes", "call_cost.amount", "call_cost.known_amount", "call_latency", "latency"},
      list[1].non_finite)
    assert.equal("<function>", list[1].size)
  end)

  it("an outcome the pricing cannot read gets an unknown cost with a reason, and its line", function()
    local logf = dir .. "/unpriced.jsonl"
    local policy = require("imageroute.policy")
    local res = {attempt_log = {5}, images = {}, attempts = 1, request_id = "req_2"}
    policy.after("generate", fx.route(s), {prompt = "p"}, {log = logf}, res, nil)
    assert.is_nil(res.cost.amount)
    assert.truthy(res.cost.reason:find("could not be computed", 1, true), res.cost.reason)
    local list = records(logf)
    assert.equal(1, #list)
    assert.is_true(list[1].final)
  end)

  it("writes a stand-in line when the record cannot be built at all", function()
    local logf = dir .. "/broken.jsonl"
    local r = fx.route(s)
    local bad = setmetatable({}, {__index = function(_, k) error("hostile field " .. k) end})
    assert(log.write("generate", r, {prompt = "p"}, {log = logf}, bad, nil))
    local list = records(logf)
    assert.equal(1, #list)
    assert.equal("local", list[1].route)
    assert.truthy(list[1].log_error:find("cannot build the log record", 1, true), list[1].log_error)
  end)

  it("redacts the route's key from the records before encoding (a key with / is found)", function()
    local key = H.KEYS.slash
    local logf = dir .. "/key.jsonl"
    local r = assert(imageroute.route{name = "k", base_url = s.base_url, model = "m", api_key = key})
    local err = core.error("api", "echo " .. key, {code = key, attempt_log = {{attempt = 1, status = 400,
      request_id = key, phase = "request"}}, attempts = 1})
    assert(log.write("generate", r, {prompt = "p"}, {log = logf}, nil, err))
    local text = fx.read(logf, "")
    H.assert_no_leak(text, key, "the log file")
    assert.truthy(text:find("[redacted]", 1, true))
  end)
end)

describe("image:save", function()
  local dir
  before_each(function() dir = fx.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  local function mode(path)
    local p = assert(io.popen("stat -c %a " .. path))
    local m = p:read("l")
    p:close()
    return m
  end

  for umask, want in pairs{["077"] = "600", ["022"] = "644", ["002"] = "664"} do
    it("gives the file 0666 & ~umask (umask " .. umask .. " -> " .. want .. ")", function()
      local png = dir .. "/png"
      local f = assert(io.open(png, "wb"))
      f:write(PNG)
      f:close()
      local rc, out = H.run_lua("umask " .. umask .. ";", ([[
        local imageroute = require("imageroute")
        local img = assert(imageroute.load_image(%q))
        assert(img:save(%q))
        assert(img:save(%q, {overwrite = true}))
      ]]):format(png, dir .. "/a.png", dir .. "/b.png"))
      assert.equal(0, rc, out)
      assert.equal(want, mode(dir .. "/a.png"))
      assert.equal(want, mode(dir .. "/b.png"))
      assert.same({"a.png", "b.png", "png"}, fx.ls(dir))
    end)
  end

  it("saves a legal 250-character name, and refuses a 256-character one leaving nothing", function()
    local img = core.image(PNG)
    local name = ("n"):rep(246) .. ".png"
    assert.equal(250, #name)
    local p, n = img:save(dir .. "/" .. name)
    assert.equal(dir .. "/" .. name, p)
    assert.equal(#PNG, n)
    assert.equal(PNG, fx.read(dir .. "/" .. name))
    local long = ("n"):rep(252) .. ".png"
    local ok, err = img:save(dir .. "/" .. long)
    assert.is_nil(ok)
    assert.equal("io", err.kind)
    assert.same({name}, fx.ls(dir))
  end)

  it("leaves nothing behind when it fails", function()
    local img = core.image(PNG)
    assert(img:save(dir .. "/x.png"))
    local ok, err = img:save(dir .. "/x.png") -- exists, no overwrite
    assert.is_nil(ok)
    assert.truthy(err.message:find("exists", 1, true))
    ok = img:save(dir .. "/missing/x.png") -- no such directory
    assert.is_nil(ok)
    ok = img:save(dir .. "/x.png/y.png") -- a file as the directory
    assert.is_nil(ok)
    assert.same({"x.png"}, fx.ls(dir))
    -- a plain name saves into the current directory (the temporary file too)
    local rc, out = H.run_lua("cd " .. dir .. " &&", [[
      local core = require("imageroute.core")
      assert(core.image("\137PNG\r\n\26\n"):save("plain.png"))
    ]])
    assert.equal(0, rc, out)
    assert.same({"plain.png", "x.png"}, fx.ls(dir))
  end)
end)

describe("routes files are bounded", function()
  local dir
  before_each(function() dir = fx.tmpdir() end)
  after_each(function() os.execute("rm -rf " .. dir) end)

  local function file(name, text) return fx.write(dir .. "/" .. name, text) end

  it("stops `while true do end` with an error naming the file", function()
    local path = file("spin.lua", "while true do end\nreturn {}")
    local t0 = os.time()
    local all, err = routes.load(path)
    assert.is_nil(all)
    assert.equal("validation", err.kind)
    assert.equal(path, err.path)
    assert.truthy(err.message:find(path, 1, true), err.message)
    assert.truthy(err.message:find("instructions", 1, true), err.message)
    assert.truthy(os.time() - t0 <= 3)
  end)

  it("stops a file by wall-clock time too", function()
    local saved = routes.MAX_INSTRUCTIONS
    routes.MAX_INSTRUCTIONS = 1e15
    local path = file("slow.lua", "local x = 0 while true do x = x + 1 end")
    local ok, all, err = pcall(routes.load, path)
    routes.MAX_INSTRUCTIONS = saved
    assert.is_true(ok)
    assert.is_nil(all)
    assert.truthy(err.message:find("longer than", 1, true), err.message)
  end)

  it("stops a file that grows the heap without end", function()
    -- only the heap bound can stop it: the time and instruction bounds are out of its way (under
    -- valgrind growing 16 MB takes longer than the default 2 s)
    local saved, saved_s, saved_i = routes.MAX_MEMORY_KB, routes.MAX_SECONDS, routes.MAX_INSTRUCTIONS
    routes.MAX_MEMORY_KB, routes.MAX_SECONDS, routes.MAX_INSTRUCTIONS = 16 * 1024, 300, 1e12
    local path = file("grow.lua", "local t = {} while true do t[#t + 1] = {} end")
    local all, err = routes.load(path)
    routes.MAX_MEMORY_KB, routes.MAX_SECONDS, routes.MAX_INSTRUCTIONS = saved, saved_s, saved_i
    assert.is_nil(all)
    assert.truthy(err.message:find("heap", 1, true), err.message)
    collectgarbage()
  end)

  it("refuses a file larger than MAX_FILE_BYTES without running it", function()
    local path = file("big.lua", "return {}\n--" .. ("x"):rep(routes.MAX_FILE_BYTES))
    local all, err = routes.load(path)
    assert.is_nil(all)
    assert.equal("validation", err.kind)
    assert.truthy(err.message:find(path, 1, true) and err.message:find("larger", 1, true), err.message)
    -- and a missing file is still an io error
    local _, e2 = routes.load(dir .. "/none.lua")
    assert.equal("io", e2.kind)
  end)

  it("still loads ordinary files (with os.getenv) quickly", function()
    local all = assert(routes.load(file("ok.lua", [[
      local key_env = os.getenv("IMAGEROUTE_TEST_KEY") and "IMAGEROUTE_TEST_KEY" or "OPENAI_API_KEY"
      local list = {}
      for i = 1, 50 do list[i] = {name = "r" .. i, model = "gpt-image-1", api_key_env = key_env} end
      return list]])))
    assert.equal("gpt-image-1", all.r50.model)
    assert.is_true(imageroute.is_route(all.r1))
  end)
end)
