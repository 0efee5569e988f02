--- The REPL: line editing and history (libedit, through lucid.core.sys),
-- completion of globals, fields and methods, expressions printed without
-- `=`, `_` = the last result, multi-line input, Ctrl-C.
--
-- Chunks typed here run with the JIT off (sub-functions included): compiled
-- traces never look at the Ctrl-C hook, so a runaway loop typed at the
-- prompt could not be stopped otherwise. Heavy work runs in C, which checks
-- for Ctrl-C itself.
local core = require "lucid.core"
local pretty = require "lucid.pretty"

local sys = core.sys
local M = {}

M.prompt = "> "
M.continue_prompt = ">> "

local KEYWORDS = {"and", "break", "do", "else", "elseif", "end", "false", "for",
  "function", "goto", "if", "in", "local", "nil", "not", "or", "repeat", "return",
  "then", "true", "until", "while"}

function M.history_path()
  local p = os.getenv("LUCID_HISTORY")
  if p and p ~= "" then return p end
  local home = os.getenv("HOME")
  return home and (home .. "/.lucid_history") or nil
end

--- Compiles a chunk typed at the prompt: as an expression first (so `1+1`
-- prints 2), then as statements. Returns fn | nil, message, incomplete.
function M.compile(src)
  local fn = loadstring("return " .. src, "=stdin")
  if fn then return fn end
  local err
  fn, err = loadstring(src, "=stdin")
  if fn then return fn end
  -- Lua reports an unfinished chunk as an error at the end of input
  return nil, err, err:find("<eof>'?$") ~= nil
end

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function add_keys(set, t, only_functions)
  if type(t) ~= "table" then return end
  for k, v in pairs(t) do
    if is_ident(k) and (not only_functions or type(v) == "function") then set[k] = true end
  end
end

--- The value a dotted path (a.b.c) names, without calling anything that is
-- not a plain table lookup.
local function lookup(path)
  local v = _G
  for part in path:gmatch("[^%.]+") do
    if not is_ident(part) then return nil end
    if type(v) ~= "table" and type(v) ~= "userdata" then return nil end
    local own = type(v) == "table" and rawget(v, part) or nil
    if own == nil then
      -- an object's class: its metatable's __index, when that is a table
      local mt = getmetatable(v)
      local idx = type(mt) == "table" and rawget(mt, "__index")
      own = type(idx) == "table" and rawget(idx, part) or nil
    end
    v = own
    if v == nil then return nil end
  end
  return v
end

local function fields_of(v, methods)
  local set = {}
  if core.is_tensor(v) then
    add_keys(set, core.tensor_methods(), false)
  elseif type(v) == "string" then
    add_keys(set, string, true)
  elseif type(v) == "table" then
    add_keys(set, v, methods)
  end
  local mt = getmetatable(v)
  local idx = type(mt) == "table" and rawget(mt, "__index")
  if type(idx) == "table" then add_keys(set, idx, methods) end
  return set
end

--- Completion for the text before the cursor: returns the number of bytes
-- of it to replace and the sorted candidates.
function M.complete(line)
  local word = line:match("[%w_%.:]*$") or ""
  local path, sep, last = word:match("^(.-)([%.:])([%w_]*)$")
  local set
  if path then
    if path == "" or path:find(":", 1, true) then return 0, {} end
    local v = lookup(path)
    if v == nil then return 0, {} end
    set = fields_of(v, sep == ":")
  else
    last = word
    if last:match("^%d") then return 0, {} end
    set = {}
    add_keys(set, _G, false)
    for _, k in ipairs(KEYWORDS) do set[k] = true end
  end
  local out = {}
  for k in pairs(set) do
    if k:sub(1, #last) == last then out[#out + 1] = k end
  end
  table.sort(out)
  return #last, out
end

--- The message and traceback of an error caught by eval, without the
-- REPL's own frames. (The handler itself is debug.traceback: the host
-- recognises it and keeps a late Ctrl-C from raising inside it.)
local function clean_traceback(tb)
  if type(tb) ~= "string" then return pretty.format(tb) end
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  if cut then tb = tb:sub(1, cut - 1) end
  tb = tb:gsub("\n%s*%[builtin#%d+%]: at 0x%x+", "")
  return (tb:gsub("\nstack traceback:$", ""))
end

local function pack(...)
  return {n = select("#", ...), ...}
end

--- Runs one compiled chunk; prints its results and keeps the first in `_`.
function M.eval(fn)
  if jit and jit.off then jit.off(fn, true) end
  local res = pack(xpcall(fn, debug.traceback))
  local ok = res[1]
  if not ok then
    local msg = clean_traceback(res[2])
    if msg:find("interrupted", 1, true) then
      io.stderr:write("interrupted\n")
    else
      io.stderr:write(msg, "\n")
    end
    io.stderr:flush()
    return false
  end
  if res.n > 1 then
    rawset(_G, "_", res[2])
    pretty.print(unpack(res, 2, res.n))
  end
  return true
end

local function save_history(path)
  if path then pcall(sys.history_save, path) end
end

--- One line or chunk read and run; returns false at end of input.
local function step(hist)
  sys.interrupt_clear()
  local line = sys.readline(M.prompt)
  if line == nil then return false end
  if line == false then return true end -- Ctrl-C: the line is dropped
  if line:match("^%s*$") then return true end
  local src = line
  sys.history_add(line)
  while true do
    local fn, err, incomplete = M.compile(src)
    if fn then
      save_history(hist)
      M.eval(fn)
      return true
    end
    if not incomplete then
      save_history(hist)
      io.stderr:write(err, "\n")
      return true
    end
    local more = sys.readline(M.continue_prompt)
    if more == nil then return false end
    if more == false then return true end
    if more ~= "" then sys.history_add(more) end
    src = src .. "\n" .. more
  end
end

function M.run()
  local hist = M.history_path()
  if hist then sys.history_load(hist) end
  sys.set_completer(M.complete)
  if sys.isatty(0) then
    io.write(string.format("lucid %s (%s). `lucid` is loaded; Ctrl-D quits, Tab completes.\n",
      core.version, sys.luajit))
  end
  while true do
    -- a Ctrl-C landing between lines raises "interrupted" out of step():
    -- drop it and go on
    local ok, more = pcall(step, hist)
    if ok and not more then break end
    if not ok and not tostring(more):find("interrupted", 1, true) then
      io.stderr:write(tostring(more), "\n")
    end
  end
  io.write("\n")
  save_history(hist)
  return 0
end

return M
