"""The jina 3 front end: VSE++ image and text encoders as jina 3 Executors (docarray v2).

    from vseimageencoder.jina3 import VSEImageEncoder, VSETextEncoder, ImageDoc, TextDoc

``ImageDoc`` and ``TextDoc`` share one schema (:class:`CrossModalDoc`), so both Executors
chain on ``/encode`` in one Flow and a request may mix images and captions.

Both are thin layers over the jina-free core (:mod:`vseimageencoder.encoders`), the same one
the jina 0.9.33 executors wrap. jina 3 and jina 0.9.33 share the import name ``jina``, so
this module lives in its own environment: Python 3.10+, ``scripts/setup.sh --jina3``.
YAML configs for ``jina executor --uses``: ``image.yml`` and ``text.yml`` in this folder.
"""
import sys

from vseimageencoder._version import __version__


def _require_jina3() -> None:
    here = 'Python %d.%d.%d' % sys.version_info[:3]
    hint = ('vseimageencoder.jina3 is the jina 3 front end: it needs jina 3 (tested with '
            'jina==3.34.0 and docarray 0.41) on Python 3.10+; this is %s with %%s. Set that '
            'environment up with `scripts/setup.sh --jina3` (or `pip install -r '
            'requirements-jina3.txt -e .`). With jina 0.9.33 (Python 3.8/3.9) use '
            '`from vseimageencoder import VSEImageEncoder` instead.' % here)
    try:
        import jina
    except ImportError as e:
        raise ImportError(hint % ('no jina installed (%s)' % e), name='jina') from e
    version = str(getattr(jina, '__version__', 'unknown'))
    if not version.startswith('3.'):
        raise ImportError(hint % ('jina %s installed' % version), name='jina')


_require_jina3()

from vseimageencoder.jina3.docs import CrossModalDoc, ImageDoc, TextDoc  # noqa: E402
from vseimageencoder.jina3.executors import VSEImageEncoder, VSETextEncoder  # noqa: E402
from vseimageencoder.jina3.searcher import MatchDoc, SearchDoc, VSEMatchMerger, VSESearcher  # noqa: E402

__all__ = ['VSEImageEncoder', 'VSETextEncoder', 'CrossModalDoc', 'ImageDoc', 'TextDoc', '__version__',
           'VSESearcher', 'VSEMatchMerger', 'SearchDoc', 'MatchDoc']
