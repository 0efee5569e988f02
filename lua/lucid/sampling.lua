--- The denoising loop every generating recipe shares. It is short on
-- purpose: copy it into a recipe and change it when an experiment needs to.
local M = {}

local function context_at(c, i, n)
  if type(c) == "function" then return c(i, n) end
  return c
end

--- Runs a scheduler over a UNet.
-- p.unet        the UNet (pipe.unet)
-- p.scheduler   a scheduler; set_timesteps is called with p.steps unless
--               p.timesteps_set is true
-- p.steps       number of steps
-- p.latents     starting latents (already scaled by init_noise_sigma, or
--               noised to the first timestep for img2img)
-- p.contexts    name -> context tensor [1,L,C], or function(i, n) -> tensor
--               (prompt editing changes the context per step)
-- p.guidance    a rule from lucid.guidance (default cfg 7.5)
-- p.generator   noise for stochastic samplers
-- p.first       first step index (1-based; img2img starts later)
-- p.unet_opts   function(i, t, names, x_in) -> opts for unet:forward
--               (ControlNet residuals), or a table
-- p.on_step     function(i, n, t, x, eps) after each step
-- p.blend       function(i, t, x) -> x after each step (inpainting)
-- p.pad_context function(ctx, len) -> ctx padded to len tokens
-- p.extra_input a tensor [1,C,h,w] appended to the scaled latents along
--               the channels for every branch (the 9-channel inpainting
--               UNet takes [latents, mask, masked image latents])
-- Returns the final latents.
function M.run(p)
  local lucid = require "lucid"
  local s = assert(p.scheduler, "sampling.run: scheduler missing")
  local unet = assert(p.unet, "sampling.run: unet missing")
  if not p.timesteps_set then s:set_timesteps(p.steps) end
  local ts = s.timesteps
  local n = #ts
  local rule = p.guidance or require("lucid.guidance").cfg(7.5)
  local x = p.latents
  local first = p.first or 1
  if s.set_begin_index and first > 1 then s:set_begin_index(first) end
  for i = first, n do
    local t = ts[i]
    local names = rule:branches(i, n)
    local k = #names
    local ctx = {}
    for j, name in ipairs(names) do
      local c = p.contexts[name]
      if c == nil then error("sampling: guidance needs context '" .. name .. "'", 2) end
      ctx[j] = context_at(c, i, n)
    end
    -- prompts of more than 75 tokens give longer contexts; batching needs
    -- equal lengths, so the shorter ones are padded (p.pad_context)
    local maxlen = 0
    for _, c in ipairs(ctx) do maxlen = math.max(maxlen, c:shape()[2]) end
    for j, c in ipairs(ctx) do
      if c:shape()[2] ~= maxlen then
        if not p.pad_context then error("sampling: contexts of different lengths need p.pad_context", 2) end
        ctx[j] = p.pad_context(c, maxlen)
      end
    end
    local xs = s:scale_model_input(x, t)
    if p.extra_input then xs = lucid.cat({xs, p.extra_input}, 2) end
    local x_in = k == 1 and xs or lucid.cat((function()
      local l = {}
      for j = 1, k do l[j] = xs end
      return l
    end)(), 1)
    local context = k == 1 and ctx[1] or lucid.cat(ctx, 1)
    local opts = p.unet_opts
    if type(opts) == "function" then opts = opts(i, t, names, x_in, context) end
    local out = unet:forward(x_in, t, context, opts)
    local pred = {}
    local b = xs:shape()[1]
    for j, name in ipairs(names) do pred[name] = out:narrow(1, (j - 1) * b + 1, b) end
    local eps = rule:combine(pred, i, n)
    x = s:step(eps, t, x, p.generator)
    if p.blend then x = p.blend(i, t, x) end
    if p.on_step then p.on_step(i, n, t, x, eps) end
  end
  return x
end

return M
