"""The shapes data set of examples/shapes_dataset.py (captions that describe their images), for
tests: the example is a script, not part of the package, so it is imported from its folder."""
import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / 'examples' / 'shapes_dataset.py'


def _example_module():
    spec = importlib.util.spec_from_file_location('shapes_dataset', str(EXAMPLE))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate(*args, **kwargs):
    """``examples/shapes_dataset.py``'s ``generate`` (same arguments, same return value)."""
    return _example_module().generate(*args, **kwargs)
