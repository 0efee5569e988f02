-- lucid batch internals (lua/lucid/batch.lua): manifests, seeds, plans,
-- journals, shards. The end-to-end runs are in tests/sh/test_batch.sh.
local T = require "testlib"
local B = require "lucid.batch"
local lucid = require "lucid"

local tmp = os.tmpname()
os.remove(tmp)
os.execute("mkdir -p '" .. tmp .. "'")

local function write(name, text)
  local p = tmp .. "/" .. name
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
  return p
end

T.case("derived seeds: first 4 bytes of SHA-256('lucid-batch-seed:BASE:INDEX')", function()
  -- values from Python's hashlib:
  -- int(hashlib.sha256(b"lucid-batch-seed:0:0").hexdigest()[:8], 16)
  T.eq(B.derive_seed(0, 0), 2252441371)
  T.eq(B.derive_seed(0, 1), 2425754181)
  T.eq(B.derive_seed(7, 42), 1926940069)
end)

T.case("options table -> command-line words, sorted, --name=value", function()
  local argv = assert(B.options_argv{prompt = "-a cat", steps = 3, cfg = 7.5, quiet = true,
    latents_out = "x.safetensors", controlnet = {"a", "b"}})
  T.eq(table.concat(argv, " "),
    "--cfg=7.5 --controlnet=a --controlnet=b --latents-out=x.safetensors --prompt=-a cat --quiet=yes --steps=3")
  local ok, err = B.options_argv{seed = {x = 1}}
  T.eq(ok, nil)
  local a2, err2 = B.options_argv{seed = lucid.json.null}
  T.eq(a2, nil)
  T.truthy(err2:find("option seed: expected a string, number or boolean, got null", 1, true), err2)
end)

T.case("JSON Lines manifest: jobs, comments, faulty lines kept as failed jobs", function()
  local p = write("m.jsonl", table.concat({
    '{"recipe": "txt2img", "options": {"steps": 2}}',
    '',
    '# comment',
    '{"recipe": "txt2img", "args": ["--steps", "3"]}',
    '[1, 2]',
    '{"options": {}}',
    '{"recipe": "txt2img", "options": 5}',
    '{"recipe": "txt2img", "prompt": "flat", "steps": 4, "options": {"seed": 3}}',
    '{"recipe": "txt2img", "options": {',
    '{"recipe": "txt2img", "negative-prompt": "a", "options": {"negative_prompt": "b"}}',
  }, "\n") .. "\n")
  local jobs = assert(B.read_manifest(p))
  T.eq(#jobs, 8)
  T.eq(jobs[1].index, 0); T.eq(jobs[1].line, 1); T.eq(jobs[1].options.steps, 2); T.eq(jobs[1].err, nil)
  T.eq(jobs[2].index, 1); T.eq(jobs[2].line, 4); T.eq(jobs[2].args[2], "3")
  T.truthy(jobs[3].err:find("must be an object", 1, true), jobs[3].err)
  T.truthy(jobs[4].err:find('missing "recipe"', 1, true), jobs[4].err)
  T.truthy(jobs[5].err:find('"options" must be an object', 1, true), jobs[5].err)
  -- the flat form: fields besides recipe/options/args are options
  T.eq(jobs[6].err, nil)
  T.eq(jobs[6].options.prompt, "flat"); T.eq(jobs[6].options.steps, 4); T.eq(jobs[6].options.seed, 3)
  T.truthy(jobs[8].err:find('"negative-prompt" given both as a job field and in "options"', 1, true), jobs[8].err)
  T.truthy(jobs[7].err:find("not valid JSON", 1, true), jobs[7].err)
  T.eq(jobs[7].index, 6)
  local none, err = B.read_manifest(tmp .. "/absent.jsonl")
  T.eq(none, nil)
  T.truthy(err:find("absent.jsonl", 1, true), err)
end)

T.case("Lua manifest: a list of job tables; errors are manifest errors", function()
  local jobs = assert(B.read_manifest(write("m.lua",
    'return {{recipe = "txt2img", options = {steps = 2}}, "oops"}')))
  T.eq(#jobs, 2)
  T.eq(jobs[1].options.steps, 2)
  T.truthy(jobs[2].err:find("must be an object", 1, true))
  local none, err = B.read_manifest(write("bad.lua", "return 42"))
  T.eq(none, nil)
  T.truthy(err:find("must return a list of jobs", 1, true), err)
  none, err = B.read_manifest(write("err.lua", "error('boom')"))
  T.eq(none, nil)
  T.truthy(err:find("boom", 1, true), err)
end)

T.case("plan: derived seed, default output name, quiet, hash", function()
  local cfg = {base_seed = 3, out_dir = tmp .. "/o"}
  local job = {index = 12, line = 13, recipe = "txt2img", options = {steps = 2, width = 64, height = 64}}
  local p = assert(B.plan(job, cfg))
  T.eq(p.opts.seed, B.derive_seed(3, 12))
  T.eq(p.opts.out, tmp .. "/o/00012.png")
  T.eq(p.opts.quiet, true)
  T.eq(#p.outputs, 1)
  T.eq(#p.hash, 64)
  -- the same job planned again hashes the same; any option changes it
  T.eq(assert(B.plan(job, cfg)).hash, p.hash)
  local job2 = {index = 12, line = 13, recipe = "txt2img", options = {steps = 3, width = 64, height = 64}}
  T.truthy(assert(B.plan(job2, cfg)).hash ~= p.hash)
  -- an explicit seed and output are kept (a relative output goes to --out-dir)
  local job3 = {index = 0, line = 1, recipe = "txt2img",
    options = {seed = 5, out = "a/b.png", latents_out = "/abs/l.safetensors"}}
  local p3 = assert(B.plan(job3, cfg))
  T.eq(p3.opts.seed, 5)
  T.eq(p3.opts.out, tmp .. "/o/a/b.png")
  T.eq(p3.opts.latents_out, "/abs/l.safetensors")
  T.eq(#p3.outputs, 2)
  -- errors: what the job got wrong
  local none, err = B.plan({index = 0, line = 1, recipe = "txt2img", options = {bogus = 1}}, cfg)
  T.eq(none, nil); T.eq(err, "unknown option --bogus")
  none, err = B.plan({index = 0, line = 1, recipe = "txt2img", options = {steps = 0}}, cfg)
  T.eq(none, nil); T.truthy(err:find("--steps: must be at least 1", 1, true), err)
  none, err = B.plan({index = 0, line = 1, recipe = "no_such_recipe"}, cfg)
  T.eq(none, nil); T.truthy(err:find("no recipe 'no_such_recipe'", 1, true), err)
end)

T.case("command line: shards are 0-based I/N", function()
  local cfg = assert(B.parse_argv{"m.jsonl", "--shard", "1/3", "--base-seed=9", "--out-dir", "o/"})
  T.eq(cfg.shard.i, 1); T.eq(cfg.shard.n, 3); T.eq(cfg.base_seed, 9); T.eq(cfg.out_dir, "o")
  for _, bad in ipairs{"3/3", "1/0", "a/b", "-1/2", "1"} do
    local c, err = B.parse_argv{"m.jsonl", "--shard", bad}
    T.eq(c, nil, bad)
    T.truthy(err:find("--shard", 1, true), err)
  end
  local c, err = B.parse_argv{"m.jsonl", "--base-seed", "-1"}
  T.eq(c, nil); T.truthy(err:find("--base-seed", 1, true))
  c, err = B.parse_argv{"a.jsonl", "b.jsonl"}
  T.eq(c, nil); T.truthy(err:find("one manifest", 1, true))
  c, err = B.parse_argv{"--merge", "m.jsonl", "--shard", "0/2"}
  T.eq(c, nil)
end)

T.case("Slurm: task id minus the array's first id, of the task count", function()
  local function env(t) return function(k) return t[k] end end
  T.eq(B.slurm_shard(env{}), nil)
  local s = assert(B.slurm_shard(env{SLURM_ARRAY_TASK_ID = "3", SLURM_ARRAY_TASK_COUNT = "4", SLURM_ARRAY_TASK_MIN = "1"}))
  T.eq(s.i, 2); T.eq(s.n, 4)
  s = assert(B.slurm_shard(env{SLURM_ARRAY_TASK_ID = "0", SLURM_ARRAY_TASK_COUNT = "2"}))
  T.eq(s.i, 0); T.eq(s.n, 2)
  local none, err = B.slurm_shard(env{SLURM_ARRAY_TASK_ID = "4", SLURM_ARRAY_TASK_COUNT = "4"})
  T.eq(none, nil); T.truthy(err:find("contiguous", 1, true), err)
end)

T.case("journal: last record per index wins; a torn last line is ignored", function()
  local p = write("j", '{"index":0,"status":"failed","error":"x"}\n' ..
    '{"index":1,"status":"done","outputs":[]}\n{"index":0,"status":"done","outputs":[]}\n{"index":2,"sta')
  local r = B.read_journal(p)
  T.eq(r[0].status, "done"); T.eq(r[1].status, "done"); T.eq(r[2], nil)
  T.eq(next(B.read_journal(tmp .. "/none")), nil)
end)

T.case("verify: outputs must exist with their recorded hash", function()
  local p = write("o.bin", "hello")
  local h = lucid.sha256("hello")
  T.eq(B.verify{status = "done", outputs = {{path = p, sha256 = h}}}, true)
  local ok, why = B.verify{status = "done", outputs = {{path = p, sha256 = lucid.sha256("hellO")}}}
  T.eq(ok, false); T.truthy(why:find("does not match", 1, true))
  ok, why = B.verify{status = "done", outputs = {{path = tmp .. "/gone", sha256 = h}}}
  T.eq(ok, false); T.truthy(why:find("missing", 1, true))
  T.eq((B.verify{status = "failed"}), false)
end)

T.case("a checkpoint promising more memory than the machine has fails before allocating", function()
  -- one f16 tensor whose file takes 3/4 of the available memory (sparse:
  -- no disk), so that it can still be mapped but needs 3/2 of it as f32
  local f = io.open("/proc/meminfo")
  if not f then print("# no /proc/meminfo; case skipped") return end
  local info = f:read("*a")
  f:close()
  local avail = (tonumber(info:match("MemAvailable:%s*(%d+)")) or 0) * 1024 +
                (tonumber(info:match("SwapFree:%s*(%d+)")) or 0) * 1024
  if avail == 0 then print("# no MemAvailable; case skipped") return end
  local n = math.floor(avail * 0.75 / 2 / 4096) * 4096
  local header = string.format('{"w":{"dtype":"F16","shape":[%d],"data_offsets":[0,%d]}}', n, 2 * n)
  local len = #header
  local le = {}
  for i = 0, 7 do le[#le + 1] = string.char(math.floor(len / 2 ^ (8 * i)) % 256) end
  local p = write("huge.safetensors", table.concat(le) .. header)
  if not os.execute(string.format("truncate -s %d '%s' 2>/dev/null", 8 + len + 2 * n, p)) then
    print("# cannot make a sparse file here; case skipped")
    return
  end
  local err = T.raises(function() lucid.weights_load(p) end, "huge.safetensors: loading needs")
  T.truthy(err:find(string.format("%.2f GB of memory", 4 * n / 1e9), 1, true), err)
  T.truthy(err:find("largest: w", 1, true), err)
  T.truthy(err:find("LUCID_NO_MEMORY_CHECK", 1, true), err)
  os.remove(p)
end)

os.execute("rm -rf '" .. tmp .. "'")
T.done()
