-- key_id: the C core sets the first 8 hex digits of the SHA-256 of the key it sent on every
-- result and error of the call, whichever way the route holds the key (api_key string, api_key
-- function, api_key_env), and the call log carries it, never the key.
local imageroute = require("imageroute")
local server = require("support.server")
local fx = require("support.fixtures")

-- the digest by another implementation than the core's (sha256sum, or openssl)
local function sha256_hex(s)
  local tmp = os.tmpname()
  local f = assert(io.open(tmp, "wb"))
  f:write(s)
  f:close()
  local p = assert(io.popen("(sha256sum < '" .. tmp .. "' || openssl dgst -sha256 -r < '" .. tmp .. "') 2>/dev/null"))
  local out = p:read("a")
  p:close()
  os.remove(tmp)
  return assert(out:match("^(%x+)"), "no digest tool")
end

-- a route on the local server holding its key one way only (extra: api_key or api_key_env)
local function route(s, extra, behaviour)
  local cfg = {name = "local", base_url = s.base_url, model = "gpt-image-1", timeout = 10, max_retries = 0}
  for k, v in pairs(extra) do cfg[k] = v end
  if behaviour then cfg.headers = {["x-imageroute-test"] = require("imageroute.json").encode(behaviour)} end
  return assert(imageroute.route(cfg))
end


describe("key_id on results, errors and the call log", function()
  local s, dir = server.for_block{dir = true}
  local n = 0

  -- keys the Lua layer cannot see through the environment: a string and a function's result
  local STRING_KEY = "sk-key-id-string-0123456789abcdef"
  local FN_KEY = "sk-key-id-function-fedcba9876543210"

  local function routes()
    return {
      {"api_key string", STRING_KEY, {api_key = STRING_KEY}},
      {"api_key function", FN_KEY, {api_key = function() return FN_KEY end}},
      {"api_key_env", fx.KEY, {api_key_env = fx.KEY_ENV}},
    }
  end

  local function new_log()
    n = n + 1
    return dir .. "/key-id-" .. n .. ".jsonl"
  end

  for _, case in ipairs(routes()) do
    local label, key, extra = case[1], case[2], case[3]

    it("a successful call with " .. label .. ": result.key_id and the log line's key_id", function()
      local path = new_log()
      local cfg = {log = path}
      for k, v in pairs(extra) do cfg[k] = v end
      local r = route(s, cfg)
      s:reset()
      local res = assert(imageroute.generate(r, {prompt = "a key id"}))
      local want = sha256_hex(key):sub(1, 8)
      assert.equal(8, #want)
      assert.equal(want, res.key_id)
      local list = fx.log_records(path)
      assert.equal(1, #list)
      assert.equal(want, list[1].key_id)
      assert.falsy(fx.read(path, ""):find(key, 1, true), "the key is in the log")
      -- the server saw this very key: the id is of the key that was sent
      assert.equal("Bearer " .. key, s:requests()[1].headers.authorization)
    end)

    it("a refused call with " .. label .. ": err.key_id and the log line's key_id", function()
      local path = new_log()
      local cfg = {log = path}
      for k, v in pairs(extra) do cfg[k] = v end
      local r = route(s, cfg, {status = 400, error = {message = "nope " .. key, type = "invalid_request_error"}})
      local res, err = imageroute.generate(r, {prompt = "a key id"})
      assert.is_nil(res)
      local want = sha256_hex(key):sub(1, 8)
      assert.equal(want, err.key_id)
      assert.falsy(tostring(err):find(key, 1, true), "the key is in the error")
      local list = fx.log_records(path)
      assert.equal(1, #list)
      assert.is_false(list[1].ok)
      assert.equal(want, list[1].key_id)
      assert.falsy(fx.read(path, ""):find(key, 1, true), "the key is in the log")
    end)
  end

  it("every kind of call: respond, a streamed generate, a generic API request (api_key function)", function()
    local path = new_log()
    local want = sha256_hex(FN_KEY):sub(1, 8)
    local keyfn = function() return FN_KEY end
    local assistant = route(s, {log = path, api_key = keyfn, shape = "responses", model = "gpt-5"})
    local res = assert(imageroute.respond(assistant, {input = "a fox", tool = false}))
    assert.equal(want, res.key_id)
    local images = route(s, {log = path, api_key = keyfn})
    res = assert(imageroute.generate(images, {prompt = "a fox", stream = true, partial_images = 1}))
    assert.equal(want, res.key_id)
    res = assert(imageroute.api(images, {path = "/models/gpt-image-1"}))
    assert.equal(want, res.key_id)
    local list = fx.log_records(path)
    assert.is_true(#list >= 2)
    for _, rec in ipairs(list) do
      if rec.event ~= "save" then assert.equal(want, rec.key_id) end
    end
    assert.falsy(fx.read(path, ""):find(FN_KEY, 1, true), "the key is in the log")
  end)

  it("a call that sent no key carries no key_id", function()
    local path = new_log()
    local r = route(s, {log = path, api_key_env = "IMAGEROUTE_KEY_ID_SPEC_UNSET"})
    local res = assert(imageroute.generate(r, {prompt = "no key on loopback"}))
    assert.is_nil(res.key_id)
    assert.is_nil(fx.log_records(path)[1].key_id)
  end)
end)
