--- Shared scheduler machinery, numerically as diffusers: beta schedules,
-- alphas_cumprod, timestep spacings, sigma tables and the config defaults.
-- Tables here are plain Lua numbers (doubles); where diffusers works in
-- float32 tensors the values are rounded to float32 so timesteps and
-- sigmas match it exactly.
local ffi = require "ffi"

local M = {}

local f32box = ffi.new("float[1]")
--- Rounds a double to the nearest float32 (as a torch float32 tensor holds it).
function M.f32(x)
  f32box[0] = x
  return f32box[0]
end
local f32 = M.f32

--- Config defaults shared by every scheduler (SD 1.x values where diffusers'
-- class defaults differ are the caller's business: pass the pipe's config).
M.defaults = {
  num_train_timesteps = 1000,
  beta_start = 0.0001,
  beta_end = 0.02,
  beta_schedule = "linear",
  trained_betas = nil,
  prediction_type = "epsilon",
  timestep_spacing = "leading",
  steps_offset = 0,
  set_alpha_to_one = true,
  clip_sample = true,
  clip_sample_range = 1.0,
  use_karras_sigmas = false,
  rescale_betas_zero_snr = false,
}

--- Merges a config table over class defaults; JSON nulls (cjson's or
-- absent keys) fall back to the default.
function M.config(class_defaults, cfg)
  local out = {}
  for k, v in pairs(M.defaults) do out[k] = v end
  for k, v in pairs(class_defaults or {}) do out[k] = v end
  for k, v in pairs(cfg or {}) do
    if type(k) == "string" and k:sub(1, 1) ~= "_" and v ~= nil and v ~= M.null then out[k] = v end
  end
  return out
end

-- torch.linspace in float32 as ATen's CPU kernel computes it: the first
-- half counts up from start, the second half down from end, and the
-- vectorised loop fills each vector of V lanes as base + lane * step (V = 8
-- for AVX2 builds), two vectors per iteration, the remainder one by one.
-- The products and sums are fused (FMA: one rounding), as the compiler
-- contracts them in PyTorch's AVX2 build. Emulating this makes the betas
-- bit-identical to diffusers'.
local LINSPACE_LANES = 8
local function linspace_f32(a, b, n)
  local t = {}
  if n == 1 then t[1] = f32(a); return t end
  local fa, fb = f32(a), f32(b)
  local step = f32(f32(fb - fa) / (n - 1))
  local half = math.floor(n / 2)
  local function scalar(i)
    if i < half then return f32(fa + step * i) end
    return f32(fb - step * (n - i - 1))
  end
  local V = LINSPACE_LANES
  local i = 0
  while i + 2 * V <= n do
    for _ = 1, 2 do
      local base = scalar(i)
      for lane = 0, V - 1 do t[i + lane + 1] = f32(base + lane * step) end
      i = i + V
    end
  end
  for j = i, n - 1 do t[j + 1] = scalar(j) end
  return t
end
M.linspace_f32 = linspace_f32

--- numpy.linspace in double.
function M.linspace(a, b, n)
  local t = {}
  if n == 1 then t[1] = a; return t end
  local step = (b - a) / (n - 1)
  for i = 0, n - 1 do t[i + 1] = a + i * step end
  t[n] = b
  return t
end

local function betas_for_alpha_bar(n, max_beta)
  max_beta = max_beta or 0.999
  local function alpha_bar(t) return math.cos((t + 0.008) / 1.008 * math.pi / 2) ^ 2 end
  local b = {}
  for i = 0, n - 1 do
    local t1, t2 = i / n, (i + 1) / n
    b[i + 1] = f32(math.min(1 - alpha_bar(t2) / alpha_bar(t1), max_beta))
  end
  return b
end

--- betas and alphas_cumprod (1-based Lua arrays indexed by timestep + 1).
function M.schedule(cfg)
  local n = cfg.num_train_timesteps
  local betas
  if type(cfg.trained_betas) == "table" then
    betas = {}
    for i, v in ipairs(cfg.trained_betas) do betas[i] = f32(v) end
  elseif cfg.beta_schedule == "linear" then
    betas = linspace_f32(cfg.beta_start, cfg.beta_end, n)
  elseif cfg.beta_schedule == "scaled_linear" then
    betas = linspace_f32(math.sqrt(cfg.beta_start), math.sqrt(cfg.beta_end), n)
    for i = 1, n do betas[i] = f32(betas[i] * betas[i]) end
  elseif cfg.beta_schedule == "squaredcos_cap_v2" then
    betas = betas_for_alpha_bar(n)
  else
    error("scheduler: unknown beta_schedule '" .. tostring(cfg.beta_schedule) .. "'", 3)
  end
  local acp, p = {}, 1.0
  -- torch.cumprod on CPU accumulates float32 in double, rounding each output
  for i = 1, n do
    p = p * f32(1 - betas[i])
    acp[i] = f32(p)
  end
  if cfg.rescale_betas_zero_snr then
    -- Lin et al. 2023: shift and scale sqrt(alphas_cumprod) so the last is 0
    local s = {}
    for i = 1, n do s[i] = math.sqrt(acp[i]) end
    local s0, sT = s[1], s[n]
    for i = 1, n do s[i] = (s[i] - sT) * s0 / (s0 - sT) end
    for i = 1, n do acp[i] = f32(s[i] * s[i]) end
    acp[n] = 2 ^ -24 -- diffusers keeps the last alpha off exact zero
  end
  return betas, acp
end

--- Integer timesteps for the DDIM/DDPM/PNDM family (descending), as
-- diffusers' leading / trailing / linspace spacings.
function M.discrete_timesteps(cfg, steps)
  local N = cfg.num_train_timesteps
  if steps < 1 or steps > N then
    error(string.format("scheduler: %d steps is outside 1..%d", steps, N), 3)
  end
  local ts = {}
  local spacing = cfg.timestep_spacing
  if spacing == "leading" then
    local ratio = math.floor(N / steps)
    for i = steps - 1, 0, -1 do ts[#ts + 1] = i * ratio + cfg.steps_offset end
  elseif spacing == "trailing" then
    local ratio = N / steps
    local x = N
    while x > 0 + 1e-9 and #ts < steps do
      ts[#ts + 1] = M.round(x) - 1
      x = x - ratio
    end
  elseif spacing == "linspace" then
    local l = M.linspace(0, N - 1, steps)
    for i = steps, 1, -1 do ts[#ts + 1] = M.round(l[i]) end
  else
    error("scheduler: unknown timestep_spacing '" .. tostring(spacing) .. "'", 3)
  end
  return ts
end

--- numpy's round: half to even.
function M.round(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 then return f + 1 end
  if d < 0.5 then return f end
  return (f % 2 == 0) and f or f + 1
end

--- sqrt((1 - acp) / acp) for every training timestep, in float32 as
-- diffusers computes it on the alphas_cumprod tensor.
function M.train_sigmas(acp)
  local s = {}
  for i = 1, #acp do s[i] = f32(math.sqrt(f32(f32(1 - acp[i]) / acp[i]))) end
  return s
end

--- numpy.interp(x, 0..#ys-1, ys)
function M.interp(x, ys)
  if x <= 0 then return ys[1] end
  if x >= #ys - 1 then return ys[#ys] end
  local i = math.floor(x)
  local w = x - i
  return ys[i + 1] + (ys[i + 2] - ys[i + 1]) * w
end

--- Karras et al. (2022) sigma ramp, rho 7, from sigma_max down to sigma_min.
function M.karras(sigma_min, sigma_max, n, rho)
  rho = rho or 7.0
  local lo, hi = sigma_min ^ (1 / rho), sigma_max ^ (1 / rho)
  local r = M.linspace(0, 1, n)
  local out = {}
  for i = 1, n do out[i] = (hi + r[i] * (lo - hi)) ^ rho end
  return out
end

--- diffusers' _sigma_to_t: the (fractional) training timestep of a sigma by
-- interpolating in log-sigma.
function M.sigma_to_t(sigma, log_sigmas)
  local ls = math.log(math.max(sigma, 1e-10))
  local n = #log_sigmas
  -- log_sigmas ascends with t; find the last index with log_sigmas <= ls
  local low = 1
  for i = 1, n do if log_sigmas[i] <= ls then low = i end end
  if low > n - 1 then low = n - 1 end
  local high = low + 1
  local lo, hi = log_sigmas[low], log_sigmas[high]
  local w = (lo - ls) / (lo - hi)
  if w < 0 then w = 0 elseif w > 1 then w = 1 end
  return (1 - w) * (low - 1) + w * (high - 1)
end

--- Sigma-family timesteps and sigmas (Euler, Euler a, LMS, Heun, DPM++):
-- float timesteps (descending) and sigmas with a final 0 appended.
function M.sigma_schedule(cfg, acp, steps, opts)
  opts = opts or {}
  local N = cfg.num_train_timesteps
  if steps < 1 or steps > N then
    error(string.format("scheduler: %d steps is outside 1..%d", steps, N), 3)
  end
  local ts = {}
  local spacing = cfg.timestep_spacing
  if spacing == "linspace" then
    local l = M.linspace(0, N - 1, steps)
    for i = steps, 1, -1 do ts[#ts + 1] = l[i] end
  elseif spacing == "leading" then
    local ratio = math.floor(N / steps)
    for i = steps - 1, 0, -1 do ts[#ts + 1] = M.round(i * ratio) + cfg.steps_offset end
  elseif spacing == "trailing" then
    local ratio = N / steps
    local x = N
    while x > 1e-9 and #ts < steps do
      ts[#ts + 1] = M.round(x) - 1
      x = x - ratio
    end
  else
    error("scheduler: unknown timestep_spacing '" .. tostring(spacing) .. "'", 3)
  end
  local train = M.train_sigmas(acp)
  local sig = {}
  for i, t in ipairs(ts) do sig[i] = M.interp(t, train) end
  if cfg.use_karras_sigmas then
    local log_sigmas = {}
    for i = 1, #train do log_sigmas[i] = math.log(train[i]) end
    local smin = cfg.sigma_min or sig[#sig]
    local smax = cfg.sigma_max or sig[1]
    sig = M.karras(smin, smax, steps)
    for i = 1, steps do ts[i] = M.sigma_to_t(sig[i], log_sigmas) end
    if opts.round_karras_timesteps then
      for i = 1, steps do ts[i] = M.round(ts[i]) end
    end
  end
  for i = 1, #sig do sig[i] = f32(sig[i]) end
  for i = 1, #ts do ts[i] = f32(ts[i]) end
  sig[#sig + 1] = 0
  return ts, sig
end

--- Finds the schedule index of a timestep as diffusers' index_for_timestep
-- does (the second match when a timestep repeats, so img2img starting
-- mid-schedule lands where diffusers does). Returns a 1-based index.
function M.index_for_timestep(timesteps, t)
  local first, second
  for i, v in ipairs(timesteps) do
    if math.abs(v - t) < 1e-6 then
      if not first then first = i elseif not second then second = i end
    end
  end
  if not first then error("scheduler: timestep " .. tostring(t) .. " is not in the schedule", 3) end
  return second or first
end

--- Timestep value from a number or a 0-d/1-element tensor.
function M.tnum(t)
  if type(t) == "number" then return t end
  return t:item()
end

return M
