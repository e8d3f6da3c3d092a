"""Real image files for the tests, and an independent reference of the VSE++ transform."""
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms


def reference_transform(pil_rgb):
    """torchvision's own composition, as VSE++'s evaluation loader builds it."""
    t = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
    return t(pil_rgb).numpy()


def composite_on_white(rgba: np.ndarray) -> Image.Image:
    a = rgba[..., 3:4].astype(np.float64) / 255.0
    rgb = rgba[..., :3].astype(np.float64) * a + 255.0 * (1 - a)
    return Image.fromarray(np.floor(rgb + 0.5).astype(np.uint8))


def write_image_set(folder, seed=0):
    """Writes JPEG, PNG with alpha, grayscale, palette, CMYK, EXIF-rotated and corrupt files
    of different sizes. Returns {relative name: reference RGB PIL image or None if corrupt}."""
    rng = np.random.RandomState(seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / 'nested' / 'deeper').mkdir(parents=True, exist_ok=True)
    refs = {}

    def smooth(h, w, c):
        # Smooth images, so JPEG round trips stay close and resizing matters.
        base = rng.rand(max(h // 16, 2), max(w // 16, 2), c)
        img = Image.fromarray((base * 255).astype(np.uint8).squeeze())
        return np.asarray(img.resize((w, h), Image.BICUBIC))

    rgb = smooth(300, 420, 3)
    Image.fromarray(rgb).save(str(folder / 'photo.jpg'), quality=95)
    refs['photo.jpg'] = Image.open(str(folder / 'photo.jpg')).convert('RGB')

    rgba = np.dstack([smooth(180, 140, 3), rng.randint(0, 256, (180, 140)).astype(np.uint8)])
    Image.fromarray(rgba).save(str(folder / 'nested' / 'alpha.png'))
    refs['nested/alpha.png'] = composite_on_white(rgba)

    gray = smooth(256, 256, 1)
    Image.fromarray(gray).save(str(folder / 'gray.png'))
    refs['gray.png'] = Image.fromarray(np.dstack([gray] * 3))

    pal = Image.fromarray(smooth(230, 330, 3)).quantize(colors=64)
    pal.save(str(folder / 'nested' / 'deeper' / 'palette.png'))
    refs['nested/deeper/palette.png'] = Image.open(str(folder / 'nested' / 'deeper' / 'palette.png')).convert('RGB')

    Image.fromarray(smooth(240, 260, 3)).convert('CMYK').save(str(folder / 'cmyk.jpg'), quality=95)
    refs['cmyk.jpg'] = Image.open(str(folder / 'cmyk.jpg')).convert('RGB')

    # Stored sideways with EXIF orientation 6: upright means rotated 90 degrees clockwise.
    side = Image.fromarray(smooth(200, 320, 3))
    exif = Image.Exif()
    exif[0x0112] = 6
    side.save(str(folder / 'rotated.jpg'), quality=95, exif=exif.tobytes())
    refs['rotated.jpg'] = Image.open(str(folder / 'rotated.jpg')).convert('RGB').transpose(Image.ROTATE_270)

    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 this is not really a jpeg')
    refs['broken.jpg'] = None
    (folder / 'notes.txt').write_text('not an image, and not named like one')
    return refs


@torch.no_grad()
def reference_batch(pil_images):
    return np.stack([reference_transform(im) for im in pil_images])


def write_noise_images(folder, count, height, width, seed=0, suffix='.png', digits=1):
    """``count`` images of uniform random RGB pixels in ``folder`` (made if missing), named
    ``0.png``, ``1.png``... (numbers zero-padded to ``digits``); returns their paths in order."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(seed)
    paths = []
    for i in range(count):
        path = folder / ('%0*d%s' % (digits, i, suffix))
        Image.fromarray(rng.randint(0, 256, (height, width, 3), np.uint8)).save(str(path))
        paths.append(path)
    return paths
