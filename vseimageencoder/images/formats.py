"""The one table of image formats: which file suffixes a folder walk takes and which Pillow
decoder reads each. Readers and walkers both derive from it, so they cannot disagree."""

#: File suffix (lower case) -> the Pillow format that decodes it. MPO is the multi-picture
#: JPEG cameras and phones write; APNG files are PNGs (the first frame is read).
FORMATS = {
    '.jpg': 'JPEG', '.jpeg': 'JPEG', '.jpe': 'JPEG', '.jfif': 'JPEG',
    '.mpo': 'MPO',
    '.png': 'PNG', '.apng': 'PNG',
    '.webp': 'WEBP',
    '.gif': 'GIF',
    '.bmp': 'BMP',
    '.tif': 'TIFF', '.tiff': 'TIFF',
}

#: Suffixes a folder walk takes (compared case-insensitively).
IMAGE_SUFFIXES = frozenset(FORMATS)
#: Pillow formats that may be decoded; anything else is refused unopened.
ALLOWED_FORMATS = tuple(dict.fromkeys(FORMATS.values()))
#: The formats ``Image.open(formats=...)`` is given: MPO has no opener of its own (JPEG's
#: opens it and returns an MPO image), and naming it there is a KeyError.
OPENERS = tuple(f for f in ALLOWED_FORMATS if f != 'MPO')
#: The allowed formats as users name them, for messages.
FORMAT_NAMES = tuple({'WEBP': 'WebP'}.get(f, f) for f in ALLOWED_FORMATS)
