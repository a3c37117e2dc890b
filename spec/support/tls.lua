--- spec/support/tls.lua: a test CA, certificates and a TLS-terminating proxy for the specs.
--
--     local tls = require("support.tls")
--     local pki = tls.pki(dir, {"DNS:api.test", "IP:127.0.0.1"})   -- pki.ca, pki.cert, pki.key
--     local p = tls.proxy{addr = "127.0.0.1", cert = pki.cert, key = pki.key, backend = s.port}
--     p.port; p:accepts() -- TCP connections accepted so far; p:stop()
--
-- The proxy (spec/support/tls_proxy.c) is compiled on first use with the system C compiler and
-- OpenSSL (libssl-dev, a build dependency already). It relays each TLS connection to
-- 127.0.0.1:backend in plain text (the bundled local server) and counts every TCP accept, so a
-- spec can prove that a refused address saw no connection at all.
-- @module support.tls

local process = require("imageroute.localserver.process")

local M = {}

local function root()
  local src = debug.getinfo(1, "S").source
  return src:sub(1, 1) == "@" and src:sub(2):match("^(.*)/spec/support/[^/]*$") or "."
end

local function sh(cmd)
  local ok = os.execute(cmd)
  if not ok then error("command failed: " .. cmd, 2) end
end

local read = require("imageroute.sys").read_file

local binary
--- Path of the compiled proxy (built once per process into a temporary directory).
function M.build()
  if binary then return binary end
  local dir = os.tmpname()
  os.remove(dir)
  sh("mkdir -p " .. dir)
  binary = dir .. "/tls_proxy"
  sh(("cc -O1 -std=c99 -Wall -o %s %s/spec/support/tls_proxy.c -lssl -lcrypto"):format(binary, root()))
  return binary
end

--- Makes a CA and one server certificate signed by it, for the subjectAltName entries given.
-- @tparam string dir where the files go
-- @tparam table sans e.g. {"DNS:api.test", "IP:10.0.0.1"}
-- @treturn table {ca = path, cert = path, key = path, other_ca = path of an unrelated CA}
function M.pki(dir, sans)
  local q = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
  sh(("openssl req -x509 %s -days 2 -subj /CN=imageroute-test-ca -addext basicConstraints=critical,CA:TRUE "
    .. "-addext keyUsage=critical,keyCertSign,cRLSign -keyout %s/ca.key -out %s/ca.pem >/dev/null 2>&1")
    :format(q, dir, dir))
  sh(("openssl req -x509 %s -days 2 -subj /CN=imageroute-other-ca -keyout %s/other.key -out %s/other.pem "
    .. ">/dev/null 2>&1"):format(q, dir, dir))
  sh(("openssl req %s -subj /CN=imageroute-test -keyout %s/leaf.key -out %s/leaf.csr >/dev/null 2>&1")
    :format(q, dir, dir))
  local f = assert(io.open(dir .. "/leaf.ext", "w"))
  f:write("subjectAltName=", table.concat(sans, ","), "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n")
  f:close()
  sh(("openssl x509 -req -in %s/leaf.csr -CA %s/ca.pem -CAkey %s/ca.key -CAcreateserial -days 2 "
    .. "-extfile %s/leaf.ext -out %s/leaf.pem >/dev/null 2>&1"):format(dir, dir, dir, dir, dir))
  return {ca = dir .. "/ca.pem", cert = dir .. "/leaf.pem", key = dir .. "/leaf.key", other_ca = dir .. "/other.pem"}
end

local Proxy = {}
Proxy.__index = Proxy

--- Starts a proxy. opts: `addr` (IP literal), `port` (default 0: any), `cert`, `key`, `backend`
-- (the plain port on 127.0.0.1), `seconds` (lifetime, default 120).
function M.proxy(opts)
  local log = os.tmpname()
  local pid = process.spawn({M.build(), opts.addr, tostring(opts.port or 0), opts.cert, opts.key,
    tostring(opts.backend), log, tostring(opts.seconds or 120)}, log .. ".err")
  local port = pid and process.wait_port(pid, log, 5, "^(%d+)\n")
  if not port then
    if pid then process.stop(pid) end
    error("tls proxy did not start on " .. opts.addr .. ": " .. (read(log .. ".err") or ""))
  end
  return setmetatable({pid = pid, port = port, log = log, addr = opts.addr}, Proxy)
end

--- TCP connections the proxy accepted so far.
function Proxy:accepts()
  local n = 0
  for _ in (read(self.log) or ""):gmatch("accept\n") do n = n + 1 end
  return n
end

function Proxy:stop()
  process.stop(self.pid)
  os.remove(self.log)
  os.remove(self.log .. ".err")
end

return M
