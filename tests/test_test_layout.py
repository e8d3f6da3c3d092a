"""The tests mirror the package, so that a module's tests are found by its name:

- tests/<package>/ for each package vseimageencoder/<package>/ that has tests, and
  tests/support/ for what tests and benchmarks share (helpers, and the tests of the helpers);
- tests/<package>/test_<module>.py tests vseimageencoder/<package>/<module>.py, and
  test_<module>_<topic>.py one topic of it (test_transform_fast.py: the fast resize of
  images/transform.py); tests/test_<module>.py a top-level module (test_encoders.py);
- tests/jina09/ and tests/jina3/ hold the tests of those front ends, end to end through jina as
  well as module by module, every module marked for its jina (tests/conftest.py).

Files that test no one module are listed in EXCEPTIONS, each with what it tests. Read from the
file tree and the source (ast): nothing here imports a test module.
"""
import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PACKAGE = TESTS.parent / 'vseimageencoder'

SUPPORT = 'support'
#: Folders of the front ends: any test file name (end-to-end tests through jina), each module
#: marked with the folder's marker.
FRONT_ENDS = {'jina09': 'jina09', 'jina3': 'jina3'}

#: Test files that name no module, and what they test instead.
EXCEPTIONS = {
    'test_readme.py': 'README.md and docs/: their command blocks, run as written',
    'test_scripts.py': "scripts/*.sh, the front-door scripts' options",
    'test_gpu_check.py': 'benchmarks/gpu_check.py where no GPU can be used',
    'test_layering.py': "the package's import graph, all modules at once",
    'test_public_paths.py': 'every path the docs, YAMLs and Dockerfiles name, across the package',
    'test_test_layout.py': 'this layout of tests/',
    'training/test_trained_checkpoint.py': 'end to end: a model train() wrote on image files, loaded '
                                           'by the encoders, evaluate and the jina 0.9 pods',
}


def _modules(folder: Path):
    """Module names of a folder, also without their leading underscores (_version: version)."""
    names = {p.stem for p in folder.glob('*.py') if p.stem != '__init__'}
    return names | {n.lstrip('_') for n in names}


def _names_a_module(test_name: str, modules) -> bool:
    return any(test_name == m or test_name.startswith(m + '_') for m in modules)


def _folders():
    return sorted(p for p in TESTS.iterdir()
                  if p.is_dir() and p.name != '__pycache__' and not p.name.startswith('.'))


def _rel(path: Path) -> str:
    return str(path.relative_to(TESTS))


def test_every_folder_is_support_a_front_end_or_a_package():
    bad = [p.name for p in _folders()
           if p.name != SUPPORT and p.name not in FRONT_ENDS and not (PACKAGE / p.name / '__init__.py').is_file()]
    assert not bad, 'tests/%s: no package vseimageencoder/<name>/ of that name (helpers go to ' \
                    'tests/support/)' % bad


def test_every_test_folder_is_a_package():
    # pytest's default import mode needs unique basenames or packages: tests/jina09/test_cli.py
    # and a future tests/cli/test_cli.py can then live side by side.
    missing = [p.name for p in _folders() if not (p / '__init__.py').is_file()]
    assert not missing, 'no __init__.py in tests/%s' % missing


def test_helpers_live_in_support():
    loose = [p.name for p in TESTS.glob('*.py')
             if not p.name.startswith('test_') and p.name not in ('__init__.py', 'conftest.py')]
    assert not loose, 'helpers at tests/ top: %s (they go to tests/support/)' % loose


def test_every_test_file_names_what_it_tests():
    bad = []
    for path in sorted(TESTS.glob('test_*.py')):
        if path.name not in EXCEPTIONS and not _names_a_module(path.stem[5:], _modules(PACKAGE)):
            bad.append('%s: no vseimageencoder/%s.py' % (_rel(path), path.stem[5:]))
    for folder in _folders():
        if folder.name in FRONT_ENDS:
            continue
        modules = _modules(TESTS / SUPPORT if folder.name == SUPPORT else PACKAGE / folder.name)
        for path in sorted(folder.glob('test_*.py')):
            if _rel(path) not in EXCEPTIONS and not _names_a_module(path.stem[5:], modules):
                bad.append('%s: no module %s in %s' % (_rel(path), path.stem[5:], folder.name))
    assert not bad, '\n'.join(bad)


def test_exceptions_exist():
    assert not [name for name in EXCEPTIONS if not (TESTS / name).is_file()]


def _module_marks(path: Path):
    """The markers a module's ``pytestmark = pytest.mark.X`` (or a list of them) names."""
    marks = set()
    for node in ast.parse(path.read_text(encoding='utf-8')).body:
        if isinstance(node, ast.Assign) and any(getattr(t, 'id', None) == 'pytestmark' for t in node.targets):
            for sub in ast.walk(node.value):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute) and \
                        sub.value.attr == 'mark':
                    marks.add(sub.attr)
    return marks


def test_front_end_modules_are_marked_for_their_jina():
    unmarked = ['%s/%s' % (folder, path.name)
                for folder, marker in FRONT_ENDS.items()
                for path in sorted((TESTS / folder).glob('test_*.py'))
                if marker not in _module_marks(path)]
    assert not unmarked, 'without pytestmark = pytest.mark.<its jina>: %s' % unmarked
