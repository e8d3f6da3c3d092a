"""VSE++ image and caption embeddings (Faghri et al., "VSE++: Improving Visual-Semantic
Embeddings with Hard Negatives", BMVC 2018), for jina 0.9.x and without it.

``from vseimageencoder import VSEImageEncoder, VSETextEncoder`` gives the jina 0.9.33
executors; :mod:`vseimageencoder.encoders` holds the jina-free ``ImageEncoder`` and
``TextEncoder`` they wrap, and the model, checkpoint, vocabulary and preprocessing modules
import no jina.

Where jina 0.9 is installed, importing this package registers both executors' YAML tags
(``!VSEImageEncoder``, ``!VSETextEncoder``), so a YAML loaded afterwards gets these classes
and not the older ones of the same names that jina 0.9.33 bundles: at once if jina is
already imported, else the moment jina is, so that the jina-free modules and the command
line do not pay for importing jina (0.6 s) when they do not use it. Elsewhere (jina 3, or no
jina) nothing of jina is imported.
"""
from vseimageencoder._version import __version__
from vseimageencoder.jina09.yaml_tags import install as _install_yaml_tags
from vseimageencoder.jina09.offline import jina09_installed as _jina09_installed  # noqa: F401

__all__ = ['VSEImageEncoder', 'VSETextEncoder', '__version__']

_EXECUTORS = ('VSEImageEncoder', 'VSETextEncoder')

_install_yaml_tags()


def __getattr__(name):
    # Lazy where jina 0.9 is absent, so that the jina-free modules import without it; the
    # executor module then raises an ImportError saying what to install.
    if name in _EXECUTORS:
        from vseimageencoder.jina09 import executor
        return getattr(executor, name)
    raise AttributeError('module %r has no attribute %r' % (__name__, name))
