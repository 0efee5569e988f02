--- The command line (see lucid(1)). main(argv) returns the exit status:
-- 0 success, 1 a Lua error (raised to the host, which prints it with a
-- traceback), 2 a usage error (unknown command or option, bad option value).
local core = require "lucid.core"
local args = require "lucid.args"

local M = {}

local USAGE = [[
usage: lucid [--threads N] [-e CHUNK]... [-i]
       lucid [run] FILE|NAME [--opt value ...]
       lucid txt2img "PROMPT" [--opt value ...]
       lucid replay FILE.png [--opt value ...]
       lucid batch MANIFEST [--shard I/N] [--journal FILE] [--out-dir DIR]
       lucid --version | --help

Without a command: a REPL when standard input is a terminal, otherwise
standard input is read and run as one Lua chunk.

commands:
  run FILE|NAME     run a recipe or script (NAME: a bundled recipe);
                    `run` may be left out
  txt2img PROMPT    shorthand for: lucid run txt2img --prompt PROMPT
  replay FILE.png   re-run the recipe and options recorded in an image
                    (or in a .wav/.flac/.ogg made by the audio recipes)
  batch MANIFEST    run many jobs, resumable and shardable (lucid-batch(1))

options:
  -e CHUNK          run a Lua chunk (repeatable; runs before any command)
  -i                enter the REPL after the chunks given with -e
  --threads N       worker threads (default: all cores, or LUCID_THREADS)
  --version         print the version of lucid, LuaJIT and the kernels
  --help            show this help; `lucid run NAME --help` shows a recipe's

See lucid(1) and lucid-lua(3).
]]

local sys = core.sys

local function eprint(s)
  io.stderr:write(s, "\n")
  io.stderr:flush()
end

--- A usage error: message on stderr, exit status 2.
local function usage_error(msg, hint)
  eprint("lucid: " .. msg)
  eprint(hint or "(see lucid --help)")
  return 2
end

--- The usage text and the bundled recipes.
function M.help()
  io.write(USAGE)
  local names = M.bundled_recipes()
  if #names > 0 then
    io.write("\nbundled recipes (lucid run NAME --help for their options):\n  ",
      table.concat(names, ", "), "\n")
  end
end

function M.version_string()
  return string.format("lucid %s\n%s\nkernels: %s (%s), %d threads",
    core.version, sys.luajit, sys.arch, sys.machine, sys.threads())
end

local function set_global_lucid()
  local lucid = require "lucid"
  rawset(_G, "lucid", lucid)
  return lucid
end

--- Recipes in the bundled recipes folder, by name.
function M.bundled_recipes()
  local names = {}
  local list = sys.listdir(core.paths.recipes) or {}
  for _, f in ipairs(list) do
    local n = f:match("^(.+)%.lua$")
    if n then names[#names + 1] = n end
  end
  return names
end

--- A file, or a bundled recipe's name -> path, label (the name for bundled
-- recipes, the path otherwise) | nil, message.
function M.resolve(target)
  if sys.file_type(target) == "file" then return target, target end
  if not target:find("/", 1, true) then
    local name = target:gsub("%.lua$", "")
    local p = core.paths.recipes .. "/" .. name .. ".lua"
    if sys.file_type(p) == "file" then return p, name end
  end
  local avail = M.bundled_recipes()
  return nil, string.format("no recipe '%s': not a file, and not a bundled recipe in %s%s",
    target, core.paths.recipes,
    #avail > 0 and (" (bundled: " .. table.concat(avail, ", ") .. ")") or "")
end

local function is_recipe(v)
  return type(v) == "table" and (type(v.run) == "function" or v.options ~= nil)
end

local function exit_code(r)
  if type(r) == "number" and r == math.floor(r) and r >= 0 and r <= 255 then return r end
  return 0
end

--- What made an output: recipe, its file's SHA-256, the options as a
-- command line and as a table, and the version. Recipes store this (as JSON) in their outputs;
-- `lucid replay` reads it back.
function M.provenance(ctx, opts)
  local options = {}
  for _, s in ipairs(ctx.specs) do
    local v = opts[s.key]
    if v ~= nil and not (type(v) == "table" and #v == 0) and s.record ~= false then options[s.key] = v end
  end
  local hash
  if ctx.path and core.sha256_file then
    local ok, h = pcall(core.sha256_file, ctx.path)
    if ok then hash = h end
  end
  return {
    recipe = ctx.name,
    recipe_sha256 = hash,
    args = args.to_argv(ctx.specs, opts, true),
    options = options,
    version = core.version,
  }
end

--- Runs a loaded recipe table with its command-line arguments.
function M.run_recipe(recipe, ctx, argv)
  if type(recipe.run) ~= "function" then
    error("recipe " .. ctx.name .. " has no run function (it must return {options = ..., run = function(opts, lucid) ... end})", 0)
  end
  local specs = args.specs(recipe.options)
  local opts, err = args.parse(specs, argv, 1, recipe.positional)
  local invocation = "lucid run " .. ctx.name
  if not opts then
    return usage_error(ctx.name .. ": " .. err, "(see " .. invocation .. " --help)")
  end
  if opts.help then
    io.write(args.usage(recipe, specs, invocation))
    return 0
  end
  for _, s in ipairs(specs) do
    if s.key == "threads" then opts.threads = sys.threads() end
  end
  ctx.specs = specs
  ctx.recipe = recipe
  ctx.provenance = function() return M.provenance(ctx, opts) end
  return exit_code(recipe.run(opts, require "lucid", ctx))
end

--- lucid run TARGET ARGS...: a recipe (a file returning a recipe table) or
-- a plain script, which gets ARGS as `...`.
function M.run(target, argv)
  local path, label = M.resolve(target)
  if not path then return usage_error(label) end
  local chunk, err = loadfile(path)
  if not chunk then error(err, 0) end
  local r = chunk(unpack(argv, 1, #argv))
  if is_recipe(r) then
    return M.run_recipe(r, {name = label, path = path}, argv)
  end
  return exit_code(r)
end

--- lucid replay FILE [--opt value ...]: the recorded recipe and options,
-- with any options given here appended (they win).
function M.replay(file, extra)
  local lucid = require "lucid"
  if sys.file_type(file) ~= "file" then error("replay: cannot open " .. file .. ": no such file", 0) end
  local image = lucid.image
  -- audio outputs keep the record in their comment field
  local ext = (file:match("%.(%w+)$") or ""):lower()
  local audio = ext == "wav" or ext == "flac" or ext == "ogg"
  local text
  if audio then
    local ok, info = pcall(lucid.audio.info, file)
    text = ok and type(info.metadata) == "table" and info.metadata.comment or nil
  else
    if type(image) ~= "table" or type(image.read_text) ~= "function" then
      error("replay: this build cannot read image metadata (lucid.image.read_text is missing)", 0)
    end
    text = image.read_text(file, "lucid")
    if type(text) == "table" then text = text.lucid end
  end
  if type(text) ~= "string" or text == "" then
    error("replay: " .. file .. " records no provenance (no 'lucid' text chunk): it was not made by lucid, or its metadata was stripped", 0)
  end
  local ok, rec = pcall(core.json.decode, text)
  if not ok or type(rec) ~= "table" or type(rec.recipe) ~= "string" then
    error("replay: " .. file .. ": the 'lucid' text chunk is not a provenance record (" ..
      (ok and "no recipe field" or tostring(rec)) .. ")", 0)
  end
  if rec.version and rec.version ~= core.version then
    eprint(string.format("lucid: replay: %s was made by lucid %s, this is %s; results may differ",
      file, tostring(rec.version), core.version))
  end
  local path = M.resolve(rec.recipe)
  if path and type(rec.recipe_sha256) == "string" and core.sha256_file then
    local ok2, h = pcall(core.sha256_file, path)
    if ok2 and h ~= rec.recipe_sha256 then
      eprint(string.format("lucid: replay: recipe %s has changed since %s was made; results may differ",
        rec.recipe, file))
    end
  end
  local argv = {}
  for _, a in ipairs(type(rec.args) == "table" and rec.args or {}) do argv[#argv + 1] = tostring(a) end
  local has_out = false
  local out_opt = audio and "--audio-out" or "--out"
  for _, a in ipairs(extra) do
    argv[#argv + 1] = a
    if a == out_opt or a:sub(1, #out_opt + 1) == out_opt .. "=" then has_out = true end
  end
  if not has_out then
    -- never overwrite the original: FILE.png -> FILE.replay.png
    local stem, sfx = file:match("^(.*)(%.[^./]+)$")
    argv[#argv + 1] = out_opt
    argv[#argv + 1] = (stem or file) .. ".replay" .. (sfx or "")
    if audio then -- and its spectrogram next to it
      argv[#argv + 1] = "--out"
      argv[#argv + 1] = (stem or file) .. ".replay.png"
    end
  end
  return M.run(rec.recipe, argv)
end

local function run_chunk(src, name, ...)
  local chunk, err = loadstring(src, name)
  if not chunk then error(err, 0) end
  return chunk(...)
end

local function slice(t, i)
  local r = {}
  for j = i, #t do r[#r + 1] = t[j] end
  return r
end

--- Takes --threads N / --threads=N out of argv (anywhere before a "--"),
-- applies it, and returns the remaining list | nil, message.
local function take_threads(argv)
  local out, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    if a == "--" then
      for j = i, #argv do out[#out + 1] = argv[j] end
      break
    end
    local v = a:match("^%-%-threads=(.*)$")
    if a == "--threads" then
      v = argv[i + 1]
      if v == nil then return nil, "--threads: missing its value" end
      i = i + 1
    end
    if v then
      if not v:match("^%d+$") or tonumber(v) > 4096 then
        return nil, "--threads: expected an integer in [0, 4096], got '" .. v .. "'"
      end
      if tonumber(v) ~= sys.threads() then sys.set_threads(tonumber(v)) end
    else
      out[#out + 1] = a
    end
    i = i + 1
  end
  return out
end

function M.main(argv)
  local list, err = take_threads(slice(argv, 1))
  if not list then return usage_error(err) end

  local chunks, interactive = {}, false
  local i = 1
  while list[i] do
    local a = list[i]
    if a == "-e" then
      if list[i + 1] == nil then return usage_error("-e: missing its Lua chunk") end
      chunks[#chunks + 1] = list[i + 1]
      i = i + 2
    elseif a == "-i" then
      interactive = true
      i = i + 1
    elseif a == "--version" or a == "-v" then
      print(M.version_string())
      return 0
    elseif a == "--help" or a == "-h" then
      M.help()
      return 0
    elseif a == "--" then
      i = i + 1
      break
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return usage_error("unknown option " .. a)
    else
      break
    end
  end

  if #chunks > 0 or interactive then
    set_global_lucid()
    for k, c in ipairs(chunks) do
      run_chunk(c, "=(command line" .. (#chunks > 1 and (" " .. k) or "") .. ")")
    end
  end

  local cmd = list[i]
  if cmd == nil then
    if interactive or (#chunks == 0 and sys.isatty(0)) then
      set_global_lucid()
      return require("lucid.repl").run()
    end
    if #chunks > 0 then return 0 end
    set_global_lucid()
    return exit_code(run_chunk(io.read("*a") or "", "=stdin"))
  end
  if cmd == "-" then
    set_global_lucid()
    return exit_code(run_chunk(io.read("*a") or "", "=stdin", unpack(list, i + 1, #list)))
  end
  if cmd == "run" then
    local target = list[i + 1]
    if target == nil then return usage_error("run: missing the recipe file or name") end
    if target == "--help" or target == "-h" then
      M.help()
      return 0
    end
    return M.run(target, slice(list, i + 2))
  elseif cmd == "replay" then
    local file = list[i + 1]
    if file == nil then return usage_error("replay: missing the image file") end
    return M.replay(file, slice(list, i + 2))
  elseif cmd == "txt2img" then
    -- the first bare word is the prompt (also for a txt2img recipe of the
    -- user's that declares no positional); given twice, it is left bare
    -- and the recipe's parser names the clash
    local rest = slice(list, i + 1)
    local twice = false
    for k = 2, #rest do
      if rest[k] == "--prompt" or rest[k]:sub(1, 9) == "--prompt=" then twice = true end
    end
    if rest[1] and rest[1]:sub(1, 1) ~= "-" and not twice then
      rest[1] = "--prompt=" .. rest[1]
    end
    return M.run("txt2img", rest)
  elseif cmd == "batch" then
    return require("lucid.batch").main(slice(list, i + 1))
  elseif cmd == "help" then
    M.help()
    return 0
  elseif sys.file_type(cmd) == "file" or M.resolve(cmd) then
    -- a file (as `luajit script.lua args`) or a bundled recipe's name
    return M.run(cmd, slice(list, i + 1))
  end
  return usage_error("unknown command '" .. cmd .. "' (not a command, a file or a bundled recipe)")
end

return M
