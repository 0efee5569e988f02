-- Text to image: encode the prompts (A1111 syntax), start from seeded
-- noise, run the sampler with classifier-free guidance (the negative prompt
-- replaces the unconditional branch; --negative-start delays it), decode
-- with the VAE and save a PNG that records how it was made.
local R = require "lucid.recipe"
local sampling = require "lucid.sampling"

return {
  name = "txt2img",
  positional = "prompt", -- lucid run txt2img "a cat" ...
  description = "generate an image from a text prompt",
  options = {
    "model", "prompt", "negative", "seed", {"steps", default = 20}, "cfg",
    {"sampler", default = "euler_a"}, "schedule", {"width", default = 0, min = 0,
      help = "image width in pixels, a multiple of 8 (0: the model's native size)"},
    {"height", default = 0, min = 0,
      help = "image height in pixels, a multiple of 8 (0: the model's native size)"}, "out", "latents_out", "rng", "negative_start",
    {"clip-skip", type = "int", default = 1, min = 1, help = "use the text encoder's n-th last layer (A1111's clip skip)"},
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local pipe, model_path = R.load(opts.model)
    local seed = R.seed(opts.seed)
    opts.seed = seed -- recorded, so a replay draws the same noise
    local s = R.scheduler(pipe, opts)
    local steps = opts.steps
    local contexts, rule = R.guidance(pipe, opts, steps)
    local g = lucid.generator(seed, opts.rng)
    local f = pipe.vae_scale_factor or 8
    -- as diffusers: the default size is the UNet's sample_size in pixels
    local native = (pipe.unet.config.sample_size or 64) * f
    if opts.width == 0 then opts.width = native end
    if opts.height == 0 then opts.height = native end
    local shape = {1, R.latent_channels(pipe), opts.height / f, opts.width / f}
    s:set_timesteps(steps)
    local latents = g:randn(shape) * s.init_noise_sigma
    local bar = R.progress(#s.timesteps, opts.quiet, "txt2img")
    local x = sampling.run{
      unet = pipe.unet, scheduler = s, timesteps_set = true, latents = latents,
      contexts = contexts, guidance = rule, generator = g, pad_context = R.padder(pipe),
      on_step = R.stepper(bar, pipe, opts),
    }
    bar.done()
    return R.finish(pipe, x, opts, recipe, model_path, seed)
  end,
}
