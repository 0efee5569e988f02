--- Scheduler registry: lucid.scheduler(name, config_or_pipe).
-- Names as the command line knows them, plus diffusers' class names.
local M = {}

local modules = {
  ddim = "lucid.schedulers.ddim",
  ddim_inverse = "lucid.schedulers.ddim_inverse",
  ddpm = "lucid.schedulers.ddpm",
  pndm = "lucid.schedulers.pndm",
  plms = "lucid.schedulers.pndm",
  euler = "lucid.schedulers.euler",
  euler_a = "lucid.schedulers.euler_a",
  heun = "lucid.schedulers.heun",
  lms = "lucid.schedulers.lms",
  dpmpp_2m = "lucid.schedulers.dpmpp_2m",
}
local class_names = {
  DDIMScheduler = "ddim", DDIMInverseScheduler = "ddim_inverse", DDPMScheduler = "ddpm",
  PNDMScheduler = "pndm", EulerDiscreteScheduler = "euler",
  EulerAncestralDiscreteScheduler = "euler_a", HeunDiscreteScheduler = "heun",
  LMSDiscreteScheduler = "lms", DPMSolverMultistepScheduler = "dpmpp_2m",
}

--- The names accepted by lucid.scheduler, sorted.
function M.names()
  local t = {}
  for k in pairs(modules) do t[#t + 1] = k end
  table.sort(t)
  return t
end

--- Creates a scheduler. `cfg` is a diffusers scheduler_config table, or a
-- pipe (its scheduler_config is used), or nil (diffusers class defaults).
-- `overrides` (optional) replaces config keys, e.g. {use_karras_sigmas=true}.
function M.new(name, cfg, overrides)
  local key = class_names[name] or name
  local mod = modules[key]
  if not mod then
    error("unknown scheduler '" .. tostring(name) .. "' (known: " .. table.concat(M.names(), ", ") .. ")", 2)
  end
  if type(cfg) == "table" and cfg.scheduler_config then cfg = cfg.scheduler_config end
  local merged = {}
  for k, v in pairs(cfg or {}) do merged[k] = v end
  for k, v in pairs(overrides or {}) do merged[k] = v end
  return require(mod).new(merged)
end

return M
