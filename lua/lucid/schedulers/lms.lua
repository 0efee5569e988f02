--- Linear multistep (order 4) as diffusers' LMSDiscreteScheduler. The
-- coefficients integrate Lagrange basis polynomials over [sigma_i,
-- sigma_i+1]; diffusers calls scipy's quad, we use 4-point Gauss-Legendre,
-- exact for these polynomials of degree <= 3.
local Euler = require "lucid.schedulers.euler"

local LMS = {name = "lms", class_name = "LMSDiscreteScheduler", order = 1}
LMS.__index = LMS
setmetatable(LMS, {__index = Euler})

function LMS.new(cfg)
  local self = Euler.init(LMS, cfg)
  self.lms_order = (cfg and cfg.order) or 4
  return self
end

function LMS:set_timesteps(n)
  Euler.set_timesteps(self, n)
  self.derivatives = {}
end

local gl_x = {-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526}
local gl_w = {0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538}

-- sigmas are 1-based; t is the 1-based current index
function LMS:coefficient(order, t, cur)
  local s = self.sigmas
  local function basis(tau)
    local p = 1.0
    for k = 0, order - 1 do
      if k ~= cur then p = p * (tau - s[t - k]) / (s[t - cur] - s[t - k]) end
    end
    return p
  end
  local a, b = s[t], s[t + 1]
  local mid, half = (a + b) / 2, (b - a) / 2
  local sum = 0
  for j = 1, 4 do sum = sum + gl_w[j] * basis(mid + half * gl_x[j]) end
  return sum * half
end

function LMS:step(model_output, t, x)
  local i = self:index_of(t)
  local sigma = self.sigmas[i]
  local x0 = self:denoised(model_output, x, sigma)
  local d = self.derivatives
  d[#d + 1] = (x - x0) / sigma
  if #d > self.lms_order then table.remove(d, 1) end
  local order = math.min(i, self.lms_order)
  local prev = x
  -- diffusers zips the coefficients with the derivatives seen so far: a
  -- run that starts mid-schedule (img2img) has fewer than `order`
  for k = 0, math.min(order, #d) - 1 do
    prev = prev + d[#d - k] * self:coefficient(order, i, k)
  end
  self.step_index = i + 1
  self.pred_original_sample = x0
  return prev
end

return LMS
