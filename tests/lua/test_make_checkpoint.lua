-- tools/make_checkpoint.lua on the tiny architecture (the full-size SD 1.5
-- and 2.1 are in tests/sh/test_sd15.sh) and core.random_weights.
local T = require "testlib"
local lucid = require "lucid"
local core = require "lucid.core"

local src = os.getenv("LUCID_SRCDIR") or "."
local tool = dofile(src .. "/tools/make_checkpoint.lua")
local tmp = os.tmpname()
os.remove(tmp)

local function make(o)
  o.quiet = true
  o.dtype = o.dtype or "f16"
  o.rng = o.rng or "fast"
  o.seed = o.seed or 3
  return tool.run(o, lucid)
end

T.case("random_weights: scale, shift, dtype, deterministic for any thread count", function()
  local a = core.random_weights({300, 1000}, 7, 0.5, 1, "f32")
  T.eq(a:dtype(), "f32")
  T.near(a:mean():item(), 1, 0.005, "mean = shift")
  T.near(a:std():item(), 0.5, 0.005, "std = scale")
  T.eq(T.maxdiff(a, core.random_weights({300, 1000}, 7, 0.5, 1, "f32")), 0, "same seed")
  T.truthy(T.maxdiff(a, core.random_weights({300, 1000}, 8, 0.5, 1, "f32")) > 0.5, "another seed")
  -- f16/bf16 are the f32 values rounded
  local h = core.random_weights({300, 1000}, 7, 0.5, 1, "f16")
  T.eq(h:dtype(), "f16")
  T.eq(T.maxdiff(h, a:to("f16")), 0, "f16 = rounded f32")
  T.eq(T.maxdiff(core.random_weights({300, 1000}, 7, 0.5, 1, "bf16"), a:to("bf16")), 0, "bf16")
  local n = core.sys.threads()
  core.sys.set_threads(1)
  local one = core.random_weights({300, 1000}, 7, 0.5, 1, "f32")
  core.sys.set_threads(n)
  T.eq(T.maxdiff(a, one), 0, "1 thread vs " .. n)
  T.raises(function() core.random_weights({4}, 1, 1, 0, "i32") end, "not f32, f16 or bf16")
  T.raises(function() core.random_weights({4}, -1) end, "non-negative integer")
end)

T.case("tiny: single ldm file and diffusers folder give identical outputs", function()
  make{arch = "tiny", layout = "both", out = tmp}
  local f = lucid.safetensors.open(tmp .. "/model.safetensors")
  -- ldm numbering for 2 levels of 1 layer: downsample input_blocks.2.0.op,
  -- upsample of a block without attention at output_blocks.1.1.conv
  for _, k in ipairs{"model.diffusion_model.input_blocks.2.0.op.weight",
                     "model.diffusion_model.output_blocks.1.1.conv.weight",
                     "model.diffusion_model.output_blocks.3.1.proj_in.weight",
                     "first_stage_model.decoder.up.1.upsample.conv.weight",
                     "first_stage_model.decoder.mid.attn_1.q.weight",
                     "cond_stage_model.transformer.text_model.final_layer_norm.weight"} do
    T.truthy(f:has(k), "missing " .. k)
  end
  f:close()
  local folder = tmp .. "/diffusers"
  local function run(pipe)
    local ids = pipe.tokenizer:encode("a red cube")
    local h = pipe.text_encoder:forward(ids)
    local x = lucid.randn({1, 4, 8, 8}, 11)
    local r = {h = h, eps = pipe.unet:forward(x, 700, h), img = pipe.vae:decode(x)}
    pipe:free()
    return r
  end
  -- the tiny text encoder's head count cannot be inferred: the folder's configs
  local a = run(lucid.load(tmp .. "/model.safetensors", {config = folder}))
  local b = run(lucid.load(folder))
  for _, k in ipairs{"h", "eps", "img"} do
    T.eq(T.maxdiff(a[k], b[k]), 0, k)
    T.truthy(a[k]:std():item() > 1e-3, k .. " is not flat")
  end
end)

T.case("--rng torch: tensor k is torch.randn after manual_seed(seed * 65536 + k), scaled", function()
  make{arch = "tiny", layout = "single", rng = "torch", seed = 5, out = tmp .. "/torch.safetensors"}
  local w = lucid.safetensors.load(tmp .. "/torch.safetensors")
  -- first in name order: the position embedding (scale 0.02)
  local pos = w["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"]
  T.eq(T.maxdiff(pos, (lucid.randn({77, 32}, 5 * 65536 + 1) * 0.02):to("f16")), 0, "position embedding")
  T.eq(pos:dtype(), "f16")
end)

T.case("bad options", function()
  T.raises(function() make{arch = "tiny", layout = "single", out = tmp .. "/x.bin"} end, "must end in .safetensors")
  T.raises(function() make{arch = "sd21", layout = "diffusers", out = tmp .. "/x"} end, "single file only")
end)

os.execute("rm -rf '" .. tmp .. "'")
T.done()
