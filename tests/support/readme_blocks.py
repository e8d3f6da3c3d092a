"""The code blocks of README.md and docs/*.md, for the tests that run them as written.

A fenced block is marked by an HTML comment on the line before it:

    <!-- run: python -->        run by tests/test_readme.py, in both environments unless the
                                page needs jina 0.9 (JINA09_PAGES there: then in .venv only)
    <!-- run: shell -->         the same, with bash, the running environment activated
    <!-- run: python-jina3 -->  run by tests/jina3/test_readme_jina3.py in .venv-jina3
    <!-- run: shell-jina3 -->   the same, with bash, .venv-jina3 activated
    <!-- not run: REASON -->    never run; REASON says why (and what tests it instead)

A page's Python blocks of one kind run in one interpreter, in order (as a reader would paste
them); its shell blocks then run in order. They run in a folder that holds what the docs
assume the repository root holds: `pretrained/` (random-weight checkpoint and vocabulary in
the release layout), `photos/`, `captions.txt`, and links to `config.yml`, `text.yml`, the
package and `examples/`.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import List, NamedTuple, Optional

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / 'README.md'] + sorted((REPO / 'docs').glob('*.md'))
#: Pages every command block of which must say whether it runs (other helpers' pages opt in).
MARKED_PAGES = ['README.md', 'docs/cli.md', 'docs/python.md', 'docs/jina09.md', 'docs/jina3.md',
                'docs/containers.md', 'docs/development.md', 'docs/checkpoints-and-safety.md',
                'docs/speed.md', 'docs/index.md', 'docs/serve.md', 'docs/training.md']
CODE_LANGS = {'', 'python', 'py', 'bash', 'sh', 'shell', 'console'}
RUN_KINDS = {'python', 'shell', 'python-jina3', 'shell-jina3'}
_MARK = re.compile(r'^<!--\s*(run|not run)\s*:\s*(.*?)\s*-->\s*$')
_FENCE = re.compile(r'^(```+|~~~+)\s*([\w+-]*)')


class Block(NamedTuple):
    page: str        # relative to the repository
    line: int        # of the opening fence, 1-based
    lang: str
    mark: Optional[str]   # 'run' / 'not run' / None
    detail: str      # run kind, or the reason it is not run
    code: str

    @property
    def where(self) -> str:
        return '%s:%d' % (self.page, self.line)


def blocks(path: Path) -> List[Block]:
    lines = path.read_text(encoding='utf-8').splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, lang, start = m.group(1), m.group(2).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith(fence):
            j += 1
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        mark = _MARK.match(lines[prev]) if prev >= 0 else None
        out.append(Block(str(path.relative_to(REPO)), start + 1, lang,
                         mark.group(1) if mark else None, mark.group(2) if mark else '',
                         '\n'.join(lines[start + 1:j]) + '\n'))
        i = j + 1
    return out


def all_blocks() -> List[Block]:
    return [b for page in DOCS for b in blocks(page)]


def to_run(kind: str):
    """{page: [blocks]} of the blocks marked ``run: kind``, in page order."""
    pages = {}
    for b in all_blocks():
        if b.mark == 'run' and b.detail == kind:
            pages.setdefault(b.page, []).append(b)
    return pages


def make_workspace(folder: Path) -> Path:
    """The folder the blocks run in (see the module docstring)."""
    import numpy as np
    from PIL import Image

    from tests.support.py27_pickle import vocab_words, write_py27_release_checkpoint, write_py27_vocab

    folder.mkdir(parents=True, exist_ok=True)
    pre = folder / 'pretrained'
    write_py27_release_checkpoint(pre / 'model_best.pth.tar', 'resnet18', embed_size=32, word_dim=8,
                                  num_layers=1, vocab_size=44, seed=11)
    write_py27_vocab(pre / 'f30k_vocab.pkl', vocab_words(40))
    photos = folder / 'photos'
    photos.mkdir()
    rng = np.random.RandomState(3)
    for name, (h, w) in [('dog.jpg', (96, 128)), ('beach.jpg', (120, 90)), ('kids.png', (64, 64))]:
        Image.fromarray((rng.rand(h, w, 3) * 255).astype(np.uint8)).save(str(photos / name))
    (folder / 'captions.txt').write_text('a dog runs on the beach\ntwo children in the snow\n')
    for name in ('config.yml', 'text.yml', 'vseimageencoder', 'examples'):
        os.symlink(str(REPO / name), str(folder / name))
    return folder


_RUNNER = r'''
import json, sys, traceback
if __name__ == '__main__':  # a child started by spawn re-imports this file: it must run nothing
    ns = {'__name__': '__main__'}
    for b in json.load(open(sys.argv[1])):
        sys.stderr.write('--- block %s\n' % b['where'])
        sys.stderr.flush()
        try:
            exec(compile(b['code'], b['where'], 'exec'), ns)
        except BaseException:
            traceback.print_exc()
            sys.stderr.write('BLOCK FAILED: %s\n' % b['where'])
            sys.exit(1)
        sys.stdout.flush()
'''


def _env(venv: Path, guard_log: Path) -> dict:
    env = dict(os.environ)
    env['PATH'] = str(venv / 'bin') + os.pathsep + env.get('PATH', '')  # "activated"
    env['VIRTUAL_ENV'] = str(venv)
    # Every Python process the blocks start refuses (and records) traffic beyond 127.0.0.1.
    env['PYTHONPATH'] = str(REPO / 'tests' / 'support' / 'netguard')
    env['VSE_NETGUARD'] = '1'
    env['VSE_NETGUARD_LOG'] = str(guard_log)
    env.pop('PYTEST_CURRENT_TEST', None)
    # as a reader runs them: jina's default start method, not the test suites' spawn
    env.pop('JINA_MP_START_METHOD', None)
    return env


def run_page(page_blocks: List[Block], workdir: Path, venv: Path, timeout: float = 600):
    """Run one page's blocks (Python ones in one interpreter, then shell ones); return
    (completed processes, what the network guard recorded)."""
    guard = workdir / ('netguard-%d.log' % os.getpid())
    env = _env(venv, guard)
    results = []
    py = [b for b in page_blocks if b.detail.startswith('python')]
    if py:
        spec = workdir / '.blocks.json'
        spec.write_text(json.dumps([{'where': b.where, 'code': b.code} for b in py]))
        runner = workdir / '.run_blocks.py'
        runner.write_text(_RUNNER)
        results.append(subprocess.run([str(venv / 'bin' / 'python'), str(runner), str(spec)],
                                      cwd=str(workdir), env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, universal_newlines=True,
                                      timeout=timeout))
    for b in page_blocks:
        if b.detail.startswith('shell'):
            r = subprocess.run(['bash', '-euo', 'pipefail', '-c', b.code], cwd=str(workdir), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               universal_newlines=True, timeout=timeout)
            r.args = b.where
            results.append(r)
    return results, _beyond_loopback(guard)


def _beyond_loopback(guard: Path) -> str:
    """What the guard recorded, less jina 0.9.33's way of finding this machine's own address:
    it connects a UDP socket to 10.255.255.255 and reads the socket's local address; a UDP
    connect only picks a route and sends nothing."""
    if not guard.exists():
        return ''
    return ''.join(line for line in guard.read_text().splitlines(True)
                   if "socket.connect to ('10.255.255.255', 1)" not in line)
