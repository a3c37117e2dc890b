--- The download policy end to end: a hostile reply's image links (Markdown links, data[].url,
-- redirects) must never make the client connect to loopback, private, link-local, unique-local...
-- addresses, in any spelling, unless the route opts in.
--
-- Every case runs INSIDE A FRESH NETWORK NAMESPACE that has only `lo` (`unshare -n`), with the
-- "internal" addresses added to lo and real TLS servers listening on them: nothing can leave the
-- machine even if the policy regresses, and a refusal is shown by the server having seen no
-- connection (while the opted-in case shows the same server reachable). The cases are in
-- spec/support/netns_downloads.lua; this file runs it once and checks its JSON report.
--
-- Needs root and util-linux `unshare` (CI runs as root). Without them this spec FAILS, unless
-- IMAGEROUTE_SKIP_NETNS=1 says to skip it (then it is reported as pending).

local cjson = require("cjson")

local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]*$") or "."

local function shell_ok(cmd)
  return os.execute(cmd .. " >/dev/null 2>&1") == true
end

local skip = os.getenv("IMAGEROUTE_SKIP_NETNS") == "1"
local report, why_not

local function run()
  if report or why_not then return end
  if not shell_ok("test \"$(id -u)\" = 0") then
    why_not = "needs root for `unshare -n` (set IMAGEROUTE_SKIP_NETNS=1 to skip explicitly)"
    return
  end
  if not shell_ok("unshare -n sh -c 'ip link set lo up'") then
    why_not = "`unshare -n` or `ip` is unavailable (set IMAGEROUTE_SKIP_NETNS=1 to skip explicitly)"
    return
  end
  local out = os.tmpname()
  local errf = os.tmpname()
  local script = ROOT .. "/spec/support/netns_downloads.lua"
  local cmd = ("unshare -n sh -c 'ip link set lo up && ip addr add 10.0.0.1/32 dev lo && "
    .. "ip addr add 169.254.169.254/32 dev lo && ip addr add fd00::1/128 dev lo nodad && "
    .. "exec lua5.4 %s %s' </dev/null >%s 2>&1"):format(script, out, errf)
  local ok = os.execute(cmd)
  local f = io.open(out, "rb")
  local text = f and f:read("a") or ""
  if f then f:close() end
  local ef = io.open(errf, "rb")
  local errtext = ef and ef:read("a") or ""
  if ef then ef:close() end
  os.remove(out)
  os.remove(errf)
  if not ok or text == "" then
    why_not = "the namespace run failed: " .. errtext
    return
  end
  report = cjson.decode(text)
end

local function case(name)
  run()
  if skip and not report then return nil end
  assert(report, why_not)
  local r = report[name]
  assert(r, "no result for case " .. name)
  return r
end

local REFUSED = "refused to download an image: the download policy of the route does not allow its address"

local function refused(name, servers)
  local r = case(name)
  if not r then return pending("IMAGEROUTE_SKIP_NETNS=1") end
  assert.is_false(r.ok, name)
  assert.equal("route", r.kind, name)
  assert.equal("download_refused", r.code, name)
  assert.equal(REFUSED, r.message, name)
  for _, srv in ipairs(servers or {"p10", "p169", "pula"}) do
    assert.equal(0, r.accepts[srv], name .. ": the server on " .. srv .. " saw a connection")
  end
  return r
end

local function fetched(name, server)
  local r = case(name)
  if not r then return pending("IMAGEROUTE_SKIP_NETNS=1") end
  assert.is_true(r.ok, name .. ": " .. tostring(r.text))
  assert.equal(1, r.images)
  assert.is_true(r.accepts[server] >= 1, name .. ": the server was not reached")
  return r
end

describe("download policy (inside a fresh network namespace)", function()
  it("refuses Markdown links and data[].url to a private address with a live server behind it", function()
    refused("markdown_private")
    refused("data_url_private")
  end)

  it("refuses every spelling of it: integer, octal, hex, short, IPv4-mapped IPv6, a closed port", function()
    for _, name in ipairs{"integer", "octal", "hex", "short", "mapped", "closed_port_refused"} do refused(name) end
  end)

  it("refuses the link-local metadata address and unique-local IPv6", function()
    refused("metadata")
    refused("ula")
  end)

  it("refuses a host name that resolves to a private address", function()
    refused("name_private")
  end)

  it("refuses a redirect from an allowed link to a private address (the first hop was made)", function()
    local r = refused("redirect_private")
    assert.equal(1, r.accepts.pr)
    r = refused("redirect_mapped")
    assert.equal(1, r.accepts.pr)
  end)

  it("follows allowed redirects, at most 5, https only", function()
    local r = fetched("redirect_allowed", "plo")
    assert.equal(1, r.accepts.pr)
    r = case("redirect_loop")
    if not r then return pending("IMAGEROUTE_SKIP_NETNS=1") end
    assert.equal("too_many_redirects", r.code)
    assert.equal(6, r.accepts.pr) -- the link and 5 redirects
    r = case("redirect_to_http")
    assert.equal("decode", r.kind)
    assert.truthy(r.message:find("only https", 1, true))
  end)

  it("reaches the same servers when the route sets allow_private_downloads (so the refusals are real)", function()
    fetched("optin_private", "p10")
    fetched("optin_integer", "p10")
    fetched("optin_mapped", "p10")
    fetched("optin_ula", "pula")
    fetched("optin_name", "p10")
  end)

  it("applies ca_file to downloads: without it the opted-in download fails certificate checks", function()
    local r = case("optin_without_ca_file")
    if not r then return pending("IMAGEROUTE_SKIP_NETNS=1") end
    assert.is_false(r.ok)
    assert.equal("download_failed", r.code)
    assert.equal(1, r.accepts.p10)
  end)

  it("gives one message for every refused address, and one for every failed download connection", function()
    local seen = {}
    for _, name in ipairs{"markdown_private", "integer", "mapped", "metadata", "ula", "closed_port_refused",
      "name_private", "redirect_private", "hosts_unlisted", "remote_base_loopback_https"} do
      local r = case(name)
      if not r then return pending("IMAGEROUTE_SKIP_NETNS=1") end
      seen[r.message] = true
    end
    assert.same({[REFUSED] = true}, seen)
    local fail = {}
    for _, name in ipairs{"fail_closed", "fail_not_tls", "fail_silent", "fail_bad_cert", "optin_without_ca_file"} do
      local r = case(name)
      assert.is_false(r.ok, name)
      assert.equal("connection", r.kind, name)
      assert.equal("download_failed", r.code, name)
      assert.is_nil(r.curl_code, name)
      assert.is_nil(r.status, name)
      fail[r.message] = true
    end
    local n = 0
    for m in pairs(fail) do
      n = n + 1
      assert.falsy(m:find("10.0.0.1", 1, true) or m:find("port", 1, true) or m:lower():find("refused", 1, true), m)
    end
    assert.equal(1, n)
  end)

  it("download_hosts: only listed hosts are fetched, and the address policy still applies to them", function()
    fetched("hosts_listed", "p10")
    refused("hosts_unlisted")
    refused("hosts_bare_suffix")
    refused("hosts_literal")
    refused("hosts_listed_private")
    local r = refused("hosts_redirect_unlisted")
    assert.equal(1, r.accepts.pr)
  end)

  it("refuses loopback downloads when the route's base_url host is not loopback (api.test over TLS)", function()
    for _, name in ipairs{"remote_base_loopback_https", "remote_base_loopback_http", "remote_base_api_host",
      "remote_base_localhost_v6"} do
      local r = refused(name)
      assert.equal(1, r.accepts.plo, name .. ": the API call itself went through the TLS proxy once")
    end
    local r = fetched("remote_base_optin", "plo")
    assert.equal(2, r.accepts.plo)
  end)

  it("keeps a route's resolve entries to that route's calls", function()
    local r = case("resolve_isolated")
    if not r then return pending("IMAGEROUTE_SKIP_NETNS=1") end
    assert.is_false(r.ok)
    assert.equal("connection", r.kind)
    assert.equal(0, r.accepts.plo)
  end)
end)
