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
    if not sys or sys.file_type(p) == "directory" then return p end
  end
  error("no bundled model found in " .. core.paths.models, 2)
end

--- lucid.load with a cache keyed by path (the REPL and batch jobs reuse
-- loaded models).
function M.load(path)
  local lucid = require "lucid"
  path = path or M.default_model()
  if not pipes[path] then pipes[path] = lucid.load(path) end
  return pipes[path], path
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

return M
