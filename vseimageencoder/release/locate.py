"""Where checkpoints are and the errors they can raise, without importing torch (so the CLI,
index and server can name and check them); :mod:`.checkpoint` re-exports all of it.
"""
import os
import shlex
from pathlib import Path
from typing import Iterable, List, Sequence, Union

from vseimageencoder.release.weights import CHECKPOINT_NAME, DEFAULT_MODEL

#: Searched for relative model paths after the working directory: the folder holding the
#: package, i.e. the repository root (config.yml's folder) in a checkout or editable install.
PACKAGE_PARENT_HINT = Path(__file__).resolve().parents[2]

#: Where relative model paths are looked up after the working directory.
DEFAULT_SEARCH_DIRS = (PACKAGE_PARENT_HINT,)

PathLike = Union[str, os.PathLike]


class CheckpointError(ValueError):
    """A checkpoint could not be used; the message names the file and the fault."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """No checkpoint at any of the paths tried."""


class UnsafeCheckpointError(CheckpointError):
    """The file's pickle asks for code other than tensors, containers and Namespace."""


class NotACheckpointError(CheckpointError):
    """The file is not a torch checkpoint at all (wrong format, truncated, empty)."""


class NotVSECheckpointError(CheckpointError):
    """A torch checkpoint, but not one of a VSE++ model."""


class CheckpointIntegrityError(CheckpointError):
    """The file differs from what its download record says was fetched."""


class CheckpointLimitError(CheckpointError):
    """A size the file declares is beyond any VSE++ model (see the ``MAX_*`` bounds) or
    beyond what the file holds: refused before anything that large is allocated."""


class CheckpointTooShortError(NotACheckpointError, CheckpointLimitError):
    """The file's storages declare more bytes than it holds: truncated, or forged to make
    torch allocate far more than the file."""


# Bounds on what a checkpoint may declare, with wide headroom over the released models
# (embed_size 1024; img_dim 4096 for VGG19, 2048 for ResNet-152; word_dim 300; one GRU
# layer; vocabularies of about 8,500 (f30k) and 11,400 (coco) words).
MAX_EMBED_SIZE = 8192
MAX_IMG_DIM = 16384
MAX_WORD_DIM = 4096
MAX_VOCAB_SIZE = 200_000
MAX_NUM_LAYERS = 8
#: The checkpoint dict's pickle without the tensor data: about 20 KB in the releases.
MAX_PICKLE_BYTES = 16 << 20
MAX_PICKLE_OPS = 1_000_000

#: Bytes per element of the storage classes torch writes into checkpoints.
_STORAGE_ELEMENT_SIZES = {
    'FloatStorage': 4, 'DoubleStorage': 8, 'HalfStorage': 2, 'BFloat16Storage': 2,
    'LongStorage': 8, 'IntStorage': 4, 'ShortStorage': 2, 'CharStorage': 1, 'ByteStorage': 1,
    'BoolStorage': 1, 'ComplexFloatStorage': 8, 'ComplexDoubleStorage': 16, 'UntypedStorage': 1,
}


# --------------------------------------------------------------------------- paths

def resolve_checkpoint_path(model_path: PathLike, search_dirs: Sequence[PathLike] = ()) -> Path:
    """The checkpoint file ``model_path`` names.

    ``model_path`` is a checkpoint file or a folder holding ``model_best.pth.tar``. An
    absolute path is used as is. A relative one is tried against the working directory
    first, then against each of ``search_dirs`` in order (the executor passes the folder
    of its YAML config and the folder the package is installed from), and the first that
    exists wins. Raises :class:`CheckpointNotFoundError` listing every path tried.
    """
    raw = Path(os.path.expanduser(os.fspath(model_path)))
    if raw.is_absolute():
        bases = [raw]
    else:
        bases = [Path.cwd() / raw] + [Path(d) / raw for d in search_dirs]
    tried: List[str] = []
    for candidate in _unique(bases):
        target = candidate / CHECKPOINT_NAME if candidate.is_dir() else candidate
        tried.append(str(target))
        if target.is_file():
            return target
    hint = '; get the weights with: ' + download_command(os.fspath(model_path))
    raise CheckpointNotFoundError(
        'no VSE++ checkpoint for model_path=%r; tried: %s%s'
        % (os.fspath(model_path), ', '.join(tried), hint))


def download_command(dest: str, model: str = DEFAULT_MODEL) -> str:
    """The command that puts a released model where ``dest`` (a folder or a file) points."""
    folder = dest
    if dest.endswith(('.tar', '.pth', '.pt')):
        folder = os.path.dirname(dest) or '.'
    return 'vseimageencoder download %s --dest %s' % (model, shlex.quote(folder))


def _unique(paths: Iterable[Path]) -> List[Path]:
    seen, out = set(), []
    for p in paths:
        key = os.path.normpath(str(p))
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out
