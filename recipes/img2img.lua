-- Image to image (SDEdit): encode the init image with the VAE, noise it to
-- the level `--strength` of the way through the schedule, and denoise from
-- there with the prompt. Strength 0 returns the VAE round trip of the
-- image, 1 ignores it. The start follows diffusers' get_timesteps:
-- init_timestep = min(int(steps * strength), steps), and sampling begins at
-- t_start = steps - init_timestep (times the sampler's order).
local R = require "lucid.recipe"
local sampling = require "lucid.sampling"

return {
  name = "img2img",
  positional = "prompt", -- lucid run img2img "a cat" ...
  description = "re-draw an image guided by a prompt (SDEdit)",
  options = {
    "model", "prompt", "negative", "seed", {"steps", default = 20}, "cfg",
    {"sampler", default = "euler_a"}, "schedule",
    {"init-image", required = true},
    "strength",
    {"width", default = 0, min = 0, help = "output width, multiple of 8 (0: the init image's, rounded down)"},
    {"height", default = 0, min = 0, help = "output height, multiple of 8 (0: the init image's, rounded down)"},
    "out", "latents_out", "rng", "negative_start",
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local w, h = R.size_for(opts, opts.init_image, "--init-image")
    local init = R.load_image(opts.init_image, "--init-image", w, h)
    local pipe, model_path = R.load(opts.model)
    local seed = R.seed(opts.seed)
    opts.seed = seed
    opts.width, opts.height = w, h -- recorded as used
    local steps = opts.steps
    local s = R.scheduler(pipe, opts)
    s:set_timesteps(steps)
    local g = lucid.generator(seed, opts.rng)
    -- the latent distribution is sampled with the generator first, then
    -- the noise drawn, as diffusers' prepare_latents does
    local init_latents = pipe.vae:encode(init, {generator = g})
    local n = #s.timesteps
    local init_timestep = math.min(math.floor(steps * opts.strength + 1e-9), steps)
    local first = (steps - init_timestep) * (s.order or 1) + 1
    local x = init_latents
    if first <= n then
      if s.set_begin_index then s:set_begin_index(first) end
      local noise = g:randn(init_latents:shape())
      x = s:add_noise_at(init_latents, noise, first)
      local contexts, rule = R.guidance(pipe, opts, steps)
      local bar = R.progress(n - first + 1, opts.quiet, "img2img")
      x = sampling.run{
        unet = pipe.unet, scheduler = s, timesteps_set = true, first = first, latents = x,
        contexts = contexts, guidance = rule, generator = g, pad_context = R.padder(pipe),
        on_step = R.stepper(bar, pipe, opts, first),
      }
      bar.done()
    end
    return R.finish(pipe, x, opts, recipe, model_path, seed)
  end,
}
