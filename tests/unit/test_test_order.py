"""The suite's order: the longest modules first (tests/conftest.py), so two workers end
together. A module renamed or moved would silently lose its place."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import LONGEST_MODULES, pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("module", LONGEST_MODULES)
def test_each_longest_module_exists(module: str) -> None:
    assert (ROOT / module).is_file()


class _Item:
    def __init__(self, nodeid: str) -> None:
        self.nodeid = nodeid


def test_the_longest_modules_go_first_and_the_rest_keep_their_order() -> None:
    first, second = LONGEST_MODULES[0], LONGEST_MODULES[1]
    items = [
        _Item("tests/a/test_x.py::test_1"),
        _Item(f"{second}::test_b"),
        _Item("tests/a/test_x.py::test_2"),
        _Item(f"{first}::test_a"),
        _Item("tests/b/test_y.py::test_1"),
        _Item(f"{second}::test_c"),
    ]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [i.nodeid for i in items] == [
        f"{first}::test_a",
        f"{second}::test_b",
        f"{second}::test_c",
        "tests/a/test_x.py::test_1",
        "tests/a/test_x.py::test_2",
        "tests/b/test_y.py::test_1",
    ]
