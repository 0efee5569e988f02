--- Line plots rendered straight to an image tensor [1,3,H,W] in [0,1]:
-- axes, "nice" ticks with labels in a 3x5 bitmap font, one polyline per
-- series. No external tools; enough for a per-step curve such as the r_t
-- of the delayed_negative recipe.
local M = {}

-- 3x5 glyphs: five rows, three bits each (4 = left, 2 = middle, 1 = right)
local font = {
  ["0"] = {7, 5, 5, 5, 7}, ["1"] = {2, 6, 2, 2, 7}, ["2"] = {7, 1, 7, 4, 7},
  ["3"] = {7, 1, 7, 1, 7}, ["4"] = {5, 5, 7, 1, 1}, ["5"] = {7, 4, 7, 1, 7},
  ["6"] = {7, 4, 7, 5, 7}, ["7"] = {7, 1, 1, 1, 1}, ["8"] = {7, 5, 7, 5, 7},
  ["9"] = {7, 5, 7, 1, 7},
  A = {2, 5, 7, 5, 5}, B = {6, 5, 6, 5, 6}, C = {3, 4, 4, 4, 3}, D = {6, 5, 5, 5, 6},
  E = {7, 4, 6, 4, 7}, F = {7, 4, 6, 4, 4}, G = {3, 4, 5, 5, 3}, H = {5, 5, 7, 5, 5},
  I = {7, 2, 2, 2, 7}, J = {1, 1, 1, 5, 2}, K = {5, 5, 6, 5, 5}, L = {4, 4, 4, 4, 7},
  M = {5, 7, 7, 5, 5}, N = {6, 5, 5, 5, 5}, O = {2, 5, 5, 5, 2}, P = {6, 5, 6, 4, 4},
  Q = {2, 5, 5, 6, 3}, R = {6, 5, 6, 5, 5}, S = {3, 4, 2, 1, 6}, T = {7, 2, 2, 2, 2},
  U = {5, 5, 5, 5, 7}, V = {5, 5, 5, 5, 2}, W = {5, 5, 7, 7, 5}, X = {5, 5, 2, 5, 5},
  Y = {5, 5, 2, 2, 2}, Z = {7, 1, 2, 4, 7},
  ["."] = {0, 0, 0, 0, 2}, ["-"] = {0, 0, 7, 0, 0}, ["+"] = {0, 2, 7, 2, 0},
  [":"] = {0, 2, 0, 2, 0}, ["="] = {0, 7, 0, 7, 0}, [","] = {0, 0, 0, 2, 4},
  ["/"] = {1, 1, 2, 4, 4}, ["_"] = {0, 0, 0, 0, 7}, ["("] = {1, 2, 2, 2, 1},
  [")"] = {4, 2, 2, 2, 4}, ["*"] = {0, 5, 2, 5, 0}, [" "] = {0, 0, 0, 0, 0},
  ["|"] = {2, 2, 2, 2, 2}, ["'"] = {2, 2, 0, 0, 0}, ["?"] = {7, 1, 2, 0, 2},
}

-- ---------------------------------------------------------------------
-- a canvas of three channel arrays

local Canvas = {}
Canvas.__index = Canvas

--- plot.canvas(w, h, background) -> canvas with :set, :line, :text,
-- :rect and :tensor
function M.canvas(w, h, bg)
  bg = bg or {1, 1, 1}
  local c = setmetatable({w = w, h = h, ch = {{}, {}, {}}}, Canvas)
  for k = 1, 3 do
    local a = c.ch[k]
    for i = 1, w * h do a[i] = bg[k] end
  end
  return c
end

--- sets pixel (x, y), 0-based from the top left; outside is ignored
function Canvas:set(x, y, col)
  x, y = math.floor(x + 0.5), math.floor(y + 0.5)
  if x < 0 or y < 0 or x >= self.w or y >= self.h then return end
  local i = y * self.w + x + 1
  self.ch[1][i], self.ch[2][i], self.ch[3][i] = col[1], col[2], col[3]
end

function Canvas:rect(x0, y0, w, h, col)
  for y = y0, y0 + h - 1 do
    for x = x0, x0 + w - 1 do self:set(x, y, col) end
  end
end

--- a line from (x0, y0) to (x1, y1), `thick` pixels wide (square pen)
function Canvas:line(x0, y0, x1, y1, col, thick)
  thick = thick or 1
  local n = math.max(math.abs(x1 - x0), math.abs(y1 - y0), 1)
  n = math.ceil(n)
  local o = -math.floor((thick - 1) / 2)
  for k = 0, n do
    local x = x0 + (x1 - x0) * k / n
    local y = y0 + (y1 - y0) * k / n
    for dy = 0, thick - 1 do
      for dx = 0, thick - 1 do self:set(x + o + dx, y + o + dy, col) end
    end
  end
end

--- width in pixels of a string in the bitmap font at `scale`
function M.text_width(s, scale)
  scale = scale or 1
  return #s * 4 * scale - scale
end

function M.text_height(scale) return 5 * (scale or 1) end

--- draws text with its top left at (x, y); lowercase is drawn as capitals
function Canvas:text(s, x, y, col, scale)
  scale = scale or 1
  for k = 1, #s do
    local g = font[s:sub(k, k):upper()] or font["?"]
    for row = 1, 5 do
      local bits = g[row]
      for b = 0, 2 do
        if bits % (2 ^ (3 - b)) >= 2 ^ (2 - b) then
          self:rect(x + (k - 1) * 4 * scale + b * scale, y + (row - 1) * scale, scale, scale, col)
        end
      end
    end
  end
end

--- the canvas as a tensor [1,3,h,w]
function Canvas:tensor()
  local lucid = require "lucid"
  local flat = {}
  local n = self.w * self.h
  for k = 1, 3 do
    local a = self.ch[k]
    local base = (k - 1) * n
    for i = 1, n do flat[base + i] = a[i] end
  end
  return lucid.tensor(flat):view{1, 3, self.h, self.w}
end

--- A strip w x h with `s` centred on it, as a tensor [1,3,h,w].
function M.text_image(s, w, h, opts)
  opts = opts or {}
  local scale = opts.scale or 1
  local bg = opts.background or 1
  local c = M.canvas(w, h, type(bg) == "table" and bg or {bg, bg, bg})
  -- cut the text to the width
  local maxch = math.max(1, math.floor((w + scale) / (4 * scale)))
  if #s > maxch then s = s:sub(1, maxch) end
  local x = math.floor((w - M.text_width(s, scale)) / 2)
  local y = math.floor((h - M.text_height(scale)) / 2)
  c:text(s, x, y, opts.color or {0, 0, 0}, scale)
  return c:tensor()
end

-- ---------------------------------------------------------------------
-- ticks

--- "Nice" tick positions covering [lo, hi]: steps of 1, 2 or 5 times a
-- power of ten, about `n` of them.
function M.ticks(lo, hi, n)
  n = n or 5
  if hi <= lo then hi = lo + 1 end
  local raw = (hi - lo) / n
  local p = 10 ^ math.floor(math.log10(raw))
  local step = p
  for _, m in ipairs{1, 2, 5, 10} do
    if m * p >= raw then step = m * p; break end
  end
  local t = {}
  local first = math.ceil(lo / step - 1e-9)
  local last = math.floor(hi / step + 1e-9)
  for k = first, last do t[#t + 1] = k * step end
  return t, step
end

--- short label for a tick value at step `step`
function M.format_tick(v, step)
  if math.abs(v) < step * 1e-6 then return "0" end
  local digits = -math.floor(math.log10(step) + 1e-9)
  if digits <= 0 then digits = 0 end -- also turns -0 into 0 for the format
  if math.abs(v) >= 1e5 or (math.abs(v) < 1e-3) then return string.format("%.0e", v) end
  return string.format("%." .. digits .. "f", v)
end

local palette = {{0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}, {0.17, 0.63, 0.17},
                 {1.0, 0.5, 0.05}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29}}

local function finite(v) return v == v and v ~= math.huge and v ~= -math.huge end

--- plot.line(series, opts) -> image tensor [1,3,H,W].
-- series: {x = {...}, y = {...}, color = {r,g,b}, label = "..."} or a
-- list of them; non-finite y values break the line.
-- opts: width (480), height (320), title, xlabel, ylabel, scale (font
-- pixels, 2), ymin/ymax/xmin/xmax (fixed ranges).
function M.line(series, opts)
  opts = opts or {}
  if series.y then series = {series} end
  local W, H = opts.width or 480, opts.height or 320
  local sc = opts.scale or 2
  local th = M.text_height(sc)
  local xmin, xmax, ymin, ymax = math.huge, -math.huge, math.huge, -math.huge
  for _, s in ipairs(series) do
    if not s.y then error("plot.line: a series needs y values", 2) end
    for i, y in ipairs(s.y) do
      local x = s.x and s.x[i] or i
      if finite(y) and finite(x) then
        xmin, xmax = math.min(xmin, x), math.max(xmax, x)
        ymin, ymax = math.min(ymin, y), math.max(ymax, y)
      end
    end
  end
  if xmin > xmax then xmin, xmax, ymin, ymax = 0, 1, 0, 1 end
  xmin, xmax = opts.xmin or xmin, opts.xmax or xmax
  ymin, ymax = opts.ymin or ymin, opts.ymax or ymax
  if xmax <= xmin then xmin, xmax = xmin - 0.5, xmin + 0.5 end
  if ymax <= ymin then
    local d = math.abs(ymin) * 0.1 + 0.5
    ymin, ymax = ymin - d, ymax + d
  end
  -- a little room above and below the data
  local ypad = (ymax - ymin) * 0.05
  if not opts.ymin then ymin = ymin - ypad end
  if not opts.ymax then ymax = ymax + ypad end
  local yt, ystep = M.ticks(ymin, ymax, 5)
  local xt, xstep = M.ticks(xmin, xmax, 6)
  local ylabw = 0
  for _, v in ipairs(yt) do ylabw = math.max(ylabw, M.text_width(M.format_tick(v, ystep), sc)) end
  local left = ylabw + 10 + (opts.ylabel and th + 6 or 0)
  local top = opts.title and th + 12 or 10
  local bottom = th + 12 + (opts.xlabel and th + 6 or 0)
  local right = 14
  local pw, ph = W - left - right, H - top - bottom
  if pw < 20 or ph < 20 then error(string.format("plot.line: %dx%d is too small for the axes and labels", W, H), 2) end
  local c = M.canvas(W, H)
  local black, grey = {0, 0, 0}, {0.88, 0.88, 0.88}
  local function px(x) return left + (x - xmin) / (xmax - xmin) * (pw - 1) end
  local function py(y) return top + (ymax - y) / (ymax - ymin) * (ph - 1) end
  -- grid lines and ticks
  for _, v in ipairs(yt) do
    local y = py(v)
    c:line(left, y, left + pw - 1, y, grey)
    c:line(left - 4, y, left - 1, y, black)
    local s = M.format_tick(v, ystep)
    c:text(s, left - 6 - M.text_width(s, sc), math.floor(y - th / 2), black, sc)
  end
  for _, v in ipairs(xt) do
    local x = px(v)
    c:line(x, top, x, top + ph - 1, grey)
    c:line(x, top + ph, x, top + ph + 3, black)
    local s = M.format_tick(v, xstep)
    c:text(s, math.floor(x - M.text_width(s, sc) / 2), top + ph + 6, black, sc)
  end
  -- axes
  c:line(left, top, left, top + ph - 1, black)
  c:line(left, top + ph - 1, left + pw - 1, top + ph - 1, black)
  if opts.title then
    c:text(opts.title, math.floor((W - M.text_width(opts.title, sc)) / 2), 4, black, sc)
  end
  if opts.xlabel then
    c:text(opts.xlabel, math.floor(left + (pw - M.text_width(opts.xlabel, sc)) / 2), H - th - 3, black, sc)
  end
  if opts.ylabel then
    -- written downwards one character per line, left of the tick labels
    local y0 = math.floor(top + (ph - #opts.ylabel * (th + 2)) / 2)
    for k = 1, #opts.ylabel do
      c:text(opts.ylabel:sub(k, k), 3, y0 + (k - 1) * (th + 2), black, sc)
    end
  end
  -- the series, clipped to the plot area
  local function clip(x, y)
    return math.max(left, math.min(left + pw - 1, x)), math.max(top, math.min(top + ph - 1, y))
  end
  for k, s in ipairs(series) do
    local col = s.color or palette[(k - 1) % #palette + 1]
    local prev
    for i, y in ipairs(s.y) do
      local x = s.x and s.x[i] or i
      if finite(y) and finite(x) then
        local cx, cy = clip(px(x), py(y))
        if prev then c:line(prev[1], prev[2], cx, cy, col, 2) end
        c:rect(math.floor(cx) - 1, math.floor(cy) - 1, 3, 3, col)
        prev = {cx, cy}
      else
        prev = nil
      end
    end
    if s.label then
      local ly = top + 4 + (k - 1) * (th + 4)
      local lx = left + pw - M.text_width(s.label, sc) - 22
      c:line(lx, ly + th / 2, lx + 12, ly + th / 2, col, 2)
      c:text(s.label, lx + 16, ly, black, sc)
    end
  end
  return c:tensor()
end

return M
