"""Released VSE++ weights and vocabularies as data, and streaming them out of the authors'
archives into files with a download record (size, sha256) that loaders check.
"""
import hashlib
import json
import logging
import os
import socket
import sys
import tarfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Union

from vseimageencoder.files.atomic import commit, discard, temp_beside

logger = logging.getLogger(__name__)

RELEASE_ARCHIVE_URL = 'http://www.cs.toronto.edu/~faghri/vsepp/runs.tar'
VOCAB_ARCHIVE_URL = 'http://www.cs.toronto.edu/~faghri/vsepp/vocab.tar'
CHECKPOINT_NAME = 'model_best.pth.tar'
DEFAULT_MODEL = 'f30k_vse++_vggfull'
RECORD_SUFFIX = '.json'
_CHUNK = 1 << 20

#: The largest released model file (VGG19 fine-tuned: backbone, projection and text tower)
#: is about 0.6 GB; a member declaring more than this is refused before a byte is written.
#: ``download --max-bytes`` overrides it.
MAX_MODEL_BYTES = 1 << 30
#: Released vocabularies are under 1 MB (see vocab.MAX_VOCAB_FILE_BYTES, the loader's bound).
MAX_VOCAB_BYTES = 32 << 20
#: The whole download may take this long: runs.tar is about 7 GB and is read up to the
#: wanted member, so a slow (0.5 MB/s) link still finishes. ``download --deadline``.
DEFAULT_DEADLINE = 6 * 3600.0
#: A transfer that moves fewer than :data:`STALL_MIN_BYTES` in this many seconds (or
#: nothing at all) is stalled. ``download --stall-timeout``.
DEFAULT_STALL_TIMEOUT = 60.0
STALL_MIN_BYTES = 64 << 10


def vocab_file_name(data_name: str) -> str:
    """``<data_name>_vocab.pkl``: the vocabulary's name in ``vocab.tar`` (under ``vocab/``) and
    beside a downloaded checkpoint. ``data_name`` is the checkpoint's ``opt.data_name``;
    anything that is not a plain name (empty, a path, a leading dot) is refused with
    ValueError, since it comes out of a file."""
    if (not isinstance(data_name, str) or not data_name or data_name.startswith('.')
            or any(c in data_name for c in '/\\\0') or data_name != data_name.strip()):
        raise ValueError('data_name %r is not a VSE++ dataset name (e.g. f30k, coco, f30k_precomp)'
                         % (data_name,))
    return '%s_vocab.pkl' % data_name


@dataclass(frozen=True)
class ReleasedModel:
    """One released VSE++ model and the vocabulary its text tower was trained with.

    ``size``/``sha256`` (and ``vocab_size``/``vocab_sha256``) are None: the authors published
    none, so the first download's record is what later loads are checked against.
    ``data_name`` is the training option that names the vocabulary (``opt.data_name`` in
    the checkpoint).
    """

    name: str
    backbone: str  # 'vgg19', 'resnet152' or 'precomputed'
    dataset: str  # 'f30k' or 'coco'
    finetuned: bool
    data_name: str  # 'f30k', 'coco' or 'coco_precomp'
    source: str = RELEASE_ARCHIVE_URL
    size: Optional[int] = None
    sha256: Optional[str] = None
    vocab_source: str = VOCAB_ARCHIVE_URL
    vocab_size: Optional[int] = None
    vocab_sha256: Optional[str] = None

    @property
    def member(self) -> str:
        return 'runs/%s/%s' % (self.name, CHECKPOINT_NAME)

    @property
    def vocab_file(self) -> str:
        return vocab_file_name(self.data_name)

    @property
    def vocab_member(self) -> str:
        return 'vocab/' + self.vocab_file


RELEASED_MODELS: Dict[str, ReleasedModel] = {m.name: m for m in (
    ReleasedModel('f30k_vse++_vggfull', 'vgg19', 'f30k', False, 'f30k'),
    ReleasedModel('f30k_vse++_vggfull_finetune', 'vgg19', 'f30k', True, 'f30k'),
    ReleasedModel('f30k_vse++_resnet', 'resnet152', 'f30k', False, 'f30k'),
    ReleasedModel('f30k_vse++_resnet_finetune', 'resnet152', 'f30k', True, 'f30k'),
    ReleasedModel('coco_vse++_resnet_restval_finetune', 'resnet152', 'coco', True, 'coco'),
    ReleasedModel('coco_vse++_vggfull_restval_finetune', 'vgg19', 'coco', True, 'coco'),
    # Trained on precomputed features, with the vocabulary built for that split.
    ReleasedModel('coco_vse++', 'precomputed', 'coco', False, 'coco_precomp'),
)}


class WeightsError(RuntimeError):
    """A download or a downloaded file's record failed; the message says which and why."""


class DownloadTooLargeError(WeightsError):
    """The archive member declares more bytes than the cap allows."""


class DownloadStalledError(WeightsError):
    """The source sent (almost) nothing for the stall timeout."""


class DownloadDeadlineError(WeightsError):
    """The download did not finish within its overall deadline."""


class UnknownModelError(WeightsError, KeyError):
    def __str__(self):
        return self.args[0]


def released_model(name: str) -> ReleasedModel:
    try:
        return RELEASED_MODELS[name]
    except KeyError:
        raise UnknownModelError('unknown model %r; known models: %s'
                                % (name, ', '.join(sorted(RELEASED_MODELS)))) from None


def vocab_download_command(data_name: str, dest: Union[str, Path]) -> Optional[str]:
    """The command that puts the vocabulary for ``data_name`` into folder ``dest``, or None
    when no released model was trained with that ``data_name``."""
    import shlex

    for m in RELEASED_MODELS.values():
        if m.data_name == data_name:
            return 'vseimageencoder download %s --vocab-only --dest %s' % (m.name, shlex.quote(str(dest)))
    return None


def record_path(checkpoint: Union[str, Path]) -> Path:
    p = Path(checkpoint)
    return p.with_name(p.name + RECORD_SUFFIX)


# sha256 of files read in this process, by what identifies their content on disk. One
# `search --image` or `serve` start checks the same checkpoint for the index's provenance, the
# download record and the encoder.
_DIGESTS: Dict[tuple, str] = {}
_DIGESTS_KEPT = 16


def _identity(st: os.stat_result) -> tuple:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def sha256_of(path: Union[str, Path]) -> str:
    """Hex sha256 of the file at ``path``. Remembered for the process while the file keeps its
    device, inode, size and modification and change times (any write or replacement changes
    them), so checking one checkpoint several times reads it once."""
    with open(path, 'rb') as f:
        before = _identity(os.fstat(f.fileno()))
        known = _DIGESTS.get(before)
        if known is not None:
            return known
        h = hashlib.sha256()
        for chunk in iter(lambda: f.read(4 * _CHUNK), b''):
            h.update(chunk)
        digest = h.hexdigest()
        if _identity(os.fstat(f.fileno())) == before:  # not written to while being read
            if len(_DIGESTS) >= _DIGESTS_KEPT:
                _DIGESTS.pop(next(iter(_DIGESTS)))
            _DIGESTS[before] = digest
    return digest


def verify_record(checkpoint: Union[str, Path]) -> Optional[dict]:
    """Check a checkpoint against the download record beside it, if there is one.

    Returns the record (None when absent); raises :class:`WeightsError` naming the file
    when its size or sha256 differ from what was downloaded.
    """
    checkpoint = Path(checkpoint)
    rec_file = record_path(checkpoint)
    if not rec_file.is_file():
        return None
    try:
        rec = json.loads(rec_file.read_text(encoding='utf-8'))
        size, digest = int(rec['size']), str(rec['sha256'])
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError('download record %s is unreadable (%s)' % (rec_file, e)) from None
    actual_size = checkpoint.stat().st_size
    if actual_size != size:
        raise WeightsError('%s does not match its download record %s: %d bytes, recorded %d; '
                           'fetch it again' % (checkpoint, rec_file, actual_size, size))
    actual = sha256_of(checkpoint)
    if actual != digest:
        raise WeightsError('%s does not match its download record %s: sha256 %s, recorded %s; '
                           'fetch it again' % (checkpoint, rec_file, actual, digest))
    return rec


class _CountingReader:
    """A read-only file wrapper that counts bytes, reports progress and enforces the
    deadline (``deadline_at``, a ``time.monotonic()`` value) and the stall timeout.

    Reads return what one receive brings (``read1``) rather than waiting to fill the
    request, so a source dripping a byte at a time is measured as it drips; the socket's
    own timeout (the stall timeout) bounds one receive.
    """

    def __init__(self, raw, report: Optional[Callable[[int], None]], source: str = '',
                 deadline_at: Optional[float] = None, stall_timeout: Optional[float] = None):
        self.raw, self.report, self.count = raw, report, 0
        self.source, self.deadline_at, self.stall_timeout = source, deadline_at, stall_timeout
        self._window_start = time.monotonic()
        self._window_count = 0
        self._read = getattr(raw, 'read1', None) or raw.read

    def read(self, n=-1):
        try:
            data = self._read(n if n is not None and n >= 0 else _CHUNK)
        except socket.timeout:
            raise DownloadStalledError('%s sent nothing for %.0f s (stall timeout) after %d bytes'
                                       % (self.source, self.stall_timeout or 0, self.count)) from None
        self.count += len(data)
        self._check(len(data))
        if self.report is not None:
            self.report(self.count)
        return data

    def _check(self, got: int) -> None:
        now = time.monotonic()
        if self.deadline_at is not None and now > self.deadline_at:
            raise DownloadDeadlineError('reading %s did not finish within the deadline (%d bytes '
                                        'read); raise it with --deadline' % (self.source, self.count))
        if self.stall_timeout is None:
            return
        self._window_count += got
        if now - self._window_start >= self.stall_timeout:
            if self._window_count < STALL_MIN_BYTES:
                raise DownloadStalledError(
                    '%s stalled: %d bytes in the last %.0f s (stall timeout; fewer than %d) after '
                    '%d bytes' % (self.source, self._window_count, now - self._window_start,
                                  STALL_MIN_BYTES, self.count))
            self._window_start, self._window_count = now, 0


class _ProgressLine:
    def __init__(self, enabled: bool, total: Optional[int]):
        self.enabled, self.total = enabled, total
        self.start = self.last = time.monotonic()

    def __call__(self, count: int, force: bool = False):
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.5):
            return
        self.last = now
        rate = count / max(now - self.start, 1e-9) / 1e6
        of = ' of %.1f MB' % (self.total / 1e6) if self.total else ''
        sys.stderr.write('\rread %.1f MB%s, %.1f MB/s' % (count / 1e6, of, rate))
        sys.stderr.flush()


def _open_source(source: str, timeout: float = DEFAULT_STALL_TIMEOUT):
    """A readable binary stream of the archive, and its length when known."""
    if source.startswith(('http://', 'https://')):
        try:
            resp = urllib.request.urlopen(source, timeout=timeout)
        except socket.timeout:
            raise DownloadStalledError('%s did not answer within %.0f s (stall timeout)'
                                       % (source, timeout)) from None
        except OSError as e:
            raise WeightsError('cannot fetch %s: %s' % (source, e)) from None
        length = resp.headers.get('Content-Length')
        return resp, int(length) if length and length.isdigit() else None
    path = source[len('file://'):] if source.startswith('file://') else source
    try:
        f = open(path, 'rb')
    except OSError as e:
        raise WeightsError('cannot open archive %s: %s' % (path, e)) from None
    return f, os.fstat(f.fileno()).st_size


def _cached(target: Path, identity: Dict[str, str]) -> bool:
    """Whether ``target`` is already there, matches its record, and the record says it is
    the thing ``identity`` names (e.g. ``{'model': name}``)."""
    rec_file = record_path(target)
    if not (target.is_file() and rec_file.is_file()):
        return False
    try:
        rec = verify_record(target)
    except WeightsError as e:
        logger.warning('%s; fetching it again', e)
        return False
    for key, want in identity.items():
        if rec.get(key) != want:
            logger.info('%s holds %s %s, not %s; fetching', target, key, rec.get(key), want)
            return False
    return True


def fetch_member(source: str, member: str, target: Union[str, Path], identity: Dict[str, str],
                 progress: bool = False, size: Optional[int] = None,
                 sha256: Optional[str] = None, max_bytes: int = MAX_MODEL_BYTES,
                 deadline: Optional[float] = DEFAULT_DEADLINE,
                 stall_timeout: Optional[float] = DEFAULT_STALL_TIMEOUT) -> Path:
    """Stream the tar archive ``source`` and write its ``member`` to ``target``, recorded.

    ``source`` is an http(s) URL, a ``file://`` URL or a local path. The archive is read
    once, front to back, and never stored; reading stops once the member is out. The member
    is matched by its exact name (``runs/...`` or ``./runs/...``; ``../runs/...`` is another
    file). The file lands at ``target`` atomically (temporary file in the same folder, then
    rename) with ``<target>.json`` beside it: ``identity`` (e.g. ``{'model': name}``) plus
    source, member, size, sha256 and time. When ``size``/``sha256`` are given the member
    must match them. Nothing is fetched when ``target`` already matches its record and that
    record holds ``identity``.

    Bounds: a member declaring more than ``max_bytes`` is refused before anything is written
    (:class:`DownloadTooLargeError`); the whole call fails after ``deadline`` seconds
    (:class:`DownloadDeadlineError`) and when the source sends fewer than
    :data:`STALL_MIN_BYTES` in ``stall_timeout`` seconds (:class:`DownloadStalledError`).
    On any failure (:class:`WeightsError`, an interrupt, or an exception raised by a signal
    handler) neither the file nor its record is left at ``target``, an older file there is
    left as it was, and folders this call created are removed again if empty.
    """
    target = Path(target)
    if _cached(target, identity):
        logger.info('%s already holds %s (verified); nothing fetched', target,
                    ', '.join('%s %s' % kv for kv in identity.items()))
        return target
    deadline_at = None if deadline is None else time.monotonic() + deadline
    created = _missing_folders(target.parent)
    tmp = stream = None
    try:
        stream, total = _open_source(source, stall_timeout or DEFAULT_STALL_TIMEOUT)
        target.parent.mkdir(parents=True, exist_ok=True)
        bar = _ProgressLine(progress, total)
        reader = _CountingReader(stream, bar, source, deadline_at, stall_timeout)
        tmp = temp_beside(target)
        digest, got = hashlib.sha256(), 0
        with open(tmp, 'wb') as out:
            try:
                archive = tarfile.open(fileobj=reader, mode='r|')
                for entry in archive:
                    if entry.name not in (member, './' + member):
                        continue
                    if not entry.isfile():
                        raise WeightsError('%s in %s is not a regular file' % (member, source))
                    if entry.size > max_bytes:
                        raise DownloadTooLargeError(
                            '%s in %s declares %d bytes, over the limit of %d (the largest released '
                            'file is far smaller; raise the limit with --max-bytes)'
                            % (member, source, entry.size, max_bytes))
                    data = archive.extractfile(entry)
                    for chunk in iter(lambda: data.read(_CHUNK), b''):
                        out.write(chunk)
                        digest.update(chunk)
                        got += len(chunk)
                    if got != entry.size:
                        raise WeightsError('transfer of %s from %s broke off after %d of %d bytes'
                                           % (member, source, got, entry.size))
                    break
                else:
                    raise WeightsError('%s has no member %s' % (source, member))
            except (tarfile.TarError, OSError, EOFError) as e:
                raise WeightsError('reading %s from %s failed after %d bytes: %s'
                                   % (member, source, reader.count, e)) from None
        bar(reader.count, force=True)
        if progress:
            sys.stderr.write('\n')
        if size is not None and got != size:
            raise WeightsError('%s from %s has %d bytes, expected %d' % (member, source, got, size))
        if sha256 is not None and digest.hexdigest() != sha256:
            raise WeightsError('%s from %s has sha256 %s, expected %s'
                               % (member, source, digest.hexdigest(), sha256))
        record = dict(identity)
        record.update({'source': source, 'member': member, 'size': got, 'sha256': digest.hexdigest(),
                       'fetched': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())})
        rec_tmp = tmp + RECORD_SUFFIX
        with open(rec_tmp, 'w', encoding='utf-8') as f:
            json.dump(record, f, indent=1)
        # Drop any old record first: a new file must never sit beside a stale record.
        if record_path(target).exists():
            os.unlink(str(record_path(target)))
        commit(tmp, target)
        commit(rec_tmp, record_path(target))
    except BaseException:
        for t in (tmp, tmp + RECORD_SUFFIX) if tmp else ():
            discard(t)
        _remove_empty(created)
        raise
    finally:
        if stream is not None:
            stream.close()
    logger.info('fetched %s (%d bytes, sha256 %s) from %s after reading %d bytes of it',
                target, got, record['sha256'], source, reader.count)
    return target


def _missing_folders(folder: Path) -> list:
    """The folders of ``folder``'s path that do not exist yet, deepest first."""
    missing = []
    folder = Path(os.path.abspath(str(folder)))
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:  # not empty (something else arrived) or already gone
            return


def download_vocab(name: str, source: Optional[str] = None, dest: Union[str, Path] = 'pretrained',
                   progress: bool = False, deadline: Optional[float] = DEFAULT_DEADLINE,
                   stall_timeout: Optional[float] = DEFAULT_STALL_TIMEOUT) -> Path:
    """Put the vocabulary of released model ``name`` at ``dest/<data_name>_vocab.pkl``.

    ``source`` is the vocabulary archive (default: the authors' ``vocab.tar``), as an
    http(s) URL or a local path, holding ``vocab/<data_name>_vocab.pkl``. Returns the
    file's path. Streamed, atomic, cached and recorded as :func:`fetch_member` says; the
    record's identity is ``{'vocab': data_name}``, so models sharing a vocabulary share
    the file.
    """
    model = released_model(name)
    return fetch_member(source or model.vocab_source, model.vocab_member,
                        Path(dest) / model.vocab_file, {'vocab': model.data_name}, progress,
                        model.vocab_size, model.vocab_sha256, MAX_VOCAB_BYTES, deadline,
                        stall_timeout)


class VocabularyDownloadError(WeightsError):
    """The model was fetched (and kept), its vocabulary was not; ``checkpoint`` is the model."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


def download(name: str, source: Optional[str] = None, dest: Union[str, Path] = 'pretrained',
             progress: bool = False, vocab_source: Optional[str] = None,
             vocab: bool = True, max_bytes: int = MAX_MODEL_BYTES,
             deadline: Optional[float] = DEFAULT_DEADLINE,
             stall_timeout: Optional[float] = DEFAULT_STALL_TIMEOUT) -> Path:
    """Put released model ``name`` at ``dest/model_best.pth.tar`` and, with ``vocab``, its
    vocabulary at ``dest/<data_name>_vocab.pkl``; return the checkpoint's path.

    ``source`` is the release archive (default: the authors' ``runs.tar``) and
    ``vocab_source`` the vocabulary archive (default: the authors' ``vocab.tar``), each an
    http(s) URL or a local path. Each file is fetched only when ``dest`` does not already
    hold it, verified against its record (:func:`fetch_member`). The model comes first; if
    the vocabulary then fails, the model stays (it is complete and verified), no vocabulary
    file is left, and :class:`VocabularyDownloadError` says so. ``max_bytes`` caps the
    model member, ``deadline`` (seconds) bounds both fetches together and ``stall_timeout``
    each transfer (:func:`fetch_member`).
    """
    model = released_model(name)
    dest = Path(dest)
    deadline_at = None if deadline is None else time.monotonic() + deadline
    target = fetch_member(source or model.source, model.member, dest / CHECKPOINT_NAME,
                          {'model': name}, progress, model.size, model.sha256, max_bytes,
                          deadline, stall_timeout)
    if vocab:
        left = None if deadline_at is None else max(0.0, deadline_at - time.monotonic())
        try:
            download_vocab(name, vocab_source, dest, progress, left, stall_timeout)
        except (WeightsError, OSError) as e:
            raise VocabularyDownloadError(str(e), target) from None
    return target
