-- Full txt2img runs against diffusers: every scheduler's 10-step CFG run
-- from the golden initial latents and prompt embeddings (tiny-a UNet), the
-- delayed-negative run and the DDIM inversion run. Tolerance: max-abs error
-- of the final latents <= 1e-4 x max|reference|.
local T = require "testlib"
local lucid = require "lucid"
local guidance = require "lucid.guidance"
local sampling = require "lucid.sampling"

local dir = T.data("golden/tiny-a")
local golden = lucid.json.decode(io.open(dir .. "/golden.json"):read("*a"))
local G = lucid.safetensors.load(dir .. "/golden.safetensors")
local pipe = lucid.load(dir)
local base_config
for _, c in ipairs(golden.cases) do if c.name == "schedulers" then base_config = c.base_config end end

local function rel_err(got, want)
  local scale = want:abs():max():item()
  return T.maxdiff(got, want) / scale
end

local short = {
  DDIMScheduler = "ddim", PNDMScheduler = "pndm", EulerDiscreteScheduler = "euler",
  EulerAncestralDiscreteScheduler = "euler_a", DPMSolverMultistepScheduler = "dpmpp_2m",
  DDPMScheduler = "ddpm", LMSDiscreteScheduler = "lms",
}

for _, c in ipairs(golden.cases) do
  if c.kind == "txt2img" then
    T.case(c.name .. ": final latents as diffusers", function()
      local s = lucid.scheduler(short[c.scheduler], base_config)
      s:set_timesteps(c.steps)
      local want_ts = G[c.outputs.timesteps]:totable()
      for i = 1, #want_ts do T.eq(s.timesteps[i], want_ts[i], "timestep " .. i) end
      local x = G[c.inputs.init_latents] * s.init_noise_sigma
      local per_step = G[c.outputs.latents_per_step]
      local worst = 0
      local final = sampling.run{
        unet = pipe.unet, scheduler = s, steps = c.steps, timesteps_set = true, latents = x,
        contexts = {uncond = G[c.inputs.negative_prompt_embeds], cond = G[c.inputs.prompt_embeds]},
        guidance = guidance.cfg(c.guidance_scale),
        generator = lucid.generator(c.generator_seed),
        on_step = function(i, n, t, xi)
          local e = rel_err(xi, per_step:narrow(1, i, 1))
          if e > worst then worst = e end
        end,
      }
      local err = rel_err(final, G[c.outputs.final_latents])
      print(string.format("# %s: final rel err %.3g (worst step %.3g)", c.scheduler, err, worst))
      T.truthy(err <= 1e-4, string.format("final latents rel err %.3g > 1e-4", err))
    end)
  elseif c.kind == "delayed_negative" then
    T.case(c.name .. ": delayed negative as the reference loop", function()
      local s = lucid.scheduler("ddim", base_config)
      local final = sampling.run{
        unet = pipe.unet, scheduler = s, steps = c.steps,
        latents = G[c.inputs.init_latents] * s.init_noise_sigma,
        contexts = {empty = G[c.inputs.uncond_before], neg = G[c.inputs.uncond_after],
                    cond = G[c.inputs.prompt_embeds]},
        guidance = guidance.delayed_negative(c.guidance_scale, c.delay_step),
      }
      local err = rel_err(final, G[c.outputs.final_latents])
      print(string.format("# delayed negative: final rel err %.3g", err))
      T.truthy(err <= 1e-4, string.format("rel err %.3g", err))
    end)
  elseif c.kind == "ddim_inversion" then
    T.case("ddim inversion: inverted and reconstructed latents", function()
      local inv = lucid.scheduler("ddim_inverse", c.inverse_scheduler_config)
      local ctx = G[c.inputs.context]
      local inverted = sampling.run{
        unet = pipe.unet, scheduler = inv, steps = c.steps, latents = G[c.inputs.image_latents],
        contexts = {cond = ctx}, guidance = guidance.cfg(1),
      }
      local want_ts = G[c.outputs.inverse_timesteps]:totable()
      for i = 1, #want_ts do T.eq(inv.timesteps[i], want_ts[i], "inverse timestep " .. i) end
      local e1 = rel_err(inverted, G[c.outputs.inverted])
      local fwd = lucid.scheduler("ddim", base_config)
      local rec = sampling.run{
        unet = pipe.unet, scheduler = fwd, steps = c.steps, latents = inverted,
        contexts = {cond = ctx}, guidance = guidance.cfg(1),
      }
      local e2 = rel_err(rec, G[c.outputs.reconstructed])
      print(string.format("# ddim inversion: inverted rel err %.3g, reconstructed %.3g", e1, e2))
      T.truthy(e1 <= 1e-4 and e2 <= 1e-4, "inversion outside tolerance")
    end)
  end
end

T.done()
