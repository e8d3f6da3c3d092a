"""Bringing an index up to date with the image files under some paths (``vseimageencoder index``)."""
import logging
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from vseimageencoder.index import provenance
from vseimageencoder.index.name_escaping import escape
from vseimageencoder.index.store import (ProvenanceMismatchError, Writer)

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

#: Removed rows above this share of all rows (and at least this many) trigger a compaction.
COMPACT_MIN_DEAD = 64


@dataclass
class Counts:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    unreadable: int = 0

    def as_dict(self) -> dict:
        return asdict(self)

    def line(self) -> str:
        return 'added %d, updated %d, removed %d, unchanged %d, unreadable %d' % (
            self.added, self.updated, self.removed, self.unchanged, self.unreadable)


@dataclass
class _Found:
    path: str
    size: int
    mtime_ns: int


def scan_paths(paths: Sequence[PathLike], unreadable: Callable[[str, str], None]):
    """``(found, roots, missing)``: the regular image files under ``paths`` (absolute, in
    the order ``encode`` reads them: :func:`~vseimageencoder.images.folders.walk`) with their
    size and mtime; the absolute form of each given path; the given paths that do not exist.
    Entries that are not regular files (FIFOs, devices, sockets, dangling links) are named
    through ``unreadable(path, reason)`` and never opened."""
    from vseimageencoder.images.folders import walk

    found: List[_Found] = []
    seen = set()
    roots = [os.path.abspath(os.fspath(given)) for given in paths]
    missing = []
    for root, p in walk(roots):
        if p is None:
            missing.append(root)
            continue
        if p in seen:
            continue
        seen.add(p)
        try:
            st = os.stat(p)
        except OSError as e:
            unreadable(p, e.strerror or str(e))
            continue
        if not stat.S_ISREG(st.st_mode):
            unreadable(p, 'not a regular file')
            continue
        found.append(_Found(p, st.st_size, st.st_mtime_ns))
    return found, roots, missing


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _mismatch(directory, recorded: dict, key: str, ours, flag: str) -> ProvenanceMismatchError:
    return ProvenanceMismatchError(
        '%s was embedded with %s=%s, but this run would use %s=%s: give %s %s (or leave it out), '
        'or --rebuild to embed everything again' % (directory, key, recorded.get(key), key, ours, flag,
                                                    recorded.get(key)))


def update_index(directory: PathLike, paths: Sequence[PathLike] = (), model_path: Optional[PathLike] = None,
                 batch_size: int = 32, device: str = 'cpu', precision: Optional[str] = None,
                 resize: Optional[str] = None, readers: Optional[int] = None,
                 progress: Union[bool, Callable[[int, int, int], None], None] = False,
                 rebuild: bool = False, from_npy: Optional[PathLike] = None,
                 on_unreadable: Optional[Callable[[str, str], None]] = None,
                 fuse: Optional[bool] = None) -> Counts:
    """Create the index in ``directory`` or bring it up to date with the image files under
    ``paths`` (what ``vseimageencoder index DIR PATH...`` does); returns the :class:`Counts`.

    Only what changed is embedded: a file whose size and mtime match is never read; new and
    changed files are embedded with a commit after each batch (a killed run keeps every
    committed batch); indexed files under ``paths`` that are gone are removed.

    ``model_path``, ``precision`` and ``resize`` default to what the index records (for a
    new index: ``'pretrained'``, ``'fp32'``, the package's default resize). A checkpoint
    whose sha256 differs from the recorded one, or a different precision / resize given
    explicitly, raises :class:`ProvenanceMismatchError` naming both, unless ``rebuild``
    (then every file is embedded again and the index starts over under the new provenance).
    The model is loaded only when some file needs embedding.

    ``from_npy``: import what ``vseimageencoder encode`` wrote (``EMB.npy`` and its file
    list) instead of embedding ``paths``; ``model_path`` names the checkpoint it came from.

    ``on_unreadable(file, reason)`` hears of every file that could not be read (default: a
    logged warning). ``progress``: a callable ``(done, skipped, total)`` or True (log lines).
    ``fuse``: as for :func:`~vseimageencoder.pipeline.embed_files.embed_files` (None: fuse a bf16 or
    fp16 CPU tower when at least ``FUSE_MIN_IMAGES`` files need embedding).
    Raises :class:`~vseimageencoder.index.store.IndexFormatError`, IndexLockedError,
    ProvenanceMismatchError, FileNotFoundError or ValueError with nothing written.
    """
    directory = Path(directory)
    counts = Counts()
    report = on_unreadable or (lambda p, why: logger.warning('unreadable: %s: %s', escape(p), escape(why)))

    def unreadable(p, why):
        counts.unreadable += 1
        report(p, why)

    with Writer(directory) as w:
        if from_npy is not None:
            if paths:
                raise ValueError('give either PATHs or --from, not both')
            _import_npy(w, Path(from_npy), model_path, precision, resize, rebuild, counts)
            _finish(w)
            return counts
        if not paths:
            raise ValueError('no PATH given: name the image files or folders to index')
        found, roots, missing = scan_paths(paths, unreadable)
        live_before = w.view.entries() if w.exists else {}
        entries = {} if rebuild else live_before
        indexed_here = {p for p in live_before if any(_under(p, r) for r in roots)}
        for root in missing:
            if not any(_under(p, root) for p in indexed_here):
                raise FileNotFoundError('no such image file or folder: %s' % escape(root))
        if not w.exists and not found:
            raise FileNotFoundError('no image files found in %s; nothing written'
                                    % ', '.join(escape(r) for r in roots))
        bad_before = w.view.unreadable_entries() if (w.exists and not rebuild) else {}
        todo: List[_Found] = []
        present = set()
        for f in found:
            present.add(f.path)
            old = entries.get(f.path)
            bad = bad_before.get(f.path)
            if old is not None and old[1] == f.size and old[2] == f.mtime_ns:
                counts.unchanged += 1
            elif bad is not None and bad[0] == f.size and bad[1] == f.mtime_ns:
                unreadable(f.path, '%s (unchanged since; not tried again)' % bad[2])
            else:
                todo.append(f)
        gone = sorted(indexed_here - present)
        if gone:
            w.remove([live_before[p][0] for p in gone])
            counts.removed += len(gone)
        for p in bad_before:
            if p not in present and any(_under(p, r) for r in roots):
                w.forget_unreadable(p)
        if w.dirty:
            w.commit()
        if todo:
            if rebuild:
                # Starting over drops the rows of files outside the given paths too.
                counts.removed += sum(1 for p in live_before if p not in present and p not in indexed_here)
            _embed(w, todo, live_before, model_path, batch_size, device, precision, resize, readers,
                   progress, rebuild, counts, unreadable, fuse)
        _finish(w)
    return counts


def _resolve_model(w: Writer, model_path, precision, resize, rebuild):
    """``(checkpoint, precision, resize, recorded, sha256)``, refusing a mismatch before any
    load."""
    from vseimageencoder.release.locate import DEFAULT_SEARCH_DIRS, resolve_checkpoint_path
    from vseimageencoder.images.transform import check_resize, DEFAULT_RESIZE
    from vseimageencoder.release.weights import sha256_of

    rec = w.manifest['provenance'] if w.exists else {}
    if model_path is None:
        model_path = (None if rebuild else provenance.recorded_checkpoint(rec)) or 'pretrained'
    checkpoint = resolve_checkpoint_path(model_path, list(DEFAULT_SEARCH_DIRS))
    digest = sha256_of(checkpoint)
    if rec and not rebuild:
        provenance.check_checkpoint(w.directory, rec, checkpoint, sha256=digest, required=True,
                                    remedy='use that checkpoint, or --rebuild to embed everything again '
                                           'with this one')
        if precision is not None and precision != 'auto' and precision != rec.get('precision'):
            raise _mismatch(w.directory, rec, 'precision', precision, '--precision')
        if resize is not None and resize != rec.get('resize'):
            raise _mismatch(w.directory, rec, 'resize', resize, '--resize')
        precision = precision or rec.get('precision', 'fp32')
        resize = resize or rec.get('resize')
    precision = precision or 'fp32'
    resize = check_resize(resize or DEFAULT_RESIZE)
    return checkpoint, precision, resize, rec, digest


def _embed(w: Writer, todo: List[_Found], live_before: Dict, model_path, batch_size, device, precision,
           resize, readers, progress, rebuild, counts: Counts, unreadable, fuse=None) -> None:
    from vseimageencoder.pipeline.embed_files import embed_files, reading_options
    from vseimageencoder.encoders import ImageEncoder

    reading_options(resize, readers)  # bad values fail before the load
    checkpoint, precision, resize, rec, digest = _resolve_model(w, model_path, precision, resize, rebuild)
    resize, readers = reading_options(resize, readers)
    core = ImageEncoder(checkpoint, precision=precision, device=device, resize=resize)
    core.require_backbone('indexing image files')
    prov = provenance.record(core.checkpoint_path, resize, core.precision, core.options, digest)
    if rec and not rebuild and rec.get('precision') not in (None, core.precision):
        raise _mismatch(w.directory, rec, 'precision', core.precision, '--precision')
    if not w.exists or rebuild:
        w.restart(prov, core.embed_size)
        w.commit()  # the new (empty) index is visible from here on: a rebuild starts over
    else:
        provenance.check_width(w.directory, w.manifest['dim'], core.checkpoint_path, core.embed_size)
    replaced = {f.path: live_before[f.path][0] for f in todo if f.path in live_before}
    total = len(todo)

    bad_before = {} if rebuild else w.view.unreadable_entries() if w.view is not None else {}

    def write(rows: np.ndarray, positions):
        batch = [todo[i] for i in positions]
        if not rebuild:
            old = [replaced[f.path] for f in batch if f.path in replaced]
            w.remove(old)
        for f in batch:
            if f.path in bad_before:
                w.forget_unreadable(f.path)
        w.add(rows, [f.path for f in batch], [f.size for f in batch], [f.mtime_ns for f in batch])
        w.commit()
        for f in batch:
            if f.path in replaced:
                counts.updated += 1
            else:
                counts.added += 1

    def bad(pos, err):
        f = todo[pos]
        if f.path in replaced and not rebuild:
            # The file changed and now cannot be read: its old row no longer describes it.
            w.remove([replaced.pop(f.path)])
            counts.removed += 1
        why = getattr(err, 'reason', str(err))
        # Committed with the next batch (or at the end): until then a kill only means
        # trying this file again.
        w.mark_unreadable(f.path, f.size, f.mtime_ns, why)
        unreadable(f.path, why)

    on_progress = None
    if callable(progress):
        on_progress = lambda done, skipped: progress(done, skipped, total)  # noqa: E731
    elif progress:
        on_progress = _log_progress(total)
    embed_files(core.model, [f.path for f in todo], write, batch_size, resize, readers, bad, on_progress,
                fuse)
    if w.dirty:
        w.commit()


def _log_progress(total: int, every: float = 10.0):
    import time

    last = [time.monotonic()]

    def report(done, skipped):
        now = time.monotonic()
        if now - last[0] >= every:
            last[0] = now
            logger.info('%d of %d files embedded, %d unreadable', done, total, skipped)
    return report


def _import_npy(w: Writer, npy: Path, model_path, precision, resize, rebuild, counts: Counts,
                batch_rows: int = 65536) -> None:
    from vseimageencoder.index.npy_pair import load_pair

    pair = load_pair(npy)
    header = pair.provenance or {}
    precision = precision or header.get('precision')
    resize = resize or header.get('resize')
    checkpoint, precision, resize, rec, digest = _resolve_model(w, model_path, precision, resize, rebuild)
    provenance.check_checkpoint(npy, header, checkpoint, sha256=digest,
                                remedy='give the --model-path it was encoded with')
    if not w.exists or rebuild:
        # The checkpoint's options are read only to start an index: an existing one records
        # them, and adding to it needs no torch.
        from vseimageencoder.release.checkpoint import read_options, read_verified_checkpoint
        options = read_options(read_verified_checkpoint(checkpoint), checkpoint)
        provenance.check_width(npy, pair.dim, checkpoint, options.embed_size)
        w.restart(provenance.record(checkpoint, resize, precision, options, digest), pair.dim)
        w.commit()
    else:
        provenance.check_width(w.directory, w.manifest['dim'], npy, pair.dim)
    entries = w.view.entries() if (w.view is not None and not rebuild) else {}
    # The last row of a file listed twice wins.
    last = {}
    for i, name in enumerate(pair.files):
        last[os.path.abspath(name)] = i
    rows_of = sorted(last.values())
    for start in range(0, len(rows_of), batch_rows):
        sel = rows_of[start:start + batch_rows]
        metas, keep, old_ids = [], [], []
        for i in sel:
            p = os.path.abspath(pair.files[i])
            try:
                st = os.stat(p)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1  # not here (another machine, synthetic names): unknown
            old = entries.get(p)
            if old is not None and old[1] == size and old[2] == mtime and size != -1:
                counts.unchanged += 1
                continue
            if old is not None and size == -1 and old[1] == -1:
                counts.unchanged += 1
                continue
            if old is not None:
                old_ids.append(old[0])
                counts.updated += 1
            else:
                counts.added += 1
            metas.append((p, size, mtime))
            keep.append(i)
        if keep:
            w.remove(old_ids)
            w.add(np.asarray(pair.rows[keep], np.float32), [m[0] for m in metas], [m[1] for m in metas],
                  [m[2] for m in metas])
            w.commit()


def _finish(w: Writer) -> None:
    """Compact when removed rows dominate; keep the approximate index in step."""
    if not w.exists:
        return
    m = w.manifest
    dead = m['rows'] - m['live']
    if dead >= COMPACT_MIN_DEAD and dead > m['live']:
        w.compact()
    from vseimageencoder.index.store import _ann_after_update
    _ann_after_update(w)
