--- spec/support/cli_run.lua: run the `imageroute` command as a user runs it, from specs.
--
--     local cli = require("support.cli_run")
--     local rc, out, err = cli.run(dir, {"--local", "generate", "a fox"}, {stdin = "...", env = "A=b"})
--     local rc, screen = cli.run_tty(dir, {"--local", "batch", "prompts.txt"})   -- on a terminal
local fx = require("support.fixtures")
local sys = require("imageroute.sys")
local json = require("imageroute.json")

local M = {}

local function repo_root()
  local src = debug.getinfo(1, "S").source
  local dir = src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$")
  if not dir or dir == "" then dir = "." end
  if dir:sub(1, 1) ~= "/" then
    local p = assert(io.popen("pwd"))
    dir = p:read("l") .. "/" .. dir
    p:close()
  end
  return dir
end

M.ROOT = repo_root()
M.BIN = M.ROOT .. "/bin/imageroute"

M.q, M.write = sys.shell_quote, sys.write_file
local q = M.q

function M.exists(path)
  local f = io.open(path, "rb")
  if f then f:close() end
  return f ~= nil
end

function M.is_dir(path)
  return os.execute("test -d " .. q(path)) == true
end

--- Runs the command in dir; returns rc, stdout, stderr. opts.env: a prefix such as "A=b"
-- (OPENAI_API_KEY and OPENAI_BASE_URL are unset unless given there); opts.stdin: the text on
-- standard input (default /dev/null).
function M.run(dir, args, opts)
  opts = opts or {}
  local parts = {}
  for i, a in ipairs(args) do parts[i] = q(a) end
  local err = os.tmpname()
  local input = "/dev/null"
  if opts.stdin then
    input = os.tmpname()
    M.write(input, opts.stdin)
  end
  local cmd = ("cd %s && env -u OPENAI_API_KEY -u OPENAI_BASE_URL %s lua5.4 %s %s <%s 2>%s; echo \"rc=$?\"")
    :format(q(dir), opts.env or "", q(M.BIN), table.concat(parts, " "), q(input), q(err))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("rc=(%d+)\n?$"))
  out = out:gsub("rc=%d+\n?$", "")
  local stderr = fx.read(err)
  os.remove(err)
  if opts.stdin then os.remove(input) end
  return rc, out, stderr
end

--- Runs the command on a terminal (util-linux `script` gives it one for stdin, stdout and stderr);
-- returns rc and everything the terminal showed, or nil when `script` is missing.
function M.run_tty(dir, args, env)
  if not os.execute("command -v script >/dev/null 2>&1") then return nil end
  local parts = {}
  for i, a in ipairs(args) do parts[i] = q(a) end
  local inner = ("env -u OPENAI_API_KEY -u OPENAI_BASE_URL %s lua5.4 %s %s"):format(env or "", q(M.BIN),
    table.concat(parts, " "))
  local p = assert(io.popen(("cd %s && TERM=xterm script -qec %s /dev/null </dev/null; echo \"rc=$?\""):format(
    q(dir), q(inner)), "r"))
  local out = p:read("a")
  p:close()
  return tonumber(out:match("rc=(%d+)%s*$")), out
end

--- The decoded lines of a JSON-lines file.
function M.json_lines(path)
  local list = {}
  for line in fx.read(path):gmatch("[^\n]+") do list[#list + 1] = assert(json.decode(line)) end
  return list
end

--- A routes file in dir with one route `name` on server s (images shape, the test key), plus extra
-- fields (a Lua table literal's body, e.g. 'headers = {...}'); returns its path.
function M.routes_file(dir, s, name, extra)
  local path = dir .. "/" .. name .. "-routes.lua"
  M.write(path, ([[return {
    [%q] = {lane = "official", shape = "images", model = "gpt-image-1", base_url = %q, max_retries = 0,
      api_key_env = "IMAGEROUTE_TEST_KEY", %s},
  }]]):format(name, s.base_url, extra or ""))
  return path
end

return M
