-- Audio diffusion (teticio's audio-diffusion models, diffusers'
-- AudioDiffusionPipeline): generate N slices of mel spectrogram with the
-- unconditional UNet (DDIM or DDPM), turn them into sound by Griffin-Lim,
-- and write the audio (WAV/FLAC/OGG by extension) plus the spectrogram
-- PNG. With --audio-in the input's slices seed variations from
-- --start-step; --mask-start/--mask-end keep that many seconds of each
-- input slice (in/out-painting); --loop --bpm cuts a seamless loop of a
-- whole number of beats. The audio file records how it was made, so
-- `lucid replay FILE.wav` re-runs it.
local R = require "lucid.recipe"

local function model_check(v)
  local core = require "lucid.core"
  if core.sys and core.sys.file_type(v .. "/unet/config.json") ~= "file" then
    return "expected an audio diffusion folder (with unet/config.json), got " .. v
  end
end

return {
  name = "audio",
  description = "generate audio with an audio diffusion model (mel spectrograms + Griffin-Lim)",
  options = {
    {"model", required = true, check = model_check,
      help = "audio diffusion folder (unet/, scheduler/, mel_config.json, optional vae/)"},
    "seed",
    {"steps", default = 0, min = 0, help = "denoising steps (0: 50 for DDIM, 1000 for DDPM, as diffusers)"},
    {"sampler", type = "string", default = "model", choices = {"model", "ddim", "ddpm"},
      help = "ddim, ddpm, or the model's own scheduler"},
    {"eta", type = "number", default = 0, min = 0, max = 1, help = "DDIM eta (0: deterministic)"},
    {"slices", type = "int", default = 1, min = 1, max = 1000,
      help = "spectrogram slices to generate (hop * (x_res - 1) samples each, 5.9 s with the default Mel; with --audio-in: at most the input's)"},
    "audio_in",
    {"start-step", type = "int", default = 0, min = 0,
      help = "with --audio-in: start denoising the input's slices from this step (variations)"},
    {"mask-start", type = "number", default = 0, min = 0,
      help = "with --audio-in: keep this many seconds at the start of each slice"},
    {"mask-end", type = "number", default = 0, min = 0,
      help = "with --audio-in: keep this many seconds at the end of each slice"},
    {"loop", type = "flag", help = "write a seamless loop of a whole number of beats (needs --bpm)"},
    {"bpm", type = "number", min = 1, max = 1000, help = "tempo for --loop"},
    {"gl-init", type = "string", default = "random", choices = {"random", "zero"},
      help = "Griffin-Lim initial phases: random (from the seed) or zero"},
    "rng",
    {"out", default = "out.png", help = "spectrogram PNG (the slices side by side)"},
    {"audio_out", default = "out.wav", help = "output audio (.wav, .flac or .ogg)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local ad = require "lucid.audio_diffusion"
    local prov = require "lucid.provenance"
    if opts.loop and not opts.bpm then R.fail("audio: --loop needs --bpm (the tempo)") end
    if (opts.start_step > 0 or opts.mask_start > 0 or opts.mask_end > 0) and not opts.audio_in then
      R.fail("audio: --start-step and --mask-start/--mask-end need --audio-in")
    end
    local pipe = ad.load(opts.model)
    local seed = R.seed(opts.seed)
    opts.seed = seed
    local g = lucid.generator(seed, opts.rng)
    local mel = pipe.mel
    local sr = mel:get_sample_rate()
    local n = opts.slices
    if opts.audio_in then
      mel:load_audio(opts.audio_in)
      n = math.min(n, mel:get_number_of_slices())
    end
    local name = opts.sampler ~= "model" and opts.sampler or nil
    local images, audios = {}, {}
    for i = 0, n - 1 do
      local s = pipe:scheduler(name)
      local steps = opts.steps > 0 and opts.steps or pipe:default_steps(s)
      if opts.start_step >= steps then
        R.fail(string.format("audio: --start-step %d should be below --steps %d", opts.start_step, steps))
      end
      local bar = R.progress(steps - opts.start_step, opts.quiet, string.format("audio %d/%d", i + 1, n))
      local r = pipe:generate{
        scheduler = s, steps = steps, generator = g, eta = opts.eta,
        image = opts.audio_in and mel:audio_slice_to_image(i) or nil,
        start_step = opts.start_step, mask_start_secs = opts.mask_start, mask_end_secs = opts.mask_end,
        gl = opts.gl_init == "zero" and {init = "zero"} or {generator = g},
        on_step = function(k) bar.step(k) end,
      }
      bar.done()
      images[#images + 1] = r.image
      audios[#audios + 1] = r.audio
    end
    local audio = lucid.cat(audios, 1)
    local info = R.model_info(opts.model)
    info.seed = seed
    if opts.loop then
      local beats
      audio, beats = ad.loop(audio, sr, opts.bpm)
      info.loop_beats = beats
    end
    -- the spectrogram as a grey PNG, slices side by side
    local img = lucid.cat(images, 2):to("f32") / 255
    local s = img:shape()
    img = img:view({1, 1, s[1], s[2]})
    R.save_image(lucid.cat({img, img, img}, 2), opts.out, recipe, opts, info)
    local rec = prov.record(recipe, opts, info)
    lucid.audio.save(audio, opts.audio_out, sr, {
      comment = lucid.json.encode(rec),
      software = "lucid " .. tostring(lucid.version),
      title = "audio diffusion, seed " .. seed,
    })
    if not opts.quiet then
      io.stderr:write(string.format("wrote %s (%.2f s) and %s (seed %d)\n", opts.audio_out,
        audio:shape()[1] / sr, opts.out, seed))
    end
    return audio
  end,
}
