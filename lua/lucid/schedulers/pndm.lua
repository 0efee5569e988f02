--- PNDM as Stable Diffusion's default config uses it (skip_prk_steps:
-- PLMS only), following diffusers' PNDMScheduler.step_plms.
local C = require "lucid.schedulers.common"

local PNDM = {name = "pndm", class_name = "PNDMScheduler", order = 1}
PNDM.__index = PNDM

function PNDM.new(cfg)
  local self = setmetatable({}, PNDM)
  self.config = C.config({skip_prk_steps = true, set_alpha_to_one = false, clip_sample = false}, cfg)
  if not self.config.skip_prk_steps then
    error("pndm: only skip_prk_steps = true (PLMS, as Stable Diffusion uses it) is supported", 2)
  end
  self.betas, self.alphas_cumprod = C.schedule(self.config)
  self.final_alpha_cumprod = self.config.set_alpha_to_one and 1.0 or self.alphas_cumprod[1]
  self.init_noise_sigma = 1.0
  return self
end

function PNDM:set_timesteps(n)
  self.num_inference_steps = n
  local base = C.discrete_timesteps(self.config, n) -- descending
  -- diffusers repeats the second timestep: [t0, t1, t1, t2, ...] descending
  local ts = {base[1]}
  if n > 1 then ts[2] = base[2] end
  for i = 2, n do ts[#ts + 1] = base[i] end
  self.timesteps = ts
  self.ets, self.counter, self.cur_sample = {}, 0, nil
end

function PNDM:scale_model_input(x, t) return x end

function PNDM:prev_sample(x, t, prev_t, e)
  local a_t = self.alphas_cumprod[t + 1]
  local a_prev = prev_t >= 0 and self.alphas_cumprod[prev_t + 1] or self.final_alpha_cumprod
  local b_t, b_prev = 1 - a_t, 1 - a_prev
  if self.config.prediction_type == "v_prediction" then
    e = e * math.sqrt(a_t) + x * math.sqrt(b_t)
  elseif self.config.prediction_type ~= "epsilon" then
    error("pndm: prediction_type must be epsilon or v_prediction", 3)
  end
  local coeff = math.sqrt(a_prev / a_t)
  local denom = a_t * math.sqrt(b_prev) + math.sqrt(a_t * b_t * a_prev)
  return x * coeff - e * ((a_prev - a_t) / denom)
end

function PNDM:step(model_output, t, x)
  t = C.tnum(t)
  local ratio = math.floor(self.config.num_train_timesteps / self.num_inference_steps)
  local prev_t = t - ratio
  local ets = self.ets
  if self.counter ~= 1 then
    while #ets > 3 do table.remove(ets, 1) end
    ets[#ets + 1] = model_output
  else
    prev_t = t
    t = t + ratio
  end
  local e
  if #ets == 1 and self.counter == 0 then
    e = model_output
    self.cur_sample = x
  elseif #ets == 1 and self.counter == 1 then
    e = (model_output + ets[1]) / 2
    x = self.cur_sample
    self.cur_sample = nil
  elseif #ets == 2 then
    e = (ets[2] * 3 - ets[1]) / 2
  elseif #ets == 3 then
    e = (ets[3] * 23 - ets[2] * 16 + ets[1] * 5) / 12
  else
    e = (ets[4] * 55 - ets[3] * 59 + ets[2] * 37 - ets[1] * 9) / 24
  end
  local prev = self:prev_sample(x, t, prev_t, e)
  self.counter = self.counter + 1
  return prev
end

function PNDM:add_noise(x0, noise, t)
  local a = self.alphas_cumprod[C.tnum(t) + 1]
  return x0 * math.sqrt(a) + noise * math.sqrt(1 - a)
end

--- x0 noised to timesteps[i] (PLMS repeats the second timestep, so after
-- loop step i-1 the sample sits at timesteps[i]); x0 past the end.
function PNDM:add_noise_at(x0, noise, i)
  local t = self.timesteps[i]
  if t == nil then return x0 end
  return self:add_noise(x0, noise, t)
end

return PNDM
