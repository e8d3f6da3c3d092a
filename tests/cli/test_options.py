"""vseimageencoder.cli.options: every shared option defined once, its choices the package's own
constants, and --help without torch."""
import subprocess
import sys
from pathlib import Path

import vseimageencoder

SHARED_OPTIONS = ('--device', '--precision', '--model-path', '--readers', '--resize', '--batch-size',
                  '--vocab-path', '--threads', '--fuse', '--progress', '--karpathy')


def test_shared_options_are_defined_once_in_options_module():
    import ast

    cli = Path(vseimageencoder.__file__).parent / 'cli'
    where = {}
    for src in sorted(cli.glob('*.py')):
        for node in ast.walk(ast.parse(src.read_text(encoding='utf-8'))):
            if isinstance(node, ast.Call) and getattr(node.func, 'attr', None) == 'add_argument':
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and arg.value in SHARED_OPTIONS:
                        where.setdefault(arg.value, []).append(src.name)
    assert where == {opt: ['options.py'] for opt in SHARED_OPTIONS}


def test_help_lists_the_precision_and_resize_constants_without_importing_torch():
    from vseimageencoder.images.transform import RESIZE_MODES
    from vseimageencoder.model.inference import PRECISIONS as inference_precisions
    from vseimageencoder.model.precisions import PRECISIONS

    assert inference_precisions is PRECISIONS
    code = ('import contextlib, io, json, sys\n'
            'from vseimageencoder.cli import main\n'
            'helps = {}\n'
            'for c in %r:\n'
            '    out = io.StringIO()\n'
            '    with contextlib.redirect_stdout(out):\n'
            '        try:\n'
            '            main([c, "--help"])\n'
            '        except SystemExit:\n'
            '            pass\n'
            '    helps[c] = out.getvalue()\n'
            'print(json.dumps({"torch": "torch" in sys.modules, "helps": helps}))\n'
            % (['encode', 'index', 'search', 'serve', 'evaluate', 'train', 'download'],))
    r = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True, timeout=120)
    assert r.returncode == 0, r.stderr
    import json
    got = json.loads(r.stdout)
    assert got['torch'] is False
    helps = {c: ' '.join(h.split()) for c, h in got['helps'].items()}
    choices = '--precision {%s}' % ','.join(PRECISIONS)
    assert [c for c in helps if choices in helps[c]] == ['encode', 'index', 'search', 'serve', 'evaluate',
                                                          'train']
    resize = '--resize {%s}' % ','.join(RESIZE_MODES)
    assert [c for c in helps if resize in helps[c]] == ['encode', 'index', 'evaluate']
    for c in ('encode', 'index', 'evaluate'):  # the lanes' default, not "half the cores"
        assert 'one per torch thread, at most 8' in helps[c] and 'half' not in helps[c]
