--- Image grids: tiles [1,3,H,W] of equal size laid out in rows and
-- columns with a gap, optionally with a caption strip under each tile
-- (drawn with lucid.plot's small bitmap font).
local M = {}

--- grid.make(images, {cols = n, gap = px, background = v, labels = {...}})
-- -> [1,3,rows*(H+label)+gaps, cols*W+gaps]. `cols` defaults to all in one
-- row; a missing tile in the last row is left as background.
function M.make(images, opts)
  local lucid = require "lucid"
  opts = opts or {}
  local n = #images
  if n == 0 then error("grid.make: no images", 2) end
  local s = images[1]:shape()
  local c, h, w = s[2], s[3], s[4]
  for i, im in ipairs(images) do
    local si = im:shape()
    if #si ~= 4 or si[1] ~= 1 or si[2] ~= c or si[3] ~= h or si[4] ~= w then
      error(string.format("grid.make: image %d has shape [%s], expected [1,%d,%d,%d] like image 1",
        i, table.concat(si, ","), c, h, w), 2)
    end
  end
  local cols = math.min(opts.cols or n, n)
  local rows = math.ceil(n / cols)
  local gap = opts.gap or 4
  local bg = opts.background or 1.0
  local lh = 0
  if opts.labels then lh = require("lucid.plot").text_height(opts.scale or 1) + 4 end
  local th = h + lh
  local out = lucid.full({1, c, rows * th + (rows + 1) * gap, cols * w + (cols + 1) * gap}, bg)
  for i, im in ipairs(images) do
    local r, k = math.floor((i - 1) / cols), (i - 1) % cols
    local y, x = gap + r * (th + gap), gap + k * (w + gap)
    out:narrow(3, y + 1, h):narrow(4, x + 1, w):copy_(im)
    if opts.labels and opts.labels[i] then
      local plot = require "lucid.plot"
      local strip = plot.text_image(opts.labels[i], w, lh, {scale = opts.scale or 1, background = bg})
      out:narrow(3, y + h + 1, lh):narrow(4, x + 1, w):copy_(strip)
    end
  end
  return out
end

return M
