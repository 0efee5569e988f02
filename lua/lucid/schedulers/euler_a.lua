--- Euler ancestral as diffusers' EulerAncestralDiscreteScheduler: an Euler
-- step to sigma_down, then fresh noise of size sigma_up.
local Euler = require "lucid.schedulers.euler"

local EA = {name = "euler_a", class_name = "EulerAncestralDiscreteScheduler", order = 1}
EA.__index = EA
setmetatable(EA, {__index = Euler})

function EA.new(cfg) return Euler.init(EA, cfg) end

function EA:step(model_output, t, x, generator)
  local i = self:index_of(t)
  local s_from, s_to = self.sigmas[i], self.sigmas[i + 1]
  local x0 = self:denoised(model_output, x, s_from)
  local s_up = math.sqrt(s_to * s_to * (s_from * s_from - s_to * s_to) / (s_from * s_from))
  local s_down = math.sqrt(s_to * s_to - s_up * s_up)
  local derivative = (x - x0) / s_from
  local prev = x + derivative * (s_down - s_from)
  if not generator then error("euler_a: a generator is needed for the noise", 2) end
  prev = prev + generator:randn(model_output:shape()) * s_up
  self.step_index = i + 1
  self.pred_original_sample = x0
  return prev
end

return EA
