--- imageroute.cli: the `imageroute` command, as a module (`bin/imageroute` calls `main`).
--
--    imageroute --local generate "a lighthouse at dawn"            # the bundled local server: works at once
--    OPENAI_API_KEY=sk-... imageroute generate "a lighthouse" -o lighthouse.png
--    echo "a fox in the snow" | imageroute generate - -n 2 -s 1024x1024 -q low -o fox.png   # fox-1.png, fox-2.png
--    imageroute --routes routes.lua compare "a fox" --route official-images --route acme-chat
--
-- Subcommands: `generate`, `edit`, `respond`, `check`, `batch`, `log summary`, `log inventory`, `compare`,
-- `probe`, `reconcile`; each
-- has `--help`. One meaning per flag across subcommands: `--routes FILE` is always the routes
-- file, `--route NAME` always a route (repeated for `compare`), `-o` the output (`-o FILE` that
-- file, several images `FILE-1.ext`, `FILE-2.ext`, ...; `-o DIR/` or an existing directory: files
-- named after the request id in it; `batch` and `compare` always take a directory), `-n`, `-s`
-- (`--size`), `-q` (`--quality`). A `-` as the prompt (or the input, or the batch file) reads
-- standard input.
--
-- Exit codes: 0 done; 1 a call was sent and failed (or a check refused a route, or a job failed);
-- 2 a usage or setup error, or a call refused before sending (a route gate or a stop rule:
-- nothing was sent, the message says the fix). Each error is one line on stderr, `imageroute:
-- <command> failed: <message> (<kind>, status ...)` or `imageroute: <command> refused before sending
-- (nothing sent): <message>; fix: <fix>`; `--json` puts a machine-readable object on stdout
-- instead of the text lines (an error included, with `refused`).
--
-- On a terminal a progress line ticks every half second while calls are silent (elapsed time,
-- calls done and failed, images, cost so far); elsewhere one line per finished call and, for
-- `batch`, a final summary line.
--
-- `--local` starts the bundled local server and uses the built-in routes `local` (Images API),
-- `local-responses` and `local-gateway` (a provider gateway, chat shape); the names `official`,
-- `official-responses` and `gateway` find them too. Their calls are logged to
-- `out/imageroute-local-calls.jsonl`, never to the real log `out/imageroute-calls.jsonl`, so
-- `log summary` of a real log never holds the local server's made-up costs (`log summary --local`
-- reads the local one). Every log line names the host called (`host`).
-- @module imageroute.cli

local argparse = require("argparse")
local imageroute = require("imageroute")
local common = require("imageroute.cli.common")
local output = require("imageroute.cli.output")
local commands = require("imageroute.cli.commands")
local billing = {probe = require("imageroute.cli.probe"), reconcile = require("imageroute.cli.reconcile")}
local inventory = require("imageroute.cli.inventory")

local format, concat = string.format, table.concat
local Exit = common.Exit

local M = {}

--- The routes file read when `--routes` is not given.
M.DEFAULT_ROUTES = common.DEFAULT_ROUTES

--- The output directory when `-o` does not name one (and the call log's directory unless `-o DIR/`).
M.DEFAULT_OUT = common.DEFAULT_OUT

--- The call log of the built-in routes, under the output directory.
M.LOG_NAME = common.LOG_NAME

--- The call log of the `--local` routes, under the output directory.
M.LOCAL_LOG_NAME = common.LOCAL_LOG_NAME

--- The names and meaning of the built-in routes (used without a routes file): a list of `{name, text}`.
M.BUILTIN = common.BUILTIN

--- The built-in routes of `--local`: a list of `{name, text}`.
M.BUILTIN_LOCAL = common.BUILTIN_LOCAL

--- The machine-readable summary of one call (`--json`): never image bytes or base64.
-- @tparam string kind `"generate"` | `"edit"` | `"respond"`
-- @tparam Route route
-- @tparam table|nil res
-- @tparam table|nil err
-- @tparam table files saved files (`{path, bytes, sha256, width, height, format}`)
-- @tparam[opt] table partial_files
-- @treturn table `ok`, `call`, `route`, `lane`, `provider`, `host`, `shape`, `model`, `request_id`, `files`,
--   `usage`, `cost`, `latency`, `attempts`, ...; on failure `refused` (true: nothing was sent) and `error`
--   (`kind`, `message`, `text` (the one line printed), `status`, `code`, `field`, `rule`, `fix`)
function M.call_record(kind, route, res, err, files, partial_files)
  return output.call_record(kind, route, res, err, files, partial_files)
end

--- Reads a batch file: prompts one per line (blank lines and `#` comments skipped), or job objects
-- (`.json`: a list, or `{jobs = [...]}`; `.jsonl`: one object per line). `"-"` reads standard input,
-- its kind told by its first character (`[` a JSON list, `{` JSON lines, else prompts).
-- @tparam string path
-- @treturn table|nil list of `{prompt =, route =, call =, ...}` (API fields as given)
-- @treturn[2] string what is wrong, with the line
function M.read_jobs(path)
  return commands.read_jobs(path)
end

-- ---------------------------------------------------------------------------------------------
-- the parser

local EPILOG = [[
Global options (before or after the command): --routes FILE (the routes file; default ./routes.lua),
--local (run against the bundled local server). A '-' as the prompt reads standard input.
Exit codes: 0 ok, 1 a call was sent and failed, 2 usage or setup, or refused before sending.]]

local function integer_at_least(name, min)
  return function(s)
    local n = math.tointeger(tonumber(s))
    if not n or n < min then
      return nil, ("%s must be an integer >= %d, got '%s'"):format(name, min, tostring(s))
    end
    return n
  end
end

local function positive_number(name)
  return function(s)
    local n = tonumber(s)
    if not n or n <= 0 then return nil, name .. " must be a positive number (seconds), got '" .. tostring(s) .. "'" end
    return n
  end
end

local function build_parser(state)
  -- --help records the text and stops the parse (argparse's own help would os.exit)
  local function help(p, epilog)
    p:add_help(false)
    p:help_max_width(110):help_description_margin(29)
    if epilog then p:epilog(epilog) end
    p:flag("-h --help", "Show this help message and exit."):action(function()
      state.help = p:get_help()
      error("imageroute: help shown", 0)
    end)
  end
  -- an option with a value: names, description, the value's name, [convert], [default]
  local function opt(p, names, desc, argname, convert, default)
    return p:option(names, desc, default, convert):argname("<" .. argname .. ">")
  end

  local builtin = {}
  for _, b in ipairs(M.BUILTIN) do builtin[#builtin + 1] = format("  %-19s %s", b.name, b.text) end
  local locals = {}
  for _, b in ipairs(M.BUILTIN_LOCAL) do locals[#locals + 1] = format("  %-19s %s", b.name, b.text) end
  local parser = argparse("imageroute", "Image generation and editing through OpenAI's image APIs and "
    .. "OpenAI-compatible provider gateways, one route at a time.")
  help(parser, "Routes come from --routes FILE (default ./routes.lua; see examples/routes.lua). Without a "
    .. "routes file: with\nOPENAI_API_KEY set, the built-in official routes; with --local, the built-in routes on "
    .. "the bundled local\nserver (./routes.lua is not read). Built-in routes:\n" .. concat(builtin, "\n") .. "\n"
    .. "With --local (logged to ./out/" .. M.LOCAL_LOG_NAME .. ", apart from real calls):\n"
    .. concat(locals, "\n") .. "\n\n"
    .. "First run:  imageroute --local generate \"a lighthouse at dawn\"   (the image lands in ./out/)\n"
    .. "            imageroute --local generate - -o lighthouse.png < prompt.txt\n"
    .. "Output: -o FILE writes that file (several images: FILE-1.png, FILE-2.png, ...), -o DIR/ a directory.\n"
    .. "Exit codes: 0 ok, 1 a call was sent and failed (a check refused, a job failed), 2 usage or setup\n"
    .. "error, or a call refused before sending (nothing sent; the message says the fix).\n"
    .. "`imageroute COMMAND --help` for a command's options.")
  opt(parser, "--routes", "The routes file (default ./routes.lua); also --routes-file FILE.", "FILE")
    :hidden_name("--routes-file"):target("routes_file")
  parser:flag("--local", "Run against the bundled local server (started and stopped by the command).")
  parser:flag("--version", "Print the version and exit."):action(function()
    state.version = true
    error("imageroute: version shown", 0)
  end)
  parser:command_target("command")

  local function call_options(cmd, what)
    help(cmd, EPILOG)
    opt(cmd, "--route", "The route to use (from the routes file, or a built-in route).", "NAME")
    if what == "batch" then
      opt(cmd, "-o --out", "Output directory (default ./out; created); the call log goes there too.", "DIR")
    else
      opt(cmd, "-o --out", "Output: a FILE (several images: FILE-1.png, FILE-2.png, ...), or a directory (DIR/, "
        .. "or an existing one; files named after the request id). Default ./out/.", "FILE|DIR/")
    end
    opt(cmd, "-s --size", "Image size, e.g. 1024x1024, 1536x1024, auto.", "WxH")
    opt(cmd, "-q --quality", "Quality: low, medium, high, auto.", "Q")
    if what ~= "respond" then opt(cmd, "-n --n", "How many images.", "N", integer_at_least("-n", 1)) end
    opt(cmd, "--format", "Output format: png, jpeg, webp.", "F")
    opt(cmd, "--background", "Background: transparent, opaque, auto.", "B")
    opt(cmd, "--model", "The model label to send instead of the route's.", "MODEL")
    if what ~= "batch" then
      cmd:flag("--stream", "Stream: partial images are saved as they arrive (<name>-partial-<i>.<format>).")
      opt(cmd, "--partial", "Partial images to ask for when streaming (default 2; implies --stream).", "N",
        integer_at_least("--partial", 1))
    end
    opt(cmd, "--timeout", "Seconds per attempt.", "SECONDS", positive_number("--timeout"))
    opt(cmd, "--retries", "Retries after the first attempt.", "N", integer_at_least("--retries", 0))
    cmd:flag("--json", "Print a JSON object (no image bytes) on stdout instead of the text line.")
  end

  local gen = parser:command("generate", "Generate images from a prompt; one line per call on stdout.")
  gen:argument("prompt", "The prompt ('-': read it from standard input).")
  call_options(gen, "generate")

  local ed = parser:command("edit", "Edit images: PROMPT and one or more input images (PNG, JPEG, WebP).")
  ed:argument("prompt", "The prompt ('-': read it from standard input).")
  ed:argument("image", "Input image files (up to 16)."):args("+")
  call_options(ed, "edit")
  opt(ed, "--mask", "A mask PNG: alpha 0 marks the area to change.", "M")

  local rs = parser:command("respond", "The Responses API with the image_generation tool (forced).")
  rs:argument("input", "The input text ('-': read it from standard input).")
  call_options(rs, "respond")
  rs:flag("--background-mode", "Run the response in background mode (Responses background = true): created, then "
    .. "polled every 2 s until done, within the route's deadline; for long, high-quality images.")

  local ck = parser:command("check", "Show a route's contract gates as a table; exit 0 when the route is "
    .. "allowed, 1 when refused. Without ROUTE: every route.")
  ck:argument("route", "The route name."):args("?")
  help(ck, EPILOG)
  ck:flag("--json", "Print the report as JSON.")
  ck:flag("--live", "Also ask the route's API whether its models are available to this account (GET "
    .. "/models/{model}: free, no image made), one row each; exit 1 when one is not.")

  local bt = parser:command("batch", "Run a file of prompts (one per line; blank lines and # comments skipped) "
    .. "or of jobs (.json list or .jsonl lines of {\"prompt\", \"route\", \"call\", \"size\", ...}), N calls in "
    .. "flight. A live progress line on a terminal, one line per finished job otherwise; exit 1 when a job failed.")
  bt:argument("file", "The prompts or jobs file ('-': standard input).")
  call_options(bt, "batch")
  opt(bt, "--parallel", "Calls in flight at most (default 4).", "N", integer_at_least("--parallel", 1), 4)

  local lg = parser:command("log", "Read a call log (subcommands: summary, inventory).")
  help(lg, EPILOG)
  lg:command_target("log_command"):require_command(false)
  local ls = lg:command("summary", "Per-route totals of a call log: calls, failures, images, cost, p50/p95 "
    .. "latency.")
  ls:argument("file", "The log (default: the routes file's log, else ./out/" .. M.LOG_NAME .. "; with --local ./out/"
    .. M.LOCAL_LOG_NAME .. ")."):args("?")
  help(ls, EPILOG)
  ls:flag("--json", "Print the totals as JSON.")
  opt(ls, "-o --out", "The output directory whose log to read (default ./out).", "DIR")

  local cp = parser:command("compare", "Send the same prompt, size, quality and input images to each route, "
    .. "once, at the same time; write an HTML page (the images side by side; route, lane, provider, model, "
    .. "request id, latency, attempts, cost and basis under each) and the JSON record.")
  cp:argument("prompt", "The prompt ('-': read it from standard input).")
  help(cp, "The routes file is --routes FILE, as everywhere; the routes compared are --route NAME, repeated.\n"
    .. "The page needs no network: the images are files beside it. Calls are logged to ./out/" .. M.LOG_NAME
    .. ".\nExit codes: 0 every route returned an image, 1 one did not (the report is still written), 2 usage.")
  opt(cp, "--route", "A route to compare (repeat: --route local --route local-gateway; A,B also works).", "NAME")
    :target("compare_route"):count("*")
  opt(cp, "--image", "An input image (repeat for several): the call becomes an edit.", "FILE"):count("*")
  opt(cp, "--mask", "A mask for the input images.", "M")
  opt(cp, "-s --size", "Image size, e.g. 1024x1024.", "WxH")
  opt(cp, "-q --quality", "Quality: low, medium, high, auto.", "Q")
  opt(cp, "--format", "Output format: png, jpeg, webp.", "F")
  opt(cp, "-o --out", "The report directory (default ./out/compare-<time>).", "DIR")
  opt(cp, "--timeout", "Seconds per attempt.", "SECONDS", positive_number("--timeout"))
  opt(cp, "--retries", "Retries after the first attempt.", "N", integer_at_least("--retries", 0))
  cp:flag("--json", "Print the record (with the report's paths) as JSON.")
  billing.probe.add(parser, help, opt, EPILOG)
  billing.reconcile.add(parser, help, opt, EPILOG)
  inventory.add(lg, help, opt, EPILOG)
  require("imageroute.cli.budget").register(parser, help, EPILOG)
  return parser
end

local COMMANDS = {generate = commands.generate, edit = commands.edit, respond = commands.respond,
  check = commands.check, batch = commands.batch, compare = commands.compare, probe = billing.probe.run,
  reconcile = billing.reconcile.run, budget = require("imageroute.cli.budget").run}

--- Runs the command.
-- @tparam {string,...} argv the arguments (without the program name), e.g. `arg`
-- @treturn integer the exit code: 0 done, 1 a call was sent and failed (or a check refused a route, or a
--   batch job failed), 2 a usage or setup error or a call refused before sending, 130 interrupted
function M.main(argv)
  local list = {}
  for i, a in ipairs(argv or {}) do list[i] = tostring(a) end
  local state = {}
  local parser = build_parser(state)
  local okp, ok, args = pcall(parser.pparse, parser, list)
  if state.help then
    io.write(state.help, "\n")
    return 0
  end
  if state.version then
    io.write("imageroute ", tostring(imageroute._VERSION), "\n")
    return 0
  end
  if not okp then
    io.stderr:write("imageroute: internal error while parsing the arguments: ", tostring(ok), "\n")
    return 1
  end
  if not ok then
    io.stderr:write(parser:get_usage(), "\n\nimageroute: ", tostring(args), "\n",
      "Try 'imageroute --help' or 'imageroute COMMAND --help'.\n")
    return 2
  end
  if args.command == "log" and not args.log_command then
    io.stderr:write("imageroute: log needs a subcommand: imageroute log summary [FILE] | log inventory [FILE]\n")
    return 2
  end
  if args.image == nil then args.image = {} end
  local ctx = {args = args}
  local fn = args.command == "log" and (args.log_command == "inventory" and inventory.run or commands.log_summary)
    or COMMANDS[args.command]
  local okr, code = xpcall(fn, function(e)
    if getmetatable(e) == Exit then return e end
    return debug.traceback(tostring(e), 2)
  end, ctx)
  if ctx.server then ctx.server:stop() end
  if okr then return code end
  if getmetatable(code) == Exit then
    io.stderr:write(code.msg, "\n")
    return code.code
  end
  if tostring(code):find("interrupted!", 1, true) then -- SIGINT (the lua5.4 interpreter's handler)
    io.stderr:write("imageroute: interrupted\n")
    return 130
  end
  io.stderr:write("imageroute: internal error: ", tostring(code), "\n")
  return 1
end

return M
