"""The package's layering, read from the source (ast): no import cycles, imports point down
the layers, jina only in the jina front ends, no torch where no model is needed."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / 'vseimageencoder'

#: Lowest first. A module may import modules of its own layer's package and of layers
#: below; never above, never a sibling package of the same rank.
LAYERS = [
    ['_version', 'files'],
    ['images'],
    ['model'],
    ['release'],
    ['pipeline'],
    ['encoders'],
    ['index'],
    ['training'],
    ['serve'],
    ['_jina3_fixes'],
    ['jina09', 'jina3'],
    ['cli'],
    ['__main__', 'executor', 'jina09_cli', '_jina09', 'preprocess', '_jina_plugin', '__init__'],
]
RANK = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}

#: Where jina may be imported: the two jina front ends, and the fix jina 3's spawned
#: processes import (kept outside jina3/ so that importing it costs no torch).
JINA_ALLOWED = ('jina09', 'jina3', '_jina3_fixes')

#: Modules that need a model, and so torch, when imported: the towers, the checkpoint loader
#: and what builds on them at module level. Every other module must import no torch.
NEEDS_TORCH = ('vseimageencoder.model', 'vseimageencoder.release.checkpoint', 'vseimageencoder.encoders',
               'vseimageencoder.training.loop', 'vseimageencoder.training.loss',
               # the jina 3 package defines its Executors on import (YAML py_modules rely on it)
               'vseimageencoder.jina3')


def _unit_of(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _modules():
    return {_name(p): p for p in sorted(PACKAGE.rglob('*.py'))}


MODULES = _modules()
NO_TORCH = sorted(m for m in MODULES if not any(m == n or m.startswith(n + '.') for n in NEEDS_TORCH))
#: The torch-free modules that also need no jina (the child below imports them in either environment).
JINA_FREE = [m for m in NO_TORCH if _unit_of(m) not in ('__main__', 'jina09', 'executor', 'jina09_cli', '_jina09', '_jina_plugin',
                                                          '_jina3_fixes')]


def _imports(path: Path, module_level_only: bool):
    """``(name, lineno)`` of every import in ``path`` (absolute names; relative ones
    resolved); with ``module_level_only``, those outside function and class bodies only."""
    tree = ast.parse(path.read_text(encoding='utf-8'))
    me = _name(path)
    package = me if path.name == '__init__.py' else me.rpartition('.')[0]
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))
            if isinstance(child, ast.Import) and (top or not module_level_only):
                found.extend((a.name, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and (top or not module_level_only):
                if child.level:
                    base = package.split('.')[:len(package.split('.')) - child.level + 1]
                    mod = '.'.join(base + ([child.module] if child.module else []))
                else:
                    mod = child.module or ''
                for a in child.names:
                    sub = mod + '.' + a.name
                    found.append((sub if sub in MODULES else mod, child.lineno))
            if not module_level_only or inner:
                visit(child, inner)

    visit(tree, True)
    return found


def _unit(module: str) -> str:
    parts = module.split('.')
    return parts[1] if len(parts) > 1 else '__init__'


def _internal(name: str):
    """The package module ``name`` refers to (a module or its parent), or None."""
    while name and name not in MODULES:
        name = name.rpartition('.')[0]
    return name or None


def test_every_module_is_in_a_layer():
    units = {_unit(m) for m in MODULES}
    assert units <= set(RANK), 'modules outside LAYERS: %s' % sorted(units - set(RANK))


def test_imports_point_down():
    wrong = []
    for module, path in MODULES.items():
        for name, line in _imports(path, module_level_only=False):
            target = _internal(name) if name.startswith('vseimageencoder') else None
            if target is None or target == 'vseimageencoder' and _unit(module) in ('__main__',):
                continue
            here, there = _unit(module), _unit(target)
            if target == 'vseimageencoder':
                there = '__init__'
            if here == there:
                continue
            if RANK[there] >= RANK[here]:
                wrong.append('%s:%d imports %s (%s is not below %s)' % (path.relative_to(PACKAGE.parent),
                                                                      line, name, there, here))
    assert not wrong, '\n'.join(wrong)


def test_no_import_cycles():
    graph = {m: {t for n, _ in _imports(p, module_level_only=False)
                 for t in [_internal(n)] if t and t != m and n.startswith('vseimageencoder')}
             for m, p in MODULES.items()}
    # Every module runs its package's __init__; an edge into a package's __init__ from inside
    # that package is how Python imports work, not a cycle of ours.
    for m in graph:
        graph[m] = {t for t in graph[m] if not m.startswith(t + '.')}
    cycles, state = [], {}

    def visit(m, stack):
        state[m] = 'open'
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 'open':
                cycles.append(' -> '.join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[m] = 'done'

    for m in sorted(graph):
        if m not in state:
            visit(m, [])
    assert not cycles, 'import cycles:\n' + '\n'.join(cycles)


def test_jina_only_in_the_jina_front_ends():
    wrong = ['%s:%d imports %s' % (path.relative_to(PACKAGE.parent), line, name)
             for module, path in MODULES.items() if _unit(module) not in JINA_ALLOWED
             for name, line in _imports(path, module_level_only=False)
             if name == 'jina' or name.startswith('jina.') or name.startswith('docarray')]
    assert not wrong, '\n'.join(wrong)


def _module_level_closure(module: str):
    """Every module imported, at module level, when ``module`` is imported (parents included)."""
    seen, todo = set(), [module]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        parent = m.rpartition('.')[0]
        if parent:
            todo.append(parent)
        if m in MODULES:
            todo.extend(n for n, _ in _imports(MODULES[m], module_level_only=True))
    return seen


def test_the_torch_free_list_is_most_of_the_package():
    assert len(NO_TORCH) > 0.7 * len(MODULES), NO_TORCH
    assert 'vseimageencoder.cli' in NO_TORCH and 'vseimageencoder.index.store' in NO_TORCH


@pytest.mark.parametrize('module', NO_TORCH)
def test_no_torch_where_no_model_is_needed(module):
    heavy = {n.split('.')[0] for n in _module_level_closure(module)} & {'torch', 'torchvision'}
    if module in JINA_FREE:
        heavy |= {n.split('.')[0] for n in _module_level_closure(module)} & {'jina', 'docarray'}
    assert not heavy, '%s imports %s at module level (through %s)' % (
        module, sorted(heavy), sorted(n for n in _module_level_closure(module) if n.startswith('vseimageencoder')))


def test_no_torch_at_run_time():
    # The same, as Python sees it: the command line's --help and the torch-free modules.
    code = ('import sys\n'
            'import %s\n'
            'from vseimageencoder.cli import main\n'
            'try:\n'
            '    main(["--help"])\n'
            'except SystemExit:\n'
            '    pass\n'
            'print(sorted(m for m in ("torch", "torchvision", "jina") if m in sys.modules))\n'
            % ', '.join(JINA_FREE))
    out = subprocess.run([sys.executable, '-c', code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         universal_newlines=True, timeout=120, cwd=str(PACKAGE.parent))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == '[]', out.stdout + out.stderr


def test_at_most_ten_modules_at_the_top():
    top = sorted(p.name for p in PACKAGE.glob('*.py'))
    assert len(top) <= 10, top
