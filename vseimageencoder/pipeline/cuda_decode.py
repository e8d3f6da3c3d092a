"""JPEG files decoded (nvJPEG) and transformed by torch on the tower's device, for towers on a
GPU; never imported by the CPU path, so it cannot change what a CPU computes.
"""
import io
from typing import List, Sequence, Tuple

import numpy as np

#: EXIF orientation -> how to turn a decoded (C, H, W) tensor upright (PIL's exif_transpose).
_UPRIGHT = {
    2: lambda x: x.flip(2),
    3: lambda x: x.flip(1).flip(2),
    4: lambda x: x.flip(1),
    5: lambda x: x.transpose(1, 2),
    6: lambda x: x.transpose(1, 2).flip(2),
    7: lambda x: x.transpose(1, 2).flip(1).flip(2),
    8: lambda x: x.transpose(1, 2).flip(1),
}


def read_jpeg(path) -> Tuple[bytes, int]:
    """The bytes of a plain JPEG file (RGB or grayscale) and its EXIF orientation (1-8).

    Opens ``path`` only if it is a regular file; only the header is parsed here. Raises
    :class:`~vseimageencoder.images.read.ImageReadError` (or a subclass: not a regular file,
    too many pixels) naming the file, and :class:`NotPlainJpeg` for any other format or a
    colour space nvJPEG does not turn into RGB (the caller then uses the host transform).
    """
    from PIL import Image, UnidentifiedImageError

    from vseimageencoder.images import read
    from vseimageencoder.files.regular import NotARegularFileError, open_regular

    try:
        with open_regular(path) as f:
            data = f.read()
        # (multi-picture MPO files open through the JPEG plugin too)
        with Image.open(io.BytesIO(data), formats=('JPEG',)) as img:
            size, mode = img.size, img.mode
            orientation = int(img.getexif().get(0x0112, 1) or 1)
    except NotARegularFileError as e:
        raise read.NotARegularImageError('cannot read image %s: %s' % (path, e), str(e)) from None
    except UnidentifiedImageError:
        raise NotPlainJpeg(path) from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise read.ImageReadError('cannot read image %s: %s' % (path, e), str(e)) from None
    if mode not in ('RGB', 'L'):
        raise NotPlainJpeg(path)
    if size[0] * size[1] > read.MAX_IMAGE_PIXELS:
        reason = '%d x %d pixels is over the limit of %d pixels (MAX_IMAGE_PIXELS)' % (
            size[0], size[1], read.MAX_IMAGE_PIXELS)
        raise read.ImageTooLargeError('cannot read image %s: %s' % (path, reason), reason)
    return data, orientation if orientation in _UPRIGHT else 1


class NotPlainJpeg(Exception):
    """Not a JPEG that decodes to RGB on the device (PNG, CMYK, ...): use the host path."""


def transform_decoded(images: Sequence, orientations: Sequence[int]):
    """Decoded uint8 ``(3, H, W)`` tensors (on one device, any sizes) -> float32
    ``(B, 3, 224, 224)`` on that device: turned upright, resized (short side 256,
    antialiased bilinear), centre-cropped to 224, rounded to 8-bit levels, normalised with
    the ImageNet mean and std: the ``exact`` geometry, within about one grey level of PIL's
    (``tests/pipeline/test_cuda_decode.py`` bounds the difference). Also runs on ``device='cpu'``."""
    import torch
    import torch.nn.functional as F

    from vseimageencoder.images.transform import _crop_offset, CROP, crop_geometry, IMAGENET_MEAN, IMAGENET_STD

    if not images:
        raise ValueError('no images to transform')
    dev = images[0].device
    out = torch.empty((len(images), 3, CROP, CROP), dtype=torch.float32, device=dev)
    for i, (x, o) in enumerate(zip(images, orientations)):
        x = _UPRIGHT.get(o, lambda t: t)(x)
        h, w = x.shape[1:]
        (new_w, new_h), _ = crop_geometry(w, h)
        left, top = _crop_offset(new_w, new_h)
        if dev.type == 'cpu':
            # torch's fast antialiasing kernel for uint8 wants channels-last (rounds as PIL)
            y = F.interpolate(x[None].contiguous(memory_format=torch.channels_last), size=(new_h, new_w),
                              mode='bilinear', antialias=True, align_corners=False)[0]
            y = y[:, top:top + CROP, left:left + CROP].float()
        else:
            y = F.interpolate(x[None].float(), size=(new_h, new_w), mode='bilinear', antialias=True,
                              align_corners=False)[0]
            y = y[:, top:top + CROP, left:left + CROP].round_().clamp_(0, 255)
        out[i] = y
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=dev).view(1, 3, 1, 1)
    return out.div_(255.0).sub_(mean).div_(std)


def load_batch(paths: Sequence, device='cuda', pin: bool = True):
    """Read, decode and transform image files on ``device``.

    :return: ``(batch, positions, errors)``: float32 ``(len(positions), 3, 224, 224)`` on
        ``device`` for the readable files, their indices into ``paths`` (increasing), and
        ``(index, ImageReadError)`` for the others. Plain JPEGs are decoded together by
        ``torchvision.io.decode_jpeg`` on ``device`` (their bytes copied from pinned host
        memory when ``pin`` and the device is a GPU); other files take the host transform.
    """
    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    from vseimageencoder.images.read import ImageReadError

    from vseimageencoder.images.transform import transform

    device = torch.device(device)
    jpeg_pos, datas, orients = [], [], []
    host = {}
    errors = []
    for i, p in enumerate(paths):
        try:
            data, orientation = read_jpeg(p)
        except NotPlainJpeg:
            try:
                host[i] = torch.from_numpy(transform(p, resize='exact'))
            except ImageReadError as e:
                errors.append((i, e))
            continue
        except ImageReadError as e:
            errors.append((i, e))
            continue
        t = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        if pin and device.type == 'cuda':
            t = t.pin_memory()
        jpeg_pos.append(i)
        datas.append(t)
        orients.append(orientation)
    decoded = {}
    if datas:
        try:
            imgs = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
        except RuntimeError:
            # One file the device decoder refuses fails the whole batched call: decode one by
            # one, and give a refused file to the host decoder, which names it if it is bad.
            imgs = []
            for i, t in zip(list(jpeg_pos), datas):
                try:
                    imgs.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    imgs.append(None)
                    try:
                        host[i] = torch.from_numpy(transform(paths[i], resize='exact'))
                    except ImageReadError as e:
                        errors.append((i, e))
        keep = [(i, x, o) for i, x, o in zip(jpeg_pos, imgs, orients) if x is not None]
        if keep:
            out = transform_decoded([x for _, x, _ in keep], [o for _, _, o in keep])
            decoded = {i: out[k] for k, (i, _, _) in enumerate(keep)}
    positions = sorted(list(decoded) + list(host))
    errors.sort(key=lambda e: e[0])
    if not positions:
        return torch.empty((0, 3, 224, 224), device=device), [], errors
    rows = [decoded[i] if i in decoded else host[i].to(device, non_blocking=True) for i in positions]
    return torch.stack(rows), positions, errors


def embed_files_on_device(model, paths: Sequence, write, batch_size: int = 32, device='cuda',
                          on_unreadable=None, on_progress=None) -> Tuple[int, int]:
    """:func:`~vseimageencoder.pipeline.embed_files.embed_files` for a tower on a GPU: each batch is
    decoded and transformed on ``device`` (:func:`load_batch`), then embedded; ``write(rows,
    positions)`` gets float32 numpy rows in input order. Returns ``(done, skipped)``.

    Batches are read on one host thread while the device works on the previous one.
    """
    from vseimageencoder.pipeline.prefetch import read_in_order

    paths = list(paths)
    chunks = [range(i, min(len(paths), i + batch_size)) for i in range(0, len(paths), batch_size)]

    def load(chunk):
        batch, positions, errors = load_batch([paths[i] for i in chunk], device)
        return batch, [chunk[k] for k in positions], [(chunk[k], e) for k, e in errors]

    done = skipped = 0
    with read_in_order(chunks, load, 1, 2) as batches:
        for _, (batch, positions, errors) in batches:
            for pos, err in errors:
                skipped += 1
                if on_unreadable is not None:
                    on_unreadable(pos, err)
            if positions:
                write(np.ascontiguousarray(model(batch).numpy(), np.float32), positions)
                done += len(positions)
            if on_progress is not None:
                on_progress(done, skipped)
    return done, skipped


def cuda_decode_available() -> bool:
    """True when torch sees a CUDA device and torchvision's decode_jpeg can use it."""
    try:
        import torch
        import torchvision.io  # noqa: F401
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


__all__: List[str] = ['read_jpeg', 'NotPlainJpeg', 'transform_decoded', 'load_batch',
                      'embed_files_on_device', 'cuda_decode_available']
