-- The bundled toyworld model draws what the prompt says: txt2img through
-- the recipe (default sampler, steps, CFG and native 64x64 size) at fixed
-- seeds, then each pixel is classified by its nearest colour of the
-- training palette (tools/toyworld/shapes.py) and counted in the regions
-- the prompt names. Every margin holds for each of the six seeds (values
-- seen: centre and border 1.00, a shape's colour 5%..17% of the picture);
-- the negative prompt's effect is weaker and checked summed over the seeds
-- (yellow 0.57 -> 0.37). Placement words are not checked: the model does
-- not follow them reliably (models/toyworld/README.md).
local T = require "testlib"
local lucid = require "lucid"
local cli = require "lucid.cli"

local src = os.getenv("LUCID_SRCDIR") or "."
local model = src .. "/models/toyworld"
local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p '" .. tmp .. "'")

-- the palette of shapes.py (RGB 0..255)
local PAL = {red = {230, 25, 25}, green = {25, 190, 40}, blue = {30, 60, 230},
             yellow = {245, 225, 20}, white = {245, 245, 245}, black = {15, 15, 15}}
local NAMES = {"red", "green", "blue", "yellow", "white", "black"}

local function nearest(r, g, b)
  local best, bd = nil, math.huge
  for _, n in ipairs(NAMES) do
    local c = PAL[n]
    local d = (r - c[1]) ^ 2 + (g - c[2]) ^ 2 + (b - c[3]) ^ 2
    if d < bd then best, bd = n, d end
  end
  return best
end

-- where shapes.py puts a shape named by its place (pixel centre, 0-based)
local PLACE = {left = {16, 32}, right = {48, 32}, center = {32, 32}, top = {32, 16}, bottom = {32, 48}}

local n_runs = 0
local function draw(prompt, negative, seed)
  n_runs = n_runs + 1
  local out = string.format("%s/%d.png", tmp, n_runs)
  T.eq(cli.run("txt2img", {"--model", model, "--quiet", "--prompt", prompt, "--negative", negative or "",
                           "--seed", tostring(seed), "--out", out}), 0, "txt2img exit status")
  local img = lucid.image.load(out)
  T.eq(table.concat(img:shape(), "x"), "1x3x64x64", "native size")
  local t = img:totable()[1]
  local img_labels = {}
  for y = 1, 64 do
    local row = {}
    for x = 1, 64 do
      row[x] = nearest(t[1][y][x] * 255, t[2][y][x] * 255, t[3][y][x] * 255)
    end
    img_labels[y] = row
  end
  return img_labels
end

-- fraction of the 8x8 pixels around a place that have colour `name`
local function at(labels, place, name)
  local c, k = PLACE[place], 0
  for y = c[2] - 4, c[2] + 3 do
    for x = c[1] - 4, c[1] + 3 do
      if labels[y + 1][x + 1] == name then k = k + 1 end
    end
  end
  return k / 64
end

-- fraction of the 3-pixel frame of the picture that has colour `name`
local function border(labels, name)
  local k, n = 0, 0
  for y = 1, 64 do
    for x = 1, 64 do
      if x <= 3 or x > 61 or y <= 3 or y > 61 then
        n = n + 1
        if labels[y][x] == name then k = k + 1 end
      end
    end
  end
  return k / n
end

local function atleast(v, min, what)
  T.truthy(v >= min, string.format("%s: %.2f < %.2f", what, v, min))
end

local function atmost(v, max, what)
  T.truthy(v <= max, string.format("%s: %.2f > %.2f", what, v, max))
end

T.case("the default model is toyworld", function()
  local R = require "lucid.recipe"
  T.truthy(R.default_model():find("/models/toyworld$"), R.default_model())
end)

-- fraction of the whole picture that has colour `name`
local function whole(labels, name)
  local k = 0
  for y = 1, 64 do
    for x = 1, 64 do
      if labels[y][x] == name then k = k + 1 end
    end
  end
  return k / 4096
end

local SEEDS = {1, 2, 3, 4, 5, 6}
local VERBOSE = os.getenv("TOYWORLD_VERBOSE")

local function show(fmt, ...)
  if VERBOSE then print(string.format(fmt, ...)) end
end

T.case("a red circle in the center, blue background: red centre, blue border", function()
  local p = "a red circle in the center, blue background"
  for _, seed in ipairs(SEEDS) do
    local l = draw(p, "", seed)
    show("seed %d centre red %.2f border blue %.2f", seed, at(l, "center", "red"), border(l, "blue"))
    atleast(at(l, "center", "red"), 0.75, "seed " .. seed .. ": red in the centre")
    atleast(border(l, "blue"), 0.9, "seed " .. seed .. ": blue on the border")
  end
end)

T.case("one shape: the named background and a shape of the named colour", function()
  for _, c in ipairs{{"a yellow square on the left, black background", "yellow", "black"},
                     {"a blue circle on the right, yellow background", "blue", "yellow"}} do
    for _, seed in ipairs(SEEDS) do
      local l = draw(c[1], "", seed)
      show("%s seed %d shape %.3f border %.2f", c[1], seed, whole(l, c[2]), border(l, c[3]))
      local what = string.format("%q, seed %d: ", c[1], seed)
      atleast(border(l, c[3]), 0.9, what .. c[3] .. " on the border")
      -- a shape of radius 9.5..12.5 covers 7%..12% of the picture
      atleast(whole(l, c[2]), 0.04, what .. c[2] .. " in the picture")
      atmost(whole(l, c[2]), 0.25, what .. c[2] .. " in the picture")
    end
  end
end)

local TWO = "a red circle on the left and a yellow square on the right, green background"

T.case("two shapes: both colours on the named background", function()
  for _, seed in ipairs(SEEDS) do
    local l = draw(TWO, "", seed)
    show("seed %d red %.3f yellow %.3f border green %.2f", seed, whole(l, "red"), whole(l, "yellow"),
         border(l, "green"))
    atleast(border(l, "green"), 0.9, "seed " .. seed .. ": green on the border")
    atleast(whole(l, "red"), 0.04, "seed " .. seed .. ": red in the picture")
    atleast(whole(l, "yellow"), 0.03, "seed " .. seed .. ": yellow in the picture")
  end
end)

T.case("negative prompt: 'yellow square' takes yellow out of the picture", function()
  local with, without = 0, 0
  for _, seed in ipairs(SEEDS) do
    local a = whole(draw(TWO, "", seed), "yellow")
    local b = whole(draw(TWO, "yellow square", seed), "yellow")
    show("seed %d yellow %.3f -> %.3f with the negative", seed, a, b)
    without, with = without + a, with + b
  end
  atmost(with, 0.8 * without, "yellow summed over the seeds with the negative prompt")
end)


os.execute("rm -rf '" .. tmp .. "'")
T.done()
