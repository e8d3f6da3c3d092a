"""`import vseimageencoder` where jina 0.9 is installed: nothing of jina is imported until jina
itself is, and then the YAML tags are registered (at once if jina was imported first).
tests/unit/test_text_encoder.py::test_import_registers_both_yaml_tags loads YAMLs that way."""
import subprocess
import sys

IN_META_PATH = 'any(type(f).__name__ == "_AfterJinaImport" for f in sys.meta_path)'


def _results(code, repo_root):
    r = subprocess.run([sys.executable, '-c', 'import sys; sys.path.insert(0, %r)\n' % str(repo_root) + code],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                       timeout=120, cwd=str(repo_root))
    assert r.returncode == 0, r.stderr[-3000:]
    # jina logs to stdout: only the lines the code printed count
    return [l.split()[1:] for l in r.stdout.splitlines() if l.startswith('RESULT ')]


def test_jina_is_imported_only_when_used(repo_root):
    got = _results(
        'import vseimageencoder\n'
        'print("RESULT", "jina" in sys.modules, "vseimageencoder.executor" in sys.modules, %s)\n'
        'import importlib.util\n'
        'importlib.util.find_spec("jina")  # a look that imports nothing must not use up the hook\n'
        'print("RESULT", "jina" in sys.modules, %s)\n'
        'import jina.flow\n'
        'print("RESULT", "vseimageencoder.executor" in sys.modules, %s,\n'
        '      "exec_module" in vars(jina.__loader__), type(jina.__loader__).__name__)\n'
        % (IN_META_PATH, IN_META_PATH, IN_META_PATH), repo_root)
    assert got[0] == ['False', 'False', 'True']
    assert got[1] == ['False', 'True']
    # Registered as jina ran; the hook gone from sys.meta_path; jina's own loader untouched
    # (pkg_resources finds jina's resources through the loader's type).
    assert got[2] == ['True', 'False', 'False', 'SourceFileLoader']


def test_jina_imported_first_registers_at_once(repo_root):
    got = _results('import jina\nimport vseimageencoder\n'
                   'print("RESULT", "vseimageencoder.executor" in sys.modules, %s)\n' % IN_META_PATH,
                   repo_root)
    assert got == [['True', 'False']]


def test_command_line_does_not_import_jina(repo_root):
    got = _results('import runpy\n'
                   'sys.argv = ["vseimageencoder", "--help"]\n'
                   'try:\n'
                   '    runpy.run_module("vseimageencoder", run_name="__main__")\n'
                   'except SystemExit:\n'
                   '    pass\n'
                   'print("RESULT", "jina" in sys.modules)\n', repo_root)
    assert got == [['False']]
