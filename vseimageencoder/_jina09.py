"""jina 0.9.33's offline switch under its original path
(``from vseimageencoder._jina09 import disable_phone_home``): :mod:`vseimageencoder.jina09.offline`."""
from vseimageencoder.jina09.offline import disable_phone_home, jina09_installed, require_jina09  # noqa: F401
