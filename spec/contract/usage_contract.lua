-- Contract suite: the Usage and Costs API requests of `imageroute reconcile --official`, as
-- imageroute builds them (imageroute.billing.reconcile.queries over imageroute.api), checked against
-- the official OpenAPI spec by Steady (scripts/contract.sh starts it). Steady answers 400 to a
-- request whose query does not match the spec (`GET /organization/usage/images`,
-- `GET /organization/costs`: start_time, end_time, bucket_width, group_by, limit, page).
local imageroute = require("imageroute")
local reconcile = require("imageroute.billing.reconcile")

local url = assert(os.getenv("STEADY_URL"), "run through scripts/contract.sh")
local admin = assert(imageroute.route{
  name = "steady-admin", base_url = url, api_key_env = "IMAGEROUTE_CONTRACT_KEY", max_retries = 0,
})

local function get(q, extra)
  local query = {}
  for k, v in pairs(q.query) do query[k] = v end
  for k, v in pairs(extra or {}) do query[k] = v end
  return imageroute.api(admin, {method = "GET", path = q.path, query = query})
end

describe("Usage and Costs API requests match the official spec", function()
  local now = 1764583200 -- 2025-12-01T10:00:00Z
  local windows = {
    {"a probe's window (minute buckets)", now, now + 7},
    {"a day (minute buckets)", now - 86400, now},
    {"a week (day buckets)", now - 7 * 86400, now},
  }
  for _, w in ipairs(windows) do
    it(w[1], function()
      local q = reconcile.queries(w[2], w[3])
      for _, which in ipairs{"usage", "costs"} do
        local res, err = get(q[which])
        assert.is_nil(err and tostring(err), which)
        assert.equal(200, res.status, which)
        assert.equal("table", type(res.body), which)
        assert.equal("page", res.body.object, which)
      end
      -- the next page, as reconcile follows it
      local res, err = get(q.usage, {page = "page_1"})
      assert.is_nil(err and tostring(err))
      assert.equal(200, res.status)
    end)
  end

  it("can fail: Steady rejects queries that break the spec", function()
    local q = reconcile.queries(now - 60, now)
    local _, err = get(q.usage, {bucket_width = "2d"})
    assert.equal(400, err and err.status, tostring(err))
    _, err = get(q.costs, {group_by = {"model"}}) -- costs group by project_id, line_item, api_key_id only
    assert.equal(400, err and err.status, tostring(err))
    _, err = get(q.usage, {start_time = "yesterday"})
    assert.equal(400, err and err.status, tostring(err))
  end)
end)
