--- spec/support/netns_downloads.lua: the download-policy cases, run INSIDE a fresh network
-- namespace by spec/hostile_downloads_spec.lua:
--
--     unshare -n sh -c 'ip link set lo up && ip addr add 10.0.0.1/32 dev lo && ... &&
--                       lua5.4 spec/support/netns_downloads.lua OUT.json'
--
-- It refuses to run when the namespace has any interface other than `lo`, so nothing it does can
-- leave the machine even if the policy regresses. Real TLS servers listen on the "internal"
-- addresses (10.0.0.1, 169.254.169.254, fd00::1), each counting the TCP connections it accepts:
-- a refused download must leave the count unchanged, an opted-in one must raise it (so the
-- refusals are not an accident of nothing listening). Writes one JSON object: case name ->
-- {ok, kind, code, message, images, curl_code, status, accepts = {server = delta}}.

local cjson = require("cjson")
local socket = require("socket")
local server = require("support.server")
local tls = require("support.tls")
local process = require("imageroute.localserver.process")
local imageroute = require("imageroute")

local out_path = assert(arg[1], "usage: netns_downloads.lua OUT.json")
local ROOT = debug.getinfo(1, "S").source:match("^@(.*)/spec/support/[^/]*$") or "."

-- 1. only lo: this must be a namespace of its own
do
  local p = assert(io.popen("ip -o link show 2>&1"))
  local links = p:read("a")
  p:close()
  local n = 0
  for name in links:gmatch("%d+:%s+([^:@%s]+)") do
    n = n + 1
    if name ~= "lo" then error("netns_downloads: interface " .. name .. " exists: run me inside `unshare -n`") end
  end
  assert(n == 1, "netns_downloads: cannot list the interfaces: " .. links)
end

local KEY_ENV = "IMAGEROUTE_TEST_KEY"
assert(os.getenv(KEY_ENV), "run through scripts/spec.sh (it sets " .. KEY_ENV .. ")")

local dir = os.tmpname()
os.remove(dir)
assert(os.execute("mkdir -p " .. dir))
local s = server.start()
local pki = tls.pki(dir, {"DNS:api.test", "DNS:img.test", "DNS:img.cdn.test", "DNS:other.test", "DNS:cdn.test",
  "IP:127.0.0.1", "IP:10.0.0.1", "IP:169.254.169.254", "IP:fd00::1", "IP:::ffff:10.0.0.1"})
local proxies = {
  p10 = tls.proxy{addr = "10.0.0.1", port = 443, cert = pki.cert, key = pki.key, backend = s.port},
  p169 = tls.proxy{addr = "169.254.169.254", port = 443, cert = pki.cert, key = pki.key, backend = s.port},
  pula = tls.proxy{addr = "fd00::1", port = 443, cert = pki.cert, key = pki.key, backend = s.port},
  plo = tls.proxy{addr = "127.0.0.1", cert = pki.cert, key = pki.key, backend = s.port},
}
-- the redirector, behind TLS too (download redirects are followed over https only)
local rport_file = os.tmpname()
os.remove(rport_file)
local redirector_pid = assert(process.spawn({"lua5.4", ROOT .. "/spec/support/redirector.lua", rport_file, "120"}))
local rport = assert(process.wait_port(redirector_pid, rport_file, 5), "redirector did not start")
proxies.pr = tls.proxy{addr = "127.0.0.1", cert = pki.cert, key = pki.key, backend = rport}
-- a port that completes the TCP handshake and then says nothing (never accepted)
local hang = assert(socket.bind("10.0.0.1", 8445))
-- a port that answers garbage instead of TLS
local garbage_pid = assert(process.spawn({"lua5.4", "-e", [[
  local socket = require("socket")
  local srv = assert(socket.bind("10.0.0.1", 8444))
  srv:settimeout(0.5)
  local stop = socket.gettime() + 120
  while socket.gettime() < stop do
    local c = srv:accept()
    if c then c:send("HTTP/1.0 200 OK\r\n\r\nnot tls at all\n") c:close() end
  end]]}))
socket.sleep(0.3)

-- a real image file on the local server: its name works through every proxy
s:script{{b64_mode = "url"}}
local first = assert(imageroute.generate(assert(imageroute.route{base_url = s.base_url, model = "gpt-image-1",
  api_key_env = KEY_ENV, max_retries = 0}), {prompt = "the file every case downloads"}))
local NAME = assert(first.images[1].url:match("/files/([%w%._%-]+)$"))
local PATH = "/files/" .. NAME

local function enc(u)
  return (u:gsub("[^%w%-%._~]", function(c) return ("%%%02X"):format(c:byte()) end))
end

local function counts()
  local c = {}
  for k, p in pairs(proxies) do c[k] = p:accepts() end
  return c
end

local function route(extra)
  local cfg = {name = "netns", base_url = s.base_url, model = "gpt-image-2", api_key_env = KEY_ENV,
    max_retries = 0, timeout = 3, connect_timeout = 2}
  for k, v in pairs(extra or {}) do cfg[k] = v end
  return assert(imageroute.route(cfg))
end

local function chat_body(content)
  return cjson.encode({id = "chatcmpl-1", object = "chat.completion", created = 1, model = "m",
    choices = {{index = 0, message = {role = "assistant", content = content}, finish_reason = "stop"}}})
end

local results = {}

local function record(name, res, err, before)
  local after = counts()
  local r = {ok = res ~= nil, accepts = {}}
  for k, v in pairs(after) do r.accepts[k] = v - before[k] end
  if res then
    r.images = #res.images
    r.sha256 = res.images[1] and res.images[1].sha256
  else
    r.kind, r.code, r.message = err.kind, err.code, err.message
    r.curl_code, r.status, r.text = err.curl_code, err.status, tostring(err)
  end
  results[name] = r
end

--- A chat reply whose content is `content` (Markdown links), through route(extra).
local function chat_case(name, content, extra)
  extra = extra or {}
  extra.shape = "chat"
  local r = route(extra)
  local before = counts()
  s:script{{body = chat_body(content)}}
  local t0 = socket.gettime()
  local res, err = imageroute.generate(r, {prompt = "p"})
  record(name, res, err, before)
  results[name].seconds = socket.gettime() - t0
end

--- An Images API reply with data[1].url = url.
local function images_case(name, url, extra)
  local r = route(extra)
  local before = counts()
  s:script{{body = cjson.encode({created = 1, data = {{url = url}}})}}
  local res, err = imageroute.generate(r, {prompt = "p"})
  record(name, res, err, before)
end

local function md(url) return "here it is\n\n![image](" .. url .. ")\n" end

-- 2. refused: every spelling of an internal address, with a live server behind each
chat_case("markdown_private", md("https://10.0.0.1" .. PATH))
images_case("data_url_private", "https://10.0.0.1" .. PATH)
images_case("integer", "https://167772161" .. PATH)
images_case("octal", "https://012.0.0.1" .. PATH)
images_case("hex", "https://0xa.0.0.1" .. PATH)
images_case("short", "https://10.1" .. PATH)
images_case("mapped", "https://[::ffff:10.0.0.1]" .. PATH)
images_case("metadata", "https://169.254.169.254" .. PATH)
images_case("ula", "https://[fd00::1]" .. PATH)
images_case("closed_port_refused", "https://10.0.0.1:9" .. PATH)
images_case("name_private", "https://img.test" .. PATH, {resolve = {"img.test:443:10.0.0.1"}})
chat_case("redirect_private", md("https://127.0.0.1:" .. proxies.pr.port .. "/r/" .. enc("https://10.0.0.1" .. PATH)),
  {ca_file = pki.ca})
chat_case("redirect_mapped", md("https://127.0.0.1:" .. proxies.pr.port .. "/r/"
  .. enc("https://[::ffff:10.0.0.1]" .. PATH)), {ca_file = pki.ca})

-- 3. redirects that are followed, or stopped for another reason
chat_case("redirect_allowed", md("https://127.0.0.1:" .. proxies.pr.port .. "/r/"
  .. enc("https://127.0.0.1:" .. proxies.plo.port .. PATH)), {ca_file = pki.ca})
chat_case("redirect_loop", md("https://127.0.0.1:" .. proxies.pr.port .. "/loop"), {ca_file = pki.ca})
chat_case("redirect_to_http", md("https://127.0.0.1:" .. proxies.pr.port .. "/r/" .. enc(s.url(PATH))),
  {ca_file = pki.ca})

-- 4. opt-in: the same addresses are reachable when the route allows private downloads
local optin = {allow_private_downloads = true, ca_file = pki.ca}
images_case("optin_private", "https://10.0.0.1" .. PATH, optin)
images_case("optin_integer", "https://167772161" .. PATH, optin)
images_case("optin_mapped", "https://[::ffff:10.0.0.1]" .. PATH, optin)
images_case("optin_ula", "https://[fd00::1]" .. PATH, optin)
images_case("optin_name", "https://img.test" .. PATH,
  {allow_private_downloads = true, ca_file = pki.ca, resolve = {"img.test:443:10.0.0.1"}})
images_case("optin_without_ca_file", "https://10.0.0.1" .. PATH, {allow_private_downloads = true})

-- 5. download failures to allowed addresses all read the same: closed, not TLS, silent, bad cert
images_case("fail_closed", "https://10.0.0.1:9" .. PATH, optin)
images_case("fail_not_tls", "https://10.0.0.1:8444" .. PATH, optin)
images_case("fail_silent", "https://10.0.0.1:8445" .. PATH,
  {allow_private_downloads = true, ca_file = pki.ca, timeout = 1})
images_case("fail_bad_cert", "https://10.0.0.1" .. PATH, {allow_private_downloads = true, ca_file = pki.other_ca})

-- 6. download_hosts: only the listed hosts, and the address policy still applies to them
local hosts = {download_hosts = {"*.cdn.test"}, allow_private_downloads = true, ca_file = pki.ca,
  resolve = {"img.cdn.test:443:10.0.0.1", "other.test:443:10.0.0.1", "cdn.test:443:10.0.0.1"}}
images_case("hosts_listed", "https://img.cdn.test" .. PATH, hosts)
images_case("hosts_unlisted", "https://other.test" .. PATH, hosts)
images_case("hosts_bare_suffix", "https://cdn.test" .. PATH, hosts)
images_case("hosts_literal", "https://10.0.0.1" .. PATH, hosts)
images_case("hosts_listed_private", "https://img.test" .. PATH,
  {download_hosts = {"img.test"}, resolve = {"img.test:443:10.0.0.1"}, ca_file = pki.ca})
chat_case("hosts_redirect_unlisted", md("https://img.cdn.test:" .. proxies.pr.port .. "/r/"
  .. enc("https://other.test" .. PATH)), {download_hosts = {"*.cdn.test"}, allow_private_downloads = true,
  ca_file = pki.ca, resolve = {"img.cdn.test:" .. proxies.pr.port .. ":127.0.0.1", "other.test:443:10.0.0.1"}})

-- 7. a route whose base_url host is not loopback (api.test over TLS, mapped to the local server):
-- loopback downloads are refused, whatever the spelling; the API call itself went through
local api = {base_url = "https://api.test:" .. proxies.plo.port .. "/v1", lane = "provider", provider = "netns-test",
  accepted = "a spec's fake gateway", resolve = {"api.test:" .. proxies.plo.port .. ":127.0.0.1"}, ca_file = pki.ca}
chat_case("remote_base_loopback_https", md("https://127.0.0.1:" .. proxies.plo.port .. PATH), api)
chat_case("remote_base_loopback_http", md(s.url(PATH)), api)
chat_case("remote_base_api_host", md("https://api.test:" .. proxies.plo.port .. PATH), api)
chat_case("remote_base_localhost_v6", md("https://[::1]:" .. proxies.plo.port .. PATH), api)
local api_optin = {}
for k, v in pairs(api) do api_optin[k] = v end
api_optin.allow_private_downloads = true
chat_case("remote_base_optin", md("https://127.0.0.1:" .. proxies.plo.port .. PATH), api_optin)
-- a route's resolve entries are its own: the same base_url without them does not reach the server
do
  local r = route{base_url = api.base_url, lane = "provider", provider = "netns-test", accepted = "a spec",
    ca_file = pki.ca, shape = "chat"}
  local before = counts()
  local res, err = imageroute.generate(r, {prompt = "p"})
  record("resolve_isolated", res, err, before)
end

-- done
for _, p in pairs(proxies) do p:stop() end
hang:close()
process.stop(redirector_pid)
process.stop(garbage_pid)
s:stop()
os.execute("rm -rf " .. dir)
local f = assert(io.open(out_path, "w"))
f:write(cjson.encode(results))
f:close()
