-- `imageroute budget`: spent / reserved / left of each budget a routes file declares, read from the
-- store the file names (a real redis-server here, shared with the calls made by other processes).
local server = require("support.server")
local fx = require("support.fixtures")
local cli = require("support.cli_run")
local redis = require("support.redis")
local json = require("imageroute.json")

redis.describe("imageroute budget", function()
  local s, dir = server.for_block{dir = true, reset = false}
  local r = redis.for_block()

  it("shows what the calls of other processes spent in the store the routes file names", function()
    local down = redis.free_port()
    cli.write(dir .. "/routes.lua", ([[
return {
  shared = {usd = 1, per = "day", state = %q},
  mine = {usd = 2},
  lost = {usd = 3, state = "redis://127.0.0.1:%d/0"},
  flat = {lane = "provider", provider = "acme", accepted = "test", base_url = %q, model = "gpt-image-1",
    api_key_env = %q, budget = "shared", state = %q,
    billing = {unit = "call", price = 0.15, currency = "USD", source = "test", date = "2026-12-01"}},
}]]):format(r.url, down, s.base_url, fx.KEY_ENV, r.url))
    for i = 1, 2 do
      local rc, _, err = cli.run(dir, {"generate", "a fox " .. i, "--route", "flat", "-o", "out/"})
      assert.equal(0, rc, err)
    end
    assert.equal(2, #s:requests())
    local rc, out, err = cli.run(dir, {"budget", "shared"})
    assert.equal(0, rc, err)
    local head, row = out:match("^([^\n]*)\n([^\n]*)\n$")
    assert.matches("^budget%s+period%s+store%s+usd%s+spent%s+reserved%s+left$", head)
    assert.matches("^shared%s+%d%d%d%d%-%d%d%-%d%d%s+" .. r.url:gsub("%p", "%%%0") ..
      "%s+1%.0000%s+0%.3000%s+0%.0000%s+0%.7000$", row)
    -- every budget, as JSON; a store that cannot be read says so, and the exit code is 1
    rc, out, err = cli.run(dir, {"budget", "--json"})
    assert.equal(1, rc)
    assert.matches("budget lost: .*Connection refused", err)
    local doc = json.decode(out)
    local by = {}
    for _, b in ipairs(doc.budgets) do by[b.name] = b end
    assert.is_near(0.3, by.shared.spent, 1e-9)
    assert.equal(0, by.mine.spent)
    assert.equal("memory", by.mine.store)
    assert.equal("state_unreachable", by.lost.error.code)
    assert.is_nil(by.lost.left)
    rc, out, err = cli.run(dir, {"budget", "nope"})
    assert.equal("", out)
    assert.equal(2, rc)
    assert.matches("declares no budget 'nope'", err)
  end)
end)
