-- imageroute.cli.progress: the live progress line and the loop that drives it. Internal to the
-- command.
--
-- The calls run as a scheduler coroutine (`imageroute.spawn`); the command's main thread steps the
-- loop with a 0.5 s timeout (`imageroute.step(0.5)`), so the line is redrawn at least every half
-- second while the calls are silent (an image call sends nothing for tens of seconds), and at once
-- when a call finishes. On a terminal the line is redrawn in place ("\r\27[K"); elsewhere nothing is
-- drawn and the command prints one line per finished call and the summary.

local imageroute = require("imageroute")
local compare = require("imageroute.compare")
local common = require("imageroute.cli.common")

local format = string.format

local M = {}

-- The redraw period while nothing happens (seconds).
M.TICK = 0.5

local Progress = {}
Progress.__index = Progress

-- label: "batch", "generate", ...; total: how many calls; out: the stream the line goes to;
-- tty: draw the live line.
function M.new(label, total, out, tty)
  return setmetatable({label = label, total = total, out = out, tty = tty, done = 0, failed = 0, images = 0,
    cost = 0, unknown = 0, t0 = common.now(), last = -1}, Progress)
end

-- Counts a finished call: its outcome and how many images were saved.
function Progress:add(res, err, images)
  local r = res or err
  self.done = self.done + 1
  if not res then self.failed = self.failed + 1 end
  self.images = self.images + (images or 0)
  local c = type(r) == "table" and r.cost or nil
  if type(c) == "table" and type(c.amount) == "number" then
    self.cost = self.cost + c.amount
    self.currency = self.currency or c.currency
  else
    self.unknown = self.unknown + 1
  end
end

function Progress:elapsed()
  return common.now() - self.t0
end

function Progress:cost_text()
  local c = format("%s %s", compare.money(self.cost), self.currency or "USD")
  if self.unknown > 0 then c = c .. format(" + %d unknown", self.unknown) end
  return c
end

-- "batch 1/4 done, 0 failed, 12.5s, 1 images, 0.011 USD so far"
function Progress:text()
  return format("%s %d/%d done, %d failed, %.1fs, %d images, %s so far", self.label, self.done, self.total,
    self.failed, self:elapsed(), self.images, self:cost_text())
end

-- Redraws the line (on a terminal): at once when forced, else when a tick has passed.
function Progress:draw(force)
  if not self.tty then return end
  local t = common.now()
  if not force and t - self.last < M.TICK - 0.01 then return end
  self.last = t
  self.out:write("\r\27[K", self:text())
  self.out:flush()
end

-- Clears the line (before other output, and at the end).
function Progress:clear()
  if self.tty then
    self.out:write("\r\27[K")
    self.out:flush()
  end
end

-- Runs fn() as a scheduler coroutine and steps the loop until it returns, redrawing the line
-- every tick; returns fn's results, or raises its error (after clearing the line).
function M.drive(p, fn)
  local finished, ok, results = false, nil, nil
  p:draw(true)
  imageroute.spawn(fn, function(okf, ...)
    finished, ok, results = true, okf, table.pack(...)
  end)
  while not finished do
    -- wait at most until the next tick is due (activity ends the wait sooner)
    local wait = M.TICK - (common.now() - p.last)
    imageroute.step(math.min(M.TICK, math.max(0.01, wait)))
    p:draw(false)
  end
  p:clear()
  if not ok then error(results[1], 0) end
  return table.unpack(results, 1, results.n)
end

return M
