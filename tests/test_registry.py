"""The one registry path: built-ins and entry points land in the same table, with one-line errors."""

from __future__ import annotations

import sys

import pytest

from filters import FILTERS, Filter
from generators import GENERATORS
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


def test_unknown_names_list_what_exists():
    for reg, known in ((GENERATORS, "blueprint, kg_question, model_blueprint, tool_calls"), (DOMAINS, "kg, schema_only, store"),
                       (TOOL_SIMULATORS, "offline")):
        with pytest.raises(UnknownStepError) as err:
            reg.get("nope")
        assert str(err.value).startswith(f"unknown {reg.kind} 'nope'; known: {known}")
    with pytest.raises(UnknownStepError, match="known: answer_match, control_tokens, difficulty, execution, format, judge, "
                       "language, outcome, policy, reasoning, repetition, required_outputs, secrets, simulator_leak, "
                       "turn_count"):
        FILTERS.get("nope")


def test_builtins_and_plugins_share_one_path():
    reg = Registry("filter", "trajforge.nothing_here", base=Filter, builtins="filters.verification")
    assert reg.names() == []  # its own table: the builtins module registered into FILTERS, not here
    assert FILTERS.get("format").__module__ == "filters.verification"
    with pytest.raises(ValueError, match="registered twice"):
        FILTERS.register("format")(type("Other", (Filter,), {}))
    with pytest.raises(TypeError, match="must be a subclass"):
        FILTERS.register("not_a_filter")(object)
    subclass = GENERATORS.register("blueprint_subclass_test")(type("Sub", (GENERATORS.get("blueprint"),), {}))
    GENERATORS._items.pop("blueprint_subclass_test")  # keep the shared table as the other tests expect it
    assert subclass.name == "blueprint_subclass_test" and GENERATORS.get("blueprint").name == "blueprint"
    with pytest.raises(ValueError, match="must be a letter"):
        FILTERS.register("bad name")(type("Bad", (Filter,), {}))
