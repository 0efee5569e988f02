--- DPM-Solver++ (2M) as diffusers' DPMSolverMultistepScheduler with its
-- defaults (solver_order 2, midpoint, lower_order_final, final sigma 0),
-- with optional Karras sigmas.
local C = require "lucid.schedulers.common"
local Euler = require "lucid.schedulers.euler"

local DPM = {name = "dpmpp_2m", class_name = "DPMSolverMultistepScheduler", order = 1}
DPM.__index = DPM
setmetatable(DPM, {__index = Euler})

function DPM.new(cfg)
  local self = Euler.init(DPM, cfg, {solver_order = 2, algorithm_type = "dpmsolver++",
    solver_type = "midpoint", lower_order_final = true, euler_at_final = false,
    final_sigmas_type = "zero"})
  self.init_noise_sigma = 1.0
  local a = self.config.algorithm_type
  if a ~= "dpmsolver++" then error("dpmpp_2m: only algorithm_type dpmsolver++ is supported", 2) end
  return self
end

function DPM:set_timesteps(n)
  local cfg = self.config
  local N = cfg.num_train_timesteps
  if n < 1 or n > N then error(string.format("scheduler: %d steps is outside 1..%d", n, N), 2) end
  self.num_inference_steps = n
  local ts = {}
  if cfg.timestep_spacing == "linspace" then
    local l = C.linspace(0, N - 1, n + 1)
    for i = n + 1, 2, -1 do ts[#ts + 1] = C.round(l[i]) end
  elseif cfg.timestep_spacing == "leading" then
    local ratio = math.floor(N / (n + 1))
    for i = n, 1, -1 do ts[#ts + 1] = C.round(i * ratio) + cfg.steps_offset end
  elseif cfg.timestep_spacing == "trailing" then
    local ratio = N / n
    local x = N
    while x > 1e-9 and #ts < n do ts[#ts + 1] = C.round(x) - 1; x = x - ratio end
  else
    error("scheduler: unknown timestep_spacing '" .. tostring(cfg.timestep_spacing) .. "'", 2)
  end
  local train = C.train_sigmas(self.alphas_cumprod)
  local sig = {}
  if cfg.use_karras_sigmas then
    local log_sigmas = {}
    for i = 1, #train do log_sigmas[i] = math.log(train[i]) end
    local asc = {}
    for i, t in ipairs(ts) do asc[i] = C.interp(t, train) end
    -- diffusers ramps between the extreme training sigmas
    sig = C.karras(train[1], train[#train], n)
    for i = 1, n do ts[i] = C.round(C.sigma_to_t(sig[i], log_sigmas)) end
  else
    for i, t in ipairs(ts) do sig[i] = C.interp(t, train) end
  end
  local last = 0
  if cfg.final_sigmas_type == "sigma_min" then last = train[1] end
  for i = 1, #sig do sig[i] = C.f32(sig[i]) end
  sig[#sig + 1] = C.f32(last)
  self.timesteps, self.sigmas = ts, sig
  self.model_outputs = {}
  self.lower_order_nums = 0
  self.step_index, self.begin_index = nil, nil
end

function DPM:scale_model_input(x, t) return x end

local function alpha_sigma(sigma)
  local a = 1 / math.sqrt(sigma * sigma + 1)
  return a, sigma * a
end

local function lambda(sigma)
  local a, s = alpha_sigma(sigma)
  return math.log(a) - math.log(s)
end

function DPM:step(model_output, t, x)
  local cfg = self.config
  local i = self:index_of(t)
  local nsteps = #self.timesteps
  local lower_final = (i == nsteps) and (cfg.euler_at_final or
    (cfg.lower_order_final and nsteps < 15) or cfg.final_sigmas_type == "zero")
  -- data prediction (x0) from the model output
  local sigma = self.sigmas[i]
  local alpha_t, sigma_t = alpha_sigma(sigma)
  local x0
  local pt = cfg.prediction_type
  if pt == "epsilon" then x0 = (x - model_output * sigma_t) / alpha_t
  elseif pt == "v_prediction" then x0 = x * alpha_t - model_output * sigma_t
  elseif pt == "sample" then x0 = model_output
  else error("scheduler: unknown prediction_type '" .. tostring(pt) .. "'", 2) end
  local mo = self.model_outputs
  mo[#mo + 1] = x0
  if #mo > cfg.solver_order then table.remove(mo, 1) end

  local s_t, s_s0 = self.sigmas[i + 1], self.sigmas[i]
  local a_t, sg_t = alpha_sigma(s_t)
  local a_s0, sg_s0 = alpha_sigma(s_s0)
  local l_t, l_s0 = math.log(a_t) - math.log(sg_t), lambda(s_s0)
  local h = l_t - l_s0
  local prev
  if cfg.solver_order == 1 or self.lower_order_nums < 1 or lower_final then
    prev = x * (sg_t / sg_s0) - mo[#mo] * (a_t * (math.exp(-h) - 1))
  else
    local s_s1 = self.sigmas[i - 1]
    local l_s1 = lambda(s_s1)
    local h0 = l_s0 - l_s1
    local r0 = h0 / h
    local m0, m1 = mo[#mo], mo[#mo - 1]
    local d1 = (m0 - m1) * (1 / r0)
    local e = math.exp(-h) - 1
    if cfg.solver_type == "midpoint" then
      prev = x * (sg_t / sg_s0) - m0 * (a_t * e) - d1 * (0.5 * a_t * e)
    else -- heun
      prev = x * (sg_t / sg_s0) - m0 * (a_t * e) + d1 * (a_t * (e / h + 1))
    end
  end
  if self.lower_order_nums < cfg.solver_order then self.lower_order_nums = self.lower_order_nums + 1 end
  self.step_index = i + 1
  self.pred_original_sample = x0
  return prev
end

function DPM:add_noise(x0, noise, t)
  local i = self.begin_index or C.index_for_timestep(self.timesteps, C.tnum(t))
  local a, s = alpha_sigma(self.sigmas[i])
  return x0 * a + noise * s
end

--- x0 noised to the level of index i (the state after step i-1); x0 at
-- the end of the schedule.
function DPM:add_noise_at(x0, noise, i)
  local sg = self.sigmas[i] or 0
  if sg == 0 then return x0 end
  local a, s = alpha_sigma(sg)
  return x0 * a + noise * s
end

return DPM
