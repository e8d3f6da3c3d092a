"""Provenance: what an index records about the checkpoint that embedded it, and the one check
that a checkpoint (and its embedding width) may be used with an index. No torch."""
import os
from typing import Optional, Union

from vseimageencoder.index.name_escaping import escape, unescape
from vseimageencoder.index.store import ProvenanceMismatchError

PathLike = Union[str, os.PathLike]


def record(checkpoint: PathLike, resize: str, precision: str, options=None,
           sha256: Optional[str] = None) -> dict:
    """The provenance an index stores: ``sha256`` (computed unless given), ``checkpoint`` (the
    absolute path, escaped), ``resize`` and ``precision``; with ``options`` (the checkpoint's
    :class:`~vseimageencoder.release.checkpoint.TowerOptions`) also ``arch``, ``embed_size``
    and ``data_name``."""
    from vseimageencoder.release.weights import sha256_of

    prov = {'sha256': sha256 or sha256_of(checkpoint), 'checkpoint': escape(os.path.abspath(str(checkpoint))),
            'resize': resize, 'precision': precision}
    if options is not None:
        prov.update(arch=options.cnn_type, embed_size=int(options.embed_size), data_name=options.data_name)
    return prov


def recorded_checkpoint(provenance: Optional[dict]) -> Optional[str]:
    """The checkpoint path a provenance records (unescaped), or None."""
    if provenance and provenance.get('checkpoint'):
        return unescape(provenance['checkpoint'])
    return None


def default_model_path(provenance: Optional[dict]) -> str:
    """The model path to use when none is given: the recorded checkpoint while it exists,
    else ``'pretrained'``."""
    recorded = recorded_checkpoint(provenance)
    return recorded if recorded and os.path.exists(recorded) else 'pretrained'


def check_checkpoint(subject: PathLike, provenance: Optional[dict], checkpoint: PathLike,
                     remedy: str, sha256: Optional[str] = None, required: bool = False) -> str:
    """Refuse ``checkpoint`` for ``subject`` (an index folder or an embeddings file) unless its
    sha256 is the one ``provenance`` records. Nothing recorded (an embeddings file written
    before provenance was kept) is accepted, unless ``required`` (an index folder, which
    always records it).

    Returns the checkpoint's sha256 (``sha256`` when the caller already has it). Raises
    :class:`ProvenanceMismatchError` naming the subject, both digests, both checkpoints and
    ``remedy`` (what to do instead)."""
    from vseimageencoder.release.weights import sha256_of

    digest = sha256 or sha256_of(checkpoint)
    want = (provenance or {}).get('sha256')
    if (want or required) and digest != want:
        recorded = recorded_checkpoint(provenance)
        raise ProvenanceMismatchError(
            '%s was embedded with the checkpoint of sha256 %s%s, but %s has sha256 %s: %s'
            % (escape(str(subject)), want, ' (%s)' % escape(recorded) if recorded else '',
               escape(str(checkpoint)), digest, remedy))
    return digest


def check_width(subject: PathLike, dim: int, source: PathLike, width: int, remedy: str = '') -> None:
    """Raise :class:`ProvenanceMismatchError` when ``subject`` holds ``dim``-d embeddings but
    ``source`` (a checkpoint or embeddings file) gives ``width``-d ones."""
    if int(dim) != int(width):
        raise ProvenanceMismatchError('%s holds %d-d embeddings, but %s gives %d-d ones%s'
                                      % (escape(str(subject)), dim, escape(str(source)), width,
                                         ': ' + remedy if remedy else ''))
