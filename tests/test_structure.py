"""The package's structure, checked: which parts may import which.

Arrows point inward and downward. The rules:

(a) nothing under ``core/`` imports a web framework, a server, or a package that sits on top of
    the core (an adapter, the generic middleware, the collector, the demo);
(b) an adapter (flask, bottle, pyramid, falcon) imports no other adapter, nor the generic
    middleware (``wsgi.py``);
(c) ``core/capture/`` does not import ``core/delivery/``, directly or through other core modules;
(d) importing any core module imports no framework at run time;
(e) the adapters and the generic middleware import the core's public surface (the package
    ``moesif_integrations.core``), not its submodules.

Imports are read with ``ast``, so every form counts: ``import x``, ``from x import y``, relative
imports, imports inside functions, under ``if TYPE_CHECKING:``, and ``importlib.import_module``
or ``__import__`` of a literal name. Each rule is a function returning the violations found in a
tree; the tests at the end run each one on a small tree that breaks it, to show it can fail.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Set, Tuple

import pytest

# Rule (e) is checked on the real tree only from the change that moves the adapters and the
# generic middleware onto the core's public surface (today they import core submodules); that
# change sets this to True. The rule's own check and its test on a synthetic tree run already.
ADAPTERS_USE_PUBLIC_SURFACE_ONLY = True

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = "moesif_integrations"
CORE = f"{PACKAGE}.core"
CAPTURE = f"{CORE}.capture"
DELIVERY = f"{CORE}.delivery"
# Web frameworks, their toolkits and the servers: only adapters (and tests) may import them.
FRAMEWORKS = (
    "flask",
    "werkzeug",
    "flask_login",
    "bottle",
    "pyramid",
    "webob",
    "falcon",
    "gunicorn",
    "waitress",
    "uvicorn",
)
ADAPTERS = tuple(f"{PACKAGE}.{name}" for name in ("flask", "bottle", "pyramid", "falcon"))
GENERIC_MIDDLEWARE = f"{PACKAGE}.wsgi"
# What sits on top of the core and so may never be imported by it.
ABOVE_CORE = (*ADAPTERS, GENERIC_MIDDLEWARE, f"{PACKAGE}.collector", f"{PACKAGE}.demo")


@dataclass(frozen=True)
class Import:
    """One module named by one import statement (or import call) of one module."""

    module: str  # the importing module
    file: str  # its file, relative to the tree's root, with "/" separators
    line: int
    target: str  # the absolute name of the module imported
    type_checking: bool  # under ``if TYPE_CHECKING:``: never runs


@dataclass(frozen=True)
class Violation:
    rule: str
    file: str
    line: int
    imported: str
    via: Tuple[str, ...] = ()  # modules between the importer and ``imported`` (rule c)

    def __str__(self) -> str:
        if not self.line:  # rule (d): found by importing the module, not on one of its lines
            return f"{self.file}: importing it imports {self.imported} ({self.rule})"
        chain = "".join(f" via {name}" for name in self.via)
        return f"{self.file}:{self.line} imports {self.imported}{chain} ({self.rule})"


def within(name: str, package: str) -> bool:
    """Whether module ``name`` is ``package`` or inside it."""
    return name == package or name.startswith(package + ".")


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


_IMPORT_CALLS = ("import_module", "__import__")


class _ImportFinder(ast.NodeVisitor):
    """Every import node of a module, each with whether it sits under ``if TYPE_CHECKING:``."""

    def __init__(self) -> None:
        self.found: List[Tuple[ast.AST, bool]] = []
        self._type_checking = False

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        outer = self._type_checking
        self._type_checking = True
        for child in node.body:
            self.visit(child)
        self._type_checking = outer
        for child in node.orelse:  # the else branch is what runs
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.append((node, self._type_checking))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        self.found.append((node, self._type_checking))

    def visit_Call(self, node: ast.Call) -> None:
        function = node.func
        name = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
        if (
            name in _IMPORT_CALLS
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
            and not node.args[0].value.startswith(".")
        ):
            self.found.append((node, self._type_checking))
        self.generic_visit(node)


class Tree:
    """The modules of one package tree on disk and the imports of each."""

    def __init__(self, root: Path, package: str = PACKAGE) -> None:
        self.root = root
        # Module name -> (file, whether it is a package's __init__).
        self.modules: Dict[str, Tuple[Path, bool]] = {}
        for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            self.modules[name] = (path, is_package)
        self._imports: Dict[str, List[Import]] = {}

    def names_within(self, package: str) -> List[str]:
        return [name for name in self.modules if within(name, package)]

    def imports_of(self, module: str) -> List[Import]:
        if module not in self._imports:
            self._imports[module] = list(self._parse(module))
        return self._imports[module]

    def imports_within(self, package: str) -> Iterator[Import]:
        for module in self.names_within(package):
            yield from self.imports_of(module)

    def _parse(self, module: str) -> Iterator[Import]:
        path, is_package = self.modules[module]
        file = path.relative_to(self.root).as_posix()
        finder = _ImportFinder()
        finder.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        for node, type_checking in finder.found:
            # "from x import a, b" names x once, not once per name.
            for target in dict.fromkeys(self._targets(node, module, is_package)):
                yield Import(module, file, getattr(node, "lineno", 0), target, type_checking)

    def _targets(self, node: ast.AST, module: str, is_package: bool) -> List[str]:
        if isinstance(node, ast.Import):
            return [alias.name for alias in node.names]
        if isinstance(node, ast.Call):
            return [ast.literal_eval(node.args[0])]  # a str constant: _ImportFinder made sure
        assert isinstance(node, ast.ImportFrom)
        base = node.module or ""
        if node.level:
            parts = module.split(".") if is_package else module.split(".")[:-1]
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join([*parts, base] if base else parts)
        targets = []
        for alias in node.names:
            # "from package import name" imports the submodule when there is one of that name.
            submodule = f"{base}.{alias.name}"
            targets.append(submodule if submodule in self.modules else base)
        return targets

    def known_module(self, name: str) -> Optional[str]:
        """The module of this tree that importing ``name`` runs last, None if outside it."""
        while name:
            if name in self.modules:
                return name
            name = name.rpartition(".")[0]
        return None


# ---------------------------------------------------------------------------------- the rules


def core_violations(tree: Tree) -> List[Violation]:
    """(a) core/ imports no framework, server, adapter, generic middleware, collector or demo."""
    found = []
    for imp in tree.imports_within(CORE):
        framework = imp.target.partition(".")[0] in FRAMEWORKS
        if framework or any(within(imp.target, above) for above in ABOVE_CORE):
            found.append(Violation("a", imp.file, imp.line, imp.target))
    return found


def adapter_violations(tree: Tree) -> List[Violation]:
    """(b) an adapter imports no other adapter and not the generic middleware."""
    found = []
    for adapter in ADAPTERS:
        others = [other for other in (*ADAPTERS, GENERIC_MIDDLEWARE) if other != adapter]
        for imp in tree.imports_within(adapter):
            if any(within(imp.target, other) for other in others):
                found.append(Violation("b", imp.file, imp.line, imp.target))
    return found


def capture_violations(tree: Tree) -> List[Violation]:
    """(c) core/capture/ reaches core/delivery/ through no chain of imports.

    A capture module may not name delivery at all, not even for type checking. Through other
    core modules only the imports that run are followed: an import under ``if TYPE_CHECKING:``
    gives that module a name for its annotations, not a dependency the request path inherits
    when it imports the module. The ``__init__`` of a parent package, which Python runs before
    any of its submodules, is followed only where it is imported by name: ``core/__init__.py``
    is the facade that assembles every room, delivery included.
    """
    found = []
    for start in tree.names_within(CAPTURE):
        # Breadth first, so the chain reported is a shortest one.
        came_from: Dict[str, Tuple[Optional[str], int]] = {start: (None, 0)}
        frontier = [start]
        reached: Optional[str] = None
        while frontier and reached is None:
            following: List[str] = []
            for module in frontier:
                for imp in tree.imports_of(module):
                    target = tree.known_module(imp.target)
                    if target is None or not within(target, CORE) or target in came_from:
                        continue
                    if imp.type_checking and module != start:
                        continue
                    came_from[target] = (module, imp.line)
                    if within(target, DELIVERY):
                        reached = target
                        break
                    following.append(target)
                if reached is not None:
                    break
            frontier = following
        if reached is None:
            continue
        chain = [reached]
        previous = came_from[reached][0]
        while previous is not None:
            chain.append(previous)
            previous = came_from[previous][0]
        chain.reverse()  # start, ..., reached
        line = came_from[chain[1]][1]
        file = tree.modules[start][0].relative_to(tree.root).as_posix()
        found.append(Violation("c", file, line, reached, tuple(chain[1:-1])))
    return found


def public_surface_violations(tree: Tree) -> List[Violation]:
    """(e) adapters and the generic middleware import ``moesif_integrations.core`` itself only."""
    found = []
    for integration in (*ADAPTERS, GENERIC_MIDDLEWARE):
        for imp in tree.imports_within(integration):
            if imp.target.startswith(CORE + "."):
                found.append(Violation("e", imp.file, imp.line, imp.target))
    return found


# Imports each module given, one by one, from the tree at argv[1] and reports the framework
# modules each one brought into sys.modules, with the file each module was loaded from.
_RUNTIME_PROBE = """
import importlib, json, sys
root, frameworks, modules = sys.argv[1], set(json.loads(sys.argv[2])), sys.argv[3:]
sys.path.insert(0, root)
def loaded():
    return {name for name in sys.modules if name.partition(".")[0] in frameworks}
seen = loaded()
found = []
for name in modules:
    importlib.import_module(name)
    new = loaded() - seen
    found += [[name, framework] for framework in sorted({n.partition(".")[0] for n in new})]
    seen |= new
files = {name: getattr(sys.modules[name], "__file__", "") for name in modules}
print(json.dumps({"found": found, "files": files}))
"""


def runtime_violations(tree: Tree, package: str = CORE) -> List[Violation]:
    """(d) importing every module of ``package``, in a fresh interpreter, imports no framework.

    A framework is reported against the first module whose import brought it in.
    """
    modules = sorted(tree.names_within(package))
    result = subprocess.run(
        [sys.executable, "-I", "-c", _RUNTIME_PROBE, str(tree.root), json.dumps(FRAMEWORKS)]
        + modules,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    for name, file in report["files"].items():
        # The tree checked, not an installed copy of the package.
        assert Path(file).resolve() == tree.modules[name][0].resolve(), (name, file)
    return [
        Violation("d", tree.modules[module][0].relative_to(tree.root).as_posix(), 0, framework)
        for module, framework in report["found"]
    ]


# --------------------------------------------------------------------------- the real tree


@pytest.fixture(scope="module")
def tree() -> Tree:
    return Tree(REPOSITORY)


def test_the_tree_has_the_rooms_the_rules_name(tree: Tree) -> None:
    # A rule over a package that is not there passes for nothing.
    for package in (CORE, CAPTURE, DELIVERY, *ADAPTERS, GENERIC_MIDDLEWARE):
        assert tree.names_within(package), package


def test_core_imports_no_framework_and_nothing_above_it(tree: Tree) -> None:
    assert [str(v) for v in core_violations(tree)] == []


def test_adapters_do_not_import_each_other(tree: Tree) -> None:
    assert [str(v) for v in adapter_violations(tree)] == []


def test_capture_does_not_reach_delivery(tree: Tree) -> None:
    assert [str(v) for v in capture_violations(tree)] == []


def test_importing_the_core_imports_no_framework(tree: Tree) -> None:
    assert [str(v) for v in runtime_violations(tree)] == []


@pytest.mark.skipif(
    not ADAPTERS_USE_PUBLIC_SURFACE_ONLY,
    reason="the adapters still import core submodules (see ADAPTERS_USE_PUBLIC_SURFACE_ONLY)",
)
def test_adapters_use_the_core_public_surface(tree: Tree) -> None:
    assert [str(v) for v in public_surface_violations(tree)] == []


# ---------------------------------------------------------- each rule fails when it should


CLEAN_CORE = {
    "moesif_integrations/core/record.py": "import json\n\nclass ExchangeRecord:\n    pass\n",
    "moesif_integrations/core/capture/wsgi.py": "from ..record import ExchangeRecord\n",
    "moesif_integrations/core/delivery/queue.py": "from ..record import ExchangeRecord\n",
    "moesif_integrations/core/pipeline.py": "from .delivery import queue\n",
}


def write_tree(root: Path, files: Dict[str, str]) -> Tree:
    """A package tree under ``root``: a clean core (``CLEAN_CORE``) with ``files`` (paths to
    sources) added or replacing its modules; every folder on the way gets an ``__init__.py``
    (empty unless given)."""
    for relative, source in {**CLEAN_CORE, **files}.items():
        path = root / relative
        for folder in path.relative_to(root).parents:
            if folder != Path(".") and folder.parts[0] == PACKAGE:
                init = root / folder / "__init__.py"
                if not init.exists():
                    init.parent.mkdir(parents=True, exist_ok=True)
                    init.write_text("")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return Tree(root)


def reported(violations: Sequence[Violation]) -> Set[Tuple[str, str]]:
    return {(v.file, v.imported) for v in violations}


def test_rules_pass_a_clean_tree(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/flask/__init__.py": "import flask\nfrom ..core import Pipeline\n",
            "moesif_integrations/wsgi.py": "from moesif_integrations.core import Pipeline\n",
        },
    )
    assert core_violations(tree) == []
    assert adapter_violations(tree) == []
    assert capture_violations(tree) == []
    assert public_surface_violations(tree) == []
    assert runtime_violations(tree) == []


def test_rule_a_reports_frameworks_and_packages_above_the_core(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/core/record.py": """\
                import werkzeug.wrappers

                def later():
                    from waitress import serve
                """,
            "moesif_integrations/core/pipeline.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from .. import flask
                from ..collector import server
                """,
            "moesif_integrations/core/config/schema.py": """\
                import importlib
                importlib.import_module("falcon.asgi")
                from moesif_integrations.wsgi import MoesifMiddleware
                """,
            "moesif_integrations/flask/__init__.py": "",
            "moesif_integrations/collector/server.py": "",
            "moesif_integrations/wsgi.py": "",
        },
    )
    assert reported(core_violations(tree)) == {
        ("moesif_integrations/core/record.py", "werkzeug.wrappers"),
        ("moesif_integrations/core/record.py", "waitress"),
        ("moesif_integrations/core/pipeline.py", "moesif_integrations.flask"),
        ("moesif_integrations/core/pipeline.py", "moesif_integrations.collector.server"),
        ("moesif_integrations/core/config/schema.py", "falcon.asgi"),
        ("moesif_integrations/core/config/schema.py", "moesif_integrations.wsgi"),
    }
    (violation,) = [v for v in core_violations(tree) if v.imported == "waitress"]
    assert violation.line == 4
    assert str(violation) == "moesif_integrations/core/record.py:4 imports waitress (a)"


def test_rule_b_reports_an_adapter_importing_another_or_the_generic_middleware(
    tmp_path: Path,
) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/flask/__init__.py": "from ..wsgi import MoesifMiddleware\n",
            "moesif_integrations/falcon/request.py": "from ..pyramid import tween\n",
            "moesif_integrations/pyramid/tween.py": "from . import settings\n",
            "moesif_integrations/pyramid/settings.py": "",
            "moesif_integrations/bottle/__init__.py": (
                "import moesif_integrations.falcon.request\n"
            ),
            "moesif_integrations/wsgi.py": "",
        },
    )
    assert reported(adapter_violations(tree)) == {
        ("moesif_integrations/flask/__init__.py", "moesif_integrations.wsgi"),
        ("moesif_integrations/falcon/request.py", "moesif_integrations.pyramid.tween"),
        ("moesif_integrations/bottle/__init__.py", "moesif_integrations.falcon.request"),
    }


def test_rule_c_reports_capture_reaching_delivery_directly(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/core/capture/wsgi.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ..delivery.queue import Queue
                """,
        },
    )
    (violation,) = capture_violations(tree)
    assert violation.file == "moesif_integrations/core/capture/wsgi.py"
    assert violation.imported == "moesif_integrations.core.delivery.queue"
    assert violation.line == 3 and violation.via == ()


def test_rule_c_reports_capture_reaching_delivery_through_other_modules(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/core/capture/wsgi.py": "\nfrom ..wire import event\n",
            "moesif_integrations/core/wire/event.py": "from ..record import ExchangeRecord\n"
            "from .. import pipeline\n",
        },
    )
    (violation,) = capture_violations(tree)
    assert violation.file == "moesif_integrations/core/capture/wsgi.py"
    assert violation.imported == "moesif_integrations.core.delivery.queue"
    assert violation.line == 2
    assert violation.via == (
        "moesif_integrations.core.wire.event",
        "moesif_integrations.core.pipeline",
    )
    assert str(violation) == (
        "moesif_integrations/core/capture/wsgi.py:2 imports "
        "moesif_integrations.core.delivery.queue via moesif_integrations.core.wire.event "
        "via moesif_integrations.core.pipeline (c)"
    )


def test_rule_c_follows_no_type_checking_import_beyond_capture(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/core/capture/wsgi.py": "from ..config import schema\n",
            "moesif_integrations/core/config/schema.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    from ..delivery.queue import Queue
                else:
                    from .. import record
                """,
        },
    )
    assert capture_violations(tree) == []


# Stand-ins for the frameworks, so the run-time check needs none installed.
FRAMEWORK_STAND_INS = {"bottle.py": "", "gunicorn/__init__.py": "", "gunicorn/app.py": ""}


def test_rule_d_reports_a_framework_imported_at_run_time(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            **FRAMEWORK_STAND_INS,
            "moesif_integrations/core/wire/event.py": "import json\nimport bottle\n",
            "moesif_integrations/core/delivery/child.py": "from gunicorn import app\n",
            # Not at run time: not reported by (d).
            "moesif_integrations/core/delivery/process.py": """\
                from typing import TYPE_CHECKING
                if TYPE_CHECKING:
                    import falcon
                def later():
                    import falcon
                """,
        },
    )
    violations = runtime_violations(tree)
    assert reported(violations) == {
        ("moesif_integrations/core/wire/event.py", "bottle"),
        ("moesif_integrations/core/delivery/child.py", "gunicorn"),
    }
    assert "moesif_integrations/core/wire/event.py: importing it imports bottle (d)" in {
        str(violation) for violation in violations
    }


def test_rule_e_reports_adapters_importing_core_submodules(tmp_path: Path) -> None:
    tree = write_tree(
        tmp_path,
        {
            "moesif_integrations/flask/__init__.py": "from ..core import Pipeline, pipeline\n",
            "moesif_integrations/falcon/request.py": "from ..core.capture.wsgi import X\n",
            "moesif_integrations/wsgi.py": "import moesif_integrations.core.record\n",
            "moesif_integrations/pyramid/__init__.py": "from moesif_integrations import core\n",
        },
    )
    assert reported(public_surface_violations(tree)) == {
        ("moesif_integrations/flask/__init__.py", "moesif_integrations.core.pipeline"),
        ("moesif_integrations/falcon/request.py", "moesif_integrations.core.capture.wsgi"),
        ("moesif_integrations/wsgi.py", "moesif_integrations.core.record"),
    }
