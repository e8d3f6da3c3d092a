"""The jina 3 front end (docarray v2): VSE++ image and text encoders, an index searcher and its
shard merger as jina 3 Executors. Needs its own environment (``scripts/setup.sh --jina3``).
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
