-- A first look at lucid without a model: load the bundled photo, blur it
-- with a Gaussian (a depthwise conv2d, separable: one pass down, one
-- across), shrink it, mix in its grayscale version (a 1x1 conv2d), and
-- write a PNG that records how it was made (`lucid replay OUT` re-runs it).
local core = require "lucid.core"

--- Normalised 1-d Gaussian of standard deviation sigma: radius ceil(3 sigma).
local function gaussian(sigma)
  local r = math.max(1, math.ceil(3 * sigma))
  local w, sum = {}, 0
  for i = -r, r do
    local v = math.exp(-(i * i) / (2 * sigma * sigma))
    w[#w + 1] = v
    sum = sum + v
  end
  for i = 1, #w do w[i] = w[i] / sum end
  return w, r
end

--- Blurs x [1,C,H,W] with a separable Gaussian, mirroring at the edges.
local function blur(lucid, x, sigma)
  if sigma <= 0 then return x end
  local w, r = gaussian(sigma)
  local c = x:shape()[2]
  local k = #w
  local vert, horiz = {}, {}
  for ch = 1, c do
    for i = 1, k do
      vert[(ch - 1) * k + i] = w[i]
      horiz[(ch - 1) * k + i] = w[i]
    end
  end
  local shape = x:shape()
  if shape[3] <= r or shape[4] <= r then
    error(string.format("demo: the image (%dx%d) is too small for --blur %g", shape[4], shape[3], sigma), 0)
  end
  local padded = lucid.pad(x, {r, r, r, r}, "reflect")
  local kv = lucid.tensor(vert):view{c, 1, k, 1}
  local kh = lucid.tensor(horiz):view{c, 1, 1, k}
  local y = lucid.conv2d(padded, kv, nil, {groups = c})
  return lucid.conv2d(y, kh, nil, {groups = c})
end

--- out = (1 - g) * x + g * luma(x) on every channel, as one 1x1 conv.
local function gray_mix(lucid, x, g)
  local luma = {0.299, 0.587, 0.114} -- ITU-R BT.601, as PIL's convert("L")
  local m = {}
  for o = 1, 3 do
    for i = 1, 3 do
      m[#m + 1] = g * luma[i] + (o == i and (1 - g) or 0)
    end
  end
  return lucid.conv2d(x, lucid.tensor(m):view{3, 3, 1, 1})
end

return {
  name = "demo",
  description = "Blur, shrink and desaturate the bundled photo (no model needed); writes a PNG.",
  options = {
    {"image", type = "path", default = core.paths.home .. "/data/images/chelsea.png",
      help = "input image (PNG, JPEG or PPM)"},
    {"width", type = "int", default = 256, min = 8, max = 8192, help = "output width in pixels (the height keeps the aspect)"},
    {"blur", type = "number", default = 1.0, min = 0, max = 50,
      help = "Gaussian blur in output pixels (0: none beyond anti-aliasing)"},
    {"gray", type = "number", default = 0.5, min = 0, max = 1, help = "how much grayscale to mix in (0..1)"},
    {"out", type = "path", default = "demo.png", help = "output PNG"},
    "quiet",
  },
  run = function(opts, lucid, ctx)
    local img = lucid.image.load(opts.image)
    local shape = img:shape()
    local h, w = shape[3], shape[4]
    local scale = opts.width / w
    local out_h = math.max(1, math.floor(h * scale + 0.5))
    -- blur before shrinking: the anti-aliasing a bilinear resize lacks
    -- (sigma of half the shrink factor), plus the requested blur
    local sigma = opts.blur / scale
    if scale < 1 then sigma = math.sqrt(sigma * sigma + (0.5 / scale) ^ 2) end
    local x = blur(lucid, img, sigma)
    x = lucid.resize(x, out_h, opts.width, "bilinear")
    x = gray_mix(lucid, x, opts.gray)
    local R = require "lucid.recipe"
    R.save_image(x, opts.out, ctx, opts, {})
    if not opts.quiet then
      print(x)
      io.stderr:write(string.format("wrote %s (%dx%d)\n", opts.out, opts.width, out_h))
    end
    return 0
  end,
}
