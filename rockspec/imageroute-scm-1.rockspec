rockspec_format = "3.0"
package = "imageroute"
version = "scm-1"
-- There is no public repository yet, so no URL to fetch from: `luarocks make` builds the tree itself,
-- and `make rock` packs the tree as this archive, with this rockspec, into imageroute-scm-1.src.rock,
-- which `luarocks install imageroute-scm-1.src.rock` builds with no rock server and no download.
-- (A plain `luarocks pack` of this rockspec cannot find the archive: use `make rock`.)
source = {
  url = "imageroute-scm-1.tar.gz",
  dir = "imageroute-scm-1",
}
description = {
  summary = "Image generation and editing for Lua 5.3 and 5.4 through OpenAI's image APIs and gateways",
  detailed = [[
imageroute generates and edits images through OpenAI's Images, Responses and Chat Completions
request shapes and through OpenAI-compatible provider gateways. The route (lane, provider, model
label, billing, contract) is a first-class object: a provider route is refused until its contract is
written down and accepted, and every call is logged with who was called, under which contract, what
it cost and where the image went. A C core (libcurl, lua-cjson, libb64) runs many transfers on one
thread and decodes base64 images as they stream in; Lua modules on top do the policy. Includes a
command line (`imageroute`), an OpenAI-compatible local server for demos and tests
(`imageroute-localserver`), and a pandoc Lua filter example (examples/pandoc-images.lua).
Lua 5.3 and 5.4.]],
  -- no homepage: there is no public repository or site yet
  license = "MIT",
  maintainer = "the imageroute authors",
  labels = {"openai", "image-generation", "images", "http", "curl", "pandoc"},
}
dependencies = {
  "lua >= 5.3, < 5.5",
  "lua-cjson >= 2.1",
  "argparse >= 0.7",   -- the command line
  -- the bundled local server only (imageroute.localserver and its process helper, behind
  -- imageroute-localserver and imageroute --local): the library and the other commands load without it
  "luasocket >= 3.0",
}
-- Checked by library, not header: Debian keeps curl/curl.h under /usr/include/<multiarch>, where
-- LuaRocks looks for libraries but not for headers; the compiler finds the header by itself there,
-- and where it lives in the default path (or under CURL_DIR/include) as well.
external_dependencies = {
  CURL = {library = "curl"},
  B64 = {library = "b64"},
  CRYPTO = {library = "crypto"},
}
build = {
  type = "builtin",
  modules = {
    ["imageroute"] = "lua/imageroute/init.lua",
    ["imageroute.markdown"] = "lua/imageroute/markdown.lua",
    ["imageroute.markdown.blocks"] = "lua/imageroute/markdown/blocks.lua",
    ["imageroute.markdown.escapes"] = "lua/imageroute/markdown/escapes.lua",
    ["imageroute.markdown.inline"] = "lua/imageroute/markdown/inline.lua",
    ["imageroute.markdown.refs"] = "lua/imageroute/markdown/refs.lua",
    ["imageroute.dataurl"] = "lua/imageroute/dataurl.lua",
    ["imageroute.localserver"] = "lua/imageroute/localserver/init.lua",
    ["imageroute.localserver.chat"] = "lua/imageroute/localserver/chat.lua",
    ["imageroute.localserver.organization"] = "lua/imageroute/localserver/organization.lua",
    ["imageroute.localserver.control"] = "lua/imageroute/localserver/control.lua",
    ["imageroute.localserver.dispatch"] = "lua/imageroute/localserver/dispatch.lua",
    ["imageroute.localserver.faults"] = "lua/imageroute/localserver/faults.lua",
    ["imageroute.localserver.http"] = "lua/imageroute/localserver/http.lua",
    ["imageroute.localserver.images"] = "lua/imageroute/localserver/images.lua",
    ["imageroute.localserver.json"] = "lua/imageroute/localserver/json.lua",
    ["imageroute.localserver.loop"] = "lua/imageroute/localserver/loop.lua",
    ["imageroute.localserver.mock"] = "lua/imageroute/localserver/mock.lua",
    ["imageroute.localserver.models"] = "lua/imageroute/localserver/models.lua",
    ["imageroute.localserver.multipart"] = "lua/imageroute/localserver/multipart.lua",
    ["imageroute.localserver.png"] = "lua/imageroute/localserver/png.lua",
    ["imageroute.localserver.process"] = "lua/imageroute/localserver/process.lua",
    ["imageroute.localserver.responses"] = "lua/imageroute/localserver/responses.lua",
    ["imageroute.localserver.serve"] = "lua/imageroute/localserver/serve.lua",
    ["imageroute.localserver.state"] = "lua/imageroute/localserver/state.lua",
    ["imageroute.flow"] = "lua/imageroute/flow.lua",
    ["imageroute.models"] = "lua/imageroute/models.lua",
    ["imageroute.prices"] = "lua/imageroute/prices.lua",
    ["imageroute.rules"] = "lua/imageroute/rules.lua",
    ["imageroute.contract"] = "lua/imageroute/contract.lua",
    ["imageroute.cost"] = "lua/imageroute/cost.lua",
    ["imageroute.log"] = "lua/imageroute/log.lua",
    ["imageroute.log.summary"] = "lua/imageroute/log/summary.lua",
    ["imageroute.policy"] = "lua/imageroute/policy.lua",
    ["imageroute.request"] = "lua/imageroute/request.lua",
    ["imageroute.dispatch"] = "lua/imageroute/dispatch.lua",
    ["imageroute.scheduler"] = "lua/imageroute/scheduler.lua",
    ["imageroute.batch"] = "lua/imageroute/batch.lua",
    ["imageroute.save"] = "lua/imageroute/save.lua",
    ["imageroute.stream"] = "lua/imageroute/stream.lua",
    ["imageroute.api"] = "lua/imageroute/api.lua",
    ["imageroute.route"] = "lua/imageroute/route.lua",
    ["imageroute.shapes.responses"] = "lua/imageroute/shapes/responses.lua",
    ["imageroute.shapes.images"] = "lua/imageroute/shapes/images.lua",
    ["imageroute.shapes.chat"] = "lua/imageroute/shapes/chat.lua",
    ["imageroute.shapes.common"] = "lua/imageroute/shapes/common.lua",
    ["imageroute.routes"] = "lua/imageroute/routes.lua",
    ["imageroute.cli"] = "lua/imageroute/cli.lua",
    ["imageroute.cli.common"] = "lua/imageroute/cli/common.lua",
    ["imageroute.cli.output"] = "lua/imageroute/cli/output.lua",
    ["imageroute.cli.progress"] = "lua/imageroute/cli/progress.lua",
    ["imageroute.cli.commands"] = "lua/imageroute/cli/commands.lua",
    ["imageroute.cli.probe"] = "lua/imageroute/cli/probe.lua",
    ["imageroute.cli.reconcile"] = "lua/imageroute/cli/reconcile.lua",
    ["imageroute.cli.inventory"] = "lua/imageroute/cli/inventory.lua",
    ["imageroute.billing.probe"] = "lua/imageroute/billing/probe.lua",
    ["imageroute.billing.reconcile"] = "lua/imageroute/billing/reconcile.lua",
    ["imageroute.billing.official"] = "lua/imageroute/billing/official.lua",
    ["imageroute.billing.inventory"] = "lua/imageroute/billing/inventory.lua",
    ["imageroute.billing.figures"] = "lua/imageroute/billing/figures.lua",
    ["imageroute.cli.budget"] = "lua/imageroute/cli/budget.lua",
    ["imageroute.compare"] = "lua/imageroute/compare.lua",
    ["imageroute.compare.json"] = "lua/imageroute/compare/json.lua",
    ["imageroute.compare.report"] = "lua/imageroute/compare/report.lua",
    ["imageroute.hostloop"] = "lua/imageroute/hostloop.lua",
    ["imageroute.json"] = "lua/imageroute/json.lua",
    ["imageroute.ratelimit"] = "lua/imageroute/ratelimit.lua",
    ["imageroute.limits"] = "lua/imageroute/limits.lua",
    ["imageroute.state"] = "lua/imageroute/state.lua",
    ["imageroute.state.memory"] = "lua/imageroute/state/memory.lua",
    ["imageroute.state.redis"] = "lua/imageroute/state/redis.lua",
    ["imageroute.sys"] = "lua/imageroute/sys.lua",
    ["imageroute.budget"] = "lua/imageroute/budget.lua",
    ["imageroute.router"] = "lua/imageroute/router.lua",
    ["imageroute.loop.cqueues"] = "lua/imageroute/loop/cqueues.lua",
    ["imageroute.loop.luv"] = "lua/imageroute/loop/luv.lua",
    ["imageroute.assistant"] = "lua/imageroute/assistant.lua",
    ["imageroute.live"] = "lua/imageroute/live.lua",
    ["imageroute.background"] = "lua/imageroute/background.lua",
    ["imageroute.core"] = {
      sources = {
        "src/addr.c", "src/api.c", "src/b64.c", "src/buf.c", "src/core.c", "src/error.c", "src/extract.c",
        "src/image.c", "src/input.c", "src/json.c", "src/loop.c", "src/redact.c", "src/request.c", "src/respond.c", "src/route.c", "src/savefile.c", "src/sniff.c", "src/sse.c",
        "src/util.c", "src/xfer.c",
      },
      libraries = {"curl", "b64", "crypto"},
      incdirs = {"$(CURL_INCDIR)", "$(B64_INCDIR)", "$(CRYPTO_INCDIR)"},
      libdirs = {"$(CURL_LIBDIR)", "$(B64_LIBDIR)", "$(CRYPTO_LIBDIR)"},
    },
  },
  -- into the rock's directory of the tree (luarocks show imageroute): the examples, among them the
  -- pandoc filter
  copy_directories = {"examples"},
  install = {
    bin = {
      ["imageroute"] = "bin/imageroute",
      ["imageroute-localserver"] = "bin/imageroute-localserver",
    },
  },
}
-- `luarocks test`: builds the core for the Lua of --lua-version (LuaRocks runs the script with that
-- interpreter) and runs the whole busted suite under it against the bundled local server
-- (`make spec LUA=luaX.Y`); arguments after `--` go to busted. It uses the system's busted (Debian's
-- lua-busted): a test_dependencies entry would make LuaRocks download busted as a rock.
test = {
  type = "command",
  script = "scripts/rock-test.lua",
}
