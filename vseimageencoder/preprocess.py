"""The image functions under their original path (``from vseimageencoder.preprocess import
expand_paths, transform``): they live in :mod:`vseimageencoder.images`."""
from vseimageencoder.images.checks import *  # noqa: F401,F403
from vseimageencoder.images.folders import expand_paths  # noqa: F401
from vseimageencoder.images.formats import ALLOWED_FORMATS, IMAGE_SUFFIXES  # noqa: F401
from vseimageencoder.images.read import *  # noqa: F401,F403
from vseimageencoder.images.transform import *  # noqa: F401,F403
