--- Heun's 2nd-order method (Karras et al. 2022, Algorithm 1) as diffusers'
-- HeunDiscreteScheduler: every interior sigma is visited twice.
local C = require "lucid.schedulers.common"
local Euler = require "lucid.schedulers.euler"

local Heun = {name = "heun", class_name = "HeunDiscreteScheduler", order = 2}
Heun.__index = Heun
setmetatable(Heun, {__index = Euler})

function Heun.new(cfg) return Euler.init(Heun, cfg) end

function Heun:set_timesteps(n)
  self.num_inference_steps = n
  local ts, sig = C.sigma_schedule(self.config, self.alphas_cumprod, n)
  local s2 = {sig[1]}
  for i = 2, #sig - 1 do s2[#s2 + 1] = sig[i]; s2[#s2 + 1] = sig[i] end
  s2[#s2 + 1] = sig[#sig]
  local t2 = {ts[1]}
  for i = 2, #ts do t2[#t2 + 1] = ts[i]; t2[#t2 + 1] = ts[i] end
  self.timesteps, self.sigmas = t2, s2
  local smax = 0
  for _, s in ipairs(s2) do if s > smax then smax = s end end
  self.init_noise_sigma = self.noise_sigma(self.config, smax)
  self.step_index, self.begin_index = nil, nil
  self.prev_derivative, self.dt, self.sample = nil, nil, nil
end

function Heun:first_order() return self.dt == nil end

function Heun:step(model_output, t, x)
  local i = self:index_of(t)
  local sigma, sigma_next
  if self:first_order() then
    sigma, sigma_next = self.sigmas[i], self.sigmas[i + 1]
  else
    sigma, sigma_next = self.sigmas[i - 1], self.sigmas[i]
  end
  local sigma_input = self:first_order() and sigma or sigma_next
  local x0 = self:denoised(model_output, x, sigma_input)
  local prev
  if self:first_order() then
    local derivative = (x - x0) / sigma
    self.prev_derivative, self.dt, self.sample = derivative, sigma_next - sigma, x
    prev = x + derivative * (sigma_next - sigma)
  else
    local derivative = (x - x0) / sigma_next
    derivative = (self.prev_derivative + derivative) / 2
    prev = self.sample + derivative * self.dt
    self.prev_derivative, self.dt, self.sample = nil, nil, nil
  end
  self.step_index = i + 1
  self.pred_original_sample = x0
  return prev
end

return Heun
