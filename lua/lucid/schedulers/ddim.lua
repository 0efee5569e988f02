--- DDIM (Song et al. 2020) as diffusers' DDIMScheduler: eta, clip_sample,
-- epsilon / v_prediction / sample prediction, set_alpha_to_one.
local C = require "lucid.schedulers.common"

local DDIM = {name = "ddim", class_name = "DDIMScheduler", order = 1}
DDIM.__index = DDIM

function DDIM.new(cfg)
  local self = setmetatable({}, DDIM)
  self.config = C.config({}, cfg)
  self.betas, self.alphas_cumprod = C.schedule(self.config)
  self.final_alpha_cumprod = self.config.set_alpha_to_one and 1.0 or self.alphas_cumprod[1]
  self.init_noise_sigma = 1.0
  return self
end

function DDIM:set_timesteps(n)
  self.num_inference_steps = n
  self.timesteps = C.discrete_timesteps(self.config, n)
  self.step_index = nil
end

function DDIM:scale_model_input(x, t) return x end

--- alphas_cumprod at a timestep (0-based), or the final value below 0.
function DDIM:alpha_at(t)
  if t < 0 then return self.final_alpha_cumprod end
  return self.alphas_cumprod[t + 1]
end

--- Splits a model output into (x0, eps) predictions per prediction_type.
function DDIM:predict(model_output, t, x, alpha)
  local beta = 1 - alpha
  local pt = self.config.prediction_type
  if pt == "epsilon" then
    return (x - model_output * math.sqrt(beta)) / math.sqrt(alpha), model_output
  elseif pt == "v_prediction" then
    return x * math.sqrt(alpha) - model_output * math.sqrt(beta),
           model_output * math.sqrt(alpha) + x * math.sqrt(beta)
  elseif pt == "sample" then
    return model_output, (x - model_output * math.sqrt(alpha)) / math.sqrt(beta)
  end
  error("scheduler: unknown prediction_type '" .. tostring(pt) .. "'", 3)
end

--- One reverse step; eta > 0 draws noise from `generator` (a lucid
-- generator), as diffusers' step(..., eta, generator=...).
function DDIM:step(model_output, t, x, generator, eta)
  t = C.tnum(t)
  eta = eta or self.eta or 0
  local n = self.num_inference_steps or error("ddim: call set_timesteps first", 2)
  local prev_t = t - math.floor(self.config.num_train_timesteps / n)
  local a_t, a_prev = self:alpha_at(t), self:alpha_at(prev_t)
  local x0, eps = self:predict(model_output, t, x, a_t)
  if self.config.clip_sample then
    local r = self.config.clip_sample_range
    x0 = x0:clamp(-r, r)
  end
  if self.use_clipped_model_output then
    -- diffusers' step(use_clipped_model_output=True): eps re-derived from
    -- the (clipped) x0; off by default, as in every pipeline
    eps = (x - x0 * math.sqrt(a_t)) / math.sqrt(1 - a_t)
  end
  local variance = ((1 - a_prev) / (1 - a_t)) * (1 - a_t / a_prev)
  local std = eta * math.sqrt(variance)
  local prev = x0 * math.sqrt(a_prev) + eps * math.sqrt(1 - a_prev - std * std)
  if eta > 0 then
    if not generator then error("ddim: eta > 0 needs a generator", 2) end
    prev = prev + generator:randn(model_output:shape()) * std
  end
  self.pred_original_sample = x0
  return prev
end

function DDIM:add_noise(x0, noise, t)
  local a = self.alphas_cumprod[C.tnum(t) + 1]
  return x0 * math.sqrt(a) + noise * math.sqrt(1 - a)
end

--- x0 noised to timesteps[i] (the state after step i-1); x0 once i is
-- past the last step.
function DDIM:add_noise_at(x0, noise, i)
  local t = self.timesteps[i]
  if t == nil then return x0 end
  return self:add_noise(x0, noise, t)
end

return DDIM
