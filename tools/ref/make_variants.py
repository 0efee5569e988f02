"""Writes tests/data/variants/<name>/: small configurations unlike tiny-a
(other head layouts, linear projection, three levels, odd latent sizes, ...)
built by ref_models.py (validated against tiny-a's real-diffusers golden
data by validate_golden.py) with seeded random weights in diffusers' layout,
plus inputs and reference outputs in ref.safetensors.
Run with /usr/bin/python3 (Debian python3-torch)."""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_models as R  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/data/variants")
COMMON_UNET = {"_class_name": "UNet2DConditionModel", "_diffusers_version": "0.29.2",
               "act_fn": "silu", "center_input_sample": False, "flip_sin_to_cos": True,
               "freq_shift": 0, "downsample_padding": 1, "mid_block_scale_factor": 1,
               "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05,
               "num_attention_heads": None, "only_cross_attention": False,
               "resnet_time_scale_shift": "default", "time_embedding_type": "positional",
               "dropout": 0.0, "class_embed_type": None, "addition_embed_type": None}


def save(name, model, cfg, weights_name, tensors):
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True)
    sd = model.state_dict()
    if getattr(model, "half_storage", False):
        sd = {k: v.half() for k, v in sd.items()}
    R.st_save(os.path.join(d, weights_name), sd)
    R.st_save(os.path.join(d, "ref.safetensors"), tensors)
    size = sum(os.path.getsize(os.path.join(d, x)) for x in os.listdir(d))
    print("%-10s %8d bytes" % (name, size))


def seeded(cls, cfg, seed, half=False):
    """half: weights rounded to float16 (stored so, to keep the files small);
    the reference still computes in float32 from the rounded values."""
    g = torch.Generator().manual_seed(seed)
    m = cls(cfg)
    R.init_random(m, g)
    if half:
        for p in m.parameters():
            p.copy_(p.half().float())
        m.half_storage = True
    return m, g


def main():
    torch.set_grad_enabled(False)
    # UNet: three levels, per-block head counts, linear projection, two
    # transformer layers, 48-wide context, upcast attention, odd 6x10 latent
    ucfg = dict(COMMON_UNET, sample_size=[6, 10], in_channels=4, out_channels=4,
                block_out_channels=[32, 64, 64], layers_per_block=1,
                down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
                attention_head_dim=[2, 4, 8], use_linear_projection=True,
                transformer_layers_per_block=2, cross_attention_dim=48, upcast_attention=True,
                norm_num_groups=32)
    unet, g = seeded(R.UNet2DCondition, ucfg, 11, True)
    x = torch.randn(2, 4, 6, 10, generator=g)
    ctx = torch.randn(2, 5, 48, generator=g)
    t = torch.tensor([377])
    out = unet(x, t, ctx)
    # ControlNet for that UNet: explicit num_attention_heads (which
    # ControlNetModel honours), a 4-level conditioning embedding (factor 8)
    ccfg = {k: v for k, v in ucfg.items() if k not in ("out_channels", "up_block_types", "sample_size")}
    ccfg.update(_class_name="ControlNetModel", attention_head_dim=8, num_attention_heads=[2, 4, 8],
                conditioning_channels=3, conditioning_embedding_out_channels=[8, 16, 16, 32],
                controlnet_conditioning_channel_order="rgb", global_pool_conditions=False)
    cn, g2 = seeded(R.ControlNet, ccfg, 12, True)
    cond = torch.rand(2, 3, 48, 80, generator=g2)
    down, mid = cn(x, t, ctx, cond, 0.7)
    uo = unet(x, t, ctx, down, mid)
    tens = {"sample": x, "timestep": t, "encoder_hidden_states": ctx, "out": out}
    save("unet", unet, ucfg, "diffusion_pytorch_model.safetensors", tens)
    tens = {"sample": x, "timestep": t, "encoder_hidden_states": ctx, "controlnet_cond": cond,
            "mid_res": mid, "unet_out": uo, "conditioning_scale": torch.tensor([0.7])}
    for i, r in enumerate(down):
        tens["down_res/%d" % i] = r
    save("controlnet", cn, ccfg, "diffusion_pytorch_model.safetensors", tens)

    # CLIP: exact gelu, 3 layers, 2 heads, small vocabulary
    tcfg = {"architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
            "hidden_act": "gelu", "hidden_size": 32, "intermediate_size": 48,
            "num_attention_heads": 2, "num_hidden_layers": 3, "layer_norm_eps": 1e-05,
            "max_position_embeddings": 77, "vocab_size": 1000, "bos_token_id": 0,
            "eos_token_id": 2, "pad_token_id": 1, "projection_dim": 32,
            "attention_dropout": 0.0, "initializer_factor": 1.0, "initializer_range": 0.02,
            "torch_dtype": "float32"}
    te, g = seeded(R.CLIPText, tcfg, 13)
    ids = torch.full((2, 77), 999, dtype=torch.int64)
    ids[:, 0] = 998
    ids[0, 1:9] = torch.randint(3, 990, (8,), generator=g)
    ids[1, 1:21] = torch.randint(3, 990, (20,), generator=g)
    last, pooled, skip = te(ids)
    save("text_encoder", te, tcfg, "model.safetensors",
         {"input_ids": ids, "last_hidden_state": last, "pooler_output": pooled, "clip_skip1": skip})

    # VAE: two levels [32, 64], two resnets per encoder level
    vcfg = {"_class_name": "AutoencoderKL", "_diffusers_version": "0.29.2", "act_fn": "silu",
            "block_out_channels": [32, 64], "down_block_types": ["DownEncoderBlock2D"] * 2,
            "up_block_types": ["UpDecoderBlock2D"] * 2, "in_channels": 3, "out_channels": 3,
            "latent_channels": 4, "layers_per_block": 2, "norm_num_groups": 32,
            "sample_size": 32, "scaling_factor": 0.18215, "force_upcast": True}
    vae, g = seeded(R.AutoencoderKL, vcfg, 14, True)
    img = torch.rand(1, 3, 12, 20, generator=g) * 2 - 1
    mean, logvar = vae.encode(img)
    zin = torch.randn(1, 4, 6, 10, generator=g)
    save("vae", vae, vcfg, "diffusion_pytorch_model.safetensors",
         {"image": img, "mean": mean, "logvar": logvar, "decode_in": zin,
          "decode_out": vae.decode(zin)})

    # UNet2DModel: 3 channels, attention in the first (and last up) block
    acfg = {"_class_name": "UNet2DModel", "_diffusers_version": "0.29.2", "act_fn": "silu",
            "add_attention": True, "attention_head_dim": 8, "attn_norm_num_groups": None,
            "block_out_channels": [16, 32, 32], "center_input_sample": False,
            "class_embed_type": None,
            "down_block_types": ["AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "UpBlock2D", "AttnUpBlock2D"],
            "downsample_padding": 1, "downsample_type": "conv", "upsample_type": "conv",
            "dropout": 0.0, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 3,
            "out_channels": 3, "layers_per_block": 1, "mid_block_scale_factor": 1,
            "norm_eps": 1e-05, "norm_num_groups": 8, "num_class_embeds": None,
            "resnet_time_scale_shift": "default", "sample_size": [16, 24],
            "time_embedding_type": "positional"}
    a, g = seeded(R.UNet2D, acfg, 15)
    xs = torch.randn(2, 3, 16, 24, generator=g)
    ts = torch.tensor([250])
    save("unet2d", a, acfg, "diffusion_pytorch_model.safetensors",
         {"sample": xs, "timestep": ts, "out": a(xs, ts)})


if __name__ == "__main__":
    main()
