"""Train lucid's bundled `toyworld` model (SD 1.x diffusers layout) on the
procedural pictures of shapes.py, on the CPU, in about an hour (the
decoder stage can run alongside the unet stage: 45 minutes).

  /usr/bin/python3 tools/toyworld/train.py all --work /tmp/toyw/run \\
      --out models/toyworld

Stages (each resumes from the files of the previous one in --work):
  vae      AutoencoderKL, 64x64x3 -> 4x16x16, L1 + L2 reconstruction and a
           small KL term.
  latents  encodes a fixed set of scenes with the trained encoder (the mean)
           and sets scaling_factor = 1 / std of those latents.
  decoder  trains the decoder alone for longer (the latents do not change).
  unet     CLIP text encoder and UNet trained jointly on SD's epsilon
           objective (scaled_linear betas 0.00085..0.012, 1000 steps); the
           prompt of each draw is drawn anew (10% empty for classifier-free
           guidance, some partial ones for negative prompts), with offset
           noise and extra weight on high noise levels. An EMA of the
           weights is what gets exported (also every 5 minutes).
  export   writes the diffusers folder (f16 weights) to --out.
Every stage is seeded; one thread (torch.set_num_threads(1)), so a rerun
on the same torch build gives the same weights.
Needs Debian's python3-torch and numpy.
"""
import argparse
import copy
import json
import math
import os
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tools", "ref"))
sys.path.insert(0, HERE)
import ref_models as R  # noqa: E402
import shapes  # noqa: E402

CLIP_DIR = os.path.join(ROOT, "data", "clip")

VAE_CONFIG = {
    "_class_name": "AutoencoderKL", "_diffusers_version": "0.29.2", "act_fn": "silu",
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "force_upcast": True, "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "latents_mean": None, "latents_std": None, "layers_per_block": 1,
    "norm_num_groups": 32, "sample_size": 64, "scaling_factor": None,
    "shift_factor": None, "use_post_quant_conv": True, "use_quant_conv": True,
}

TEXT_CONFIG = {
    "architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0,
    "dropout": 0.0, "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": 64,
    "initializer_factor": 1.0, "initializer_range": 0.02, "intermediate_size": 256,
    "layer_norm_eps": 1e-05, "max_position_embeddings": 77, "model_type": "clip_text_model",
    "num_attention_heads": 4, "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": 64,
    "torch_dtype": "float16", "transformers_version": "4.41.0", "vocab_size": 49408,
}

# Attention only at 8x8 and 4x4: self-attention over the 256 positions of
# the 16x16 level cost ten times the rest of a training step on one core,
# and placement words only need coarse positions.
UNET_CONFIG = {
    "_class_name": "UNet2DConditionModel", "_diffusers_version": "0.29.2", "act_fn": "silu",
    "addition_embed_type": None, "addition_embed_type_num_heads": 64,
    "addition_time_embed_dim": None, "attention_head_dim": 4, "attention_type": "default",
    "block_out_channels": [32, 64, 64], "center_input_sample": False,
    "class_embed_type": None, "class_embeddings_concat": False, "conv_in_kernel": 3,
    "conv_out_kernel": 3, "cross_attention_dim": 64, "cross_attention_norm": None,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "downsample_padding": 1, "dropout": 0.0, "dual_cross_attention": False,
    "encoder_hid_dim": None, "encoder_hid_dim_type": None, "flip_sin_to_cos": True,
    "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_only_cross_attention": None, "mid_block_scale_factor": 1,
    "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32,
    "num_attention_heads": None, "num_class_embeds": None, "only_cross_attention": False,
    "out_channels": 4, "projection_class_embeddings_input_dim": None,
    "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False,
    "resnet_time_scale_shift": "default", "reverse_transformer_layers_per_block": None,
    "sample_size": 16, "time_cond_proj_dim": None, "time_embedding_act_fn": None,
    "time_embedding_dim": None, "time_embedding_type": "positional", "timestep_post_act": None,
    "transformer_layers_per_block": 1,
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "upcast_attention": False, "use_linear_projection": False,
}

SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler", "_diffusers_version": "0.29.2", "beta_end": 0.012,
    "beta_schedule": "scaled_linear", "beta_start": 0.00085, "clip_sample": False,
    "num_train_timesteps": 1000, "prediction_type": "epsilon", "set_alpha_to_one": False,
    "skip_prk_steps": True, "steps_offset": 1, "timestep_spacing": "leading",
    "trained_betas": None,
}

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.29.2",
    "feature_extractor": [None, None], "image_encoder": [None, None],
    "requires_safety_checker": False, "safety_checker": [None, None],
    "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def log(msg):
    print("[%s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


def to_input(imgs):
    """uint8 NxHxWx3 -> float N3HW in [-1, 1], as lucid's VAE expects"""
    x = torch.from_numpy(np.ascontiguousarray(imgs)).float().permute(0, 3, 1, 2)
    return x / 127.5 - 1.0


def lr_at(step, total, peak, warm):
    if step < warm:
        return peak * (step + 1) / warm
    frac = (step - warm) / max(1, total - warm)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


# ---------------------------------------------------------------- stage: vae

def train_vae(a):
    torch.manual_seed(a.seed)
    rng = np.random.default_rng(a.seed)
    vae = R.AutoencoderKL(VAE_CONFIG)
    opt = torch.optim.Adam(vae.parameters(), lr=a.vae_lr)
    t0, total = time.time(), a.vae_steps
    for step in range(total):
        imgs = np.stack([shapes.render(*shapes.sample_scene(rng)) for _ in range(a.vae_batch)])
        x = to_input(imgs)
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        y = vae.decode(z)
        rec = (y - x).abs().mean() + (y - x).pow(2).mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        loss = rec + a.kl * kl
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, a.vae_lr, 20)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        if step % 50 == 0:
            log("vae step %d rec %.4f kl %.3f" % (step, rec.item(), kl.item()))
    R.st_save(os.path.join(a.work, "vae.safetensors"), vae.state_dict())
    log("vae: %d steps in %.1f min" % (total, (time.time() - t0) / 60))


def load_vae(a, name="vae.safetensors"):
    vae = R.AutoencoderKL(VAE_CONFIG)
    R.load_into(vae, R.st_load(os.path.join(a.work, name)))
    return vae.eval()


# ---------------------------------------------------------------- stage: decoder

def train_decoder(a):
    """More training for the decoder alone: the encoder, hence the latents
    the UNet learns, stay as they are, so this can run before, during or
    after the unet stage."""
    torch.manual_seed(a.seed + 3)
    rng = np.random.default_rng(a.seed + 3)
    vae = load_vae(a).train()
    params = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    opt = torch.optim.Adam(params, lr=a.vae_lr / 2)
    t0, total = time.time(), a.decoder_steps
    for step in range(total):
        x = to_input(np.stack([shapes.render(*shapes.sample_scene(rng)) for _ in range(a.vae_batch)]))
        with torch.no_grad():
            mean, _ = vae.encode(x)
            # the UNet's samples are near, not at, the encoder's means
            z = mean + 0.05 * mean.std() * torch.randn_like(mean)
        y = vae.decode(z)
        loss = (y - x).abs().mean() + (y - x).pow(2).mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, a.vae_lr / 2, 20)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step % 50 == 0:
            log("decoder step %d rec %.4f" % (step, loss.item()))
    R.st_save(os.path.join(a.work, "vae_decoder.safetensors"), vae.state_dict())
    log("decoder: %d steps in %.1f min" % (total, (time.time() - t0) / 60))


# ---------------------------------------------------------------- stage: latents

def make_latents(a):
    t0 = time.time()
    vae = load_vae(a)
    rng = np.random.default_rng(a.seed + 1)
    scenes = [shapes.sample_scene(rng) for _ in range(a.n_latents)]
    lat = []
    err = 0.0
    with torch.no_grad():
        for i in range(0, len(scenes), 16):
            x = to_input(np.stack([shapes.render(*s) for s in scenes[i:i + 16]]))
            mean, _ = vae.encode(x)
            lat.append(mean)
            if i == 0:
                err = (vae.decode(mean) - x).abs().mean().item()
    lat = torch.cat(lat)
    scale = 1.0 / lat.std().item()
    R.st_save(os.path.join(a.work, "latents.safetensors"), {"latents": lat})
    with open(os.path.join(a.work, "scenes.json"), "w") as f:
        json.dump({"scaling_factor": scale, "scenes": scenes}, f)
    log("latents: %d, std %.4f -> scaling_factor %.5f, mean |x - decode(encode(x))| %.4f "
        "(of 2), %.1f min" % (len(scenes), 1 / scale, scale, err, (time.time() - t0) / 60))


# ---------------------------------------------------------------- stage: unet

class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.text = R.CLIPText(TEXT_CONFIG)
        self.unet = R.UNet2DCondition(UNET_CONFIG)
        emb = self.text.text_model.embeddings
        torch.nn.init.normal_(emb.token_embedding.weight, std=0.02)
        torch.nn.init.normal_(emb.position_embedding.weight, std=0.01)
        torch.nn.init.zeros_(self.unet.conv_out.weight)
        torch.nn.init.zeros_(self.unet.conv_out.bias)

    def forward(self, ids, x, t):
        ctx = self.text(ids)[0]
        return self.unet(x, t, ctx)


def save_unet_state(a, model, ema, opt, step, elapsed):
    path = os.path.join(a.work, "unet_ckpt.pt")
    torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "step": step, "elapsed": elapsed}, path + ".tmp")
    os.replace(path + ".tmp", path)


def train_unet(a):
    torch.manual_seed(a.seed + 2)
    rng = np.random.default_rng(a.seed + 2)
    vocab = shapes.load_vocab(CLIP_DIR)
    lat = R.st_load(os.path.join(a.work, "latents.safetensors"))["latents"]
    with open(os.path.join(a.work, "scenes.json")) as f:
        meta = json.load(f)
    scale, scenes = meta["scaling_factor"], meta["scenes"]
    lat = lat * scale
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    acp = torch.cumprod(1 - betas, 0).float()

    model = Model()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr)
    step, elapsed = 0, 0.0
    total = a.unet_steps
    ck_path = os.path.join(a.work, "unet_ckpt.pt")
    if a.resume and os.path.exists(ck_path):
        # more steps after a finished run: the cosine schedule is stretched
        # to the new total, the data stream continues from a new seed
        ck = torch.load(ck_path)
        model.load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
        opt.load_state_dict(ck["opt"])
        step, elapsed = ck["step"], ck["elapsed"]
        rng = np.random.default_rng(a.seed + 2 + step)
        torch.manual_seed(a.seed + 2 + step)
        log("unet: resumed at step %d (%.1f min)" % (step, elapsed / 60))
    t0 = time.time()
    last_save = t0
    while step < total:
        idx = rng.integers(len(scenes), size=a.batch)
        ids = torch.tensor([shapes.tokenize(shapes.prompt_for(*scenes[i], rng), vocab)
                            for i in idx])
        z0 = lat[torch.from_numpy(idx)]
        # half the timesteps from 600..999, where the layout (background
        # colour, which shape goes where) is decided: their epsilon loss is
        # small, so uniform sampling alone learns them last
        hi = a.batch // 2
        t = torch.from_numpy(np.concatenate([rng.integers(0, 1000, size=a.batch - hi),
                                             rng.integers(600, 1000, size=hi)]))
        # offset noise: at 16x16 the mean of each noise channel (std 1/16)
        # is as large as the signal left at t=999, so without this the
        # seed, not the prompt, picks the background colour
        noise = torch.randn_like(z0) + a.offset_noise * torch.randn(a.batch, 4, 1, 1)
        c = acp[t][:, None, None, None]
        zt = c.sqrt() * z0 + (1 - c).sqrt() * noise
        # the epsilon loss weighted towards the x0 (v) loss, 1/alpha_bar,
        # capped: at high noise an epsilon error is tiny while the picture
        # it stands for (which colour, which place) is all wrong, and that
        # is what only the prompt can tell
        w = (1.0 / c).clamp(max=a.max_weight)
        loss = (w * (model(ids, zt, t) - noise).pow(2)).mean() / w.mean()
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, a.lr, 100)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        d = min(a.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.mul_(d).add_(pm, alpha=1 - d)
        step += 1
        if step % 50 == 0:
            log("unet step %d/%d loss %.4f lr %.2e" % (step, total, loss.item(), opt.param_groups[0]["lr"]))
        if time.time() - last_save > 300 or step == total:
            save_unet_state(a, model, ema, opt, step, elapsed + time.time() - t0)
            export(a)
            last_save = time.time()
    log("unet: %d steps of %d in %.1f min" % (step, a.batch, (elapsed + time.time() - t0) / 60))


# ---------------------------------------------------------------- stage: export

def save_f16(path, module):
    R.st_save(path, {k: v.detach().to(torch.float16) for k, v in module.state_dict().items()})


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
        f.write("\n")


def export(a):
    with open(os.path.join(a.work, "scenes.json")) as f:
        scale = json.load(f)["scaling_factor"]
    ck = torch.load(os.path.join(a.work, "unet_ckpt.pt"))
    model = Model()
    model.load_state_dict(ck["ema"])
    dec = os.path.join(a.work, "vae_decoder.safetensors")
    vae = load_vae(a, "vae_decoder.safetensors" if os.path.exists(dec) else "vae.safetensors")
    out = a.out
    for sub in ("scheduler", "text_encoder", "tokenizer", "unet", "vae"):
        os.makedirs(os.path.join(out, sub), exist_ok=True)
    write_json(os.path.join(out, "model_index.json"), MODEL_INDEX)
    write_json(os.path.join(out, "scheduler", "scheduler_config.json"), SCHEDULER_CONFIG)
    write_json(os.path.join(out, "text_encoder", "config.json"), TEXT_CONFIG)
    save_f16(os.path.join(out, "text_encoder", "model.safetensors"), model.text)
    write_json(os.path.join(out, "unet", "config.json"), UNET_CONFIG)
    save_f16(os.path.join(out, "unet", "diffusion_pytorch_model.safetensors"), model.unet)
    vc = dict(VAE_CONFIG, scaling_factor=round(scale, 5))
    write_json(os.path.join(out, "vae", "config.json"), vc)
    save_f16(os.path.join(out, "vae", "diffusion_pytorch_model.safetensors"), vae)
    for f in ("vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copyfile(os.path.join(CLIP_DIR, f), os.path.join(out, "tokenizer", f))
    log("exported step %d (%.1f min of unet training) to %s" % (ck["step"], ck["elapsed"] / 60, out))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("stage", choices=["vae", "latents", "decoder", "unet", "export", "all"])
    ap.add_argument("--work", required=True, help="folder for intermediate files")
    ap.add_argument("--out", default=os.path.join(ROOT, "models", "toyworld"))
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--vae-steps", type=int, default=500)
    ap.add_argument("--decoder-steps", type=int, default=1500)
    ap.add_argument("--vae-batch", type=int, default=6)
    ap.add_argument("--vae-lr", type=float, default=1e-3)
    ap.add_argument("--kl", type=float, default=1e-5)
    ap.add_argument("--n-latents", type=int, default=12000)
    ap.add_argument("--unet-steps", type=int, default=1800)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=8e-4)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--offset-noise", type=float, default=0.1)
    ap.add_argument("--max-weight", type=float, default=10.0)
    ap.add_argument("--resume", action="store_true",
                    help="unet: continue from --work's checkpoint up to --unet-steps")
    a = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(a.work, exist_ok=True)
    t0 = time.time()
    stages = ["vae", "latents", "decoder", "unet"] if a.stage == "all" else [a.stage]
    for s in stages:
        {"vae": train_vae, "latents": make_latents, "decoder": train_decoder,
         "unet": train_unet, "export": export}[s](a)
    log("done in %.1f min" % ((time.time() - t0) / 60))


if __name__ == "__main__":
    main()
