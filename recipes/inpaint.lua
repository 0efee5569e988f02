-- Inpainting: re-draw the white part of --mask, keep the rest.
--
-- Any UNet (4 input channels): masked latent blending, as diffusers'
-- legacy inpaint pipeline and A1111 do it. The image is encoded, noised to
-- --strength like img2img, and after every step the latents outside the
-- mask are replaced by the encoded image noised to the level the next step
-- starts from (the clean encoded image after the last step):
--   x = mask * x + (1 - mask) * add_noise(init_latents, noise, t_next)
--
-- An inpainting checkpoint (unet.config.in_channels == 9): the UNet sees
-- [latents, mask, masked image latents] concatenated along the channels
-- every step, as diffusers' StableDiffusionInpaintPipeline; the masked image
-- is the init image with the masked part set to mid grey (0 in [-1, 1]).
local R = require "lucid.recipe"
local sampling = require "lucid.sampling"

return {
  name = "inpaint",
  positional = "prompt", -- lucid run inpaint "a cat" ...
  description = "re-draw the masked part of an image (white = repaint)",
  options = {
    "model", "prompt", "negative", "seed", {"steps", default = 20}, "cfg",
    {"sampler", default = "euler_a"}, "schedule",
    {"init-image", required = true},
    {"mask", required = true},
    {"strength", default = 1.0, help = "how far the masked part is re-noised (1: fully, as a fresh image)"},
    {"width", default = 0, min = 0, help = "output width, multiple of 8 (0: the init image's, rounded down)"},
    {"height", default = 0, min = 0, help = "output height, multiple of 8 (0: the init image's, rounded down)"},
    "out", "latents_out", "rng", "negative_start",
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local w, h = R.size_for(opts, opts.init_image, "--init-image")
    local init = R.load_image(opts.init_image, "--init-image", w, h)
    -- the mask: mean of the channels, white (> 0.5) = repaint
    local mask = R.load_image(opts.mask, "--mask", w, h):mean(2, true):gt(0.5):to("f32")
    local pipe, model_path = R.load(opts.model)
    local seed = R.seed(opts.seed)
    opts.seed = seed
    opts.width, opts.height = w, h
    local steps = opts.steps
    local s = R.scheduler(pipe, opts)
    s:set_timesteps(steps)
    local g = lucid.generator(seed, opts.rng)
    local f = pipe.vae_scale_factor or 8
    local lmask = lucid.interpolate(mask, {size = {h / f, w / f}, mode = "nearest"})
    local nine = pipe.unet.config.in_channels == 9
    local in_ch = pipe.unet.config.in_channels
    if in_ch ~= 9 and in_ch ~= R.latent_channels(pipe) then
      R.fail(string.format("inpaint: the UNet takes %d input channels; expected %d (any model) or 9 (an inpainting model)",
        in_ch, R.latent_channels(pipe)))
    end
    local init_latents = pipe.vae:encode(init, {generator = g})
    local n = #s.timesteps
    local init_timestep = math.min(math.floor(steps * opts.strength + 1e-9), steps)
    local first = (steps - init_timestep) * (s.order or 1) + 1
    local x = init_latents
    if first <= n then
      if s.set_begin_index then s:set_begin_index(first) end
      local noise = g:randn(init_latents:shape())
      local extra, blend
      if nine then
        if opts.strength >= 1 then x = noise * s.init_noise_sigma
        else x = s:add_noise_at(init_latents, noise, first) end
        local masked = init * (1 - mask) + mask * 0.5
        extra = lucid.cat({lmask, pipe.vae:encode(masked)}, 2)
      else
        x = s:add_noise_at(init_latents, noise, first)
        local keep = 1 - lmask
        blend = function(i, t, xi)
          return xi * lmask + s:add_noise_at(init_latents, noise, i + 1) * keep
        end
      end
      local contexts, rule = R.guidance(pipe, opts, steps)
      local bar = R.progress(n - first + 1, opts.quiet, "inpaint")
      x = sampling.run{
        unet = pipe.unet, scheduler = s, timesteps_set = true, first = first, latents = x,
        contexts = contexts, guidance = rule, generator = g, pad_context = R.padder(pipe),
        extra_input = extra, blend = blend,
        on_step = R.stepper(bar, pipe, opts, first),
      }
      bar.done()
    end
    return R.finish(pipe, x, opts, recipe, model_path, seed)
  end,
}
