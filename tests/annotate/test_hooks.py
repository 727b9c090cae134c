"""annotate reaches calibration through annotate/hooks.py only, and each hook reaches it.

The sources are read with ``ast``: no database, and nothing imported but the hooks' targets.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

from annotate import hooks

HOOKS = Path(hooks.__file__).resolve()
ANNOTATE = HOOKS.parent
# Calls that import a module named by a string.
IMPORTERS = {"import_module", "__import__", "import_string", "find_spec"}


def _package_of(path: Path) -> str:
    """The dotted package a module's relative imports start from."""
    parts = path.relative_to(ANNOTATE.parent).parts
    return ".".join(parts[:-1])


def _absolute(node: ast.ImportFrom, package: str) -> str:
    """The module a ``from ... import`` names, relative levels resolved."""
    if not node.level:
        return node.module or ""
    base = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def _is_calibration(name: str | None) -> bool:
    return name is not None and (name == "calibration" or name.startswith("calibration."))


def _called_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def calibration_imports(source: str, package: str = "annotate") -> list[str]:
    """Each way ``source`` (a module of ``package``) imports calibration, as ``line: what``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            names = [module, *(f"{module}.{alias.name}".lstrip(".") for alias in node.names)]
        elif isinstance(node, ast.Call) and _called_name(node) in IMPORTERS and node.args:
            first = node.args[0]
            if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
                found.append(f"{node.lineno}: {_called_name(node)}() of a computed name")
                continue
            names = [first.value]
        else:
            continue
        found += [f"{node.lineno}: {name}" for name in names if _is_calibration(name)]
    return found


def test_only_the_hooks_module_imports_calibration():
    modules = sorted(ANNOTATE.rglob("*.py"))
    assert HOOKS in modules and any(p.parent != ANNOTATE for p in modules)  # sub-packages too
    offenders = {
        str(path.relative_to(ANNOTATE.parent)): found
        for path in modules
        if path != HOOKS and (found := calibration_imports(path.read_text(), _package_of(path)))
    }
    assert offenders == {}, "annotate reaches calibration outside annotate/hooks.py"


@pytest.mark.parametrize(
    "source",
    [
        "import calibration.selection",
        "import calibration as c",
        "from calibration.selection import pick_cell",
        "from calibration import selection",
        "def f():\n    from calibration.services import note_new_labels",
        "import importlib\nimportlib.import_module('calibration.selection')",
        "from importlib import import_module\nimport_module('calibration')",
        "import importlib\nname = 'calibration'\nimportlib.import_module(name)",
        "__import__('calibration.services')",
        "from django.utils.module_loading import import_string\nimport_string('calibration.x.f')",
    ],
)
def test_the_check_sees_each_way_of_importing(source):
    assert calibration_imports(source)


def test_the_check_leaves_other_imports_alone():
    source = "import annotate.models\nfrom . import queue\nfrom .models import Study\n"
    assert calibration_imports(source) == []
    assert calibration_imports("from .. import x", "annotate.management") == []


def _hooks() -> list[ast.FunctionDef]:
    tree = ast.parse(HOOKS.read_text())
    return [n for n in tree.body if isinstance(n, ast.FunctionDef) and not n.name.startswith("_")]


def test_every_hook_says_what_annotate_needs():
    assert _hooks(), "annotate/hooks.py has no hooks"
    for hook in _hooks():
        assert inspect.getdoc(getattr(hooks, hook.name)), hook.name


@pytest.mark.parametrize("hook", _hooks(), ids=lambda f: f.name)
def test_each_hook_calls_a_real_calibration_callable_with_arguments_it_takes(hook):
    (imported,) = [
        n for n in ast.walk(hook) if isinstance(n, ast.ImportFrom) and _is_calibration(n.module)
    ]
    (alias,) = imported.names
    assert imported.module is not None
    target = getattr(importlib.import_module(imported.module), alias.name, None)
    assert callable(target), f"{imported.module}.{alias.name} is gone: hooks.{hook.name} is dead"
    local = alias.asname or alias.name
    (call,) = [
        n
        for n in ast.walk(hook)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == local
    ]
    # TypeError if calibration renamed a parameter the hook passes or added a required one.
    inspect.signature(target).bind(*call.args, **{k.arg: k.value for k in call.keywords if k.arg})
