--- DDIM inversion as diffusers' DDIMInverseScheduler: walks the DDIM
-- update backwards, from a clean latent towards noise.
local C = require "lucid.schedulers.common"
local DDIM = require "lucid.schedulers.ddim"

local Inv = {name = "ddim_inverse", class_name = "DDIMInverseScheduler", order = 1}
Inv.__index = Inv
setmetatable(Inv, {__index = DDIM})

function Inv.new(cfg)
  local self = setmetatable({}, Inv)
  self.config = C.config({}, cfg)
  self.betas, self.alphas_cumprod = C.schedule(self.config)
  self.initial_alpha_cumprod = self.config.set_alpha_to_one and 1.0 or self.alphas_cumprod[1]
  self.init_noise_sigma = 1.0
  return self
end

function Inv:set_timesteps(n)
  local N = self.config.num_train_timesteps
  if n < 1 or n > N then error(string.format("scheduler: %d steps is outside 1..%d", n, N), 2) end
  self.num_inference_steps = n
  local ts = {}
  local spacing = self.config.timestep_spacing
  if spacing == "leading" then
    local ratio = math.floor(N / n)
    for i = 0, n - 1 do ts[#ts + 1] = i * ratio + self.config.steps_offset end
  elseif spacing == "trailing" then
    local ratio = N / n
    local fwd = {}
    local x = N
    while x > 1e-9 and #fwd < n do fwd[#fwd + 1] = C.round(x) - 1; x = x - ratio end
    for i = #fwd, 1, -1 do ts[#ts + 1] = fwd[i] end
  else
    error("ddim_inverse: timestep_spacing must be leading or trailing", 2)
  end
  self.timesteps = ts
end

function Inv:step(model_output, t, x)
  t = C.tnum(t)
  local N = self.config.num_train_timesteps
  local prev_t = t
  local cur = math.min(t - math.floor(N / self.num_inference_steps), N - 1)
  local a_t = cur >= 0 and self.alphas_cumprod[cur + 1] or self.initial_alpha_cumprod
  local a_prev = self.alphas_cumprod[prev_t + 1]
  local x0, eps = self:predict(model_output, cur, x, a_t)
  if self.config.clip_sample then
    local r = self.config.clip_sample_range
    x0 = x0:clamp(-r, r)
  end
  return x0 * math.sqrt(a_prev) + eps * math.sqrt(1 - a_prev)
end

return Inv
