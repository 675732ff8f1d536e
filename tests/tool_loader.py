"""Import a script under tools/ by its path, once per test session."""
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]


def load_tool(relpath: str) -> ModuleType:
    """Import ``tools/<relpath>`` (e.g. ``'data/synthetic_av/generate.py'``).

    The module is registered in ``sys.modules`` under a name derived from its
    path and reused on later calls, so functions it sends to worker
    processes pickle by reference to one and the same module object.

    Args:
        relpath (str): Path of the script relative to ``tools/``.

    Returns:
        ModuleType: The imported script.
    """
    name = '_clcr_tool_' + relpath.replace('/', '_').removesuffix('.py')
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / 'tools' /
                                                  relpath)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
