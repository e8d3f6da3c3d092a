"""A photo collection kept searchable on disk: an incremental, crash-safe index with provenance.

    from vseimageencoder.index import open_index, update_index

    counts = update_index('photos.idx', ['~/Pictures'], model_path='pretrained')
    ix = open_index('photos.idx')
    ix.search(queries, k=5)        # float32 (Q, D) -> per query [(cosine, file), ...]

Imports neither torch nor jina (``update_index`` loads the model only when it has images to
embed). :mod:`.store` holds the format, :mod:`.update` the update, :mod:`.npy_pair` what
``vseimageencoder encode`` writes, :mod:`.name_escaping` how file names are stored and shown.
"""
from vseimageencoder.index.name_escaping import escape, unescape
from vseimageencoder.index.npy_pair import EmbeddingPair, IndexFileError, PairWriter, files_path, load_pair
from vseimageencoder.index.store import (ANN_THRESHOLD, DamagedIndexError, Index, IndexFormatError, IndexLockedError,
                    NewerFormatError, NoApproximateIndexError, NotAnIndexError, ProvenanceMismatchError,
                    Writer, open_index)
from vseimageencoder.index.provenance import record as checkpoint_provenance
from vseimageencoder.index.update import Counts, update_index

__all__ = ['ANN_THRESHOLD', 'Counts', 'DamagedIndexError', 'EmbeddingPair', 'Index', 'IndexFileError',
           'IndexFormatError', 'IndexLockedError', 'NewerFormatError', 'NoApproximateIndexError',
           'NotAnIndexError', 'PairWriter', 'ProvenanceMismatchError', 'Writer', 'checkpoint_provenance',
           'escape', 'files_path', 'load_pair', 'open_index', 'unescape', 'update_index']
