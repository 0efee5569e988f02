-- ControlNet: txt2img (or img2img with --init-image) steered by one or
-- more ControlNets, as diffusers' StableDiffusionControlNetPipeline /
-- MultiControlNetModel. Each --controlnet takes the --control-image,
-- --control-scale, --control-start/--control-end and --preprocess given at
-- the same position (or the single one given for all). Control images are
-- preprocessed (Canny as OpenCV, gray, invert) and resized to the output
-- size with PIL's LANCZOS, as diffusers' control image processor. The
-- ControlNets see both guidance branches, or with --guess-mode only the
-- conditional one (the others get no residual), with diffusers' logspace
-- scales over the residuals.
local R = require "lucid.recipe"
local sampling = require "lucid.sampling"
local controlnet = require "lucid.controlnet"

local function per_net(list, n, what)
  if #list == 1 and n > 1 then
    local r = {}
    for k = 1, n do r[k] = list[1] end
    return r
  end
  if #list ~= n then
    R.fail(string.format("%s: given %d times for %d ControlNets (give it once or once per --controlnet)",
                         what, #list, n))
  end
  return list
end

return {
  name = "controlnet",
  positional = "prompt", -- lucid run controlnet "a cat" ...
  description = "generate an image guided by ControlNets (edges, line art, ...)",
  options = {
    "model", "prompt", "negative", "seed", {"steps", default = 20}, "cfg",
    {"sampler", default = "euler_a"}, "schedule",
    {"controlnet", required = true},
    {"control-image", ["repeat"] = true, required = true,
      help = "conditioning image, one per --controlnet or one for all"},
    {"control-scale", ["repeat"] = true, default = {1.0},
      help = "conditioning scale, one per --controlnet or one for all"},
    {"control-start", type = "number", ["repeat"] = true, default = {0}, min = 0, max = 1,
      help = "fraction of the steps where each ControlNet starts"},
    {"control-end", type = "number", ["repeat"] = true, default = {1}, min = 0, max = 1,
      help = "fraction of the steps where each ControlNet stops"},
    {"guess-mode", type = "flag", help = "ControlNets see only the conditional branch (diffusers' guess mode)"},
    {"preprocess", type = "string", ["repeat"] = true, default = {"none"},
      choices = {"none", "canny", "gray", "invert"},
      help = "turn each control image into a condition: canny edges, gray, invert (line art)"},
    {"canny-low", type = "number", default = 100, min = 0, help = "Canny low threshold (OpenCV units)"},
    {"canny-high", type = "number", default = 200, min = 0, help = "Canny high threshold (OpenCV units)"},
    {"canny-blur", type = "number", default = 0, min = 0, help = "Gaussian blur sigma before Canny (0: none)"},
    {"init-image", help = "starting image: img2img with ControlNets"},
    "strength",
    {"width", default = 0, min = 0, help = "output width, multiple of 8 (0: the first control image's, rounded down)"},
    {"height", default = 0, min = 0, help = "output height, multiple of 8 (0: the first control image's, rounded down)"},
    "out", "latents_out", "rng", "negative_start",
    {"save-control", type = "path", record = false, help = "also save the first preprocessed control image here"},
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local n = #opts.controlnet
    local paths = per_net(opts.control_image, n, "--control-image")
    local scales = per_net(opts.control_scale, n, "--control-scale")
    local starts = per_net(opts.control_start, n, "--control-start")
    local stops = per_net(opts.control_end, n, "--control-end")
    local preps = per_net(opts.preprocess, n, "--preprocess")
    for k = 1, n do
      if starts[k] >= stops[k] then
        R.fail(string.format("--control-start %g must be below --control-end %g", starts[k], stops[k]))
      end
    end
    local w, h = R.size_for(opts, paths[1], "--control-image")
    opts.width, opts.height = w, h
    local images = {}
    for k = 1, n do
      local img = R.load_image(paths[k], "--control-image")
      img = controlnet.preprocess(img, preps[k],
                                  {low = opts.canny_low, high = opts.canny_high, blur = opts.canny_blur})
      images[k] = controlnet.prepare_image(img, w, h)
    end
    if opts.save_control then lucid.image.save(images[1], opts.save_control) end
    local pipe, model_path = R.load(opts.model)
    local nets = {}
    for k, p in ipairs(opts.controlnet) do
      local ok, c = pcall(lucid.controlnet, p)
      if not ok then R.fail("--controlnet: " .. tostring(c)) end
      nets[k] = c
    end
    local seed = R.seed(opts.seed)
    opts.seed = seed
    local steps = opts.steps
    local s = R.scheduler(pipe, opts)
    s:set_timesteps(steps)
    local g = lucid.generator(seed, opts.rng)
    local f = pipe.vae_scale_factor or 8
    local nt = #s.timesteps
    local first, x = 1, nil
    if opts.init_image then
      -- img2img as the img2img recipe (diffusers' get_timesteps)
      local init = R.load_image(opts.init_image, "--init-image", w, h)
      local init_latents = pipe.vae:encode(init, {generator = g})
      local init_timestep = math.min(math.floor(steps * opts.strength + 1e-9), steps)
      first = (steps - init_timestep) * (s.order or 1) + 1
      x = init_latents
      if first <= nt then
        if s.set_begin_index then s:set_begin_index(first) end
        x = s:add_noise_at(init_latents, g:randn(init_latents:shape()), first)
      end
    else
      x = g:randn({1, R.latent_channels(pipe), h / f, w / f}) * s.init_noise_sigma
    end
    if first <= nt then
      local contexts, rule = R.guidance(pipe, opts, steps)
      local bar = R.progress(nt - first + 1, opts.quiet, "controlnet")
      x = sampling.run{
        unet = pipe.unet, scheduler = s, timesteps_set = true, first = first, latents = x,
        contexts = contexts, guidance = rule, generator = g, pad_context = R.padder(pipe),
        unet_opts = controlnet.unet_opts{
          nets = nets, images = images, scales = scales, start = starts, stop = stops,
          guess_mode = opts.guess_mode, scheduler = s, first = first,
        },
        on_step = R.stepper(bar, pipe, opts, first),
      }
      bar.done()
    end
    return R.finish(pipe, x, opts, recipe, model_path, seed)
  end,
}
