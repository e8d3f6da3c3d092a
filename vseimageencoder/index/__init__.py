"""A photo collection kept searchable on disk: an incremental, crash-safe index with provenance
(:func:`open_index`, :func:`update_index`). Imports neither torch nor jina.
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
