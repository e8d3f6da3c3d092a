"""Generated stand-ins for camera photos, for the fast-transform tests and benchmarks.

Smooth content at every scale (a gradient, noise fields from coarse to pixel-sized, filled
shapes with sharp edges, thin lines, sensor-like grain), so resizing and JPEG's DCT scaling
behave as they do on photographs: neither flat colour (which any resize gets right) nor
white noise (which no photo is).
"""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def photo(width: int, height: int, seed: int = 0, gray: bool = False) -> Image.Image:
    """A ``width`` x ``height`` RGB (or L) PIL image of photo-like content."""
    rng = np.random.RandomState(seed)
    yy = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    c0, c1, c2 = (rng.rand(3, 1, 1, 3).astype(np.float32) * 200 + 20)
    base = c0 + (c1 - c0) * xx + (c2 - c0) * yy  # float32 (H, W, 3)
    # Noise octaves from 4 cells across down to 1/64 of the short side, each a PIL bicubic
    # upsample of a small random field (cheap even at 24 MP).
    short = min(width, height)
    cells, amp = 4, 40.0
    while cells <= max(4, short // 64):
        gw, gh = max(2, cells * width // short), max(2, cells * height // short)
        field = Image.fromarray(rng.randint(0, 256, (gh, gw, 3)).astype(np.uint8))
        up = np.asarray(field.resize((width, height), Image.BICUBIC), np.float32)
        base += (up - 128.0) * (amp / 128.0)
        cells, amp = cells * 4, amp * 0.5
    img = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(10):
        x, y = rng.randint(0, width), rng.randint(0, height)
        r = int(rng.randint(short // 40 + 1, short // 6 + 2))
        fill = tuple(int(v) for v in rng.randint(0, 256, 3))
        if rng.rand() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=fill)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=fill)
    for _ in range(8):
        pts = [(int(rng.randint(0, width)), int(rng.randint(0, height))) for _ in range(2)]
        draw.line(pts, fill=tuple(int(v) for v in rng.randint(0, 256, 3)), width=max(1, short // 500))
    arr = np.asarray(img).astype(np.int16)
    arr = arr + rng.randint(-6, 7, (height, width, 1)).astype(np.int16)  # grain
    out = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    return out.convert('L') if gray else out


#: Image kinds for the fidelity measurement: (name, width, height as stored, options).
#: ``orientation`` is an EXIF orientation tag (6: stored sideways, upright is portrait).
FIDELITY_SET = [
    ('small-320x240.jpg', 320, 240, {}),
    ('vga-640x480.png', 640, 480, {}),
    ('gray-1024x768.jpg', 1024, 768, {'gray': True}),
    ('1mp-1200x900.jpg', 1200, 900, {}),
    ('portrait-1080x1920.jpg', 1080, 1920, {}),
    ('odd-2001x1333.jpg', 2001, 1333, {'progressive': True}),
    ('12mp-4000x3000.jpg', 4000, 3000, {}),
    ('12mp-portrait-3000x4000.jpg', 3000, 4000, {'subsampling': 0}),
    ('12mp-exif6-4000x3000.jpg', 4000, 3000, {'orientation': 6}),
    ('12mp-exif3-4032x3024.jpg', 4032, 3024, {'orientation': 3}),
    ('12mp-4000x3000.png', 4000, 3000, {}),
    ('24mp-6000x4000.jpg', 6000, 4000, {}),
    ('24mp-gray-portrait-4000x6000.jpg', 4000, 6000, {'gray': True}),
    ('24mp-portrait-4000x6000.png', 4000, 6000, {}),
    ('cmyk-2400x1600.jpg', 2400, 1600, {'cmyk': True}),
]

#: A few-megapixel subset of the same kinds, for the unit tests.
TEST_SET = [
    ('small-300x200.jpg', 300, 200, {}),
    ('png-900x700.png', 900, 700, {}),
    ('gray-1400x1000.jpg', 1400, 1000, {'gray': True}),
    ('portrait-1200x1800.jpg', 1200, 1800, {'progressive': True}),
    ('exif6-2400x1600.jpg', 2400, 1600, {'orientation': 6}),
    ('exif3-2049x1537.jpg', 2049, 1537, {'orientation': 3, 'subsampling': 0}),
    ('4mp-2400x1800.png', 2400, 1800, {}),
    ('cmyk-1600x1100.jpg', 1600, 1100, {'cmyk': True}),
]


def write_photo(path, width: int, height: int, seed: int = 0, gray: bool = False,
                orientation: int = 0, progressive: bool = False, subsampling: int = 2,
                quality: int = 90, cmyk: bool = False) -> Path:
    """Write a generated photo to ``path`` (JPEG or PNG by suffix), stored ``width`` x
    ``height``; an EXIF ``orientation`` tag is written as given (JPEG only)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = photo(width, height, seed, gray)
    if cmyk:
        img = img.convert('CMYK')
    if path.suffix.lower() == '.png':
        img.save(str(path), compress_level=1)
    else:
        kw = {'quality': quality, 'progressive': progressive}
        if not gray and not cmyk:
            kw['subsampling'] = subsampling
        if orientation:
            exif = Image.Exif()
            exif[0x0112] = orientation
            kw['exif'] = exif.tobytes()
        img.save(str(path), **kw)
    return path


def write_set(folder, kinds, seed: int = 0):
    """Write every kind of ``kinds`` into ``folder``; returns the paths in order."""
    return [write_photo(Path(folder) / name, w, h, seed=seed + i, **opts)
            for i, (name, w, h, opts) in enumerate(kinds)]
