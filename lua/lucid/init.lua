--- The lucid module: tensors, files, models, samplers and guidance.
-- The C half lives in lucid.core; this file assembles the public API.
local core = require "lucid.core"

local lucid = {}
for k, v in pairs(core) do lucid[k] = v end
lucid.core = core
lucid.version = core.version or "0.1.0"

local schedulers = require "lucid.schedulers"
--- lucid.scheduler(name, config_or_pipe, overrides) -> scheduler
lucid.scheduler = schedulers.new
lucid.schedulers = schedulers
local pipeline = require "lucid.pipeline"
--- lucid.load(path, opts) -> pipe;  lucid.taesd(dir) -> tiny autoencoder
lucid.load = pipeline.load
lucid.taesd = pipeline.taesd
lucid.pipeline = pipeline
-- recipe building blocks: guidance rules, the sampling loop, A1111 prompts
lucid.guidance = require "lucid.guidance"
lucid.sampling = require "lucid.sampling"
lucid.prompt = require "lucid.prompt"
lucid.grid = require "lucid.grid"
lucid.plot = require "lucid.plot"
--- lucid.controlnet(path, opts) -> ControlNet (lucid/controlnet.lua)
lucid.controlnet = require("lucid.controlnet").load
-- print(t) / tostring(t) show shape, dtype and statistics
require("lucid.pretty").install()

return lucid
