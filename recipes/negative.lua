-- Negative prompts compared: the same seed rendered three ways, side by side
-- in one grid PNG (left to right):
--   1. plain CFG:       e = e(empty) + s (e(prompt) - e(empty))
--   2. negative prompt: e = e(neg) + s (e(prompt) - e(neg))
--   3. general form:    e = e(empty) + s+ (e(prompt) - e(empty)) - s- (e(neg) - e(empty))
-- (3) equals (2) when s- = s+ - 1; its defaults (s+ = --cfg, s- = --cfg / 2)
-- push less away from the negative prompt than (2) does.
local R = require "lucid.recipe"
local guidance = require "lucid.guidance"
local sampling = require "lucid.sampling"

return {
  name = "negative",
  positional = "prompt", -- lucid run negative "a cat" ...
  description = "plain CFG vs negative prompt vs the general s+/s- form, side by side",
  options = {
    "model", "prompt", {"negative", required = true}, "seed", {"steps", default = 20}, "cfg",
    {"sampler", default = "euler_a"}, "schedule", {"width", default = 512},
    {"height", default = 512}, "out", "rng",
    {"s-pos", type = "number", help = "s+ of the general form (default: --cfg)"},
    {"s-neg", type = "number", help = "s- of the general form (default: --cfg / 2)"},
    {"labels", type = "flag", default = true, help = "caption each tile"},
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local pipe, model_path = R.load(opts.model)
    local seed = R.seed(opts.seed)
    opts.seed = seed
    local s_pos = opts.s_pos or opts.cfg
    local s_neg = opts.s_neg or opts.cfg / 2
    local steps = opts.steps
    local cond = R.context(pipe, opts.prompt, steps)
    local empty = R.context(pipe, "", steps)
    local neg = R.context(pipe, opts.negative, steps)
    local runs = {
      {label = string.format("CFG %g", opts.cfg), rule = guidance.cfg(opts.cfg),
       contexts = {cond = cond, uncond = empty}},
      {label = string.format("NEGATIVE %g", opts.cfg), rule = guidance.cfg(opts.cfg),
       contexts = {cond = cond, uncond = neg}},
      {label = string.format("S+%g S-%g", s_pos, s_neg), rule = guidance.general(s_pos, s_neg),
       contexts = {cond = cond, empty = empty, neg = neg}},
    }
    local f = pipe.vae_scale_factor or 8
    local shape = {1, R.latent_channels(pipe), opts.height / f, opts.width / f}
    local tiles, labels = {}, {}
    for k, r in ipairs(runs) do
      local s = R.scheduler(pipe, opts)
      s:set_timesteps(steps)
      -- a fresh generator per run: every tile starts from the same noise
      local g = lucid.generator(seed, opts.rng)
      local latents = g:randn(shape) * s.init_noise_sigma
      local bar = R.progress(#s.timesteps, opts.quiet, string.format("negative %d/3", k))
      local x = sampling.run{
        unet = pipe.unet, scheduler = s, timesteps_set = true, latents = latents,
        contexts = r.contexts, guidance = r.rule, generator = g, pad_context = R.padder(pipe),
        on_step = function(i, n, t, xi)
          bar.step(i)
          R.preview(pipe, opts, i, n, xi)
        end,
      }
      bar.done()
      tiles[k] = pipe.vae:decode(x)
      labels[k] = r.label
    end
    local img = require("lucid.grid").make(tiles, {labels = opts.labels and labels or nil})
    local info = R.model_info(model_path)
    info.seed = seed
    R.save_image(img, opts.out, recipe, opts, info)
    if not opts.quiet then
      io.stderr:write("wrote " .. opts.out .. " (seed " .. seed .. "; left to right: " ..
        table.concat(labels, " | ") .. ")\n")
    end
    return img
  end,
}
