--- Euler (Karras et al. 2022, Algorithm 2 with s_churn = 0 by default) as
-- diffusers' EulerDiscreteScheduler.
local C = require "lucid.schedulers.common"

local Euler = {name = "euler", class_name = "EulerDiscreteScheduler", order = 1}
Euler.__index = Euler

local class_defaults = {timestep_spacing = "linspace", s_churn = 0, s_tmin = 0,
                        s_tmax = math.huge, s_noise = 1}

--- Shared constructor of the sigma-family schedulers.
function Euler.init(cls, cfg, extra)
  local self = setmetatable({}, cls)
  local d = {}
  for k, v in pairs(class_defaults) do d[k] = v end
  for k, v in pairs(extra or {}) do d[k] = v end
  self.config = C.config(d, cfg)
  self.betas, self.alphas_cumprod = C.schedule(self.config)
  local train = C.train_sigmas(self.alphas_cumprod)
  local smax = train[#train]
  self.init_noise_sigma = cls.noise_sigma(self.config, smax)
  return self
end

--- diffusers: max sigma for linspace/trailing spacing, else sqrt(max^2+1).
function Euler.noise_sigma(cfg, smax)
  if cfg.timestep_spacing == "linspace" or cfg.timestep_spacing == "trailing" then
    return C.f32(smax)
  end
  return C.f32(math.sqrt(smax * smax + 1))
end

function Euler.new(cfg) return Euler.init(Euler, cfg) end

function Euler:set_timesteps(n)
  self.num_inference_steps = n
  self.timesteps, self.sigmas = C.sigma_schedule(self.config, self.alphas_cumprod, n)
  local smax = 0
  for _, s in ipairs(self.sigmas) do if s > smax then smax = s end end
  self.init_noise_sigma = self.noise_sigma(self.config, smax)
  self.step_index = nil
  self.begin_index = nil
end

--- img2img starts mid-schedule: the first step index to use.
function Euler:set_begin_index(i) self.begin_index = i end

function Euler:index_of(t)
  if self.step_index then return self.step_index end
  if self.begin_index then self.step_index = self.begin_index
  else self.step_index = C.index_for_timestep(self.timesteps, C.tnum(t)) end
  return self.step_index
end

function Euler:scale_model_input(x, t)
  local s = self.sigmas[self:index_of(t)]
  return x / math.sqrt(s * s + 1)
end

--- x0 prediction from the model output at sigma.
function Euler:denoised(model_output, x, sigma)
  local pt = self.config.prediction_type
  if pt == "epsilon" then return x - model_output * sigma end
  if pt == "v_prediction" then
    return model_output * (-sigma / math.sqrt(sigma * sigma + 1)) + x / (sigma * sigma + 1)
  end
  if pt == "sample" then return model_output end
  error("scheduler: unknown prediction_type '" .. tostring(pt) .. "'", 3)
end

function Euler:step(model_output, t, x, generator)
  local i = self:index_of(t)
  local sigma = self.sigmas[i]
  local cfg = self.config
  local gamma = 0
  if cfg.s_churn > 0 and sigma >= cfg.s_tmin and sigma <= cfg.s_tmax then
    gamma = math.min(cfg.s_churn / (#self.sigmas - 1), math.sqrt(2) - 1)
  end
  local sigma_hat = sigma * (gamma + 1)
  if gamma > 0 then
    if not generator then error("euler: s_churn > 0 needs a generator", 2) end
    local eps = generator:randn(model_output:shape()) * cfg.s_noise
    x = x + eps * math.sqrt(sigma_hat * sigma_hat - sigma * sigma)
  end
  local x0 = self:denoised(model_output, x, sigma_hat)
  local derivative = (x - x0) / sigma_hat
  local dt = self.sigmas[i + 1] - sigma_hat
  self.step_index = i + 1
  self.pred_original_sample = x0
  return x + derivative * dt
end

function Euler:add_noise(x0, noise, t)
  local i = self.begin_index or C.index_for_timestep(self.timesteps, C.tnum(t))
  return x0 + noise * self.sigmas[i]
end

--- The latent x0 noised to the level the schedule reaches at index i (the
-- state after step i-1): x0 + noise * sigma_i; i past the end gives x0.
-- Inpainting blends with it after every step.
function Euler:add_noise_at(x0, noise, i)
  local s = self.sigmas[i] or 0
  if s == 0 then return x0 end
  return x0 + noise * s
end

return Euler
