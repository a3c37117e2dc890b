--- Shared fixtures for the specs: the test key, routes on the local server, small files.
local imageroute = require("imageroute")
local json = require("imageroute.json")

local M = {}

--- The stand-in API key the routes read from the environment; specs assert it goes nowhere but
-- Authorization. Lua cannot set a variable, so the runner does: a plain `busted` from the repository
-- root (through .busted's `lua`), `make spec` / `make test-5.3` and `luarocks test` (scripts/spec.sh).
M.KEY_ENV = "IMAGEROUTE_TEST_KEY"
M.KEY = os.getenv(M.KEY_ENV)
if not M.KEY or M.KEY == "" then
  error(M.KEY_ENV .. " is not set: run `busted` from the repository root (.busted sets it), `make spec`, "
    .. "or set it to any stand-in key (the specs only send it to the local server)", 0)
end

--- A route on the local server with short test timings.
-- @tparam table s the server (support.server)
-- @tparam[opt] table extra route fields to add or override
function M.route(s, extra)
  local cfg = {
    name = "local", base_url = s.base_url, model = "gpt-image-1", api_key_env = M.KEY_ENV,
    retry_initial_delay = 0.01, retry_max_delay = 0.05, timeout = 10,
  }
  return assert(imageroute.route(M.with(cfg, extra)))
end

--- A spec's route defaults with a test's own fields over them.
-- @tparam table defaults the spec's fields (this table is filled in and returned)
-- @tparam[opt] table extra the test's fields
-- @treturn table defaults
function M.with(defaults, extra)
  for k, v in pairs(extra or {}) do defaults[k] = v end
  return defaults
end

--- A Responses route on s: the text model `gpt-5` on top, the image model `gpt-image-1` in the tool,
-- with extra's fields over them.
function M.responses_route(s, extra)
  return M.route(s, M.with({shape = "responses", model = "gpt-5", image_model = "gpt-image-1"}, extra))
end

--- A route whose every request carries the behaviour b (header x-imageroute-test).
function M.behaving(s, b, extra)
  extra = extra or {}
  extra.headers = {["x-imageroute-test"] = json.encode(b)}
  return M.route(s, extra)
end

--- A 1x1 RGB PNG (67 bytes), valid to the last CRC.
M.PNG_1x1 = table.concat{
  "\137PNG\r\n\26\n",
  "\0\0\0\13IHDR\0\0\0\1\0\0\0\1\8\2\0\0\0\144\119\83\222",
  "\0\0\0\12IDAT\8\215\99\248\207\192\0\0\3\1\1\0\24\221\141\176",
  "\0\0\0\0IEND\174\66\96\130",
}

--- The records of a call log file (imageroute.log.read), asserting that no line was bad.
function M.log_records(path)
  local list, bad = require("imageroute.log").read(path)
  require("busted").assert.equal(0, bad)
  return list
end

--- A file's bytes. A missing file is an error, unless if_missing is given: then it is returned.
-- @tparam string path
-- @tparam[opt] string if_missing
-- @treturn string
function M.read(path, if_missing)
  local f, err = io.open(path, "rb")
  if not f and if_missing then return if_missing end
  f = assert(f, err)
  local d = f:read("a")
  f:close()
  return d
end

--- The names in a directory (`ls -A`), sorted.
-- @treturn {string,...}
function M.ls(dir)
  local p = assert(io.popen("ls -A " .. require("imageroute.sys").shell_quote(dir)))
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  table.sort(names)
  return names
end

--- Writes bytes to a file (raises on failure).
-- @treturn string path
function M.write(path, bytes)
  local f = assert(io.open(path, "wb"))
  f:write(bytes)
  f:close()
  return path
end

function M.tmpdir()
  local p = os.tmpname()
  os.remove(p)
  assert(os.execute("mkdir -p " .. p))
  return p
end

--- Renders a value (tables deeply) as text, to check that a secret appears nowhere in it.
function M.dump(v, seen)
  seen = seen or {}
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "" end
  seen[v] = true
  local out = {tostring(v)}
  for k, x in pairs(v) do out[#out + 1] = tostring(k) .. "=" .. M.dump(x, seen) end
  return table.concat(out, " ")
end

return M
