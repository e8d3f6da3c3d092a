"""Named in the ``py_modules`` of config.yml and text.yml: jina loads this file by path, and
importing the package registers the ``!VSEImageEncoder`` and ``!VSETextEncoder`` YAML tags."""
import os
import sys

try:
    import vseimageencoder.jina09.executor  # noqa: F401
except ImportError:  # not installed: use the source tree this file belongs to
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import vseimageencoder.jina09.executor  # noqa: F401
