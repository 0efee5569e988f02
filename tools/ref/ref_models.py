"""Compact torch re-implementation of the diffusers 0.29 / transformers 4.41
models lucid runs (UNet2DConditionModel, ControlNetModel, UNet2DModel,
AutoencoderKL, CLIPTextModel), written from their semantics so that module
and parameter names are diffusers' own: a state dict maps 1:1 to a diffusers
safetensors file. Only the config features lucid supports are modelled.
Needs Debian's python3-torch (/usr/bin/python3); not needed to run the tests."""
import json
import math
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F

# ---------------------------------------------------------------- safetensors

_DT = {"F32": (torch.float32, 4), "F16": (torch.float16, 2), "I64": (torch.int64, 8),
       "I32": (torch.int32, 4), "U8": (torch.uint8, 1), "F64": (torch.float64, 8)}
_DT_NAME = {v[0]: k for k, v in _DT.items()}


def st_load(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        dt, _ = _DT[v["dtype"]]
        a, b = v["data_offsets"]
        buf = bytearray(raw[base + a:base + b])
        t = torch.frombuffer(buf, dtype=dt) if b > a else torch.zeros(0, dtype=dt)
        out[k] = t.reshape(v["shape"]).clone()
    return out


def st_save(path, tensors):
    head, blobs, off = {}, [], 0
    for k in sorted(tensors):
        t = tensors[k].detach().contiguous()
        data = t.numpy().tobytes()
        head[k] = {"dtype": _DT_NAME[t.dtype], "shape": list(t.shape),
                   "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(head, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def init_random(module, gen):
    """Golden init: norm scales 1+0.1N, biases 0.05N, weights N/sqrt(fan_in),
    embeddings 0.5N."""
    for name, p in module.named_parameters():
        with torch.no_grad():
            n = torch.randn(p.shape, generator=gen)
            leaf = name.rsplit(".", 1)
            owner = module.get_submodule(leaf[0]) if len(leaf) == 2 else module
            if isinstance(owner, (nn.GroupNorm, nn.LayerNorm)):
                p.copy_(1 + 0.1 * n if leaf[-1] == "weight" else 0.05 * n)
            elif isinstance(owner, nn.Embedding):
                p.copy_(0.5 * n)
            elif leaf[-1] == "bias":
                p.copy_(0.05 * n)
            else:
                p.copy_(n / math.sqrt(p[0].numel()))

# ---------------------------------------------------------------- shared parts


def timestep_embedding(t, dim, flip, shift, max_period=10000):
    half = dim // 2
    ex = -math.log(max_period) * torch.arange(half, dtype=torch.float32) / (half - shift)
    e = t[:, None].float() * torch.exp(ex)[None, :]
    e = torch.cat([torch.sin(e), torch.cos(e)], -1)
    if flip:
        e = torch.cat([e[:, half:], e[:, :half]], -1)
    if dim % 2 == 1:
        e = F.pad(e, (0, 1))
    return e


class TimestepEmbedding(nn.Module):
    def __init__(self, cin, dim):
        super().__init__()
        self.linear_1 = nn.Linear(cin, dim)
        self.linear_2 = nn.Linear(dim, dim)

    def forward(self, x):
        return self.linear_2(F.silu(self.linear_1(x)))


class Resnet(nn.Module):
    def __init__(self, cin, cout, temb, groups, eps, scale=1.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, cin, eps)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        if temb:
            self.time_emb_proj = nn.Linear(temb, cout)
        self.norm2 = nn.GroupNorm(groups, cout, eps)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        if cin != cout:
            self.conv_shortcut = nn.Conv2d(cin, cout, 1)
        self.scale = scale

    def forward(self, x, temb=None):
        h = self.conv1(F.silu(self.norm1(x)))
        if temb is not None:
            h = h + self.time_emb_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(x)
        return (x + h) / self.scale


class Downsample(nn.Module):
    def __init__(self, c, padding):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2, padding=padding)
        self.padding = padding

    def forward(self, x):
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x, size=None):
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        return self.conv(x)


class Attention(nn.Module):
    """diffusers Attention with the plain processor. norm_groups set = the
    old spatial attention block (group norm, residual, NCHW in and out)."""

    def __init__(self, qdim, heads, dim_head, kvdim=None, bias=False, norm_groups=None, eps=1e-5):
        super().__init__()
        inner = heads * dim_head
        kvdim = kvdim or qdim
        self.heads, self.dim_head = heads, dim_head
        if norm_groups:
            self.group_norm = nn.GroupNorm(norm_groups, qdim, eps)
        self.to_q = nn.Linear(qdim, inner, bias=bias)
        self.to_k = nn.Linear(kvdim, inner, bias=bias)
        self.to_v = nn.Linear(kvdim, inner, bias=bias)
        self.to_out = nn.ModuleList([nn.Linear(inner, qdim)])

    def attend(self, x, ctx):
        B = x.shape[0]
        sp = lambda t: t.reshape(B, -1, self.heads, self.dim_head).transpose(1, 2)
        q, k, v = sp(self.to_q(x)), sp(self.to_k(ctx)), sp(self.to_v(ctx))
        w = torch.softmax(q @ k.transpose(-1, -2) * self.dim_head ** -0.5, -1)
        o = (w @ v).transpose(1, 2).reshape(B, -1, self.heads * self.dim_head)
        return self.to_out[0](o)

    def forward(self, x, ctx=None):
        if hasattr(self, "group_norm"):
            B, C, H, W = x.shape
            h = self.group_norm(x).reshape(B, C, H * W).transpose(1, 2)
            h = self.attend(h, h)
            return h.transpose(1, 2).reshape(B, C, H, W) + x
        return self.attend(x, x if ctx is None else ctx)


class GEGLU(nn.Module):
    def __init__(self, din, dout):
        super().__init__()
        self.proj = nn.Linear(din, dout * 2)

    def forward(self, x):
        h, g = self.proj(x).chunk(2, -1)
        return h * F.gelu(g)


class FeedForward(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.net = nn.ModuleList([GEGLU(dim, dim * 4), nn.Dropout(0.0), nn.Linear(dim * 4, dim)])

    def forward(self, x):
        return self.net[2](self.net[0](x))


class BasicTransformerBlock(nn.Module):
    def __init__(self, dim, heads, dim_head, cross, only_cross=False):
        super().__init__()
        self.only_cross = only_cross
        self.norm1 = nn.LayerNorm(dim)
        self.attn1 = Attention(dim, heads, dim_head, kvdim=cross if only_cross else None)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, kvdim=cross)
        self.norm3 = nn.LayerNorm(dim)
        self.ff = FeedForward(dim)

    def forward(self, x, ctx):
        x = self.attn1(self.norm1(x), ctx if self.only_cross else None) + x
        x = self.attn2(self.norm2(x), ctx) + x
        return self.ff(self.norm3(x)) + x


class Transformer2D(nn.Module):
    def __init__(self, heads, dim_head, cin, layers, cross, groups, linear, only_cross=False):
        super().__init__()
        inner = heads * dim_head
        self.linear = linear
        self.norm = nn.GroupNorm(groups, cin, 1e-6)
        self.proj_in = nn.Linear(cin, inner) if linear else nn.Conv2d(cin, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner, heads, dim_head, cross, only_cross) for _ in range(layers)])
        self.proj_out = nn.Linear(inner, cin) if linear else nn.Conv2d(inner, cin, 1)

    def forward(self, x, ctx):
        B, C, H, W = x.shape
        h = self.norm(x)
        if not self.linear:
            h = self.proj_in(h)
        h = h.permute(0, 2, 3, 1).reshape(B, H * W, -1)
        if self.linear:
            h = self.proj_in(h)
        for b in self.transformer_blocks:
            h = b(h, ctx)
        if self.linear:
            h = self.proj_out(h)
        h = h.reshape(B, H, W, -1).permute(0, 3, 1, 2)
        if not self.linear:
            h = self.proj_out(h)
        return h + x

# ---------------------------------------------------------------- UNet blocks


def _lst(v, n):
    return list(v) if isinstance(v, (list, tuple)) else [v] * n


class DownBlock(nn.Module):
    """DownBlock2D / CrossAttnDownBlock2D / AttnDownBlock2D."""

    def __init__(self, kind, layers, cin, cout, temb, down, groups, eps, pad,
                 heads=None, dim_head=None, tlayers=1, cross=None, linear=False, only_cross=False):
        super().__init__()
        self.kind = kind
        self.resnets = nn.ModuleList([Resnet(cin if i == 0 else cout, cout, temb, groups, eps)
                                      for i in range(layers)])
        if kind == "CrossAttnDownBlock2D":
            self.attentions = nn.ModuleList([Transformer2D(heads, cout // heads, cout, tlayers, cross,
                                                           groups, linear, only_cross) for _ in range(layers)])
        elif kind == "AttnDownBlock2D":
            self.attentions = nn.ModuleList([Attention(cout, cout // dim_head, dim_head, bias=True,
                                                       norm_groups=groups, eps=eps) for _ in range(layers)])
        if down:
            self.downsamplers = nn.ModuleList([Downsample(cout, pad)])

    def forward(self, x, temb, ctx=None):
        out = []
        for i, r in enumerate(self.resnets):
            x = r(x, temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, ctx) if self.kind == "CrossAttnDownBlock2D" else self.attentions[i](x)
            out.append(x)
        if hasattr(self, "downsamplers"):
            x = self.downsamplers[0](x)
            out.append(x)
        return x, out


class UpBlock(nn.Module):
    def __init__(self, kind, layers, cin, cprev, cout, temb, up, groups, eps,
                 heads=None, dim_head=None, tlayers=1, cross=None, linear=False, only_cross=False):
        super().__init__()
        self.kind = kind
        rs = []
        for i in range(layers):
            skip = cin if i == layers - 1 else cout
            rin = cprev if i == 0 else cout
            rs.append(Resnet(rin + skip, cout, temb, groups, eps))
        self.resnets = nn.ModuleList(rs)
        if kind == "CrossAttnUpBlock2D":
            self.attentions = nn.ModuleList([Transformer2D(heads, cout // heads, cout, tlayers, cross,
                                                           groups, linear, only_cross) for _ in range(layers)])
        elif kind == "AttnUpBlock2D":
            self.attentions = nn.ModuleList([Attention(cout, cout // dim_head, dim_head, bias=True,
                                                       norm_groups=groups, eps=eps) for _ in range(layers)])
        if up:
            self.upsamplers = nn.ModuleList([Upsample(cout)])

    def forward(self, x, skips, temb, ctx=None, size=None):
        for i, r in enumerate(self.resnets):
            x = r(torch.cat([x, skips.pop()], 1), temb)
            if hasattr(self, "attentions"):
                x = self.attentions[i](x, ctx) if self.kind == "CrossAttnUpBlock2D" else self.attentions[i](x)
        if hasattr(self, "upsamplers"):
            x = self.upsamplers[0](x, size)
        return x


class MidCross(nn.Module):
    def __init__(self, c, temb, groups, eps, heads, tlayers, cross, linear, scale=1.0):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(c, c, temb, groups, eps, scale) for _ in range(2)])
        self.attentions = nn.ModuleList([Transformer2D(heads, c // heads, c, tlayers, cross, groups, linear)])

    def forward(self, x, temb, ctx):
        x = self.resnets[0](x, temb)
        return self.resnets[1](self.attentions[0](x, ctx), temb)


class Mid(nn.Module):
    """UNetMidBlock2D (UNet2DModel, VAE)."""

    def __init__(self, c, temb, groups, eps, dim_head, attn=True, scale=1.0):
        super().__init__()
        self.resnets = nn.ModuleList([Resnet(c, c, temb, groups, eps, scale) for _ in range(2)])
        if attn:
            self.attentions = nn.ModuleList([Attention(c, c // dim_head, dim_head, bias=True,
                                                       norm_groups=groups, eps=eps)])

    def forward(self, x, temb=None):
        x = self.resnets[0](x, temb)
        if hasattr(self, "attentions"):
            x = self.attentions[0](x)
        return self.resnets[1](x, temb)

# ---------------------------------------------------------------- UNet2DCondition


class UNet2DCondition(nn.Module):
    def __init__(self, c):
        super().__init__()
        if c.get("num_attention_heads") is not None:
            raise ValueError("diffusers 0.29 UNet2DConditionModel rejects num_attention_heads")
        self.c = c
        boc = c["block_out_channels"]
        n = len(boc)
        heads = _lst(c["attention_head_dim"], n)
        lpb = _lst(c["layers_per_block"], n)
        tl = _lst(c.get("transformer_layers_per_block", 1), n)
        cross = c["cross_attention_dim"]
        oc = _lst(c.get("only_cross_attention", False), n)
        g, eps, lin = c["norm_num_groups"], c["norm_eps"], c.get("use_linear_projection", False)
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(c["down_block_types"]):
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(kind, lpb[i], cin, cout, temb, i < n - 1, g, eps,
                                              c.get("downsample_padding", 1), heads[i], None, tl[i],
                                              cross, lin, oc[i]))
        self.mid_block = MidCross(boc[-1], temb, g, eps, heads[-1], tl[-1], cross, lin,
                                  c.get("mid_block_scale_factor", 1))
        self.up_blocks = nn.ModuleList()
        rb, rh, rl, rt = boc[::-1], heads[::-1], lpb[::-1], tl[::-1]
        roc = oc[::-1]
        cout = rb[0]
        for i, kind in enumerate(c["up_block_types"]):
            prev, cout = cout, rb[i]
            cin = rb[min(i + 1, n - 1)]
            self.up_blocks.append(UpBlock(kind, rl[i] + 1, cin, prev, cout, temb, i < n - 1, g, eps,
                                          rh[i], None, rt[i], cross, lin, roc[i]))
        self.conv_norm_out = nn.GroupNorm(g, boc[0], eps)
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], 3, padding=1)

    def forward(self, x, t, ctx, down_res=None, mid_res=None):
        c = self.c
        t = torch.as_tensor(t).reshape(-1).expand(x.shape[0])
        temb = self.time_embedding(timestep_embedding(t, c["block_out_channels"][0],
                                                      c["flip_sin_to_cos"], c["freq_shift"]))
        nup = len(self.up_blocks) - 1
        fwd_size = any(s % (2 ** nup) for s in x.shape[-2:])
        h = self.conv_in(x)
        skips = [h]
        for b in self.down_blocks:
            h, o = b(h, temb, ctx)
            skips += o
        if down_res is not None:
            skips = [s + r for s, r in zip(skips, down_res)]
        h = self.mid_block(h, temb, ctx)
        if mid_res is not None:
            h = h + mid_res
        for i, b in enumerate(self.up_blocks):
            last = i == len(self.up_blocks) - 1
            mine = skips[-len(b.resnets):]
            skips = skips[:-len(b.resnets)]
            size = skips[-1].shape[2:] if (not last and fwd_size) else None
            h = b(h, mine, temb, ctx, size)
        return self.conv_out(F.silu(self.conv_norm_out(h)))

# ---------------------------------------------------------------- ControlNet


class CondEmbedding(nn.Module):
    def __init__(self, cemb, cin, boc):
        super().__init__()
        self.conv_in = nn.Conv2d(cin, boc[0], 3, padding=1)
        bl = []
        for i in range(len(boc) - 1):
            bl.append(nn.Conv2d(boc[i], boc[i], 3, padding=1))
            bl.append(nn.Conv2d(boc[i], boc[i + 1], 3, padding=1, stride=2))
        self.blocks = nn.ModuleList(bl)
        self.conv_out = nn.Conv2d(boc[-1], cemb, 3, padding=1)

    def forward(self, x):
        x = F.silu(self.conv_in(x))
        for b in self.blocks:
            x = F.silu(b(x))
        return self.conv_out(x)


class ControlNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        boc = c["block_out_channels"]
        n = len(boc)
        ahd = c["attention_head_dim"]
        heads = _lst(c.get("num_attention_heads") or ahd, n)
        lpb = _lst(c["layers_per_block"], n)
        tl = _lst(c.get("transformer_layers_per_block", 1), n)
        oc = _lst(c.get("only_cross_attention", False), n)
        cross = c["cross_attention_dim"]
        g, eps, lin = c["norm_num_groups"], c["norm_eps"], c.get("use_linear_projection", False)
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.controlnet_cond_embedding = CondEmbedding(boc[0], c.get("conditioning_channels", 3),
                                                       c["conditioning_embedding_out_channels"])
        self.down_blocks = nn.ModuleList()
        cdb = [nn.Conv2d(boc[0], boc[0], 1)]
        cout = boc[0]
        for i, kind in enumerate(c["down_block_types"]):
            cin, cout = cout, boc[i]
            final = i == n - 1
            self.down_blocks.append(DownBlock(kind, lpb[i], cin, cout, temb, not final, g, eps,
                                              c.get("downsample_padding", 1), heads[i], None, tl[i],
                                              cross, lin, oc[i]))
            cdb += [nn.Conv2d(cout, cout, 1) for _ in range(lpb[i] + (0 if final else 1))]
        self.controlnet_down_blocks = nn.ModuleList(cdb)
        self.controlnet_mid_block = nn.Conv2d(boc[-1], boc[-1], 1)
        self.mid_block = MidCross(boc[-1], temb, g, eps, heads[-1], tl[-1], cross, lin,
                                  c.get("mid_block_scale_factor", 1))

    def forward(self, x, t, ctx, cond, scale):
        c = self.c
        t = torch.as_tensor(t).reshape(-1).expand(x.shape[0])
        temb = self.time_embedding(timestep_embedding(t, c["block_out_channels"][0],
                                                      c["flip_sin_to_cos"], c["freq_shift"]))
        h = self.conv_in(x) + self.controlnet_cond_embedding(cond)
        skips = [h]
        for b in self.down_blocks:
            h, o = b(h, temb, ctx)
            skips += o
        h = self.mid_block(h, temb, ctx)
        down = [m(s) * scale for m, s in zip(self.controlnet_down_blocks, skips)]
        return down, self.controlnet_mid_block(h) * scale

# ---------------------------------------------------------------- UNet2DModel


class UNet2D(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        boc = c["block_out_channels"]
        n = len(boc)
        g, eps, ahd = c["norm_num_groups"], c["norm_eps"], c.get("attention_head_dim", 8)
        lpb = c["layers_per_block"]
        temb = boc[0] * 4
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.time_embedding = TimestepEmbedding(boc[0], temb)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i, kind in enumerate(c["down_block_types"]):
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock(kind, lpb, cin, cout, temb, i < n - 1, g, eps,
                                              c.get("downsample_padding", 1), None,
                                              ahd if ahd is not None else cout))
        self.mid_block = Mid(boc[-1], temb, g, eps, ahd if ahd is not None else boc[-1],
                             c.get("add_attention", True), c.get("mid_block_scale_factor", 1))
        self.up_blocks = nn.ModuleList()
        rb = boc[::-1]
        cout = rb[0]
        for i, kind in enumerate(c["up_block_types"]):
            prev, cout = cout, rb[i]
            cin = rb[min(i + 1, n - 1)]
            self.up_blocks.append(UpBlock(kind, lpb + 1, cin, prev, cout, temb, i < n - 1, g, eps,
                                          None, ahd if ahd is not None else cout))
        self.conv_norm_out = nn.GroupNorm(g, boc[0], eps)
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], 3, padding=1)

    def forward(self, x, t):
        c = self.c
        t = torch.as_tensor(t).reshape(-1).expand(x.shape[0])
        temb = self.time_embedding(timestep_embedding(t, c["block_out_channels"][0],
                                                      c["flip_sin_to_cos"], c["freq_shift"]))
        h = self.conv_in(x)
        skips = [h]
        for b in self.down_blocks:
            h, o = b(h, temb)
            skips += o
        h = self.mid_block(h, temb)
        for b in self.up_blocks:
            mine = skips[-len(b.resnets):]
            skips = skips[:-len(b.resnets)]
            h = b(h, mine, temb)
        return self.conv_out(F.silu(self.conv_norm_out(h)))

# ---------------------------------------------------------------- AutoencoderKL


class Encoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        boc, g, L = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"]
        self.conv_in = nn.Conv2d(c["in_channels"], boc[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        cout = boc[0]
        for i in range(len(boc)):
            cin, cout = cout, boc[i]
            self.down_blocks.append(DownBlock("DownEncoderBlock2D", L, cin, cout, None,
                                              i < len(boc) - 1, g, 1e-6, 0))
        self.mid_block = Mid(boc[-1], None, g, 1e-6, boc[-1])
        self.conv_norm_out = nn.GroupNorm(g, boc[-1], 1e-6)
        self.conv_out = nn.Conv2d(boc[-1], 2 * c["latent_channels"], 3, padding=1)

    def forward(self, x):
        h = self.conv_in(x)
        for b in self.down_blocks:
            h, _ = b(h, None)
        h = self.mid_block(h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, c):
        super().__init__()
        boc, g, L = c["block_out_channels"], c["norm_num_groups"], c["layers_per_block"]
        rb = boc[::-1]
        self.conv_in = nn.Conv2d(c["latent_channels"], rb[0], 3, padding=1)
        self.mid_block = Mid(rb[0], None, g, 1e-6, rb[0])
        self.up_blocks = nn.ModuleList()
        cout = rb[0]
        for i in range(len(rb)):
            prev, cout = cout, rb[i]
            ub = nn.Module()
            # UpDecoderBlock2D: plain resnets, no skips, no time embedding
            ub.resnets = nn.ModuleList([Resnet(prev if j == 0 else cout, cout, None, g, 1e-6)
                                        for j in range(L + 1)])
            if i < len(rb) - 1:
                ub.upsamplers = nn.ModuleList([Upsample(cout)])
            self.up_blocks.append(ub)
        self.conv_norm_out = nn.GroupNorm(g, boc[0], 1e-6)
        self.conv_out = nn.Conv2d(boc[0], c["out_channels"], 3, padding=1)

    def forward(self, z):
        h = self.mid_block(self.conv_in(z))
        for b in self.up_blocks:
            for r in b.resnets:
                h = r(h)
            if hasattr(b, "upsamplers"):
                h = b.upsamplers[0](h)
        return self.conv_out(F.silu(self.conv_norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, c):
        super().__init__()
        L = c["latent_channels"]
        self.encoder = Encoder(c)
        self.decoder = Decoder(c)
        self.quant_conv = nn.Conv2d(2 * L, 2 * L, 1)
        self.post_quant_conv = nn.Conv2d(L, L, 1)

    def encode(self, x):
        m = self.quant_conv(self.encoder(x))
        mean, logvar = m.chunk(2, 1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))

# ---------------------------------------------------------------- CLIPTextModel


class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.h = heads
        self.q_proj, self.k_proj = nn.Linear(d, d), nn.Linear(d, d)
        self.v_proj, self.out_proj = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x, mask):
        B, S, D = x.shape
        hd = D // self.h
        sp = lambda t: t.reshape(B, S, self.h, hd).transpose(1, 2)
        q, k, v = sp(self.q_proj(x) * hd ** -0.5), sp(self.k_proj(x)), sp(self.v_proj(x))
        w = torch.softmax(q @ k.transpose(-1, -2) + mask, -1)
        return self.out_proj((w @ v).transpose(1, 2).reshape(B, S, D))


class CLIPMLP(nn.Module):
    def __init__(self, d, inter, act):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, inter), nn.Linear(inter, d)
        self.act = act

    def forward(self, x):
        h = self.fc1(x)
        if self.act == "quick_gelu":
            h = h * torch.sigmoid(1.702 * h)
        elif self.act == "gelu":
            h = F.gelu(h)
        else:
            raise ValueError("hidden_act " + self.act)
        return self.fc2(h)


class CLIPLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d = c["hidden_size"]
        self.self_attn = CLIPAttention(d, c["num_attention_heads"])
        self.layer_norm1 = nn.LayerNorm(d, eps=c["layer_norm_eps"])
        self.mlp = CLIPMLP(d, c["intermediate_size"], c["hidden_act"])
        self.layer_norm2 = nn.LayerNorm(d, eps=c["layer_norm_eps"])

    def forward(self, x, mask):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp(self.layer_norm2(x))


class _Emb(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.token_embedding = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.position_embedding = nn.Embedding(c["max_position_embeddings"], c["hidden_size"])


class _Enc(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.layers = nn.ModuleList([CLIPLayer(c) for _ in range(c["num_hidden_layers"])])


class _TM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embeddings = _Emb(c)
        self.encoder = _Enc(c)
        self.final_layer_norm = nn.LayerNorm(c["hidden_size"], eps=c["layer_norm_eps"])


class CLIPText(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.text_model = _TM(c)

    def forward(self, ids):
        tm = self.text_model
        S = ids.shape[1]
        x = tm.embeddings.token_embedding(ids) + tm.embeddings.position_embedding(torch.arange(S))[None]
        mask = torch.full((S, S), torch.finfo(torch.float32).min).triu(1)
        hs = [x]
        for l in tm.encoder.layers:
            x = l(x, mask)
            hs.append(x)
        last = tm.final_layer_norm(x)
        if self.c["eos_token_id"] == 2:
            pos = ids.argmax(-1)
        else:
            pos = (ids == self.c["eos_token_id"]).int().argmax(-1)
        pooled = last[torch.arange(ids.shape[0]), pos]
        return last, pooled, tm.final_layer_norm(hs[-2])


def load_into(module, tensors):
    sd = module.state_dict()
    missing = set(sd) - set(tensors)
    extra = set(tensors) - set(sd)
    if missing or extra:
        raise KeyError("missing %s extra %s" % (sorted(missing)[:5], sorted(extra)[:5]))
    module.load_state_dict({k: tensors[k] for k in sd})
