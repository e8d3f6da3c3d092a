"""`import vseimageencoder` where jina 0.9 is installed: nothing of jina is imported until jina
itself is, and then the YAML tags are registered (at once if jina was imported first).
tests/test_encoders.py::test_import_registers_both_yaml_tags loads YAMLs that way."""
import subprocess
import sys

import pytest

pytestmark = pytest.mark.jina09

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
        'print("RESULT", "jina" in sys.modules, "vseimageencoder.jina09.executor" in sys.modules, %s)\n'
        'import importlib.util\n'
        'importlib.util.find_spec("jina")  # a look that imports nothing must not use up the hook\n'
        'print("RESULT", "jina" in sys.modules, %s)\n'
        'import jina.flow\n'
        'print("RESULT", "vseimageencoder.jina09.executor" in sys.modules, %s,\n'
        '      "exec_module" in vars(jina.__loader__), type(jina.__loader__).__name__)\n'
        % (IN_META_PATH, IN_META_PATH, IN_META_PATH), repo_root)
    assert got[0] == ['False', 'False', 'True']
    assert got[1] == ['False', 'True']
    # Registered as jina ran; the hook gone from sys.meta_path; jina's own loader untouched
    # (pkg_resources finds jina's resources through the loader's type).
    assert got[2] == ['True', 'False', 'False', 'SourceFileLoader']


def test_jina_imported_first_registers_at_once(repo_root):
    got = _results('import jina\nimport vseimageencoder\n'
                   'print("RESULT", "vseimageencoder.jina09.executor" in sys.modules, %s)\n' % IN_META_PATH,
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


def test_reload_leaves_one_hook_and_jina_still_imports(repo_root):
    got = _results('import importlib\nimport vseimageencoder\n'
                   'importlib.reload(vseimageencoder)\n'
                   'print("RESULT", sum(getattr(f, "_vse_after_jina", False) is True for f in sys.meta_path))\n'
                   'import jina\n'
                   'print("RESULT", "vseimageencoder.jina09.executor" in sys.modules, %s)\n' % IN_META_PATH, repo_root)
    assert got == [['1'], ['True', 'False']]


def test_executors_first_reached_from_a_thread_say_to_import_on_the_main_thread(repo_root):
    got = _results('import threading\nimport vseimageencoder\n'
                   'out = []\n'
                   'def use():\n'
                   '    try:\n'
                   '        from vseimageencoder import VSEImageEncoder\n'
                   '        out.append("imported")\n'
                   '    except ImportError as e:\n'
                   '        out.append(str(e))\n'
                   't = threading.Thread(target=use)\nt.start()\nt.join()\n'
                   'print("RESULT", out[0].replace(" ", "_"))\n'
                   'from vseimageencoder import VSEImageEncoder\n'  # the main thread: fine
                   'print("RESULT", VSEImageEncoder.__module__)\n', repo_root)
    assert 'main_thread' in got[0][0] and 'signal_handler' in got[0][0], got
    assert got[1] == ['vseimageencoder.jina09.executor']
