--- imageroute.batch: a list of calls run with a bounded number in flight (`imageroute.batch`).
-- @module imageroute.batch

local core = require("imageroute.core")
local policy = require("imageroute.policy")
local contract = require("imageroute.contract")
local scheduler = require("imageroute.scheduler")

local M = {}

--- Runs a list of calls with at most `max_in_flight` in flight, and returns their outcomes in
-- input order. A job's failure never stops the others.
-- @tparam {table,...} jobs each `{call = "generate"|"edit"|"respond" (default "generate"), route =,
--   params =, opts =}`
-- @tparam[opt] table opts `max_in_flight` (integer, default 4), `on_done(i, result, err)`,
--   `on_progress(i, bytes, elapsed_seconds)`, `on_partial(i, image, index)`, `keep_results`
--   (default true; false drops each result after `on_done` and releases its images, see
--   `Image:release`, so a long batch holds only the images in flight: save them in `on_done`;
--   an image kept beyond `on_done` keeps its `path`, `sha256`, `length`, `format`, but not its bytes)
-- @treturn {table,...} one `{ok = boolean, result = table|nil, error = table|nil}` per job
function M.batch(jobs, opts)
  assert(type(jobs) == "table", "batch: a list of jobs expected")
  opts = opts or {}
  local n, next_job, results = #jobs, 0, {}
  local max = opts.max_in_flight or 4
  assert(math.type(max) == "integer" and max >= 1, "batch: max_in_flight must be an integer >= 1")
  local function worker()
    while next_job < n do
      next_job = next_job + 1
      local i, job = next_job, jobs[next_job]
      local jopts = {}
      for k, v in pairs(job.opts or {}) do jopts[k] = v end
      if opts.on_progress then jopts.on_progress = function(b, e) opts.on_progress(i, b, e) end end
      if opts.on_partial then jopts.on_partial = function(img, idx) opts.on_partial(i, img, idx) end end
      local fn = require("imageroute")[job.call or "generate"] -- loaded: it is what called batch
      local res, err
      local scale_ok, scale_err = true, nil
      if core.is_route(job.route) then scale_ok, scale_err = contract.scale_allowed(job.route) end
      if job.call ~= nil and job.call ~= "generate" and job.call ~= "edit" and job.call ~= "respond" then
        err = core.error("validation", "unknown call '" .. tostring(job.call) .. "'", {field = "call"})
      elseif not scale_ok then
        res, err = policy.after(job.call or "generate", job.route, job.params, jopts, nil, scale_err)
      else
        local ok
        ok, res, err = pcall(fn, job.route, job.params, jopts)
        if not ok then res, err = nil, core.error("validation", tostring(res), {field = "job"}) end
      end
      if opts.on_done then opts.on_done(i, res, err) end
      if opts.keep_results == false then
        -- the result is dropped: its images' bytes are freed now, not at some later collection
        for _, img in ipairs(res and res.images or err and err.images or {}) do img:release() end
      end
      results[i] = {ok = res ~= nil, result = opts.keep_results ~= false and res or nil, error = err}
    end
  end
  local workers = {}
  for k = 1, math.min(max, n) do workers[k] = worker end
  if #workers > 0 then scheduler.run(table.unpack(workers)) end
  return results
end

return M
