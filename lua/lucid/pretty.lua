--- Pretty printing for the REPL and tostring(): tensors as a one-line
-- summary (shape, dtype, min/max/mean) plus their values when small; tables
-- shallowly. Printing never raises: a tensor whose statistics cannot be
-- computed prints without them.
local core = require "lucid.core"

local M = {}

--- Tensors with at most this many elements also print their values.
M.small = 64

local function num(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" end
  if x == -math.huge then return "-inf" end
  if x == math.floor(x) and math.abs(x) < 1e15 then return string.format("%d", x) end
  return string.format("%.4g", x)
end
M.number = num

local function shape_str(shape)
  return "[" .. table.concat(shape, ",") .. "]"
end

local function flatten(v, out)
  if type(v) == "table" then
    for i = 1, #v do flatten(v[i], out) end
  else
    out[#out + 1] = v
  end
  return out
end

--- Values of a small tensor in a nested layout: rows on their own lines,
-- one bracket level per dimension, numbers right-aligned to one width.
local function values_str(tab, ndim)
  if ndim == 0 then return num(tab) end
  local flat = flatten(tab, {})
  local width = 1
  for i = 1, #flat do width = math.max(width, #num(flat[i])) end
  local function rec(v, depth)
    if type(v) ~= "table" then return string.format("%" .. width .. "s", num(v)) end
    local parts = {}
    if depth == ndim then
      for i = 1, #v do parts[i] = rec(v[i], depth + 1) end
      return "[" .. table.concat(parts, " ") .. "]"
    end
    for i = 1, #v do parts[i] = rec(v[i], depth + 1) end
    local sep = "\n" .. string.rep("\n", ndim - depth - 1) .. string.rep(" ", depth)
    return "[" .. table.concat(parts, sep) .. "]"
  end
  return rec(tab, 1)
end

local function stat(t, name)
  local ok, r = pcall(function()
    local v = t[name](t)
    if type(v) == "number" then return v end
    return v:item()
  end)
  if ok and type(r) == "number" then return r end
  return nil
end

--- One-line summary plus values for small tensors.
function M.tensor(t)
  local ok, freed = pcall(function() return t:is_freed() end)
  if ok and freed then return "tensor (freed)" end
  local ok2, shape = pcall(t.shape, t)
  if not ok2 then return "tensor (unreadable: " .. tostring(shape) .. ")" end
  local dtype = t:dtype()
  local n = t:numel()
  local head = "tensor " .. shape_str(shape) .. " " .. dtype
  if n == 0 then return head .. "  (empty)" end
  if #shape == 0 then
    local ok3, v = pcall(t.item, t)
    return head .. "  " .. (ok3 and num(v) or "?")
  end
  local values
  local mn, mx, mean
  if n <= M.small then
    local okv, tab = pcall(t.totable, t)
    if okv then
      values = tab
      local flat = flatten(tab, {})
      if type(flat[1]) == "number" then
        mn, mx = math.huge, -math.huge
        local s = 0
        for i = 1, #flat do
          local x = flat[i]
          if x < mn then mn = x end
          if x > mx then mx = x end
          s = s + x
        end
        mean = s / #flat
      end
    end
  else
    mn, mx, mean = stat(t, "min"), stat(t, "max"), stat(t, "mean")
  end
  local s = head
  if mn then s = s .. "  min " .. num(mn) end
  if mx then s = s .. " max " .. num(mx) end
  if mean then s = s .. " mean " .. num(mean) end
  if values ~= nil then s = s .. "\n" .. values_str(values, #shape) end
  return s
end

-- by metatable: core.is_tensor says false for a freed tensor, which must
-- still print as one (and not recurse through __tostring)
local tensor_mt = core.tensor_metatable and core.tensor_metatable()
local function is_tensor(v)
  return type(v) == "userdata" and tensor_mt ~= nil and getmetatable(v) == tensor_mt
end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

--- A value in one short piece (nested tables are not opened).
local function short(v)
  local tv = type(v)
  if tv == "string" then
    local q = string.format("%q", v):gsub("\\\n", "\\n")
    if #q > 60 then q = q:sub(1, 57) .. '..."' end
    return q
  elseif tv == "number" then
    return num(v)
  elseif is_tensor(v) then
    local ok, shape = pcall(v.shape, v)
    if not ok then return "tensor" end
    return "tensor " .. shape_str(shape) .. " " .. v:dtype()
  elseif tv == "table" then
    local mt = getmetatable(v)
    if mt and mt.__tostring then
      local ok, s = pcall(tostring, v)
      if ok then return s end
    end
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    return n == 0 and "{}" or "{...}"
  end
  return tostring(v)
end

--- A table's entries, one level deep: the array part first, then other keys
-- sorted.
function M.table(t, limit)
  limit = limit or 40
  local mt = getmetatable(t)
  if mt and mt.__tostring then
    local ok, s = pcall(tostring, t)
    if ok then return s end
  end
  local parts, n = {}, #t
  for i = 1, math.min(n, limit) do parts[#parts + 1] = short(t[i]) end
  local keys = {}
  for k in pairs(t) do
    if not (type(k) == "number" and k >= 1 and k <= n and k == math.floor(k)) then
      keys[#keys + 1] = k
    end
  end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "string" or ta == "number" then return a < b end
    return tostring(a) < tostring(b)
  end)
  local shown = #parts
  for _, k in ipairs(keys) do
    if shown >= limit then break end
    local ks = is_ident(k) and k or "[" .. short(k) .. "]"
    parts[#parts + 1] = ks .. " = " .. short(t[k])
    shown = shown + 1
  end
  local total = n + #keys
  if total > shown then parts[#parts + 1] = "... (" .. (total - shown) .. " more)" end
  if #parts == 0 then return "{}" end
  local one = "{" .. table.concat(parts, ", ") .. "}"
  if #one <= 78 then return one end
  return "{\n  " .. table.concat(parts, ",\n  ") .. "\n}"
end

--- Any value, as the REPL shows it.
function M.format(v)
  local ok, s = pcall(function()
    if is_tensor(v) then return M.tensor(v) end
    local tv = type(v)
    if tv == "table" then return M.table(v) end
    if tv == "string" then return v end
    if tv == "number" then return num(v) end
    return tostring(v)
  end)
  if ok then return s end
  return "<" .. type(v) .. ": cannot print: " .. tostring(s) .. ">"
end

--- Prints results: separated by tabs when they fit on one line each.
function M.print(...)
  local n = select("#", ...)
  local parts, multi = {}, false
  for i = 1, n do
    local v = select(i, ...)
    local s = type(v) == "string" and string.format("%q", v):gsub("\\\n", "\\n") or M.format(v)
    parts[i] = s
    if s:find("\n") then multi = true end
  end
  if n > 0 then io.write(table.concat(parts, multi and "\n" or "\t"), "\n") end
  io.stdout:flush()
end

--- Makes tostring(tensor) (and so print(tensor)) use M.tensor.
function M.install()
  local mt = core.tensor_metatable and core.tensor_metatable()
  if mt and rawget(mt, "__tostring") == nil then
    rawset(mt, "__tostring", function(t) return M.format(t) end)
  end
end

return M
