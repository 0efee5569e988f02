-- Delayed negative guidance (seed 003; Ban et al., ECCV 2024): the
-- unconditional branch sees the empty prompt before a start step and the
-- negative prompt from then on. One image per --starts value, side by side
-- in a grid (same seed), plus a measurement of when the negative prompt
-- takes hold.
--
-- The measurement: during the run with start 0 (added when --starts lacks
-- it; not tiled then), a hook on every cross-attention site (attn2) reads
-- the attention probabilities [B, heads, Lq, Lk]. A token's map F_k at site
-- k is the head-mean of its column (summed over the BPE pieces of a word),
-- taken from the negative branch for the negative token and from the prompt
-- branch for positive tokens. Per step t:
--   r_t = sum_k ||F_k,neg||_F / sum_k ||F_k,pos*||_F
-- where pos* is the positive prompt token "most related" to the negative
-- token: the one whose maps, summed over the steps and concatenated over the
-- sites, have the highest Pearson correlation with the negative token's.
-- The CSV has one row per step: step, t, r_t, the norms of the negative
-- token and of pos*, and of every --tokens word found in the prompts.
local R = require "lucid.recipe"
local guidance = require "lucid.guidance"
local sampling = require "lucid.sampling"

local function split(s)
  local t = {}
  for part in tostring(s):gmatch("[^,]+") do
    part = part:gsub("^%s+", ""):gsub("%s+$", "")
    if part ~= "" then t[#t + 1] = part end
  end
  return t
end

local function parse_starts(s, steps)
  local out = {}
  for _, p in ipairs(split(s)) do
    local v = tonumber(p)
    if not v or v < 0 or (v >= 1 and v ~= math.floor(v)) or v > steps then
      R.fail("--starts: '" .. p .. "' is not a step (0.." .. steps .. ") or a fraction in (0, 1)")
    end
    out[#out + 1] = v
  end
  if #out == 0 then R.fail("--starts: no start given (e.g. 0,0.2,0.4)") end
  return out
end

-- content token ids of a prompt as the encoder sees them: chunk by chunk,
-- 77 ids each, so positions index the context's token axis
local function prompt_ids(pipe, text)
  local P = require "lucid.prompt"
  local ids = {}
  for _, c in ipairs(P.chunks(pipe.tokenizer, text)) do
    for _, id in ipairs(c.tokens) do ids[#ids + 1] = id end
  end
  return ids
end

-- positions (1-based) of the first occurrence of `word`'s BPE pieces
local function find_word(pipe, ids, word)
  local raw = pipe.tokenizer:encode_raw(word)
  local sub = {}
  for k = 2, #raw - 1 do sub[#sub + 1] = raw[k] end
  if #sub == 0 then return nil end
  for i = 1, #ids - #sub + 1 do
    local ok = true
    for j = 1, #sub do if ids[i + j - 1] ~= sub[j] then ok = false; break end end
    if ok then
      local pos = {}
      for j = 1, #sub do pos[j] = i + j - 1 end
      return pos
    end
  end
  return nil
end

local function token_name(pipe, id)
  return (pipe.tokenizer:token(id) or tostring(id)):gsub("</w>$", "")
end

local function pearson(a, b)
  local am, bm = a - a:mean():item(), b - b:mean():item()
  local den = math.sqrt((am * am):sum():item() * (bm * bm):sum():item())
  if den == 0 then return -math.huge end
  return (am * bm):sum():item() / den
end

-- the hook's bookkeeping for the measured run
local function recorder(pipe, opts, negative_words, positive_words)
  local tok = pipe.tokenizer
  local bos, eos = tok.bos_id or 49406, tok.eos_id or 49407
  local pos_ids = prompt_ids(pipe, opts.prompt)
  local neg_ids = prompt_ids(pipe, opts.negative)
  -- candidates for pos*: the prompt's content tokens (first chunk)
  local cand = {}
  for i = 2, math.min(#pos_ids, 77) do
    local id = pos_ids[i]
    if id == eos then break end
    if id ~= bos then cand[#cand + 1] = i end
  end
  if #cand == 0 then R.fail("delayed_negative: the prompt has no tokens to compare the negative token with") end
  local items = {} -- {name, branch, pos}
  local neg_item
  for _, w in ipairs(negative_words) do
    local p = find_word(pipe, neg_ids, w)
    if p then
      items[#items + 1] = {name = "neg:" .. w, branch = "neg", pos = p}
      neg_item = neg_item or items[#items]
    end
  end
  for _, w in ipairs(positive_words) do
    local p = find_word(pipe, pos_ids, w)
    if p then items[#items + 1] = {name = "pos:" .. w, branch = "cond", pos = p} end
  end
  if not neg_item then
    R.fail("delayed_negative: none of --tokens (" .. table.concat(negative_words, ",") ..
      ") occurs in the negative prompt '" .. opts.negative .. "'")
  end
  local rec = {items = items, neg_item = neg_item, cand = cand, pos_ids = pos_ids,
               steps = {}, acc_neg = {}, acc_cand = {}, sites = {}}
  local c0, c1 = cand[1], cand[#cand] -- candidates are contiguous
  function rec.hook(site, probs)
    local st = rec.current
    if not st then return nil end
    local b = {}
    for j, name in ipairs(st.names) do b[name] = j end
    if not b.neg or not b.cond then return nil end
    local m = {neg = probs:select(1, b.neg):mean(1), cond = probs:select(1, b.cond):mean(1)} -- [Lq, Lk]
    for _, it in ipairs(items) do
      local map = m[it.branch]:narrow(2, it.pos[1], #it.pos):sum(2) -- [Lq]
      st.norms[it.name] = (st.norms[it.name] or 0) + map:norm():item()
      if it == neg_item then
        rec.acc_neg[site] = rec.acc_neg[site] and rec.acc_neg[site] + map or map
      end
    end
    local cm = m.cond:narrow(2, c0, c1 - c0 + 1) -- [Lq, ncand]
    local cn = cm:square():sum(1):sqrt():totable()
    for j = 1, #cn do st.cand[j] = (st.cand[j] or 0) + cn[j] end
    if not rec.acc_cand[site] then rec.sites[#rec.sites + 1] = site end
    rec.acc_cand[site] = rec.acc_cand[site] and rec.acc_cand[site] + cm or cm
    return nil
  end
  -- called before each forward (sampling's unet_opts)
  function rec.begin(i, t, names)
    rec.current = {step = i, t = t, names = names, norms = {}, cand = {}}
    rec.steps[i] = rec.current
  end
  -- pos*: the candidate whose accumulated maps correlate most with the
  -- negative token's (all sites concatenated)
  function rec.finish()
    local lucid = require "lucid"
    if #rec.sites == 0 then R.fail("delayed_negative: the cross-attention hook saw no forward with the negative prompt") end
    local nv, cv = {}, {}
    for k, site in ipairs(rec.sites) do nv[k] = rec.acc_neg[site]; cv[k] = rec.acc_cand[site] end
    local negv = lucid.cat(nv, 1)
    local candm = lucid.cat(cv, 1)
    local best, bestc = 1, -math.huge
    for j = 1, #cand do
      local c = pearson(negv, candm:select(2, j):contiguous())
      if c > bestc then best, bestc = j, c end
    end
    rec.best, rec.best_corr = best, bestc
    rec.best_name = token_name(pipe, pos_ids[cand[best]])
    return rec
  end
  return rec
end

local function write_csv(path, rec)
  local f, err = io.open(path, "w")
  if not f then R.fail("--csv: cannot write " .. path .. ": " .. tostring(err)) end
  local cols = {"step", "t", "r_t", rec.neg_item.name, "pos*:" .. rec.best_name}
  for _, it in ipairs(rec.items) do if it ~= rec.neg_item then cols[#cols + 1] = it.name end end
  f:write(table.concat(cols, ","), "\n")
  local rows = {}
  local idx = {}
  for i in pairs(rec.steps) do idx[#idx + 1] = i end
  table.sort(idx)
  for _, i in ipairs(idx) do
    local st = rec.steps[i]
    local nn = st.norms[rec.neg_item.name] or 0
    local pn = st.cand[rec.best] or 0
    local r = nn / pn
    local row = {tostring(i), string.format("%g", st.t), string.format("%.9g", r),
                 string.format("%.9g", nn), string.format("%.9g", pn)}
    for _, it in ipairs(rec.items) do
      if it ~= rec.neg_item then row[#row + 1] = string.format("%.9g", st.norms[it.name] or 0) end
    end
    f:write(table.concat(row, ","), "\n")
    rows[#rows + 1] = {step = i, t = st.t, r = r}
  end
  f:close()
  return rows
end

local function stem(path) return (path:gsub("%.[Pp][Nn][Gg]$", "")) end

return {
  name = "delayed_negative",
  positional = "prompt", -- lucid run delayed_negative "a cat" ...
  description = "delayed negative guidance over several start steps; per-step r_t of the cross-attention maps",
  options = {
    "model", "prompt", {"negative", required = true}, "seed", {"steps", default = 20}, "cfg",
    {"sampler", default = "ddim"}, "schedule", {"width", default = 512},
    {"height", default = 512}, "out", "rng",
    {"starts", type = "string", default = "0,0.2,0.4,0.6",
     help = "start steps of the negative prompt: integers count steps, fractions in (0,1) are parts of the run"},
    {"stop", type = "number", min = 0, help = "step (or fraction) from which the empty prompt returns (default: none)"},
    {"tokens", type = "string",
     help = "comma-separated words whose maps are recorded; the first found in the negative prompt is the negative token (default: the negative prompt's first word)"},
    {"csv", type = "path", record = false, help = "r_t table (default: OUT with .csv)"},
    {"plot", type = "path", record = false, help = "r_t plot image (default: OUT with .rt.png)"},
    {"labels", type = "flag", default = true, help = "caption each tile with its start"},
    {"preview", type = "int", default = 0, min = 0, help = "write a TAESD preview to OUT.preview.png every N steps (0: off)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local steps = opts.steps
    local starts = parse_starts(opts.starts, steps)
    local pipe, model_path = R.load(opts.model)
    local seed = R.seed(opts.seed)
    opts.seed = seed
    local words = opts.tokens and split(opts.tokens) or {}
    if #words == 0 then
      local first = opts.negative:match("[%w']+")
      if not first then R.fail("--negative: no word in '" .. opts.negative .. "' to measure") end
      words = {first}
    end
    local rec = recorder(pipe, opts, words, words)
    local contexts = {cond = R.context(pipe, opts.prompt, steps), empty = R.context(pipe, "", steps),
                      neg = R.context(pipe, opts.negative, steps)}
    local f = pipe.vae_scale_factor or 8
    local shape = {1, R.latent_channels(pipe), opts.height / f, opts.width / f}
    local runs, has0 = {}, false
    for _, v in ipairs(starts) do
      runs[#runs + 1] = {start = v, tile = true}
      if v == 0 then has0 = true end
    end
    if not has0 then table.insert(runs, 1, {start = 0, tile = false}) end
    local measured = false
    local tiles, labels = {}, {}
    for k, r in ipairs(runs) do
      local s = R.scheduler(pipe, opts)
      s:set_timesteps(steps)
      local g = lucid.generator(seed, opts.rng)
      local latents = g:randn(shape) * s.init_noise_sigma
      local rule = guidance.delayed_negative(opts.cfg, r.start, opts.stop)
      local handle, begin
      if r.start == 0 and not measured then
        handle = pipe.unet:hook("*attn2", rec.hook)
        begin = function(i, t, names) rec.begin(i, t, names) end
      end
      local bar = R.progress(#s.timesteps, opts.quiet, string.format("start %g (%d/%d)", r.start, k, #runs))
      local ok, x = pcall(sampling.run, {
        unet = pipe.unet, scheduler = s, timesteps_set = true, latents = latents,
        contexts = contexts, guidance = rule, generator = g, pad_context = R.padder(pipe),
        unet_opts = begin and function(i, t, names) begin(i, t, names); return nil end,
        on_step = function(i, n, t, xi)
          bar.step(i)
          R.preview(pipe, opts, i, n, xi)
        end,
      })
      if handle then handle:remove(); rec.current = nil; measured = true end
      if not ok then error(x, 0) end
      bar.done()
      if r.tile then
        tiles[#tiles + 1] = pipe.vae:decode(x)
        labels[#labels + 1] = string.format("START %g", r.start)
      end
    end
    rec.finish()
    local base = stem(opts.out)
    local csv = opts.csv or (base .. ".csv")
    local rows = write_csv(csv, rec)
    local xs, ys = {}, {}
    for _, row in ipairs(rows) do xs[#xs + 1] = row.step; ys[#ys + 1] = row.r end
    local plot_path = opts.plot or (base .. ".rt.png")
    local title = string.format("R_T = |%s| / |%s|", rec.neg_item.name:gsub("^neg:", ""), rec.best_name)
    lucid.image.save(require("lucid.plot").line({x = xs, y = ys}, {title = title, xlabel = "step", ylabel = "r_t"}),
      plot_path)
    local img = require("lucid.grid").make(tiles, {labels = opts.labels and labels or nil})
    local info = R.model_info(model_path)
    info.seed = seed
    R.save_image(img, opts.out, recipe, opts, info)
    if not opts.quiet then
      io.stderr:write(string.format("wrote %s (seed %d; starts %s), %s and %s (negative token '%s', most related positive token '%s', correlation %.3f)\n",
        opts.out, seed, opts.starts, csv, plot_path, rec.neg_item.name:gsub("^neg:", ""), rec.best_name, rec.best_corr))
    end
    return img
  end,
}
