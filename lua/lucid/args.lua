--- Recipe options: declarations, command-line parsing, usage text.
--
-- A recipe declares its options as a list; each entry is
--   {"steps", type = "int", default = 20, help = "..."}   (full form)
--   {"seed", "int"}                                       (type as 2nd item)
--   "model"                                              (from args.common)
--   {"steps", default = 30}          (args.common.steps with a new default)
-- Types: string, int, number, path, flag. Fields: default, help, repeat
-- (the option may be given several times; the value is a list), choices
-- (a list of accepted strings), min / max (numbers), required, metavar,
-- check = function(value) -> nil | "message", record = false (where the
-- result goes, not what it is: left out of provenance records, so a replay
-- to another file gives identical bytes).
-- Option names use '-' or '_' alike on the command line; the parsed table
-- uses '_' (--latents-out -> opts.latents_out).
local M = {}

local TYPES = {string = true, int = true, number = true, path = true, flag = true}

local METAVAR = {string = "TEXT", int = "N", number = "X", path = "FILE", flag = ""}

--- The options every generating recipe understands (API.md), declarable by
-- name. Recipes may override any field: {"steps", default = 30}.
M.common = {
  model = {"model", type = "path", help = "diffusers folder or single .safetensors checkpoint (default: the bundled model)"},
  prompt = {"prompt", type = "string", default = "", help = "what to draw"},
  negative = {"negative", type = "string", default = "", help = "negative prompt"},
  seed = {"seed", type = "int", default = -1, help = "random seed; -1 picks one (it is recorded in the output)"},
  steps = {"steps", type = "int", default = 20, min = 1, max = 10000, help = "number of denoising steps"},
  cfg = {"cfg", type = "number", default = 7.5, help = "classifier-free guidance scale"},
  sampler = {"sampler", type = "string", default = "euler_a",
    choices = {"ddim", "ddpm", "pndm", "euler", "euler_a", "heun", "lms", "dpmpp_2m"},
    help = "sampler"},
  schedule = {"schedule", type = "string", default = "default", choices = {"default", "karras"},
    help = "sigma schedule"},
  width = {"width", type = "int", default = 512, min = 8, max = 8192, help = "image width in pixels (multiple of 8)",
    check = function(v) if v % 8 ~= 0 then return "must be a multiple of 8, got " .. v end end},
  height = {"height", type = "int", default = 512, min = 8, max = 8192, help = "image height in pixels (multiple of 8)",
    check = function(v) if v % 8 ~= 0 then return "must be a multiple of 8, got " .. v end end},
  out = {"out", record = false, type = "path", default = "out.png", help = "output file"},
  threads = {"threads", record = false, type = "int", min = 0, help = "worker threads (default: all cores, or LUCID_THREADS)"},
  latents_out = {"latents-out", record = false, type = "path", help = "also save the final latents (key 'latents') to this .safetensors file"},
  rng = {"rng", type = "string", default = "cpu", choices = {"cpu", "philox"},
    help = "noise generator: cpu (as torch.randn) or philox (as A1111's NV)"},
  negative_start = {"negative-start", type = "number",
    help = "use the negative prompt from this step (or fraction of steps in (0,1)) on"},
  init_image = {"init-image", type = "path", help = "starting image"},
  strength = {"strength", type = "number", default = 0.75, min = 0, max = 1,
    help = "how much of the starting image to replace (0..1)"},
  mask = {"mask", type = "path", help = "inpainting mask (white = repaint)"},
  control_image = {"control-image", type = "path", help = "ControlNet conditioning image"},
  controlnet = {"controlnet", type = "path", ["repeat"] = true, help = "ControlNet weights (repeatable)"},
  control_scale = {"control-scale", type = "number", default = 1.0, help = "ControlNet conditioning scale"},
  audio_in = {"audio-in", type = "path", help = "input audio file"},
  audio_out = {"audio-out", record = false, type = "path", help = "output audio file"},
  quiet = {"quiet", record = false, type = "flag", help = "print nothing but errors"},
}

local function key(name) return (name:gsub("-", "_")) end
local function dashed(name) return (name:gsub("_", "-")) end
M.key = key

local function copy(t)
  local r = {}
  for k, v in pairs(t) do r[k] = v end
  return r
end

--- Normalises a recipe's option list into specs {name, key, type, ...};
-- raises on a malformed declaration (a recipe bug, not a user error).
function M.specs(options)
  local out, seen = {}, {}
  for i, o in ipairs(options or {}) do
    local spec
    if type(o) == "string" then
      spec = M.common[key(o)]
      if not spec then error("option " .. i .. ": '" .. o .. "' is not a common option (args.common)", 2) end
      spec = copy(spec)
    elseif type(o) == "table" then
      local name = o[1] or o.name
      if type(name) ~= "string" then error("option " .. i .. ": missing its name", 2) end
      local base = (o.type == nil and o[2] == nil) and M.common[key(name)] or nil
      spec = base and copy(base) or {}
      for k, v in pairs(o) do spec[k] = v end
      if spec[2] ~= nil and spec.type == nil then spec.type = spec[2] end
      spec[1] = name
    else
      error("option " .. i .. ": expected a name or a table, got a " .. type(o), 2)
    end
    spec.name = dashed(spec[1])
    spec.key = key(spec[1])
    spec.type = spec.type or "string"
    spec[2] = nil
    if not TYPES[spec.type] then
      error("option --" .. spec.name .. ": unknown type '" .. tostring(spec.type) .. "'", 2)
    end
    if seen[spec.key] then error("option --" .. spec.name .. " declared twice", 2) end
    seen[spec.key] = true
    out[#out + 1] = spec
  end
  return out
end

local function check_value(spec, s)
  local flag = "--" .. spec.name
  local v
  if spec.type == "int" then
    if not (s:match("^[+-]?%d+$")) then
      return nil, flag .. ": expected an integer, got '" .. s .. "'"
    end
    v = tonumber(s)
  elseif spec.type == "number" then
    v = tonumber(s)
    if not v or v ~= v or s:match("^%s") or s:match("^0[xX]") then
      return nil, flag .. ": expected a number, got '" .. s .. "'"
    end
  elseif spec.type == "path" then
    if s == "" then return nil, flag .. ": expected a file name, got an empty string" end
    local home = os.getenv("HOME")
    if home and s:sub(1, 2) == "~/" then s = home .. s:sub(2) end
    v = s
  else
    v = s
  end
  if spec.choices then
    local ok = false
    for _, c in ipairs(spec.choices) do if c == v then ok = true end end
    if not ok then
      return nil, flag .. ": expected one of " .. table.concat(spec.choices, ", ") .. "; got '" .. s .. "'"
    end
  end
  if spec.min and v < spec.min then return nil, flag .. ": must be at least " .. spec.min .. ", got " .. s end
  if spec.max and v > spec.max then return nil, flag .. ": must be at most " .. spec.max .. ", got " .. s end
  if spec.check then
    local msg = spec.check(v)
    if msg then return nil, flag .. ": " .. msg end
  end
  return v
end

local FLAG_WORDS = {["true"] = true, yes = true, on = true, ["1"] = true,
                    ["false"] = false, no = false, off = false, ["0"] = false}

--- Parses argv[first..] against the specs. Returns opts (with defaults
-- filled; a list in opts.args for positional arguments when the recipe
-- accepts them) or nil, message. opts.help is true when --help was given.
-- `positional`: nil/false rejects positional arguments; a declared
-- option's name takes one bare word as that option's value; true or any
-- other label collects them in opts.args.
function M.parse(specs, argv, first, positional)
  local by = {}
  for _, s in ipairs(specs) do by[s.key] = s end
  local opts, given, rest = {}, {}, {}
  local i = first or 1
  local n = #argv
  -- --help wins over any error elsewhere on the line
  for j = i, n do
    if argv[j] == "--" then break end
    if argv[j] == "--help" or argv[j] == "-h" then return {help = true} end
  end
  while i <= n do
    local a = argv[i]
    if a == "--" then
      for j = i + 1, n do rest[#rest + 1] = argv[j] end
      break
    elseif a:sub(1, 2) == "--" and #a > 2 then
      local name, val = a:match("^%-%-([^=]+)=(.*)$")
      name = name or a:sub(3)
      local spec = by[key(name)]
      local negated = false
      if not spec and name:sub(1, 3) == "no-" and not val then
        spec = by[key(name:sub(4))]
        if spec and spec.type ~= "flag" then spec = nil end
        negated = spec ~= nil
      end
      if not spec then return nil, "unknown option --" .. name end
      local v
      if spec.type == "flag" then
        if val then
          v = FLAG_WORDS[val:lower()]
          if v == nil then return nil, "--" .. spec.name .. ": expected yes or no, got '" .. val .. "'" end
        else
          v = not negated
        end
      else
        if not val then
          i = i + 1
          val = argv[i]
          if val == nil then return nil, "--" .. spec.name .. ": missing its value" end
        end
        local err
        v, err = check_value(spec, val)
        if v == nil then return nil, err end
      end
      if spec["repeat"] then
        if not given[spec.key] then opts[spec.key] = {} end
        local list = opts[spec.key]
        list[#list + 1] = v
      else
        opts[spec.key] = v
      end
      given[spec.key] = true
    else
      rest[#rest + 1] = a
    end
    i = i + 1
  end
  local pspec = type(positional) == "string" and by[key(positional)]
  if pspec then
    -- one bare word is that option ("lucid run txt2img 'a cat'")
    local spec = pspec
    if #rest > 1 or (#rest == 1 and given[spec.key]) then
      local extra = given[spec.key] and rest[1] or rest[2]
      return nil, "unexpected argument '" .. extra .. "' (--" .. spec.name ..
        " is given already; options start with --)"
    end
    if #rest == 1 then
      local v, err = check_value(spec, rest[1])
      if v == nil then return nil, err end
      opts[spec.key], given[spec.key] = v, true
    end
  elseif #rest > 0 then
    if not positional then
      return nil, "unexpected argument '" .. rest[1] .. "' (options start with --)"
    end
    opts.args = rest
  elseif positional then
    opts.args = {}
  end
  for _, s in ipairs(specs) do
    if not given[s.key] then
      if s.required then return nil, "missing required option --" .. s.name end
      if s["repeat"] then
        local d = s.default
        opts[s.key] = type(d) == "table" and copy(d) or (d ~= nil and {d} or {})
      elseif s.type == "flag" then
        opts[s.key] = s.default == true
      else
        opts[s.key] = s.default
      end
    end
  end
  return opts
end

local function default_str(s)
  local d = s.default
  if d == nil or s.type == "flag" then return nil end
  if s["repeat"] and type(d) == "table" then
    if #d == 0 then return nil end
    d = table.concat(d, ",")
  end
  if type(d) == "string" then return d == "" and '""' or d end
  return tostring(d)
end

--- Usage text generated from the declared options.
function M.usage(recipe, specs, invocation)
  local lines = {}
  local pos = recipe.positional
  local posname = type(pos) == "string" and pos or (pos and "ARGS..." or nil)
  for _, s in ipairs(specs) do
    if type(pos) == "string" and s.key == key(pos) then posname = "[" .. s.name:upper() .. "]" end
  end
  lines[1] = "usage: " .. invocation .. " [options]" .. (posname and (" " .. posname) or "")
  if recipe.description then lines[#lines + 1] = "\n" .. recipe.description end
  lines[#lines + 1] = "\noptions:"
  local rows = {}
  for _, s in ipairs(specs) do
    local left = "  --" .. s.name
    if s.type == "flag" then
      left = "  --[no-]" .. s.name
    else
      left = left .. " " .. (s.metavar or METAVAR[s.type])
    end
    local help = s.help or ""
    if s.choices then help = help .. (help ~= "" and " " or "") .. "(" .. table.concat(s.choices, "|") .. ")" end
    local d = default_str(s)
    if d then help = help .. (help ~= "" and " " or "") .. "[default: " .. d .. "]" end
    if s.required then help = help .. " (required)" end
    if s["repeat"] then help = help .. " (repeatable)" end
    rows[#rows + 1] = {left, help}
  end
  rows[#rows + 1] = {"  --help", "show this help"}
  local w = 0
  for _, r in ipairs(rows) do w = math.max(w, #r[1]) end
  w = math.min(w, 30)
  for _, r in ipairs(rows) do
    if #r[1] > w then
      lines[#lines + 1] = r[1] .. "\n" .. string.rep(" ", w + 2) .. r[2]
    else
      lines[#lines + 1] = r[1] .. string.rep(" ", w - #r[1] + 2) .. r[2]
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

--- The shortest decimal that reads back as exactly v.
function M.number_str(v)
  if v == math.floor(v) and math.abs(v) < 2^53 then return string.format("%d", v) end
  for digits = 1, 17 do
    local s = string.format("%." .. digits .. "g", v)
    if tonumber(s) == v then return s end
  end
  return string.format("%.17g", v)
end

--- The command line that reproduces opts: declared options whose value
-- differs from the default, in declaration order.
function M.to_argv(specs, opts, recorded_only)
  local argv = {}
  for _, s in ipairs(specs) do
    local v = opts[s.key]
    if recorded_only and s.record == false then
      -- where the output goes is not part of what made it
    elseif s["repeat"] then
      for _, x in ipairs(v or {}) do
        argv[#argv + 1] = "--" .. s.name
        argv[#argv + 1] = type(x) == "number" and M.number_str(x) or tostring(x)
      end
    elseif s.type == "flag" then
      if v and not s.default then argv[#argv + 1] = "--" .. s.name end
      if not v and s.default then argv[#argv + 1] = "--no-" .. s.name end
    elseif v ~= nil and v ~= s.default then
      argv[#argv + 1] = "--" .. s.name
      argv[#argv + 1] = type(v) == "number" and M.number_str(v) or tostring(v)
    end
  end
  return argv
end

return M
