--- lucid batch: many recipe runs from one manifest, resumable and
-- shardable (see lucid-batch(1)).
--
-- A job's index is its 0-based position in the manifest (blank lines and
-- lines starting with '#' in a JSON Lines manifest are not jobs). Everything
-- a job produces depends on the manifest and the command line only, never on
-- the shard or machine that runs it: seeds not given by the job are
-- derived from --base-seed and the index (M.derive_seed), default output
-- names come from the index (DIR/00042.png).
local core = require "lucid.core"
local args = require "lucid.args"
local json = core.json
local sys = core.sys

local M = {}

M.USAGE = [[
usage: lucid batch MANIFEST [--shard I/N] [--journal FILE] [--out-dir DIR]
                            [--base-seed N] [--retry-failed] [--quiet]
       lucid batch --merge MANIFEST [--journal FILE]

MANIFEST is JSON Lines, one job per line:
  {"recipe": "txt2img", "options": {"prompt": "a cat", "steps": 20}}
  {"recipe": "txt2img", "args": ["--prompt", "a dog", "--seed", "7"]}
  {"recipe": "txt2img", "prompt": "a bird", "seed": 3}   (other fields are options)
or a Lua file returning a list of such tables.

options:
  --shard I/N       run the jobs whose 0-based index % N == I (0 <= I < N);
                    default from SLURM_ARRAY_TASK_ID/_COUNT/_MIN when set
  --journal FILE    journal (JSON Lines); default MANIFEST.journal, or
                    MANIFEST.journal.I-of-N for a shard
  --out-dir DIR     where default and relative output names go (default: .)
  --base-seed N     seeds of jobs that give none derive from N and the index
                    (default 0)
  --retry-failed    run again the jobs the journal records as failed
                    (default: they are reported and skipped)
  --quiet           print only errors and the summary
  --merge           verify the shard journals of MANIFEST and merge them

exit status: 0 all jobs done, 1 a job failed (or is missing, for --merge),
2 usage, 130/143 interrupted by SIGINT/SIGTERM (resume by running again).
See lucid-batch(1).
]]

local function eprint(s)
  io.stderr:write(s, "\n")
  io.stderr:flush()
end

local function usage_error(msg)
  eprint("lucid batch: " .. msg)
  eprint("(see lucid batch --help)")
  return 2
end

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function dirname(p)
  return p:match("^(.*)/[^/]*$") or "."
end

local function basename(p)
  return p:match("([^/]*)$")
end

local function mkdir_p(dir)
  if dir == "" or dir == "." or sys.file_type(dir) == "directory" then return true end
  os.execute("mkdir -p " .. shell_quote(dir) .. " 2>/dev/null")
  return sys.file_type(dir) == "directory"
end

local function errstr(e)
  if type(e) == "string" then return e end
  local ok, s = pcall(tostring, e)
  return ok and s or "(error object is a " .. type(e) .. " value)"
end

local function one_line(s)
  return (errstr(s):gsub("\n.*$", ""))
end

---------------------------------------------------------------- manifest

--- Reads a manifest -> list of jobs {index, line, recipe, options, args,
-- err} | nil, message (the file cannot be read at all). A line that is not
-- a valid job stays in the list with `err` set: it is a failed job, the
-- others still run.
function M.read_manifest(path)
  if sys.file_type(path) ~= "file" then return nil, "cannot open manifest " .. path .. ": no such file" end
  local raw = {}
  if path:match("%.lua$") then
    local chunk, err = loadfile(path)
    if not chunk then return nil, "manifest " .. err end
    local ok, list = pcall(chunk)
    if not ok then return nil, "manifest " .. path .. ": " .. errstr(list) end
    if type(list) ~= "table" then
      return nil, "manifest " .. path .. ": must return a list of jobs, returned a " .. type(list)
    end
    for i, j in ipairs(list) do raw[#raw + 1] = {line = i, value = j} end
  else
    local f, err = io.open(path, "rb")
    if not f then return nil, "cannot open manifest: " .. err end
    local n = 0
    for l in f:lines() do
      n = n + 1
      l = l:gsub("\r$", "")
      if not l:match("^%s*$") and not l:match("^%s*#") then
        local ok, v = pcall(json.decode, l)
        if ok then raw[#raw + 1] = {line = n, value = v}
        else raw[#raw + 1] = {line = n, err = "not valid JSON: " .. one_line(v)} end
      end
    end
    f:close()
  end
  local jobs = {}
  for i, r in ipairs(raw) do
    local job = {index = i - 1, line = r.line, err = r.err}
    local v = r.value
    if not job.err then
      if type(v) ~= "table" or v[1] ~= nil then
        job.err = "a job must be an object {\"recipe\": ..., \"options\": {...}}, got " ..
          (v == json.null and "null" or type(v) == "table" and "a list" or type(v))
      elseif type(v.recipe) ~= "string" or v.recipe == "" then
        job.err = "missing \"recipe\" (a bundled recipe's name or a recipe file)"
      elseif v.options ~= nil and type(v.options) ~= "table" then
        job.err = "\"options\" must be an object, got " .. type(v.options)
      elseif v.args ~= nil and type(v.args) ~= "table" then
        job.err = "\"args\" must be a list of strings, got " .. type(v.args)
      else
        job.recipe, job.options, job.args = v.recipe, v.options, v.args
        -- the flat form {"recipe": "txt2img", "prompt": ..., "seed": 3}:
        -- other fields are options too
        local keys = {}
        for k in pairs(v) do
          if k ~= "recipe" and k ~= "options" and k ~= "args" then keys[#keys + 1] = tostring(k) end
        end
        table.sort(keys)
        if #keys > 0 then
          local merged = {}
          for k, x in pairs(v.options or {}) do merged[k] = x end
          for _, k in ipairs(keys) do
            local norm = k:gsub("-", "_")
            for ok in pairs(merged) do
              if type(ok) == "string" and ok:gsub("-", "_") == norm then
                job.err = "option \"" .. k .. "\" given both as a job field and in \"options\""
              end
            end
            merged[k] = v[k]
          end
          job.options = merged
        end
      end
    end
    jobs[#jobs + 1] = job
  end
  return jobs
end

--- The options table of a job as command-line words (--name=value, so a
-- value starting with '-' stays a value) | nil, message.
function M.options_argv(options)
  local argv, keys = {}, {}
  for k in pairs(options or {}) do
    if type(k) ~= "string" then return nil, "option names must be strings, got " .. type(k) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local function word(name, v)
    local t = type(v)
    if t == "number" then return "--" .. name .. "=" .. args.number_str(v) end
    if t == "string" then return "--" .. name .. "=" .. v end
    if t == "boolean" then return "--" .. name .. "=" .. (v and "yes" or "no") end
    return nil, "option " .. name .. ": expected a string, number or boolean, got " ..
      (v == json.null and "null" or t)
  end
  for _, k in ipairs(keys) do
    local name, v = k:gsub("_", "-"), options[k]
    if type(v) == "table" then
      local n = 0
      for _ in pairs(v) do n = n + 1 end
      if n ~= #v then return nil, "option " .. name .. ": expected a value or a list of values, got an object" end
      for _, x in ipairs(v) do
        local w, err = word(name, x)
        if not w then return nil, err end
        argv[#argv + 1] = w
      end
    else
      local w, err = word(name, v)
      if not w then return nil, err end
      argv[#argv + 1] = w
    end
  end
  return argv
end

--- A job's seed when it gives none: the first 4 bytes (big-endian) of
-- SHA-256("lucid-batch-seed:BASE:INDEX"), an integer in [0, 2^32).
function M.derive_seed(base, index)
  local h = core.sha256(string.format("lucid-batch-seed:%d:%d", base, index))
  return tonumber(h:sub(1, 8), 16)
end

local function given(argv, name)
  for _, a in ipairs(argv) do
    if a == "--" then return false end
    if a == "--" .. name or a:sub(1, #name + 3) == "--" .. name .. "=" then return true end
  end
  return false
end

local function is_output(spec)
  return spec.type == "path" and (spec.key == "out" or spec.key:match("_out$") ~= nil)
end

local recipes = {}

local function load_recipe(name)
  local cli = require "lucid.cli"
  local path, label = cli.resolve(name)
  if not path then return nil, label end
  local r = recipes[path]
  if not r then
    local chunk, err = loadfile(path)
    if not chunk then return nil, err end
    local ok, v = pcall(chunk)
    if not ok then return nil, "recipe " .. name .. ": " .. errstr(v) end
    if type(v) ~= "table" or type(v.run) ~= "function" then
      return nil, "recipe " .. name .. " (" .. path .. ") is a script, not a recipe table with a run function"
    end
    local ok2, specs = pcall(args.specs, v.options)
    if not ok2 then return nil, "recipe " .. name .. ": " .. errstr(specs) end
    local hash
    local okh, h = pcall(core.sha256_file, path)
    if okh then hash = h end
    r = {recipe = v, specs = specs, path = path, label = label, sha256 = hash}
    recipes[path] = r
  end
  return r
end

--- Everything needed to run a job, without running it: recipe, parsed
-- options (seed and outputs filled in), output paths and the job's hash
-- -> plan | nil, message.
function M.plan(job, cfg)
  if job.err then return nil, job.err end
  local r, err = load_recipe(job.recipe)
  if not r then return nil, err end
  local argv = {}
  for i, a in ipairs(job.args or {}) do
    if type(a) ~= "string" and type(a) ~= "number" then
      return nil, "args[" .. i .. "]: expected a string, got " .. (a == json.null and "null" or type(a))
    end
    argv[#argv + 1] = tostring(a)
  end
  local extra, e2 = M.options_argv(job.options)
  if not extra then return nil, e2 end
  for _, a in ipairs(extra) do argv[#argv + 1] = a end
  local opts, perr = args.parse(r.specs, argv, 1, r.recipe.positional)
  if not opts then return nil, perr end
  if opts.help then return nil, "--help is not a job" end
  local outputs = {}
  for _, s in ipairs(r.specs) do
    if s.key == "seed" and (opts.seed == nil or opts.seed < 0) then
      opts.seed = M.derive_seed(cfg.base_seed, job.index)
    elseif s.key == "quiet" and not given(argv, "quiet") then
      opts.quiet = true
    elseif is_output(s) then
      local v = opts[s.key]
      if s.key == "out" and not given(argv, "out") then
        local ext = (s.default and s.default:match("%.[%w]+$")) or ".png"
        v = string.format("%05d%s", job.index, ext)
      end
      if v then
        if v:sub(1, 1) ~= "/" and cfg.out_dir then v = cfg.out_dir .. "/" .. v end
        opts[s.key] = v
        outputs[#outputs + 1] = v
      end
    end
  end
  local key = json.encode{
    recipe = r.label, recipe_sha256 = r.sha256 or json.null,
    argv = args.to_argv(r.specs, opts, false),
  }
  return {r = r, opts = opts, outputs = outputs, hash = core.sha256(key)}
end

--- a path spelled one way: "./a//b.png" and "a/b.png" are one file
local function norm_path(p)
  p = p:gsub("/+", "/"):gsub("/%./", "/")
  while p:sub(1, 2) == "./" do p = p:sub(3) end
  return p
end

---------------------------------------------------------------- journal

--- Journal records by index (the last one for an index wins); a torn last
-- line (a crash while writing) is ignored.
function M.read_journal(path)
  local recs = {}
  local f = io.open(path, "rb")
  if not f then return recs end
  for l in f:lines() do
    local ok, v = pcall(json.decode, l)
    if ok and type(v) == "table" and type(v.index) == "number" then recs[v.index] = v end
  end
  f:close()
  return recs
end

local function append(journal, rec)
  local line = json.encode(rec) .. "\n"
  local f, err = io.open(journal, "ab")
  if not f then error("journal " .. journal .. ": " .. tostring(err), 0) end
  local ok, werr = f:write(line)
  local ok2 = f:flush()
  f:close()
  if not ok or not ok2 then error("journal " .. journal .. ": write failed: " .. tostring(werr), 0) end
end

--- True when every output of a "done" record exists with its recorded hash.
function M.verify(rec)
  if type(rec) ~= "table" or rec.status ~= "done" or type(rec.outputs) ~= "table" then return false, "not done" end
  for _, o in ipairs(rec.outputs) do
    if type(o) ~= "table" or type(o.path) ~= "string" then return false, "malformed output record" end
    if sys.file_type(o.path) ~= "file" then return false, o.path .. " is missing" end
    local ok, h = pcall(core.sha256_file, o.path)
    if not ok or h ~= o.sha256 then return false, o.path .. " does not match its recorded SHA-256" end
  end
  return true
end

--- Removes temporary files the atomic writers leave when killed
-- (NAME.tmp-XXXXXX next to NAME).
local function remove_stray(path)
  local dir, base = dirname(path), basename(path)
  for _, f in ipairs(sys.listdir(dir) or {}) do
    if f:sub(1, #base + 5) == base .. ".tmp-" and #f == #base + 11 then os.remove(dir .. "/" .. f) end
  end
end

---------------------------------------------------------------- command line

local function parse_shard(s)
  local i, n = tostring(s):match("^(%d+)/(%d+)$")
  i, n = tonumber(i), tonumber(n)
  if not i or n < 1 or i >= n then
    return nil, "--shard: expected I/N with 0 <= I < N (0-based), got '" .. tostring(s) .. "'"
  end
  return {i = i, n = n}
end

--- The shard from SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of
-- SLURM_ARRAY_TASK_COUNT | nil (not a Slurm array) | nil, message.
function M.slurm_shard(getenv)
  getenv = getenv or os.getenv
  local id, count = getenv("SLURM_ARRAY_TASK_ID"), getenv("SLURM_ARRAY_TASK_COUNT")
  if not id or not count then return nil end
  local min = getenv("SLURM_ARRAY_TASK_MIN") or "0"
  local a, c, m = tonumber(id), tonumber(count), tonumber(min)
  if not (a and c and m) or a ~= math.floor(a) or c ~= math.floor(c) or m ~= math.floor(m)
     or c < 1 or a - m < 0 or a - m >= c then
    return nil, string.format("SLURM_ARRAY_TASK_ID=%s, _MIN=%s, _COUNT=%s do not give a shard "
      .. "(the array must be a contiguous range such as --array=0-%d)", id, min, count, (c or 1) - 1)
  end
  return {i = a - m, n = c}
end

--- Parses the batch command line -> cfg | nil, message.
function M.parse_argv(argv)
  local cfg = {base_seed = 0}
  local i = 1
  local function value(name)
    local v = argv[i + 1]
    if v == nil then return nil, "--" .. name .. ": missing its value" end
    i = i + 1
    return v
  end
  while i <= #argv do
    local a = argv[i]
    local name, inline = a:match("^%-%-([%w-]+)=(.*)$")
    name = name or a:match("^%-%-([%w-]+)$")
    local function val()
      if inline then return inline end
      return value(name)
    end
    local v, err
    if a == "--help" or a == "-h" then cfg.help = true
    elseif name == "merge" and not inline then cfg.merge = true
    elseif name == "retry-failed" and not inline then cfg.retry_failed = true
    elseif name == "quiet" and not inline then cfg.quiet = true
    elseif name == "shard" then
      v, err = val(); if not v then return nil, err end
      cfg.shard, err = parse_shard(v); if not cfg.shard then return nil, err end
    elseif name == "journal" then
      v, err = val(); if not v then return nil, err end
      if v == "" then return nil, "--journal: expected a file name" end
      cfg.journal = v
    elseif name == "out-dir" then
      v, err = val(); if not v then return nil, err end
      if v == "" then return nil, "--out-dir: expected a directory" end
      cfg.out_dir = v:gsub("/+$", "")
      if cfg.out_dir == "" then cfg.out_dir = "/" end
    elseif name == "base-seed" then
      v, err = val(); if not v then return nil, err end
      if not v:match("^%d+$") or tonumber(v) >= 2^53 then
        return nil, "--base-seed: expected a non-negative integer, got '" .. v .. "'"
      end
      cfg.base_seed = tonumber(v)
    elseif a:sub(1, 1) == "-" and a ~= "-" then
      return nil, "unknown option " .. a
    elseif cfg.manifest then
      return nil, "unexpected argument '" .. a .. "' (one manifest per batch)"
    else
      cfg.manifest = a
    end
    i = i + 1
  end
  if cfg.help then return cfg end
  if not cfg.manifest then return nil, "missing the manifest file" end
  if cfg.merge and cfg.shard then return nil, "--merge merges all shards; it takes no --shard" end
  return cfg
end

local function shard_journal(manifest, shard)
  return string.format("%s.journal.%d-of-%d", manifest, shard.i, shard.n)
end

---------------------------------------------------------------- running

local function run_job(job, plan)
  local lucid = require "lucid"
  local cli = require "lucid.cli"
  for _, o in ipairs(plan.outputs) do
    if not mkdir_p(dirname(o)) then error("cannot create the directory of " .. o, 0) end
    remove_stray(o)
  end
  local r, opts = plan.r, plan.opts
  for _, s in ipairs(r.specs) do
    if s.key == "threads" then opts.threads = sys.threads() end
  end
  local ctx = {name = r.label, path = r.path, specs = r.specs, recipe = r.recipe}
  ctx.provenance = function() return cli.provenance(ctx, opts) end
  local status = r.recipe.run(opts, lucid, ctx)
  if type(status) == "number" and status ~= 0 then
    error("the recipe returned exit status " .. status, 0)
  end
  local outs = {}
  for _, o in ipairs(plan.outputs) do
    if sys.file_type(o) ~= "file" then error("the recipe did not write " .. o, 0) end
    outs[#outs + 1] = {path = o, sha256 = core.sha256_file(o)}
  end
  return outs
end

local function signal_status()
  local sig = sys.caught_signal and sys.caught_signal() or 0
  if sig == 15 then return 143, "SIGTERM" end
  return 130, "SIGINT"
end

--- lucid batch MANIFEST ...: runs the jobs of this shard, returns the exit status.
function M.run(cfg)
  local jobs, err = M.read_manifest(cfg.manifest)
  if not jobs then return usage_error(err) end
  local shard = cfg.shard
  if not shard then
    local s, serr = M.slurm_shard()
    if serr then return usage_error(serr) end
    shard = s
  end
  local journal = cfg.journal or (shard and shard_journal(cfg.manifest, shard)) or (cfg.manifest .. ".journal")
  if not mkdir_p(dirname(journal)) then return usage_error("cannot create the directory of journal " .. journal) end
  if cfg.out_dir and not mkdir_p(cfg.out_dir) then return usage_error("cannot create --out-dir " .. cfg.out_dir) end
  local prior = M.read_journal(journal)
  local say = cfg.quiet and function() end or eprint
  if sys.catch_batch_signals then sys.catch_batch_signals() end

  local n_sel, n_done, n_skip, n_fail = 0, 0, 0, 0
  for _, job in ipairs(jobs) do
    if not shard or job.index % shard.n == shard.i then n_sel = n_sel + 1 end
  end
  -- every job's plan, over the whole manifest so that shards agree: two
  -- jobs writing one file would overwrite each other and never verify, so
  -- the later one fails
  local plans, owner = {}, {}
  for _, job in ipairs(jobs) do
    local plan, perr = M.plan(job, cfg)
    for _, o in ipairs(plan and plan.outputs or {}) do
      local first = owner[norm_path(o)]
      if first then
        plan, perr = nil, string.format("output %s is also job %d's output (give each job its own --out)", o, first)
        break
      end
    end
    for _, o in ipairs(plan and plan.outputs or {}) do owner[norm_path(o)] = job.index end
    plans[job.index] = {plan = plan, err = perr}
  end
  local interrupted = false
  for _, job in ipairs(jobs) do
    if not shard or job.index % shard.n == shard.i then
      if sys.interrupted() then interrupted = true; break end
      local where = string.format("job %d (line %d)", job.index, job.line)
      local plan, perr = plans[job.index].plan, plans[job.index].err
      local rec = prior[job.index]
      if not plan then
        n_fail = n_fail + 1
        eprint("lucid batch: " .. where .. " failed: " .. perr)
        if not (rec and rec.status == "failed" and rec.error == perr) then
          append(journal, {index = job.index, status = "failed", error = perr})
        end
      elseif rec and rec.job == plan.hash and rec.status == "done" and M.verify(rec) then
        n_skip = n_skip + 1
        n_done = n_done + 1
      elseif rec and rec.job == plan.hash and rec.status == "failed" and not cfg.retry_failed then
        n_fail = n_fail + 1
        eprint("lucid batch: " .. where .. " failed earlier (--retry-failed runs it again): " .. tostring(rec.error))
      else
        local t0 = core.clock()
        local ok, res = pcall(run_job, job, plan)
        local secs = core.clock() - t0
        if not ok and sys.interrupted() then
          -- abandoned: nothing of this job may look finished
          for _, o in ipairs(plan.outputs) do os.remove(o); remove_stray(o) end
          interrupted = true
          break
        elseif ok then
          n_done = n_done + 1
          append(journal, {index = job.index, status = "done", job = plan.hash, outputs = res,
                           seconds = math.floor(secs * 1000 + 0.5) / 1000})
          local names = {}
          for _, o in ipairs(res) do names[#names + 1] = o.path end
          say(string.format("lucid batch: %s done in %.2fs: %s", where, secs, table.concat(names, ", ")))
        else
          n_fail = n_fail + 1
          local msg = one_line(res)
          for _, o in ipairs(plan.outputs) do remove_stray(o) end
          append(journal, {index = job.index, status = "failed", job = plan.hash, error = msg,
                           seconds = math.floor(secs * 1000 + 0.5) / 1000})
          eprint("lucid batch: " .. where .. " failed: " .. msg)
        end
      end
    end
  end
  local label = shard and string.format(" (shard %d/%d)", shard.i, shard.n) or ""
  if interrupted then
    local status, name = signal_status()
    eprint(string.format("lucid batch: interrupted by %s after %d of %d jobs%s; journal %s; run the same command again to resume",
      name, n_done + n_fail, n_sel, label, journal))
    return status
  end
  eprint(string.format("lucid batch: %d of %d jobs done%s (%d already done), %d failed; journal %s",
    n_done, n_sel, label, n_skip, n_fail, journal))
  return n_fail > 0 and 1 or 0
end

---------------------------------------------------------------- merging

--- lucid batch --merge MANIFEST: every job must have a verified "done"
-- record in one of the shard journals (MANIFEST.journal.I-of-N); records
-- of the same job in several journals must agree. Writes MANIFEST.journal
-- (or --journal) with one record per job.
function M.merge(cfg)
  local jobs, err = M.read_manifest(cfg.manifest)
  if not jobs then return usage_error(err) end
  local dir, base = dirname(cfg.manifest), basename(cfg.manifest)
  local files = {}
  for _, f in ipairs(sys.listdir(dir) or {}) do
    local i, n = f:match("^(%d+)%-of%-(%d+)$", #base + 10)
    if f:sub(1, #base + 9) == base .. ".journal." and i then files[#files + 1] = dir .. "/" .. f end
  end
  table.sort(files)
  if #files == 0 then
    return usage_error("no shard journals " .. cfg.manifest .. ".journal.I-of-N to merge")
  end
  local by = {}
  for _, f in ipairs(files) do
    for idx, rec in pairs(M.read_journal(f)) do
      by[idx] = by[idx] or {}
      table.insert(by[idx], {file = f, rec = rec})
    end
  end
  local merged, problems = {}, {}
  local n_done, n_fail, n_missing = 0, 0, 0
  for _, job in ipairs(jobs) do
    local where = string.format("job %d (line %d)", job.index, job.line)
    local plan, perr = M.plan(job, cfg)
    local done, done_file, failed, bad
    for _, e in ipairs(by[job.index] or {}) do
      local rec = e.rec
      if plan and rec.status == "done" and rec.job ~= plan.hash then
        bad = bad or (e.file .. " records a different job (the manifest changed since)")
      elseif rec.status == "done" then
        if done and json.encode(done.outputs) ~= json.encode(rec.outputs) then
          bad = "inconsistent records in " .. done_file .. " and " .. e.file
        end
        done, done_file = done or rec, done_file or e.file
      elseif rec.status == "failed" then
        failed = rec
      end
    end
    if done and not bad then
      local ok, why = M.verify(done)
      if not ok then bad = why end
    end
    if done and not bad then
      n_done = n_done + 1
      merged[#merged + 1] = done
    elseif bad then
      n_missing = n_missing + 1
      problems[#problems + 1] = where .. ": " .. bad
    elseif failed or not plan then
      n_fail = n_fail + 1
      local msg = failed and tostring(failed.error) or perr
      problems[#problems + 1] = where .. " failed: " .. msg
      merged[#merged + 1] = failed or {index = job.index, status = "failed", error = msg}
    else
      n_missing = n_missing + 1
      problems[#problems + 1] = where .. ": missing (no shard journal records it)"
    end
  end
  local out = cfg.journal or (cfg.manifest .. ".journal")
  local tmp = out .. ".tmp"
  local f, ferr = io.open(tmp, "wb")
  if not f then error("cannot write " .. tmp .. ": " .. tostring(ferr), 0) end
  for _, rec in ipairs(merged) do f:write(json.encode(rec), "\n") end
  f:close()
  local ok, rerr = os.rename(tmp, out)
  if not ok then os.remove(tmp); error("cannot rename " .. tmp .. " to " .. out .. ": " .. tostring(rerr), 0) end
  for _, p in ipairs(problems) do eprint("lucid batch: merge: " .. p) end
  eprint(string.format("lucid batch: merged %d journals: %d of %d jobs done and verified, %d failed, %d missing or not verified; wrote %s",
    #files, n_done, #jobs, n_fail, n_missing, out))
  return (n_fail + n_missing) > 0 and 1 or 0
end

--- Entry point from the CLI: argv is the list after `batch`.
function M.main(argv)
  local cfg, err = M.parse_argv(argv)
  if not cfg then return usage_error(err) end
  if cfg.help then
    io.write(M.USAGE)
    return 0
  end
  if cfg.merge then return M.merge(cfg) end
  return M.run(cfg)
end

return M
