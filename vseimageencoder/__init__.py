"""VSE++ image and caption embeddings (Faghri et al., "VSE++: Improving Visual-Semantic
Embeddings with Hard Negatives", BMVC 2018), for jina 0.9.x and without it.

``from vseimageencoder import VSEImageEncoder, VSETextEncoder`` gives the jina 0.9.33
executors; :mod:`vseimageencoder.encoders` holds the jina-free ``ImageEncoder`` and
``TextEncoder`` they wrap, and the model, checkpoint, vocabulary and preprocessing modules
import no jina.

Where jina 0.9 is installed, importing this package registers both executors' YAML tags
(``!VSEImageEncoder``, ``!VSETextEncoder``), so a YAML loaded afterwards gets these classes
and not the older ones of the same names that jina 0.9.33 bundles. Elsewhere (jina 3, or no
jina) nothing of jina is imported.
"""
from ._version import __version__

__all__ = ['VSEImageEncoder', 'VSETextEncoder', '__version__']

_EXECUTORS = ('VSEImageEncoder', 'VSETextEncoder')


def _jina09_installed() -> bool:
    # Asks the installed metadata, not jina itself: importing jina 3 here would be slow and
    # wrong, and a missing jina must cost nothing.
    try:
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # Python 3.7
        return False
    try:
        return version('jina').startswith('0.9.')
    except PackageNotFoundError:
        return False


if _jina09_installed():
    from . import executor as _executor  # noqa: F401  (registers the YAML tags)


def __getattr__(name):
    # Lazy where jina 0.9 is absent, so that the jina-free modules import without it; the
    # executor module then raises an ImportError saying what to install.
    if name in _EXECUTORS:
        from . import executor
        return getattr(executor, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
