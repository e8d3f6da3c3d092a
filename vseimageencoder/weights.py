"""Released VSE++ weights as data, and fetching one out of the release archive.

The authors published every model in one uncompressed tar (about 7 GB), each as
``runs/<name>/model_best.pth.tar``. :func:`download` streams that archive, writes only the
wanted member, stops reading once it is out, and records what it fetched (model, source,
size, sha256) in a JSON file beside it, which the loader checks on every load.
"""
import hashlib
import json
import logging
import os
import sys
import tarfile
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Optional, Union

logger = logging.getLogger(__name__)

RELEASE_ARCHIVE_URL = 'http://www.cs.toronto.edu/~faghri/vsepp/runs.tar'
CHECKPOINT_NAME = 'model_best.pth.tar'
DEFAULT_MODEL = 'f30k_vse++_vggfull'
RECORD_SUFFIX = '.json'
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ReleasedModel:
    """One released VSE++ model. ``size``/``sha256`` are None: the authors published none,
    so the first download's record is what later loads are checked against."""

    name: str
    backbone: str  # 'vgg19', 'resnet152' or 'precomputed'
    dataset: str  # 'f30k' or 'coco'
    finetuned: bool
    source: str = RELEASE_ARCHIVE_URL
    size: Optional[int] = None
    sha256: Optional[str] = None

    @property
    def member(self) -> str:
        return 'runs/%s/%s' % (self.name, CHECKPOINT_NAME)


RELEASED_MODELS: Dict[str, ReleasedModel] = {m.name: m for m in (
    ReleasedModel('f30k_vse++_vggfull', 'vgg19', 'f30k', False),
    ReleasedModel('f30k_vse++_vggfull_finetune', 'vgg19', 'f30k', True),
    ReleasedModel('f30k_vse++_resnet', 'resnet152', 'f30k', False),
    ReleasedModel('f30k_vse++_resnet_finetune', 'resnet152', 'f30k', True),
    ReleasedModel('coco_vse++_resnet_restval_finetune', 'resnet152', 'coco', True),
    ReleasedModel('coco_vse++_vggfull_restval_finetune', 'vgg19', 'coco', True),
    ReleasedModel('coco_vse++', 'precomputed', 'coco', False),
)}


class WeightsError(RuntimeError):
    """A download or a downloaded file's record failed; the message says which and why."""


class UnknownModelError(WeightsError, KeyError):
    def __str__(self):
        return self.args[0]


def released_model(name: str) -> ReleasedModel:
    try:
        return RELEASED_MODELS[name]
    except KeyError:
        raise UnknownModelError('unknown model %r; known models: %s'
                                % (name, ', '.join(sorted(RELEASED_MODELS)))) from None


def record_path(checkpoint: Union[str, Path]) -> Path:
    p = Path(checkpoint)
    return p.with_name(p.name + RECORD_SUFFIX)


def publish_mode(path: Union[str, Path]) -> None:
    """Give a temporary file (mkstemp makes it 0600) the mode a normal new file would get."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(str(path), 0o666 & ~umask)


def sha256_of(path: Union[str, Path]) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(4 * _CHUNK), b''):
            h.update(chunk)
    return h.hexdigest()


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
    """A read-only file wrapper that counts bytes and reports progress."""

    def __init__(self, raw, report: Optional[Callable[[int], None]]):
        self.raw, self.report, self.count = raw, report, 0

    def read(self, n=-1):
        data = self.raw.read(n)
        self.count += len(data)
        if self.report is not None:
            self.report(self.count)
        return data


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


def _open_source(source: str):
    """A readable binary stream of the archive, and its length when known."""
    if source.startswith(('http://', 'https://')):
        try:
            resp = urllib.request.urlopen(source, timeout=60)
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


def _cached(target: Path, name: str) -> bool:
    rec_file = record_path(target)
    if not (target.is_file() and rec_file.is_file()):
        return False
    try:
        rec = verify_record(target)
    except WeightsError as e:
        logger.warning('%s; fetching it again', e)
        return False
    if rec.get('model') != name:
        logger.info('%s holds %s, not %s; fetching', target, rec.get('model'), name)
        return False
    return True


def download(name: str, source: Optional[str] = None, dest: Union[str, Path] = 'pretrained',
             progress: bool = False) -> Path:
    """Put released model ``name`` at ``dest/model_best.pth.tar`` and return that path.

    ``source`` is the release archive (default: the authors' URL), as an http(s) URL or a
    local path, in the release layout. Nothing is fetched when ``dest`` already holds that
    model and it matches its record. The archive is streamed and never stored; reading
    stops once the member is out. On any failure no file is left at the target.
    """
    model = released_model(name)
    source = source or model.source
    dest = Path(dest)
    target = dest / CHECKPOINT_NAME
    if _cached(target, name):
        logger.info('%s already holds %s (verified); nothing fetched', target, name)
        return target
    dest.mkdir(parents=True, exist_ok=True)
    stream, total = _open_source(source)
    bar = _ProgressLine(progress, total)
    reader = _CountingReader(stream, bar)
    fd, tmp = tempfile.mkstemp(prefix='.' + CHECKPOINT_NAME + '.', suffix='.part', dir=str(dest))
    try:
        digest, size = hashlib.sha256(), 0
        with os.fdopen(fd, 'wb') as out:
            try:
                archive = tarfile.open(fileobj=reader, mode='r|')
                for member in archive:
                    if member.name.lstrip('./') != model.member:
                        continue
                    if not member.isfile():
                        raise WeightsError('%s in %s is not a regular file' % (model.member, source))
                    data = archive.extractfile(member)
                    for chunk in iter(lambda: data.read(_CHUNK), b''):
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    if size != member.size:
                        raise WeightsError('transfer of %s from %s broke off after %d of %d bytes'
                                           % (model.member, source, size, member.size))
                    break
                else:
                    raise WeightsError('%s has no member %s' % (source, model.member))
            except (tarfile.TarError, OSError, EOFError) as e:
                raise WeightsError('reading %s from %s failed after %d bytes: %s'
                                   % (model.member, source, reader.count, e)) from None
            out.flush()
            os.fsync(out.fileno())
        bar(reader.count, force=True)
        if progress:
            sys.stderr.write('\n')
        if model.size is not None and size != model.size:
            raise WeightsError('%s from %s has %d bytes, expected %d' % (model.member, source, size, model.size))
        if model.sha256 is not None and digest.hexdigest() != model.sha256:
            raise WeightsError('%s from %s has sha256 %s, expected %s'
                               % (model.member, source, digest.hexdigest(), model.sha256))
        record = {'model': name, 'source': source, 'member': model.member, 'size': size,
                  'sha256': digest.hexdigest(), 'fetched': time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}
        publish_mode(tmp)
        rec_tmp = tmp + RECORD_SUFFIX
        with open(rec_tmp, 'w', encoding='utf-8') as f:
            json.dump(record, f, indent=1)
        # Drop any old record first: a new file must never sit beside a stale record.
        if record_path(target).exists():
            os.unlink(str(record_path(target)))
        os.replace(tmp, str(target))
        os.replace(rec_tmp, str(record_path(target)))
    except BaseException:
        for t in (tmp, tmp + RECORD_SUFFIX):
            if os.path.exists(t):
                os.unlink(t)
        raise
    finally:
        stream.close()
    logger.info('fetched %s (%d bytes, sha256 %s) from %s after reading %d bytes of it',
                target, size, record['sha256'], source, reader.count)
    return target
