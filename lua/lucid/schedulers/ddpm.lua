--- DDPM (Ho et al. 2020) as diffusers' DDPMScheduler (fixed_small /
-- fixed_large variances; noise drawn from the generator for t > 0).
local C = require "lucid.schedulers.common"
local DDIM = require "lucid.schedulers.ddim"

local DDPM = {name = "ddpm", class_name = "DDPMScheduler", order = 1}
DDPM.__index = DDPM
setmetatable(DDPM, {__index = DDIM})

function DDPM.new(cfg)
  local self = setmetatable({}, DDPM)
  self.config = C.config({variance_type = "fixed_small"}, cfg)
  self.betas, self.alphas_cumprod = C.schedule(self.config)
  self.init_noise_sigma = 1.0
  return self
end

function DDPM:set_timesteps(n)
  self.num_inference_steps = n
  self.timesteps = C.discrete_timesteps(self.config, n)
end

function DDPM:step(model_output, t, x, generator)
  t = C.tnum(t)
  local n = self.num_inference_steps or error("ddpm: call set_timesteps first", 2)
  local prev_t = t - math.floor(self.config.num_train_timesteps / n)
  local a_t = self.alphas_cumprod[t + 1]
  local a_prev = prev_t >= 0 and self.alphas_cumprod[prev_t + 1] or 1.0
  local b_t, b_prev = 1 - a_t, 1 - a_prev
  local cur_alpha = a_t / a_prev
  local cur_beta = 1 - cur_alpha
  local x0 = self:predict(model_output, t, x, a_t)
  if self.config.clip_sample then
    local r = self.config.clip_sample_range
    x0 = x0:clamp(-r, r)
  end
  local c0 = math.sqrt(a_prev) * cur_beta / b_t
  local cx = math.sqrt(cur_alpha) * b_prev / b_t
  local prev = x0 * c0 + x * cx
  if t > 0 then
    if not generator then error("ddpm: a generator is needed for the noise", 2) end
    local var = b_prev / b_t * cur_beta
    if var < 1e-20 then var = 1e-20 end
    local vt = self.config.variance_type
    if vt == "fixed_large" then var = cur_beta
    elseif vt == "fixed_small_log" then var = math.exp(0.5 * math.log(var)) ^ 2 end
    prev = prev + generator:randn(model_output:shape()) * math.sqrt(var)
  end
  self.pred_original_sample = x0
  return prev
end

return DDPM
