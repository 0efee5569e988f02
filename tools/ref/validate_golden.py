"""Checks ref_models.py against the real-diffusers golden data of tiny-a:
loads tiny-a's weights into the torch modules and reproduces the cases."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as R  # noqa: E402

D = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/data/golden/tiny-a")
G = R.st_load(D + "/golden.safetensors")
cfg = lambda p: json.load(open(os.path.join(D, p)))
worst = 0.0


def cmp(name, got, ref):
    global worst
    d = (got - ref).abs().max().item() / ref.abs().max().item()
    worst = max(worst, d)
    print("%-34s rel %.3g" % (name, d))


with torch.no_grad():
    u = R.UNet2DCondition(cfg("unet/config.json"))
    R.load_into(u, R.st_load(D + "/unet/diffusion_pytorch_model.safetensors"))
    for n in ("unet/t801", "unet/t1", "unet/t500_5"):
        cmp(n, u(G[n + "/sample"], G[n + "/timestep"], G[n + "/encoder_hidden_states"]), G[n + "/out"])
    te = R.CLIPText(cfg("text_encoder/config.json"))
    R.load_into(te, R.st_load(D + "/text_encoder/model.safetensors"))
    for n in ("text_encoder/0", "text_encoder/1"):
        last, pooled, skip = te(G[n + "/input_ids"].long())
        cmp(n + " last", last, G[n + "/last_hidden_state"])
        cmp(n + " pooled", pooled, G[n + "/pooler_output"])
        cmp(n + " clip_skip1", skip, G[n + "/clip_skip1"])
    v = R.AutoencoderKL(cfg("vae/config.json"))
    R.load_into(v, R.st_load(D + "/vae/diffusion_pytorch_model.safetensors"))
    m, lv = v.encode(G["vae/image"])
    cmp("vae mean", m, G["vae/mean"])
    cmp("vae logvar", lv, G["vae/logvar"])
    cmp("vae decode", v.decode(G["vae/decode_in"]), G["vae/decode_out"])
    cn = R.ControlNet(cfg("controlnet/config.json"))
    R.load_into(cn, R.st_load(D + "/controlnet/diffusion_pytorch_model.safetensors"))
    n = "controlnet/t601"
    down, mid = cn(G[n + "/sample"], G[n + "/timestep"], G[n + "/encoder_hidden_states"],
                   G[n + "/controlnet_cond"], 0.8)
    for i, dr in enumerate(down):
        cmp(n + " down %d" % i, dr, G[n + "/down_res/%d" % i])
    cmp(n + " mid", mid, G[n + "/mid_res"])
    cmp(n + " unet", u(G[n + "/sample"], G[n + "/timestep"], G[n + "/encoder_hidden_states"],
                       down, mid), G[n + "/unet_out"])
    a = R.UNet2D(cfg("audio/unet/config.json"))
    R.load_into(a, R.st_load(D + "/audio/unet/diffusion_pytorch_model.safetensors"))
    n = "audio_unet/t500"
    cmp(n, a(G[n + "/sample"], G[n + "/timestep"]), G[n + "/out"])
print("worst relative error %.3g" % worst)
sys.exit(0 if worst < 1e-5 else 1)
