--- A1111 prompt syntax: emphasis `(word:1.2)` `(word)` `[word]`, escapes,
-- `BREAK`, prompts longer than 75 tokens in chunks, and prompt editing
-- `[from:to:when]`, `[to:when]`, `[from::when]`, alternation `[a|b]`.
-- The algorithms follow A1111's modules/prompt_parser.py and
-- sd_hijack_clip.py (re-implemented here, not copied).
local M = {}

---------------------------------------------------------------------------
-- Emphasis: text -> list of {text, weight}; BREAK entries have weight -1.
---------------------------------------------------------------------------

-- One token of A1111's re_attention, tried in its alternation order.
local function next_token(s, p)
  local c = s:sub(p, p)
  if c == "\\" then
    local n = s:sub(p + 1, p + 1)
    if n == "(" or n == ")" or n == "[" or n == "]" or n == "\\" then
      return s:sub(p, p + 1), p + 2
    end
    return "\\", p + 1
  end
  if c == "(" or c == "[" or c == ")" or c == "]" then return c, p + 1 end
  if c == ":" then
    local ws1, num, ws2 = s:match("^:(%s*)([+-]?[%.%d]+)(%s*)%)", p)
    if num then
      return s:sub(p, p + #ws1 + #num + #ws2 + 1), p + 1 + #ws1 + #num + #ws2 + 1, num
    end
    return ":", p + 1
  end
  local q = p
  while q <= #s do
    local d = s:sub(q, q)
    if d == "\\" or d == "(" or d == ")" or d == "[" or d == "]" or d == ":" then break end
    q = q + 1
  end
  return s:sub(p, q - 1), q
end

-- splits on \s*\bBREAK\b\s*
local function split_break(text)
  local parts, pos = {}, 1
  while true do
    local a, b = nil, nil
    local search = pos
    while true do
      a, b = text:find("BREAK", search, true)
      if not a then break end
      local before = a > 1 and text:sub(a - 1, a - 1) or ""
      local after = text:sub(b + 1, b + 1)
      if not before:match("[%w_]") and not after:match("[%w_]") then break end
      search = a + 1
    end
    if not a then parts[#parts + 1] = text:sub(pos); break end
    local s0 = a
    while s0 > pos and text:sub(s0 - 1, s0 - 1):match("%s") do s0 = s0 - 1 end
    local e0 = b
    while e0 < #text and text:sub(e0 + 1, e0 + 1):match("%s") do e0 = e0 + 1 end
    parts[#parts + 1] = text:sub(pos, s0 - 1)
    pos = e0 + 1
  end
  return parts
end

--- parse_prompt_attention: "a (house:1.3) [tree]" ->
-- {{"a ", 1}, {"house", 1.3}, {" ", 1}, {"tree", 1/1.1}}
function M.parse_attention(text)
  local res, round, square = {}, {}, {}
  local function multiply(start, m)
    for i = start, #res do res[i][2] = res[i][2] * m end
  end
  local p = 1
  while p <= #text do
    local tok, np, weight = next_token(text, p)
    p = np
    if tok:sub(1, 1) == "\\" and #tok == 2 then
      res[#res + 1] = {tok:sub(2), 1.0}
    elseif tok == "(" then
      round[#round + 1] = #res + 1
    elseif tok == "[" then
      square[#square + 1] = #res + 1
    elseif weight and #round > 0 then
      multiply(table.remove(round), tonumber(weight) or 1.0)
    elseif tok == ")" and #round > 0 then
      multiply(table.remove(round), 1.1)
    elseif tok == "]" and #square > 0 then
      multiply(table.remove(square), 1 / 1.1)
    else
      for i, part in ipairs(split_break(tok)) do
        if i > 1 then res[#res + 1] = {"BREAK", -1} end
        res[#res + 1] = {part, 1.0}
      end
    end
  end
  for _, pos in ipairs(round) do multiply(pos, 1.1) end
  for _, pos in ipairs(square) do multiply(pos, 1 / 1.1) end
  if #res == 0 then res = {{"", 1.0}} end
  local i = 1
  while i < #res do
    if res[i][2] == res[i + 1][2] then
      res[i][1] = res[i][1] .. res[i + 1][1]
      table.remove(res, i + 1)
    else
      i = i + 1
    end
  end
  return res
end

---------------------------------------------------------------------------
-- Prompt editing: a small recursive-descent parser for A1111's grammar
--   prompt: (emphasized | scheduled | alternate | plain | ws)*
--   scheduled: "[" [prompt ":"] prompt ":" NUMBER "]"
--   alternate: "[" prompt ("|" prompt)+ "]"
-- Anything that does not parse as editing stays literal text, as A1111
-- falls back to the plain prompt when lark fails.
---------------------------------------------------------------------------

-- `memo` keeps, per position, what a "[" or "(" there parsed to: both
-- parse the same way whatever encloses them, and without it a run of
-- unclosed brackets is re-parsed exponentially often ("[[[[...").
local function parse_seq(s, p, stops, memo)
  -- returns node list, next position; stops at an unmatched stop char
  memo = memo or {bracket = {}, paren = {}}
  local nodes = {}
  local buf = {}
  local function flush()
    if #buf > 0 then nodes[#nodes + 1] = table.concat(buf); buf = {} end
  end
  while p <= #s do
    local c = s:sub(p, p)
    if c == "\\" and p < #s then
      buf[#buf + 1] = s:sub(p, p + 1)
      p = p + 2
    elseif stops[c] then
      break
    elseif c == "[" then
      flush()
      local m = memo.bracket[p]
      if m == nil then
        local node, np = M._parse_bracket(s, p, memo)
        m = node and {node, np} or false
        memo.bracket[p] = m
      end
      local node, np = m and m[1], m and m[2]
      if node then
        nodes[#nodes + 1] = node
        p = np
      else
        buf[#buf + 1] = c
        p = p + 1
      end
    elseif c == "(" then
      -- emphasis groups are kept as text but parsed for nested editing
      flush()
      local m = memo.paren[p]
      if m == nil then
        m = {parse_seq(s, p + 1, {[")"] = true}, memo)}
        memo.paren[p] = m
      end
      local inner, np = m[1], m[2]
      if s:sub(np, np) == ")" then
        nodes[#nodes + 1] = {kind = "group", open = "(", close = ")", body = inner}
        p = np + 1
      else
        buf[#buf + 1] = c
        p = p + 1
      end
    else
      buf[#buf + 1] = c
      p = p + 1
    end
  end
  flush()
  return nodes, p
end

-- "[...]" at p: scheduled, alternate, or plain emphasis [x]
function M._parse_bracket(s, p, memo)
  local parts, seps = {}, {}
  local q = p + 1
  while true do
    local body, np = parse_seq(s, q, {[":"] = true, ["|"] = true, ["]"] = true}, memo)
    parts[#parts + 1] = body
    local c = s:sub(np, np)
    if c == "]" then q = np + 1; break end
    if c == "" then return nil end
    seps[#seps + 1] = c
    q = np + 1
  end
  local function text_of(nodes)
    local t = {}
    for _, n in ipairs(nodes) do
      if type(n) == "string" then t[#t + 1] = n else return nil end
    end
    return table.concat(t)
  end
  if #seps >= 1 and seps[#seps] == ":" then
    local num = text_of(parts[#parts])
    local trimmed = num and num:match("^%s*([%d%.]+)%s*$")
    if trimmed and tonumber(trimmed) and (#seps == 1 or (#seps == 2 and seps[1] == ":")) then
      local node = {kind = "scheduled", when = trimmed}
      if #seps == 1 then node.before, node.after = {}, parts[1]
      else node.before, node.after = parts[1], parts[2] end
      return node, q
    end
  end
  if #seps >= 1 then
    local all_bar = true
    for _, sp in ipairs(seps) do if sp ~= "|" then all_bar = false end end
    if all_bar then return {kind = "alternate", options = parts}, q end
    return nil
  end
  return {kind = "group", open = "[", close = "]", body = parts[1]}, q
end

local function resolve_when(node, steps)
  local v = tonumber(node.when)
  if node.when:find(".", 1, true) then v = v * steps end
  return math.min(steps, math.floor(v))
end

local function collect(nodes, steps, out)
  for _, n in ipairs(nodes) do
    if type(n) == "table" then
      if n.kind == "scheduled" then
        local w = resolve_when(n, steps)
        if w >= 1 then out[w] = true end
        collect(n.before, steps, out)
        collect(n.after, steps, out)
      elseif n.kind == "alternate" then
        for i = 1, steps do out[i] = true end
        for _, o in ipairs(n.options) do collect(o, steps, out) end
      else
        collect(n.body, steps, out)
      end
    end
  end
end

local function render(nodes, step, steps)
  local t = {}
  for _, n in ipairs(nodes) do
    if type(n) == "string" then
      t[#t + 1] = n
    elseif n.kind == "scheduled" then
      t[#t + 1] = render(step <= resolve_when(n, steps) and n.before or n.after, step, steps)
    elseif n.kind == "alternate" then
      t[#t + 1] = render(n.options[(step - 1) % #n.options + 1], step, steps)
    else
      t[#t + 1] = n.open .. render(n.body, step, steps) .. n.close
    end
  end
  return table.concat(t)
end

--- Prompt editing schedule for `steps` steps: a list of {end_at, text},
-- end_at ascending; the text applies while the 0-based step index is <=
-- end_at (A1111's reconstruct_cond_batch rule).
function M.schedule(prompt, steps)
  local nodes = parse_seq(prompt, 1, {})
  local ends = {[steps] = true}
  collect(nodes, steps, ends)
  local list = {}
  for e in pairs(ends) do list[#list + 1] = e end
  table.sort(list)
  local out = {}
  for _, e in ipairs(list) do
    local text = render(nodes, e, steps)
    if #out > 0 and out[#out][2] == text then out[#out][1] = e
    else out[#out + 1] = {e, text} end
  end
  return out
end

--- Index into a schedule for a 0-based step.
function M.schedule_index(sched, step0)
  for i, e in ipairs(sched) do
    if step0 <= e[1] then return i end
  end
  return #sched
end

---------------------------------------------------------------------------
-- Chunking and encoding (sd_hijack_clip.py semantics)
---------------------------------------------------------------------------

M.chunk_length = 75
M.comma_backtrack = 20

--- Token chunks of a prompt: list of {tokens = {77 ids}, weights = {77}}.
-- `tok` is a tokenizer (pipe.tokenizer).
function M.chunks(tok, text)
  local parsed = M.parse_attention(text)
  local bos, eos = tok.bos_id or 49406, tok.eos_id or 49407
  local pad = tok.pad_id or eos
  local comma = tok.comma_id
  if not comma then
    local ids = tok:encode_raw(",")
    comma = ids[2]
  end
  local L = M.chunk_length
  local chunks = {}
  local cur = {tokens = {}, weights = {}}
  local last_comma = -1
  local function next_chunk()
    local n = #cur.tokens
    for _ = n + 1, L do cur.tokens[#cur.tokens + 1] = pad; cur.weights[#cur.weights + 1] = 1.0 end
    table.insert(cur.tokens, 1, bos); table.insert(cur.weights, 1, 1.0)
    cur.tokens[#cur.tokens + 1] = eos; cur.weights[#cur.weights + 1] = 1.0
    -- SD 1.x pads with EOS; A1111 also ends every chunk with EOS
    chunks[#chunks + 1] = cur
    cur = {tokens = {}, weights = {}}
    last_comma = -1
  end
  for _, item in ipairs(parsed) do
    local text_part, weight = item[1], item[2]
    if text_part == "BREAK" and weight == -1 then
      next_chunk()
    else
      local raw = tok:encode_raw(text_part)
      for k = 2, #raw - 1 do
        local id = raw[k]
        if id == comma then
          last_comma = #cur.tokens
        elseif M.comma_backtrack ~= 0 and #cur.tokens == L and last_comma ~= -1
            and #cur.tokens - last_comma <= M.comma_backtrack then
          local keep = last_comma + 1
          local rt, rw = {}, {}
          for j = keep + 1, #cur.tokens do rt[#rt + 1] = cur.tokens[j]; rw[#rw + 1] = cur.weights[j] end
          for j = #cur.tokens, keep + 1, -1 do cur.tokens[j] = nil; cur.weights[j] = nil end
          next_chunk()
          cur.tokens, cur.weights = rt, rw
        end
        if #cur.tokens == L then next_chunk() end
        cur.tokens[#cur.tokens + 1] = id
        cur.weights[#cur.weights + 1] = weight
      end
    end
  end
  if #cur.tokens > 0 or #chunks == 0 then next_chunk() end
  return chunks
end

--- true when the prompt needs no weighting or chunking, so the plain
-- diffusers-style encode gives the identical result.
function M.is_plain(chunks)
  if #chunks ~= 1 then return false end
  for _, w in ipairs(chunks[1].weights) do if w ~= 1.0 then return false end end
  return true
end

--- Encodes a prompt (no editing) to a context [1, 77*k, C]: each chunk
-- through the text encoder, weighted, with the chunk's original mean kept
-- (A1111), concatenated along the sequence.
function M.encode(pipe, text, opts)
  local lucid = require "lucid"
  opts = opts or {}
  local chunks = M.chunks(pipe.tokenizer, text)
  local outs = {}
  for i, ch in ipairs(chunks) do
    local ids = lucid.tensor({ch.tokens}, "i64")
    local z = pipe.text_encoder:forward(ids, {clip_skip = opts.clip_skip})
    local plain = true
    for _, w in ipairs(ch.weights) do if w ~= 1.0 then plain = false end end
    if not plain then
      local original_mean = z:mean():item()
      local w = lucid.tensor({ch.weights}):view(1, #ch.weights, 1)
      z = z * w
      local new_mean = z:mean():item()
      z = z * (original_mean / new_mean)
    end
    outs[i] = z
  end
  if #outs == 1 then return outs[1] end
  return lucid.cat(outs, 2)
end

--- Pads the shorter of two contexts with copies of `empty` (one chunk of
-- the empty prompt) so cond and uncond batch together (A1111's
-- pad_cond_uncond).
function M.pad_to(ctx, len, empty)
  local lucid = require "lucid"
  local have = ctx:shape()[2]
  if have >= len then return ctx end
  local parts = {ctx}
  local chunk = empty:shape()[2]
  for _ = 1, math.floor((len - have) / chunk) do parts[#parts + 1] = empty end
  return lucid.cat(parts, 2)
end

--- Contexts for a prompt with editing: returns a function(i, n) -> context
-- (1-based step i) when the prompt changes over the steps, or the single
-- context. Encodings are cached per distinct text.
function M.scheduled_context(pipe, prompt, steps, opts)
  local sched = M.schedule(prompt, steps)
  local cache = {}
  local function enc(text)
    if not cache[text] then cache[text] = M.encode(pipe, text, opts) end
    return cache[text]
  end
  if #sched == 1 then return enc(sched[1][2]), sched end
  for _, e in ipairs(sched) do enc(e[2]) end
  return function(i)
    return enc(sched[M.schedule_index(sched, i - 1)][2])
  end, sched
end

return M
