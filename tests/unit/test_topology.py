"""The JetStream topology is consistent with itself (ARCHITECTURE §3)."""

from __future__ import annotations

from nats.js.api import RetentionPolicy, StorageType

from shared.topology import STREAMS, Subjects, all_consumers


def _covers(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` the rest."""
    want, have = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(have) > i
        if i >= len(have) or (token != "*" and token != have[i]):
            return False
    return len(want) == len(have)


def test_every_consumer_reads_a_subject_of_its_stream() -> None:
    streams = {s.name: s for s in STREAMS}
    for spec in all_consumers():
        stream = streams[spec.stream]
        assert any(_covers(p, spec.filter_subject.replace(">", "x")) for p in stream.subjects or [])


def test_durable_names_are_unique() -> None:
    names = [spec.durable for spec in all_consumers()]
    assert len(names) == len(set(names))


def test_streams_are_durable_and_subjects_do_not_overlap() -> None:
    seen: list[str] = []
    for stream in STREAMS:
        assert stream.storage == StorageType.FILE
        for subject in stream.subjects or []:
            assert not any(_covers(s, subject) or _covers(subject, s) for s in seen), subject
            seen.append(subject)


def test_a_schedule_fires_into_its_own_stream() -> None:
    with_schedules = {s.name: s.subjects or [] for s in STREAMS if s.allow_msg_schedules}
    assert set(with_schedules) == {"SCHEDULES", "CALLBACKS"}
    # (schedule subject, the target it fires onto): both in one stream.
    pairs = [
        (Subjects.schedule("tx", "all"), Subjects.TX_DUE),
        (Subjects.callback_wake("tx"), Subjects.CALLBACK_DUE),
    ]
    for schedule, target in pairs:
        assert any(
            any(_covers(p, schedule) for p in subjects) and target in subjects
            for subjects in with_schedules.values()
        ), schedule


def test_work_queues_have_one_consumer_each() -> None:
    work = {s.name for s in STREAMS if s.retention == RetentionPolicy.WORK_QUEUE}
    readers = [spec.stream for spec in all_consumers() if spec.stream in work]
    assert sorted(readers) == sorted(work)
