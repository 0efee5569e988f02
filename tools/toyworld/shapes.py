"""toyworld's procedural data set: 64x64 RGB pictures of one or two flat
shapes on a flat background, each with an English prompt from a small
regular grammar. Deterministic from a seed (numpy's PCG64).

Grammar (every prompt the model was trained on has one of these forms):

  full    := shape_phrase ", " COLOUR " background"
           | shape_phrase " and " shape_phrase ", " COLOUR " background"
  shape_phrase := "a " COLOUR " " SHAPE " " PLACE
  partial := SHAPE | "a " COLOUR " " SHAPE | "a " SHAPE " " PLACE
           | "a " COLOUR " " SHAPE " " PLACE | COLOUR " background"
  COLOUR  := red | green | blue | yellow | white | black
  SHAPE   := circle | square | triangle
  PLACE   := "on the left" | "on the right" | "in the center"
           | "at the top" | "at the bottom"

Two shapes are always left+right or top+bottom, in either order in the
prompt. A partial prompt describes one of the picture's shapes (or only its
background) and says nothing about the rest, which is what lets a negative
prompt such as "square" steer away from squares. The empty prompt stands
for any picture (classifier-free guidance).
"""
import json
import os

import numpy as np

SIZE = 64
COLOURS = {
    "red": (230, 25, 25), "green": (25, 190, 40), "blue": (30, 60, 230),
    "yellow": (245, 225, 20), "white": (245, 245, 245), "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle")
PLACES = {  # phrase, centre (x, y) in pixels
    "left": ("on the left", (16, 32)), "right": ("on the right", (48, 32)),
    "center": ("in the center", (32, 32)), "top": ("at the top", (32, 16)),
    "bottom": ("at the bottom", (32, 48)),
}
PAIRS = (("left", "right"), ("top", "bottom"))

P_EMPTY = 0.10    # empty prompt: unconditional, for classifier-free guidance
P_PARTIAL = 0.15  # prompt naming one shape (or the background) only
P_TWO = 0.45      # pictures with two shapes

_SS = 4  # supersampling for anti-aliased edges
_yy, _xx = np.mgrid[0:SIZE * _SS, 0:SIZE * _SS].astype(np.float32)
_yy = (_yy + 0.5) / _SS
_xx = (_xx + 0.5) / _SS


def shape_mask(shape, cx, cy, r):
    """coverage in [0,1] of SIZE x SIZE pixels; r is the half-extent"""
    if shape == "circle":
        m = (_xx - cx) ** 2 + (_yy - cy) ** 2 <= r * r
    elif shape == "square":
        h = r * 0.85  # same visual area class as the circle
        m = (np.abs(_xx - cx) <= h) & (np.abs(_yy - cy) <= h)
    elif shape == "triangle":  # apex up, equilateral-ish, centred on its box
        top, bot = cy - r, cy + r * 0.8
        t = (_yy - top) / (bot - top)  # 0 at the apex, 1 at the base
        m = (t >= 0) & (t <= 1) & (np.abs(_xx - cx) <= t * r * 1.1)
    else:
        raise ValueError("unknown shape " + shape)
    return m.reshape(SIZE, _SS, SIZE, _SS).mean(axis=(1, 3))


def render(bg, objects):
    """objects: list of (colour, shape, place, dx, dy, r) -> HxWx3 uint8"""
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:] = COLOURS[bg]
    for colour, shape, place, dx, dy, r in objects:
        cx, cy = PLACES[place][1]
        m = shape_mask(shape, cx + dx, cy + dy, r)[..., None]
        img = img * (1 - m) + np.asarray(COLOURS[colour], np.float32) * m
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def phrase(colour, shape, place):
    return "a %s %s %s" % (colour, shape, PLACES[place][0])


def sample_scene(rng):
    """a random scene: (background colour, [(colour, shape, place, dx, dy, r)])"""
    names = list(COLOURS)
    bg = names[rng.integers(len(names))]
    others = [c for c in names if c != bg]
    if rng.random() < P_TWO:
        places = list(PAIRS[rng.integers(len(PAIRS))])
        cols = rng.choice(others, 2, replace=False)
    else:
        places = [list(PLACES)[rng.integers(len(PLACES))]]
        cols = [others[rng.integers(len(others))]]
    objs = []
    for c, p in zip(cols, places):
        s = SHAPES[rng.integers(len(SHAPES))]
        dx, dy = rng.integers(-3, 4, size=2)
        r = float(rng.uniform(9.5, 12.5))
        objs.append((str(c), s, p, int(dx), int(dy), r))
    return bg, objs


def prompt_for(bg, objs, rng):
    """a prompt for the scene: empty, partial or full (see the grammar);
    drawn anew each time a scene is used, so one picture teaches all forms"""
    u = rng.random()
    if u < P_EMPTY:
        return ""
    if u < P_EMPTY + P_PARTIAL:
        c, s, p = objs[rng.integers(len(objs))][:3]
        return [s, "a %s %s" % (c, s), "a %s %s" % (s, PLACES[p][0]),
                phrase(c, s, p), "%s background" % bg][rng.integers(5)]
    order = list(objs)
    if len(order) == 2 and rng.random() < 0.5:
        order.reverse()
    return " and ".join(phrase(*o[:3]) for o in order) + ", %s background" % bg


def sample(rng):
    """one (image uint8 HxWx3, prompt, (background, objects))"""
    bg, objs = sample_scene(rng)
    return render(bg, objs), prompt_for(bg, objs, rng), (bg, objs)


# ---------------------------------------------------------------- tokens

def load_vocab(clip_dir):
    with open(os.path.join(clip_dir, "vocab.json"), encoding="utf-8") as f:
        return json.load(f)


def tokenize(prompt, vocab, max_len=77):
    """CLIP ids for the grammar's prompts: every word of the grammar and the
    comma are single BPE tokens of the CLIP vocabulary ("word</w>"), so the
    general BPE is not needed; anything else is refused."""
    bos, eos = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    ids = [bos]
    for w in prompt.replace(",", " , ").split():
        key = w.lower() + "</w>"
        if key not in vocab:
            raise ValueError("word %r of prompt %r is not a single CLIP token" % (w, prompt))
        ids.append(vocab[key])
    ids.append(eos)
    if len(ids) > max_len:
        raise ValueError("prompt %r is longer than %d tokens" % (prompt, max_len))
    return ids + [eos] * (max_len - len(ids))


def write_ppm(path, img):
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (img.shape[1], img.shape[0]))
        f.write(img.tobytes())


if __name__ == "__main__":
    import sys
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    for i in range(int(sys.argv[2]) if len(sys.argv) > 2 else 8):
        img, prompt, _ = sample(rng)
        write_ppm("shape_%02d.ppm" % i, img)
        print("shape_%02d.ppm" % i, repr(prompt))
