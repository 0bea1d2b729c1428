"""The one registry path: built-ins and entry points land in the same table, with one-line errors."""

from __future__ import annotations

import ast
import importlib
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from filters import FILTERS, Filter
from generators import GENERATORS, Generator
from simulators import DOMAINS, TOOL_SIMULATORS
from simulators.registry import Registry, UnknownStepError


def fake_distribution(root, group: str, entries: dict[str, str], modules: dict[str, str]) -> None:
    """A package as pip would leave it in a --target folder: modules plus a dist-info with entry points."""
    info = root / "fake_steps-0.3.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fake-steps\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()))
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)


GOOD = "from filters import Filter\nclass Short(Filter):\n    def check(self, t, ctx):\n        return self.passed()\n"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    fake_distribution(tmp_path, "trajforge.test_filters",
                      {"short": "fake_good:Short", "broken": "fake_broken:Nope", "wrong_kind": "fake_good:helper",
                       "mismatch": "fake_named:Named"},
                      {"fake_good": GOOD + "def helper():\n    pass\n",
                       "fake_broken": "import not_a_module_anywhere\n",
                       "fake_named": "from filters import Filter\nclass Named(Filter):\n    name = 'other'\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    yield Registry("filter", "trajforge.test_filters", base=Filter)
    for mod in ("fake_good", "fake_broken", "fake_named"):
        sys.modules.pop(mod, None)


def test_entry_points_are_listed_without_import_and_loaded_on_demand(registry):
    assert registry.names() == ["broken", "mismatch", "short", "wrong_kind"]
    assert "fake_broken" not in sys.modules  # listing imports nothing
    short = registry.get("short")
    assert issubclass(short, Filter) and short.name == "short"  # the registry names the class


def test_plugin_problems_are_one_line_naming_the_package(registry):
    with pytest.raises(UnknownStepError) as err:
        registry.get("broken")
    message = str(err.value)
    assert message.startswith("filter 'broken' failed to load from entry point broken = fake_broken:Nope")
    assert "(package fake-steps 0.3)" in message and "ModuleNotFoundError" in message and "\n" not in message
    with pytest.raises(UnknownStepError, match=r"'wrong_kind' .* must be a subclass of filters.base.Filter"):
        registry.get("wrong_kind")
    with pytest.raises(UnknownStepError, match="declares name = 'other'; the two must agree"):
        registry.get("mismatch")
    assert registry.get("short").name == "short"  # a broken neighbour does not break the others


def _registrations() -> list[tuple[str, str, str, str | None]]:
    """Every ``REGISTRY.register("name")`` in the project's packages, read from the source (module, registry
    variable, name, decorated class or None): what the registries must find without being told."""
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            tree = ast.parse(path.read_text(), str(path))
            decorated = {id(d): node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)
                         for d in node.decorator_list}
            for node in ast.walk(tree):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "register"
                        and isinstance(node.func.value, ast.Name) and node.args
                        and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                    found.append((module, node.func.value.id, node.args[0].value, decorated.get(id(node))))
    return found


ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name not in ("tests", "examples", "bench"))


@pytest.fixture(scope="module")
def builtins() -> dict[Registry, dict[str, type | None]]:
    """The registrations the source holds, by registry object."""
    out: dict[Registry, dict[str, type | None]] = {}
    for module, variable, name, cls in _registrations():
        mod = importlib.import_module(module)
        registry = getattr(mod, variable)
        if isinstance(registry, Registry):
            out.setdefault(registry, {})
            assert name not in out[registry], f"{registry.kind} {name!r} is registered twice in the source ({module})"
            out[registry][name] = getattr(mod, cls) if cls else None
    return out


def test_every_builtin_is_found_under_its_name(builtins):
    assert {GENERATORS, FILTERS, DOMAINS, TOOL_SIMULATORS} <= set(builtins)  # the scan sees every registry
    for registry, items in builtins.items():
        assert items, registry.kind
        names = registry.names()
        assert len(names) == len(set(names)) and names == sorted(names)
        for name, cls in items.items():
            assert name in names, (registry.kind, name)
            step = registry.get(name)
            assert registry.base is None or issubclass(step, registry.base)
            if cls is not None:
                assert step is cls and step.name == name  # the decorated class, named by its registration
        # nothing is listed that neither the source registers nor an installed package declares
        declared = {ep.name for ep in entry_points(group=registry.group)}
        assert set(names) == set(items) | declared, (registry.kind, set(names) ^ (set(items) | declared))


def test_unknown_names_list_what_exists(builtins):
    for registry in builtins:
        with pytest.raises(UnknownStepError) as err:
            registry.get("nope")
        assert str(err.value) == f"unknown {registry.kind} 'nope'; known: {', '.join(registry.names())}"


def test_entry_points_of_every_group_load(builtins, tmp_path, monkeypatch):
    """Installed plug-ins of every registry's group load and are of its base class; and a package declaring one
    step in each group (a real dist-info on sys.path) is found through the same groups and bases."""
    for registry in builtins:
        for ep in entry_points(group=registry.group):
            assert issubclass(registry.get(ep.name), registry.base), ep
    kinds = {f"probe_{i}": registry for i, registry in enumerate(builtins)}
    source = "".join(f"from {r.base.__module__} import {r.base.__qualname__}\n"
                     f"class {name.title().replace('_', '')}({r.base.__qualname__}):\n    pass\n"
                     for name, r in kinds.items())
    info = tmp_path / "probe_steps-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-steps\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{r.group}]\n{name} = probe_steps_module:{name.title().replace('_', '')}\n" for name, r in kinds.items()))
    (tmp_path / "probe_steps_module.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        for name, registry in kinds.items():
            twin = Registry(registry.kind, registry.group, base=registry.base)  # the shared tables stay as they are
            assert name in twin.names()
            step = twin.get(name)
            assert issubclass(step, registry.base) and step.name == name and step.__module__ == "probe_steps_module"
    finally:
        sys.modules.pop("probe_steps_module", None)


def test_builtins_and_plugins_share_one_path():
    reg = Registry("filter", "trajforge.nothing_here", base=Filter, builtins="filters.verification")
    assert reg.names() == []  # its own table: the builtins module registered into FILTERS, not here
    assert FILTERS.get("format").__module__ == "filters.verification"
    with pytest.raises(ValueError, match="registered twice"):
        FILTERS.register("format")(type("Other", (Filter,), {}))
    with pytest.raises(TypeError, match="must be a subclass"):
        FILTERS.register("not_a_filter")(object)
    own = Registry("generator", "trajforge.nothing_here", base=Generator)  # not the shared table
    subclass = own.register("blueprint_subclass_test")(type("Sub", (GENERATORS.get("blueprint"),), {}))
    assert subclass.name == "blueprint_subclass_test" and GENERATORS.get("blueprint").name == "blueprint"
    with pytest.raises(ValueError, match="must be a letter"):
        FILTERS.register("bad name")(type("Bad", (Filter,), {}))
