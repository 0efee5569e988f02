-- UNet through the Lua binding: golden outputs in both layouts, config
-- table, hooks (observe, kv_extend, errors), residuals, per-sample timesteps.
local T = require "testlib"
local lucid = require "lucid"
local core = require "lucid.core"

local dir = T.data("golden/tiny-a")
local G = lucid.safetensors.load(dir .. "/golden.safetensors")
local function read(path)
  local f = assert(io.open(path, "rb")); local s = f:read("*a"); f:close(); return s
end
local config_json = read(dir .. "/unet/config.json")

local function maxabs(t) return t:abs():max():item() end

local unet = core.unet_load_file(dir .. "/unet/diffusion_pytorch_model.safetensors", config_json)
local unet_ldm = core.unet_load_file(dir .. "/model_ldm.safetensors", config_json)

local function golden_case(u, name, layout, with_res)
  local opts
  if with_res then
    local res = {}
    for i = 0, 5 do res[#res + 1] = G[name .. "/down_res/" .. i] end
    opts = {down_residuals = res, mid_residual = G[name .. "/mid_res"]}
  end
  local y = u:forward(G[name .. "/sample"], G[name .. "/timestep"], G[name .. "/encoder_hidden_states"], opts)
  local ref = G[name .. (with_res and "/unet_out" or "/out")]
  local d, m = T.maxdiff(y, ref), maxabs(ref)
  print(string.format("# %-16s %-9s max|diff| %.3g rel %.3g", name, layout, d, d / m))
  T.truthy(d <= 1e-4 * m, name .. " " .. layout .. ": relative error " .. d / m)
end

T.case("golden, diffusers layout", function()
  for _, c in ipairs{"unet/t801", "unet/t1", "unet/t500_5"} do golden_case(unet, c, "diffusers") end
  golden_case(unet, "controlnet/t601", "diffusers", true)
end)

T.case("golden, single-file ldm layout", function()
  for _, c in ipairs{"unet/t801", "unet/t1", "unet/t500_5"} do golden_case(unet_ldm, c, "ldm") end
  golden_case(unet_ldm, "controlnet/t601", "ldm", true)
end)

T.case("config table and inferred config", function()
  local c = unet.config
  T.eq(c.in_channels, 4); T.eq(c.sample_size, 8); T.eq(c.cross_attention_dim, 32)
  T.eq(#c.block_out_channels, 2); T.eq(c.block_out_channels[2], 64)
  T.eq(c.num_attention_heads[1], 4)
  T.eq(c.down_block_types[1], "CrossAttnDownBlock2D"); T.eq(c.up_block_types[1], "UpBlock2D")
  T.eq(unet.num_skips, 6)
  -- without a config the heads follow the SD 1.x rule (8), the rest the shapes
  local inferred = core.unet_load_file(dir .. "/model_ldm.safetensors")
  T.eq(inferred.config.num_attention_heads[1], 8)
  T.eq(inferred.config.block_out_channels[1], 32)
  T.eq(inferred.config.layers_per_block[2], 2)
end)

T.case("sites", function()
  local s = unet:sites()
  T.eq(#s, 12)
  T.eq(s[1], "down_blocks.0.attentions.0.transformer_blocks.0.attn1")
  T.eq(s[2], "down_blocks.0.attentions.0.transformer_blocks.0.attn2")
  T.eq(s[5], "mid_block.attentions.0.transformer_blocks.0.attn1")
  T.eq(s[12], "up_blocks.1.attentions.2.transformer_blocks.0.attn2")
end)

local x, t, ctx = G["unet/t801/sample"], G["unet/t801/timestep"], G["unet/t801/encoder_hidden_states"]
local base = unet:forward(x, t, ctx)

T.case("observing hook: probabilities sum to 1 over keys", function()
  local seen, worst = {}, 0
  local h = unet:hook("*attn2", function(site, p)
    seen[#seen + 1] = site
    local s = p:shape()
    T.eq(#s, 4); T.eq(s[1], 2); T.eq(s[2], 4); T.eq(s[4], 77)
    local err = (p:sum(4) - 1):abs():max():item()
    if err > worst then worst = err end
  end)
  local y = unet:forward(x, t, ctx)
  h:remove()
  T.eq(#seen, 6)
  T.eq(seen[1], "down_blocks.0.attentions.0.transformer_blocks.0.attn2")
  print(string.format("# probabilities sum to 1 within %.3g", worst))
  T.truthy(worst <= 1e-5)
  T.truthy(T.maxdiff(y, base) <= 1e-5 * maxabs(base))
  -- removed: no more calls
  local n = #seen
  unet:forward(x, t, ctx)
  T.eq(#seen, n)
end)

T.case("identity kv_extend leaves the output unchanged", function()
  local calls = 0
  local h = unet:hook("*attn1", function(site, hidden)
    calls = calls + 1
    return hidden:clone()
  end, "kv_extend")
  local y = unet:forward(x, t, ctx)
  h:remove()
  T.eq(calls, 6)
  local d = T.maxdiff(y, base)
  print(string.format("# identity K/V extension: max|diff| %.3g", d))
  T.truthy(d <= 1e-5)
end)

T.case("kv_extend with other tokens changes the output", function()
  local h = unet:hook("down_blocks.0.*attn1", function(site, hidden)
    return hidden * 2
  end, "kv_extend")
  local y = unet:forward(x, t, ctx)
  h:remove()
  T.truthy(T.maxdiff(y, base) > 1e-3)
end)

T.case("replacing probabilities edits the attention", function()
  -- uniform attention over the keys: the result must differ from base
  local h = unet:hook("mid_block.*attn2", function(site, p)
    return p * 0 + 1 / p:shape()[4]
  end)
  local y = unet:forward(x, t, ctx)
  h:remove()
  T.truthy(T.maxdiff(y, base) > 1e-4)
end)

T.case("hook errors", function()
  T.raises(function() unet:hook("nowhere.*", function() end) end, "matches no attention site")
  T.raises(function() unet:hook("*attn2", function() end, "kv_extend") end, "self-attention")
  T.raises(function() unet:hook("*", function() end, "bogus") end, "unknown hook kind")
  local h = unet:hook("mid_block.*attn1", function() error("boom in hook") end)
  T.raises(function() unet:forward(x, t, ctx) end, "boom in hook")
  h:remove()
  local h2 = unet:hook("mid_block.*attn1", function() return 42 end)
  T.raises(function() unet:forward(x, t, ctx) end, "expected a tensor or nil")
  h2:remove()
  h2:remove() -- twice is harmless
  T.raises(function() unet:forward(x, t, ctx, 7) end, "opts: expected a table")
  T.eq(T.maxdiff(unet:forward(x, t, ctx), base), 0)
end)

T.case("zero residuals change nothing (bit-exact)", function()
  local res = {}
  for i = 0, 5 do res[#res + 1] = lucid.zeros(G["controlnet/t601/down_res/" .. i]:shape()) end
  local y = unet:forward(x, t, ctx, {down_residuals = res, mid_residual = lucid.zeros{2, 64, 4, 4}})
  T.eq(T.maxdiff(y, base), 0)
  table.remove(res)
  T.raises(function() unet:forward(x, t, ctx, {down_residuals = res}) end, "expected 6")
end)

T.case("per-sample timesteps equal separate forwards", function()
  local y = unet:forward(x, {801, 20}, ctx)
  local y0 = unet:forward(x:narrow(1, 1, 1), 801, ctx:narrow(1, 1, 1))
  local y1 = unet:forward(x:narrow(1, 2, 1), lucid.tensor{20}, ctx:narrow(1, 2, 1))
  T.truthy(T.maxdiff(y:narrow(1, 1, 1), y0) <= 1e-5)
  T.truthy(T.maxdiff(y:narrow(1, 2, 1), y1) <= 1e-5)
  -- a number equals the golden timestep tensor
  T.eq(T.maxdiff(unet:forward(x, 801, ctx), base), 0)
  T.raises(function() unet:forward(x, {1, 2, 3}, ctx) end, "timesteps")
end)

T.case("bad inputs", function()
  T.raises(function() unet:forward(lucid.zeros{1, 3, 8, 8}, 1, ctx) end, "expected [N,4,H,W]")
  T.raises(function() unet:forward(x, 1, lucid.zeros{2, 77, 16}) end, "context")
  T.raises(function() core.unet_load_file(dir .. "/vae/diffusion_pytorch_model.safetensors") end, "input_blocks")
  T.raises(function() core.unet_load_file(dir .. "/unet/diffusion_pytorch_model.safetensors", "{\"cross_attention_dim\": 48, \"block_out_channels\": [32, 64], \"attention_head_dim\": 4, \"down_block_types\": [\"CrossAttnDownBlock2D\", \"DownBlock2D\"], \"up_block_types\": [\"UpBlock2D\", \"CrossAttnUpBlock2D\"]}") end, "attn2.to_k.weight")
end)

T.done()
