-- Schedulers against the golden diffusers tables: timesteps, sigmas,
-- init_noise_sigma, betas and alphas_cumprod, for 10 and 25 steps.
local T = require "testlib"
local lucid = require "lucid"

local dir = T.data("golden/tiny-a")
local golden = lucid.json.decode(io.open(dir .. "/golden.json"):read("*a"))
local G = lucid.safetensors.load(dir .. "/golden.safetensors")

local case
for _, c in ipairs(golden.cases) do if c.name == "schedulers" then case = c end end

local function list_close(got, want_t, tol, what)
  local want = want_t:totable()
  T.eq(#got, #want, what .. ": length")
  for i = 1, #want do
    local w = want[i]
    local d = math.abs(got[i] - w)
    if d > tol * math.max(1, math.abs(w)) then
      error(string.format("%s[%d]: %.9g vs golden %.9g", what, i, got[i], w))
    end
  end
end

T.case("betas and alphas_cumprod (scaled_linear, float32 as torch)", function()
  local s = lucid.scheduler("ddim", case.base_config)
  list_close(s.betas, G["scheduler/betas"], 0, "betas")
  list_close(s.alphas_cumprod, G["scheduler/alphas_cumprod"], 0, "alphas_cumprod")
end)

for class, entry in pairs(case.schedulers) do
  for _, n in ipairs{10, 25} do
    T.case(string.format("%s %d steps: timesteps and sigmas", class, n), function()
      local s = lucid.scheduler(class, case.base_config)
      s:set_timesteps(n)
      local key = "scheduler/" .. class .. "/" .. n
      list_close(s.timesteps, G[key .. "/timesteps"], 0, "timesteps")
      if G[key .. "/sigmas"] then list_close(s.sigmas, G[key .. "/sigmas"], 1e-6, "sigmas") end
      T.near(s.init_noise_sigma, entry[tostring(n)].init_noise_sigma, 1e-6, "init_noise_sigma")
    end)
  end
end

T.case("spacings: leading, trailing, linspace (DDIM, 1000 train steps)", function()
  local function ts(spacing, n, offset)
    local s = lucid.scheduler("ddim", {timestep_spacing = spacing, steps_offset = offset or 0})
    s:set_timesteps(n)
    return s.timesteps
  end
  -- diffusers: leading = arange(n)*(N//n) reversed + offset
  local l = ts("leading", 4, 1)
  T.eq(table.concat(l, ","), "751,501,251,1")
  -- trailing = round(arange(N, 0, -N/n)) - 1
  T.eq(table.concat(ts("trailing", 4), ","), "999,749,499,249")
  -- linspace = round(linspace(0, N-1, n)) reversed
  T.eq(table.concat(ts("linspace", 4), ","), "999,666,333,0")
end)

T.case("karras sigmas run from sigma_max to sigma_min", function()
  local s = lucid.scheduler("euler", case.base_config, {use_karras_sigmas = true})
  s:set_timesteps(10)
  local train_max = math.sqrt((1 - s.alphas_cumprod[1000]) / s.alphas_cumprod[1000])
  T.near(s.sigmas[1], train_max, 1e-4)
  for i = 2, 10 do T.truthy(s.sigmas[i] < s.sigmas[i - 1], "decreasing") end
  T.eq(s.sigmas[11], 0)
end)

T.case("bad input: unknown scheduler, steps out of range", function()
  T.raises(function() lucid.scheduler("nope") end, "unknown scheduler 'nope'")
  local s = lucid.scheduler("ddim", case.base_config)
  T.raises(function() s:set_timesteps(0) end, "0 steps is outside 1..1000")
  T.raises(function() s:set_timesteps(5000) end, "outside 1..1000")
end)

T.done()
