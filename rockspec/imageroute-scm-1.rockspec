rockspec_format = "3.0"
package = "imageroute"
version = "scm-1"
source = {
  url = "git+file:///dev/null", -- replaced by the repository URL when published
}
description = {
  summary = "Image generation and editing through OpenAI's image APIs and provider gateways, with routes as first-class objects",
  detailed = [[
A Lua 5.4 C module (libcurl, lua-cjson, libb64) with a Lua layer: generate, edit and respond on
the Images, Responses and Chat Completions request shapes, with routes that record lane, provider,
model label, billing and contract.]],
  license = "MIT",
  labels = {"openai", "images", "http", "curl"},
}
dependencies = {
  "lua >= 5.4, < 5.5",
  "lua-cjson >= 2.1",
  "argparse >= 0.7",
  "luasocket >= 3.0", -- the bundled local server (imageroute.localserver, imageroute --local)
}
external_dependencies = {
  CURL = {header = "curl/curl.h"},
  B64 = {header = "b64/cdecode.h"},
  CRYPTO = {header = "openssl/evp.h"},
}
build = {
  type = "builtin",
  modules = {
    ["imageroute"] = "lua/imageroute/init.lua",
    ["imageroute.markdown"] = "lua/imageroute/markdown.lua",
    ["imageroute.dataurl"] = "lua/imageroute/dataurl.lua",
    ["imageroute.localserver"] = "lua/imageroute/localserver.lua",
    ["imageroute.flow"] = "lua/imageroute/flow.lua",
    ["imageroute.models"] = "lua/imageroute/models.lua",
    ["imageroute.prices"] = "lua/imageroute/prices.lua",
    ["imageroute.rules"] = "lua/imageroute/rules.lua",
    ["imageroute.contract"] = "lua/imageroute/contract.lua",
    ["imageroute.cost"] = "lua/imageroute/cost.lua",
    ["imageroute.log"] = "lua/imageroute/log.lua",
    ["imageroute.policy"] = "lua/imageroute/policy.lua",
    ["imageroute.routes"] = "lua/imageroute/routes.lua",
    ["imageroute.cli"] = "lua/imageroute/cli.lua",
    ["imageroute.compare"] = "lua/imageroute/compare.lua",
    ["imageroute.core"] = {
      sources = {
        "src/api.c", "src/b64.c", "src/buf.c", "src/chat.c", "src/core.c", "src/error.c", "src/extract.c",
        "src/image.c", "src/input.c", "src/json.c", "src/respond.c", "src/route.c", "src/sniff.c", "src/sse.c",
        "src/util.c", "src/xfer.c",
      },
      libraries = {"curl", "b64", "crypto"},
      incdirs = {"$(CURL_INCDIR)", "$(B64_INCDIR)", "$(CRYPTO_INCDIR)"},
      libdirs = {"$(CURL_LIBDIR)", "$(B64_LIBDIR)", "$(CRYPTO_LIBDIR)"},
    },
  },
  install = {
    bin = {
      ["imageroute"] = "bin/imageroute",
      ["imageroute-localserver"] = "bin/imageroute-localserver",
    },
  },
}
test = {
  type = "busted",
}
