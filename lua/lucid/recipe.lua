--- Helpers the bundled recipes share: model loading with a cache, seeds,
-- prompt encoding with A1111 syntax, the progress bar, previews, decoding
-- and saving with provenance. Each is a few lines on purpose, so a recipe
-- that needs something else can inline and change it.
local M = {}

local pipes = {}

--- The bundled default model: models/toyworld when present, else the
-- small tiny-a pipeline.
function M.default_model()
  local core = require "lucid.core"
  local sys = core.sys
  for _, name in ipairs{"toyworld", "tiny-a"} do
    local p = core.paths.models .. "/" .. name
    if not sys or sys.file_type(p .. "/model_index.json") == "file" then return p end
  end
  error("no bundled model found in " .. core.paths.models, 2)
end

--- lucid.load with a cache keyed by path and the model's SHA-256 (the
-- REPL and batch jobs reuse loaded models; a checkpoint replaced under
-- the same name is loaded again). The hash is provenance.model_hash's,
-- itself cached by size and mtime, so a hit costs a stat.
function M.load(path)
  local lucid = require "lucid"
  path = path or M.default_model()
  local ok, h = pcall(require("lucid.provenance").model_hash, path)
  local key = path .. "\0" .. (ok and h or "")
  if not pipes[key] then
    for k, p in pairs(pipes) do
      -- the old version of a replaced file is not needed any more
      if k:sub(1, #path + 1) == path .. "\0" then
        pipes[k] = nil
        if type(p) == "table" and type(p.free) == "function" then pcall(p.free, p) end
      end
    end
    -- a bad --model is the user's input: its problem, no traceback
    local ok, p = pcall(lucid.load, path)
    if not ok then M.fail((tostring(p):gsub("^[^:\n]*%.lua:%d+: ", ""))) end
    pipes[key] = p
  end
  return pipes[key], path
end

--- A seed: the given one, or a fresh one from the clock when -1/nil.
function M.seed(seed)
  if seed == nil or seed < 0 then
    local lucid = require "lucid"
    local t = lucid.clock()
    return math.floor((t * 1e6) % 4294967296)
  end
  return seed
end

--- Progress on stderr: step, it/s and ETA; silent when stderr is not a
-- terminal or quiet is set.
function M.progress(n, quiet, label)
  local lucid = require "lucid"
  local sys = lucid.sys
  local tty = not quiet and sys and sys.isatty and sys.isatty(2)
  local t0 = lucid.clock()
  local bar = {}
  function bar.step(i)
    if not tty then return end
    local el = lucid.clock() - t0
    local rate = i / math.max(el, 1e-9)
    local eta = (n - i) / math.max(rate, 1e-9)
    local w = 30
    local fill = math.floor(w * i / n)
    io.stderr:write(string.format("\r%s [%s%s] %d/%d %.2f it/s ETA %ds ", label or "",
      string.rep("#", fill), string.rep(".", w - fill), i, n, rate, math.floor(eta + 0.5)))
    io.stderr:flush()
  end
  function bar.done()
    if tty then io.stderr:write("\n") end
  end
  return bar
end

--- Context tensors for a prompt with A1111 syntax (editing gives a
-- function of the step). `steps` is the number of sampling steps.
function M.context(pipe, text, steps, opts)
  local P = require "lucid.prompt"
  return (P.scheduled_context(pipe, text or "", steps, opts))
end

--- Pads contexts of different lengths with the empty prompt's embedding.
function M.padder(pipe)
  local P = require "lucid.prompt"
  local empty
  return function(ctx, len)
    empty = empty or P.encode(pipe, "")
    return P.pad_to(ctx, len, empty)
  end
end

--- A scheduler for the recipe's --sampler/--schedule.
function M.scheduler(pipe, opts)
  local lucid = require "lucid"
  local over = {}
  if opts.schedule == "karras" then over.use_karras_sigmas = true end
  return lucid.scheduler(opts.sampler or "euler_a", pipe, over)
end

--- Saves an image [1,3,H,W] in [0,1] with provenance text chunks.
function M.save_image(img, path, recipe, opts, info)
  local lucid = require "lucid"
  local prov = require "lucid.provenance"
  lucid.image.save(img, path, prov.png_text(recipe, opts, info))
end

--- Writes final latents (key "latents") when --latents-out is given.
function M.save_latents(latents, opts)
  if opts.latents_out then
    local lucid = require "lucid"
    lucid.safetensors.save(opts.latents_out, {latents = latents}, {format = "pt"})
  end
end

--- Information about a model for the provenance record.
function M.model_info(path)
  local prov = require "lucid.provenance"
  local name = path:gsub("/+$", ""):match("([^/]+)$"):gsub("%.safetensors$", "")
  local ok, h = pcall(prov.model_hash, path)
  return {model_name = name, model_sha256 = ok and h or nil}
end

local Failure = {__tostring = function(e) return e.msg end}

--- Stops the recipe with a message for the user (bad input, a missing
-- file): the host prints it without a Lua traceback.
function M.fail(msg)
  error(setmetatable({msg = msg}, Failure), 0)
end

--- Writes a TAESD preview of latents x to OUT.preview.png every
-- opts.preview steps (not at the last step: the real image follows).
-- TAESD is loaded on first use (pipe.taesd).
function M.preview(pipe, opts, i, n, x)
  if not opts.preview or opts.preview <= 0 or i % opts.preview ~= 0 or i >= n then return end
  local lucid = require "lucid"
  lucid.image.save(pipe.taesd:decode(x), opts.out .. ".preview.png")
end

--- on_step for sampling.run: advances the progress bar and writes
-- previews, counting from step `first` (img2img starts mid-schedule).
function M.stepper(bar, pipe, opts, first)
  first = first or 1
  return function(i, n, t, x)
    bar.step(i - first + 1)
    M.preview(pipe, opts, i - first + 1, n - first + 1, x)
  end
end

--- The common end of an image recipe: --latents-out, VAE decode, the PNG
-- with provenance and the "wrote" line. Returns the image.
function M.finish(pipe, x, opts, recipe, model_path, seed)
  M.save_latents(x, opts)
  local img = pipe.vae:decode(x)
  local info = M.model_info(model_path)
  info.seed = seed
  M.save_image(img, opts.out, recipe, opts, info)
  if not opts.quiet then io.stderr:write("wrote " .. opts.out .. " (seed " .. seed .. ")\n") end
  return img
end

--- Loads an image as [1,3,H,W] in [0,1], resized (bilinear) to w x h when
-- given and different. `what` names the option in errors.
function M.load_image(path, what, w, h)
  local lucid = require "lucid"
  if not path then M.fail(what .. ": missing (give an image file)") end
  local sys = lucid.sys
  if sys and sys.file_type(path) ~= "file" then M.fail(what .. ": cannot open " .. path .. ": no such file") end
  local ok, img = pcall(lucid.image.load, path)
  if not ok then M.fail(what .. ": " .. tostring(img)) end
  local s = img:shape()
  if w and h and (s[3] ~= h or s[4] ~= w) then
    img = lucid.interpolate(img, {size = {h, w}, mode = "bilinear"}):clamp(0, 1)
  end
  return img
end

--- Output size: the options when set (non-zero), else the image's, rounded
-- down to a multiple of 8 (the VAE's factor).
function M.size_for(opts, path, what)
  local lucid = require "lucid"
  local w, h = opts.width, opts.height
  if not w or w == 0 or not h or h == 0 then
    local img = M.load_image(path, what)
    local s = img:shape()
    w = (w and w > 0) and w or s[4] - s[4] % 8
    h = (h and h > 0) and h or s[3] - s[3] % 8
    if w < 8 or h < 8 then M.fail(what .. ": " .. path .. " is smaller than 8x8 pixels") end
  end
  return w, h
end

--- PSNR in dB of two images in [0,1] (inf when identical).
function M.psnr(a, b)
  local mse = ((a - b):square()):mean():item()
  if mse == 0 then return math.huge end
  return 10 * math.log10(1 / mse)
end

--- Latent channels of a pipe (4 for SD; the UNet's in_channels is 9 for
-- inpainting checkpoints, so it is not used).
function M.latent_channels(pipe)
  local vc = pipe.vae and pipe.vae.config
  return (vc and vc.latent_channels) or pipe.unet.config.out_channels or 4
end

--- Contexts and guidance rule for the usual options: the negative prompt
-- replaces the unconditional branch (CFG), or, with --negative-start,
-- delayed negative guidance (the empty prompt before that step).
function M.guidance(pipe, opts, steps)
  local guidance = require "lucid.guidance"
  local enc = {clip_skip = opts.clip_skip and opts.clip_skip > 1 and opts.clip_skip - 1 or nil}
  local contexts = {cond = M.context(pipe, opts.prompt, steps, enc)}
  local rule
  if opts.negative_start then
    contexts.empty = M.context(pipe, "", steps, enc)
    contexts.neg = M.context(pipe, opts.negative, steps, enc)
    rule = guidance.delayed_negative(opts.cfg, opts.negative_start)
  else
    contexts.uncond = M.context(pipe, opts.negative, steps, enc)
    rule = guidance.cfg(opts.cfg)
  end
  return contexts, rule
end

return M
