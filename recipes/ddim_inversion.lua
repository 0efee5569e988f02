-- DDIM inversion: encode an image with the VAE (the latent mean), run the
-- DDIM sampler backwards (DDIMInverseScheduler) with the source prompt to
-- the noise that would generate it, then forwards again with DDIM. With
-- the source prompt this reconstructs the image (its PSNR against the input
-- is printed); with --target-prompt the same noise is denoised towards
-- another prompt, an edit that keeps the layout. --cfg defaults to 1 (the
-- conditional branch only), where inversion is most faithful.
local R = require "lucid.recipe"
local guidance = require "lucid.guidance"
local sampling = require "lucid.sampling"

local recipe = {
  name = "ddim_inversion",
  description = "invert an image to noise with DDIM, reconstruct it (PSNR) or edit it with a target prompt",
  options = {
    "model", {"prompt", help = "the source prompt: what the image shows"}, "negative",
    {"target-prompt", type = "string", help = "denoise the inverted noise with this prompt instead (an edit)"},
    {"steps", default = 50}, {"cfg", default = 1.0},
    {"edit-cfg", type = "number", help = "guidance scale of the --target-prompt pass (default: --cfg)"},
    {"init-image", required = true},
    {"width", default = 0, min = 0, help = "working width, multiple of 8 (0: the image's, rounded down)"},
    {"height", default = 0, min = 0, help = "working height, multiple of 8 (0: the image's, rounded down)"},
    "out", "latents_out",
    {"inverted-out", type = "path", record = false, help = "also save the inverted latents (key 'latents') to this .safetensors file"},
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
}

--- The two passes on latents, for recipes and tests:
-- invert(pipe, latents, contexts, steps, cfg, on_step) -> noise latents
-- (contexts: cond = the source prompt, uncond = the negative prompt)
function recipe.invert(pipe, latents, contexts, steps, cfg, on_step)
  local lucid = require "lucid"
  local inv = lucid.scheduler("ddim_inverse", pipe)
  return sampling.run{
    unet = pipe.unet, scheduler = inv, steps = steps, latents = latents,
    contexts = contexts, guidance = guidance.cfg(cfg), on_step = on_step,
    pad_context = R.padder(pipe),
  }
end

--- generate(pipe, noise, contexts, steps, cfg, on_step) -> latents (DDIM)
function recipe.generate(pipe, noise, contexts, steps, cfg, on_step)
  local lucid = require "lucid"
  local s = lucid.scheduler("ddim", pipe)
  return sampling.run{
    unet = pipe.unet, scheduler = s, steps = steps, latents = noise,
    contexts = contexts, guidance = guidance.cfg(cfg), on_step = on_step,
    pad_context = R.padder(pipe),
  }
end

function recipe.run(opts, lucid, ctx)
  local w, h = R.size_for(opts, opts.init_image, "--init-image")
  local img = R.load_image(opts.init_image, "--init-image", w, h)
  local pipe, model_path = R.load(opts.model)
  opts.width, opts.height = w, h
  local steps = opts.steps
  local src = {cond = R.context(pipe, opts.prompt, steps), uncond = R.context(pipe, opts.negative, steps)}
  local latents = pipe.vae:encode(img)
  local total = steps * (opts.target_prompt and 3 or 2)
  local done = 0
  local bar = R.progress(total, opts.quiet, "ddim_inversion")
  local function tick(i, n, t, x)
    done = done + 1
    bar.step(done)
    R.preview(pipe, opts, done, total, x)
  end
  local noise = recipe.invert(pipe, latents, src, steps, opts.cfg, tick)
  if opts.inverted_out then lucid.safetensors.save(opts.inverted_out, {latents = noise}, {format = "pt"}) end
  local rec = recipe.generate(pipe, noise, src, steps, opts.cfg, tick)
  local rec_img = pipe.vae:decode(rec)
  -- against the input and against the VAE round trip, which bounds what
  -- any latent-space method can reach
  local psnr = R.psnr(rec_img, img)
  local psnr_vae = R.psnr(pipe.vae:decode(latents), img)
  local out_img, out_lat = rec_img, rec
  if opts.target_prompt then
    local tgt = {cond = R.context(pipe, opts.target_prompt, steps), uncond = src.uncond}
    out_lat = recipe.generate(pipe, noise, tgt, steps, opts.edit_cfg or opts.cfg, tick)
    out_img = pipe.vae:decode(out_lat)
  end
  bar.done()
  R.save_latents(out_lat, opts)
  local info = R.model_info(model_path)
  R.save_image(out_img, opts.out, ctx, opts, info)
  io.write(string.format("reconstruction PSNR %.2f dB (VAE round trip alone: %.2f dB)\n", psnr, psnr_vae))
  if not opts.quiet then
    io.stderr:write("wrote " .. opts.out .. (opts.target_prompt and " (edited)" or " (reconstruction)") .. "\n")
  end
  return 0
end

return recipe
