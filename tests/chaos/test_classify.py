"""The Jepsen-style classification, on hand-made histories."""

from __future__ import annotations

from tests.chaos.classify import classify


def test_each_key_lands_in_exactly_one_class() -> None:
    result = classify(["a", "b", "c", "d"], ["a", "c", "c", "c", "x", "x", "d"])
    assert result.ok == {"a", "d"}
    assert result.lost == {"b"}
    assert result.duplicated == {"c"}
    assert result.unexpected == {"x"}
    assert result.counts() == {"lost": 1, "duplicated": 1, "unexpected": 1, "ok": 2}


def test_a_clean_history_is_all_ok() -> None:
    assert classify(["a", "b"], ["b", "a"]).counts() == {
        "lost": 0,
        "duplicated": 0,
        "unexpected": 0,
        "ok": 2,
    }


def test_nothing_received_is_all_lost() -> None:
    assert classify(["a", "b"], []).lost == {"a", "b"}
