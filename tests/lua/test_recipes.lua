-- The bundled recipes on the tiny-a model at 64x64 with a few steps: each
-- writes a PNG of the right size with provenance, and each does what it
-- claims, checked against an independent computation (the VAE round trip,
-- the encoded image outside the mask, the identity of the general form
-- with CFG when s- = s+ - 1, delayed negative at the extremes, the golden
-- DDIM inversion).
local T = require "testlib"
local lucid = require "lucid"
local cli = require "lucid.cli"

local model = T.data("golden/tiny-a")
local G = lucid.safetensors.load(model .. "/golden.safetensors")
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p '" .. tmp .. "'")
local function path(name) return tmp .. "/" .. name end

-- runs a recipe in this process; returns the exit status
local function run(name, argv)
  local a = {"--model", model, "--quiet"}
  for _, v in ipairs(argv) do a[#a + 1] = v end
  return cli.run(name, a)
end

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function shape_of(p)
  return table.concat(lucid.image.load(p):shape(), "x")
end

-- tile k (1-based) of a one-row grid of w x h tiles with a 4-pixel gap
local function tile(img, k, w, h)
  return img:narrow(3, 5, h):narrow(4, 5 + (k - 1) * (w + 4), w)
end

-- an input image: the golden VAE input (u8, so PNG keeps it exactly)
local init_png = path("init.png")
local init = G["vae/image_u8"]:to("f32"):permute{3, 1, 2}:unsqueeze(1) / 255
lucid.image.save(init, init_png)
local mask_png = path("mask.png")
local mask = lucid.zeros(1, 3, 64, 64)
mask:narrow(3, 17, 32):narrow(4, 17, 32):fill_(1)
lucid.image.save(mask, mask_png)
local pipe = lucid.load(model)

T.case("txt2img: PNG of the asked size with A1111 parameters and the lucid record", function()
  local out = path("t2i.png")
  T.eq(run("txt2img", {"--prompt", "a red circle", "--negative", "blue", "--seed", "5", "--steps", "3",
                       "--width", "64", "--height", "48", "--sampler", "euler", "--out", out}), 0)
  T.eq(shape_of(out), "1x3x48x64")
  local text = lucid.image.read_text(out)
  T.truthy(text.parameters:find("^a red circle\nNegative prompt: blue\n"), text.parameters)
  for _, want in ipairs{"Steps: 3", "Sampler: Euler,", "CFG scale: 7.5", "Seed: 5", "Size: 64x48", "Model hash: "} do
    T.truthy(text.parameters:find(want, 1, true), "parameters lack '" .. want .. "': " .. text.parameters)
  end
  local rec = lucid.json.decode(text.lucid)
  T.eq(rec.recipe, "txt2img")
  T.eq(rec.options.seed, 5)
  T.eq(rec.options.steps, 3)
  T.truthy(type(rec.recipe_sha256) == "string" and #rec.recipe_sha256 == 64, "recipe hash recorded")
end)

T.case("img2img: strength 0 is the VAE round trip of the (sampled) encoding", function()
  local out, lat = path("i2i0.png"), path("i2i0.safetensors")
  T.eq(run("img2img", {"--init-image", init_png, "--strength", "0", "--seed", "9", "--steps", "4",
                       "--out", out, "--latents-out", lat}), 0)
  -- the recipe samples the latent distribution with the seed's generator
  local want = pipe.vae:encode(init, {generator = lucid.generator(9)})
  T.truthy(T.maxdiff(lucid.safetensors.load(lat).latents, want) <= 1e-5, "latents are the encoded image")
  local img = lucid.image.load(out)
  T.truthy(T.maxdiff(img, pipe.vae:decode(want)) <= 0.5 / 255 + 1e-6, "image is the decoded encoding")
  T.eq(lucid.image.read_text(out).parameters:match("Denoising strength: ([%d.]+)"), "0")
end)

T.case("img2img: strength 0.5 starts half-way (diffusers' get_timesteps)", function()
  local lat = path("i2i5.safetensors")
  T.eq(run("img2img", {"--init-image", init_png, "--strength", "0.5", "--seed", "9", "--steps", "4",
                       "--sampler", "ddim", "--cfg", "1", "--prompt", "x", "--out", path("i2i5.png"),
                       "--latents-out", lat}), 0)
  -- the same two DDIM steps written out here: noise to t_start, then step
  local s = lucid.scheduler("ddim", pipe)
  s:set_timesteps(4)
  local g = lucid.generator(9)
  local x0 = pipe.vae:encode(init, {generator = g})
  local noise = g:randn(x0:shape())
  local ts = s.timesteps
  local x = s:add_noise(x0, noise, ts[3])
  local ctx = pipe:encode_prompt("x")
  for i = 3, 4 do x = s:step(pipe.unet:forward(x, ts[i], ctx), ts[i], x) end
  T.truthy(T.maxdiff(lucid.safetensors.load(lat).latents, x) <= 1e-4 * x:abs():max():item(), "two DDIM steps from t_start")
end)

T.case("inpaint: the unmasked latents are the encoded image, the masked part changes", function()
  local out, lat = path("inp.png"), path("inp.safetensors")
  T.eq(run("inpaint", {"--init-image", init_png, "--mask", mask_png, "--seed", "3", "--steps", "4",
                       "--prompt", "a cat", "--out", out, "--latents-out", lat}), 0)
  T.eq(shape_of(out), "1x3x64x64")
  local want = pipe.vae:encode(init, {generator = lucid.generator(3)})
  local got = lucid.safetensors.load(lat).latents
  local lm = lucid.interpolate(mask:narrow(2, 1, 1), {size = {8, 8}})
  T.truthy(((got - want):abs() * (1 - lm)):max():item() <= 1e-6, "latents outside the mask kept")
  T.truthy(((got - want):abs() * lm):max():item() > 0.05, "latents inside the mask re-drawn")
  -- pixels: the decoder mixes neighbours (and tiny-a's random VAE mixes a
  -- lot), so outside the mask the output is only closer to the round trip
  local ref = pipe.vae:decode(want)
  local d = (lucid.image.load(out) - ref):abs()
  local m = mask:narrow(2, 1, 1)
  local outside = (d * (1 - m)):sum():item() / ((1 - m):sum():item() * 3)
  local inside = (d * m):sum():item() / (m:sum():item() * 3)
  T.truthy(outside < inside, string.format("outside error %.3f < inside %.3f", outside, inside))
end)

T.case("inpaint: a 9-channel UNet gets [latents, mask, masked image latents]", function()
  -- an inpainting-shaped UNet with random weights in the cached pipe
  local R = require "lucid.recipe"
  local p = R.load(model)
  local cfg = lucid.json.decode(io.open(model .. "/unet/config.json"):read("*a"))
  cfg.in_channels = 9
  local u9 = require("lucid.core").unet_random(lucid.json.encode(cfg), 5)
  local saved = p.unet
  p.unet = u9
  local lat = path("inp9.safetensors")
  local ok, status = pcall(run, "inpaint", {"--init-image", init_png, "--mask", mask_png, "--seed", "6",
    "--steps", "1", "--sampler", "ddim", "--cfg", "1", "--prompt", "a cat", "--out", path("inp9.png"),
    "--latents-out", lat})
  p.unet = saved
  T.truthy(ok, tostring(status))
  T.eq(status, 0)
  -- the one DDIM step written out as diffusers' StableDiffusionInpaintPipeline
  local s = lucid.scheduler("ddim", p)
  s:set_timesteps(1)
  local g = lucid.generator(6)
  local il = p.vae:encode(init, {generator = g})
  local x = g:randn(il:shape()) * s.init_noise_sigma -- strength 1: pure noise
  local m = mask:narrow(2, 1, 1)
  local masked = init * (1 - m) + m * 0.5 -- 0 in [-1, 1] under the mask
  local inp = lucid.cat({x, lucid.interpolate(m, {size = {8, 8}}), p.vae:encode(masked)}, 2)
  local t = s.timesteps[1]
  local want = s:step(u9:forward(inp, t, p:encode_prompt("a cat")), t, x)
  local got = lucid.safetensors.load(lat).latents
  T.truthy(T.maxdiff(got, want) <= 1e-5 * want:abs():max():item(), "latents as the 9-channel pipeline")
end)

T.case("negative: 3 tiles; CFG tile = txt2img; general form with s- = s+ - 1 = negative tile", function()
  local out = path("neg.png")
  T.eq(run("negative", {"--prompt", "a cat", "--negative", "a dog", "--seed", "4", "--steps", "3",
                        "--width", "64", "--height", "64", "--s-pos", "7.5", "--s-neg", "6.5",
                        "--no-labels", "--out", out}), 0)
  local img = lucid.image.load(out)
  T.eq(table.concat(img:shape(), "x"), "1x3x72x208") -- 3 tiles of 64 and 4 gaps of 4
  local t1, t2, t3 = tile(img, 1, 64, 64), tile(img, 2, 64, 64), tile(img, 3, 64, 64)
  T.eq(run("txt2img", {"--prompt", "a cat", "--seed", "4", "--steps", "3", "--width", "64", "--height", "64",
                       "--out", path("neg_ref.png")}), 0)
  T.truthy(T.maxdiff(t1, lucid.image.load(path("neg_ref.png"))) <= 1 / 255 + 1e-6, "tile 1 is plain txt2img")
  T.truthy(T.maxdiff(t2, t3) <= 2 / 255 + 1e-6, "general form with s- = s+ - 1 equals CFG with the negative")
  T.truthy(T.maxdiff(t1, t2) > 4 / 255, "the negative prompt changes the image")
  -- with labels the grid grows by the caption strip
  T.eq(run("negative", {"--prompt", "a cat", "--negative", "a dog", "--seed", "4", "--steps", "1",
                        "--width", "64", "--height", "64", "--out", path("neg2.png")}), 0)
  T.eq(shape_of(path("neg2.png")), "1x3x" .. (72 + 5 + 4) .. "x208") -- 5-pixel font, 2+2 margin
end)

T.case("delayed_negative: start 0 = negative prompt, start = steps = no negative; CSV and plot", function()
  local out = path("dn.png")
  T.eq(run("delayed_negative", {"--prompt", "a cat on a sofa", "--negative", "a dog", "--tokens", "dog,cat",
                                "--seed", "4", "--steps", "3", "--width", "64", "--height", "64",
                                "--sampler", "euler_a", "--starts", "0,3", "--no-labels", "--out", out}), 0)
  local img = lucid.image.load(out)
  T.eq(table.concat(img:shape(), "x"), "1x3x72x140")
  local neg = lucid.image.load(path("neg.png")) -- same prompt, seed, steps and sampler
  T.eq(run("negative", {"--prompt", "a cat on a sofa", "--negative", "a dog", "--seed", "4", "--steps", "3",
                        "--width", "64", "--height", "64", "--no-labels", "--out", path("neg3.png")}), 0)
  neg = lucid.image.load(path("neg3.png"))
  T.truthy(T.maxdiff(tile(img, 1, 64, 64), tile(neg, 2, 64, 64)) <= 1 / 255 + 1e-6, "start 0 = CFG with the negative prompt")
  T.truthy(T.maxdiff(tile(img, 2, 64, 64), tile(neg, 1, 64, 64)) <= 1 / 255 + 1e-6, "start 3 of 3 = plain CFG")
  -- the CSV: a header and one row per step, r_t = neg norm / pos* norm
  local f = assert(io.open(path("dn.csv")))
  local header = f:read("*l")
  T.truthy(header:find("^step,t,r_t,neg:dog,pos%*:[^,]+,pos:cat$"), header)
  local rows = 0
  for line in f:lines() do
    rows = rows + 1
    local v = {}
    for x in line:gmatch("[^,]+") do v[#v + 1] = tonumber(x) end
    T.eq(v[1], rows, "step column")
    local r = v[3]
    T.truthy(r == r and r > 0 and r < math.huge, "r_t finite and positive: " .. line)
    T.near(r, v[4] / v[5], 1e-6 * r, "r_t = neg / pos*")
  end
  f:close()
  T.eq(rows, 3)
  T.eq(shape_of(path("dn.rt.png")), "1x3x320x480")
end)

T.case("delayed_negative: the r_t norms are the attention columns' norms", function()
  -- one step with DDIM: compute the norms here from a hook of our own
  T.eq(run("delayed_negative", {"--prompt", "a cat", "--negative", "dog", "--tokens", "dog",
                                "--seed", "1", "--steps", "1", "--width", "64", "--height", "64",
                                "--sampler", "ddim", "--starts", "0", "--out", path("dn1.png")}), 0)
  local f = assert(io.open(path("dn1.csv")))
  local header = f:read("*l")
  local row = f:read("*l")
  f:close()
  local v = {}
  for x in row:gmatch("[^,]+") do v[#v + 1] = tonumber(x) end
  local pos_name = header:match("pos%*:([^,]+)")
  -- token positions: BOS a cat EOS / BOS dog EOS
  local col = ({a = 2, cat = 3})[pos_name]
  T.truthy(col, "pos* is a prompt token: " .. tostring(pos_name))
  local neg_sum, pos_sum = 0, 0
  local h = pipe.unet:hook("*attn2", function(site, p)
    neg_sum = neg_sum + p:select(1, 1):mean(1):select(2, 2):norm():item()
    pos_sum = pos_sum + p:select(1, 2):mean(1):select(2, col):norm():item()
  end)
  local s = lucid.scheduler("ddim", pipe)
  s:set_timesteps(1)
  local x = lucid.generator(1):randn{1, 4, 8, 8}
  pipe.unet:forward(lucid.cat({x, x}, 1), s.timesteps[1],
    lucid.cat({pipe:encode_prompt("dog"), pipe:encode_prompt("a cat")}, 1))
  h:remove()
  T.near(v[4], neg_sum, 1e-4 * neg_sum, "negative token norm")
  T.near(v[5], pos_sum, 1e-4 * pos_sum, "pos* norm")
end)

T.case("ddim_inversion: inverted and reconstructed latents as the golden run", function()
  local c
  for _, k in ipairs(lucid.json.decode(io.open(model .. "/golden.json"):read("*a")).cases) do
    if k.kind == "ddim_inversion" then c = k end
  end
  local inv, rec = path("inv.safetensors"), path("rec.safetensors")
  T.eq(run("ddim_inversion", {"--prompt", "a painting of a fox in the snow, trending on artstation",
                              "--init-image", init_png, "--steps", tostring(c.steps), "--out", path("inv.png"),
                              "--inverted-out", inv, "--latents-out", rec}), 0)
  local function rel(a, b) return T.maxdiff(a, b) / b:abs():max():item() end
  local e1 = rel(lucid.safetensors.load(inv).latents, G[c.outputs.inverted])
  local e2 = rel(lucid.safetensors.load(rec).latents, G[c.outputs.reconstructed])
  T.truthy(e1 <= 1e-4 and e2 <= 1e-4, string.format("rel errors %.3g, %.3g", e1, e2))
  T.eq(shape_of(path("inv.png")), "1x3x64x64")
  T.truthy(lucid.image.read_text(path("inv.png")).lucid:find('"ddim_inversion"', 1, true), "provenance")
end)

T.case("bad arguments: clear messages, no output file", function()
  local out = path("bad.png")
  T.eq(run("txt2img", {"--sampler", "nope", "--out", out}), 2)
  T.eq(run("txt2img", {"--steps", "0", "--out", out}), 2)
  T.eq(run("img2img", {"--init-image", init_png, "--strength", "1.5", "--out", out}), 2)
  T.eq(run("img2img", {"--out", out}), 2)
  T.eq(run("inpaint", {"--init-image", init_png, "--out", out}), 2)
  T.raises(function() run("img2img", {"--init-image", path("missing.png"), "--out", out}) end,
    "--init-image: cannot open " .. path("missing.png"))
  T.raises(function() run("delayed_negative", {"--negative", "dog", "--starts", "0,abc", "--out", out}) end,
    "--starts: 'abc'")
  T.raises(function() run("delayed_negative", {"--prompt", "a cat", "--negative", "dog", "--tokens", "horse",
                                               "--steps", "1", "--width", "64", "--height", "64", "--out", out}) end,
    "none of --tokens")
  T.truthy(not exists(out), "no output written")
end)

T.case("plot: nice ticks, labels, a line where the data are", function()
  local plot = require "lucid.plot"
  local t, step = plot.ticks(0, 1, 5)
  T.eq(step, 0.2)
  T.eq(#t, 6)
  T.near(t[6], 1, 1e-12)
  local t2, step2 = plot.ticks(13, 87, 5)
  T.eq(step2, 20)
  T.eq(table.concat(t2, ","), "20,40,60,80")
  T.eq(plot.format_tick(0.4, 0.2), "0.4")
  T.eq(plot.format_tick(40, 20), "40")
  -- a flat series at y = 1 between two points at 0 and 2: its pixels are in
  -- the series colour, on the middle row of the plot area
  local img = plot.line({x = {0, 1, 2}, y = {1, 1, 1}, color = {1, 0, 0}}, {width = 200, height = 120, ymin = 0, ymax = 2})
  T.eq(table.concat(img:shape(), "x"), "1x3x120x200")
  local red = (img:narrow(2, 1, 1) - img:narrow(2, 2, 1)):gt(0.9):to("f32") -- [1,1,H,W]
  local rows = red:sum(4):view{120}:totable()
  local best, bi = 0, 0
  for i, v in ipairs(rows) do if v > best then best, bi = v, i end end
  T.truthy(best > 100, "a horizontal red line: " .. best .. " pixels on row " .. bi)
  T.raises(function() plot.line({y = {1, 2}}, {width = 20, height = 20}) end, "too small")
end)

os.execute("rm -rf '" .. tmp .. "'")
T.done()
