-- DDIM inversion of audio: one slice of --audio-in becomes a spectrogram,
-- the inverse DDIM walk turns it into noise, and the ordinary DDIM walk
-- turns that noise back into a spectrogram and audio. Prints how far the
-- reconstruction is from the input (spectrogram bytes and PSNR), writes
-- the reconstructed audio, its spectrogram, and optionally the noise.
-- clip_sample is switched off on both walks: clipping x0 loses what the
-- inversion needs.
local R = require "lucid.recipe"

return {
  name = "audio_invert",
  description = "invert audio to diffusion noise by DDIM inversion and reconstruct it",
  options = {
    {"model", required = true, help = "audio diffusion folder (unet/, scheduler/, mel_config.json)"},
    {"audio_in", required = true},
    {"slice", type = "int", default = 0, min = 0, help = "which slice of the input (0-based)"},
    {"steps", default = 50},
    {"gl-init", type = "string", default = "zero", choices = {"random", "zero"},
      help = "Griffin-Lim initial phases (random: from --seed)"},
    "seed",
    {"noise-out", type = "path", record = false, help = "also save the inverted noise (key 'noise') to this .safetensors"},
    {"out", default = "out.png", help = "reconstructed spectrogram PNG"},
    {"audio_out", default = "out.wav", help = "reconstructed audio (.wav, .flac or .ogg)"},
    "quiet",
  },
  run = function(opts, lucid, recipe)
    local ad = require "lucid.audio_diffusion"
    local prov = require "lucid.provenance"
    local pipe = ad.load(opts.model)
    local mel = pipe.mel
    mel:load_audio(opts.audio_in)
    local ns = mel:get_number_of_slices()
    if opts.slice >= ns then
      R.fail(string.format("audio_invert: --slice %d but %s has %d slice(s)", opts.slice, opts.audio_in, ns))
    end
    local input = mel:audio_slice_to_image(opts.slice)
    local noclip = {clip_sample = false}
    local bar = R.progress(2 * opts.steps, opts.quiet, "audio_invert")
    local noise = pipe:invert(input, opts.steps, function(i) bar.step(i) end, noclip)
    local seed = R.seed(opts.seed)
    opts.seed = seed
    local g = lucid.generator(seed)
    local r = pipe:generate{
      scheduler = pipe:scheduler("ddim", noclip), steps = opts.steps, noise = noise,
      gl = opts.gl_init == "zero" and {init = "zero"} or {generator = g},
      on_step = function(i) bar.step(opts.steps + i) end,
    }
    bar.done()
    local a, b = input:to("f32"), r.image:to("f32")
    local mad = (a - b):abs():mean():item()
    local mse = ((a - b) * (a - b)):mean():item()
    local psnr = mse > 0 and 10 * math.log10(255 * 255 / mse) or math.huge
    print(string.format("reconstruction: mean |diff| %.3f of 255, PSNR %.2f dB (noise std %.3f)",
      mad, psnr, noise:std():item()))
    if opts.noise_out then lucid.safetensors.save(opts.noise_out, {noise = noise}) end
    local info = R.model_info(opts.model)
    info.seed = seed
    info.psnr = psnr
    local img = b / 255
    local s = img:shape()
    img = img:view({1, 1, s[1], s[2]})
    R.save_image(lucid.cat({img, img, img}, 2), opts.out, recipe, opts, info)
    lucid.audio.save(r.audio, opts.audio_out, mel:get_sample_rate(),
      {comment = lucid.json.encode(prov.record(recipe, opts, info)),
       software = "lucid " .. tostring(lucid.version)})
    if not opts.quiet then io.stderr:write("wrote " .. opts.audio_out .. " and " .. opts.out .. "\n") end
    return {psnr = psnr, mean_abs = mad, noise = noise}
  end,
}
