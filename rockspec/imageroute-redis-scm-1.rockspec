rockspec_format = "3.0"
package = "imageroute-redis"
version = "scm-1"
-- The optional Redis client of imageroute.state.redis: the C module imageroute.redis over hiredis,
-- apart from imageroute so that an install without hiredis needs none. Built from the same tree:
-- `luarocks make rockspec/imageroute-redis-scm-1.rockspec` (after imageroute itself); `make build`
-- builds it too when pkg-config finds hiredis (WITH_REDIS=0 skips it, WITH_REDIS=1 requires it).
source = {
  url = "imageroute-scm-1.tar.gz",
  dir = "imageroute-scm-1",
}
description = {
  summary = "Redis state store (hiredis) for imageroute: limits and budgets shared across processes",
  detailed = [[
The C module imageroute.redis, a small blocking Redis client over hiredis with short connect and
command timeouts, used by imageroute.state.redis{url = "redis://host:port/db"} to keep the rate-limit
windows, in-flight leases and budget accounts of imageroute routes in one Redis server shared by
many processes and machines. Lua 5.3 and 5.4.]],
  license = "MIT",
  maintainer = "the imageroute authors",
  labels = {"redis", "hiredis", "rate-limit"},
}
dependencies = {
  "lua >= 5.3, < 5.5",
  "imageroute",
}
-- checked by library, as for imageroute's own C libraries (Debian: libhiredis-dev)
external_dependencies = {
  HIREDIS = {library = "hiredis"},
}
build = {
  type = "builtin",
  modules = {
    ["imageroute.redis"] = {
      sources = {"src/redis/redis.c"},
      libraries = {"hiredis"},
      incdirs = {"$(HIREDIS_INCDIR)"},
      libdirs = {"$(HIREDIS_LIBDIR)"},
    },
  },
}
