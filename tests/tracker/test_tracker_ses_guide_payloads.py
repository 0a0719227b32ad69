"""``parse_ses_event`` on every example the SES developer guide publishes, as published
(tests/tracker/payloads/ses_guide): each configuration-set event type and each identity
notification; our own tags are added to copies here, never to the files."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from services.tracker.ses_event import SesEventKind, parse_ses_event
from tests.tracker.tracker_builders import PAYLOADS, payload

GUIDE = "ses_guide"
EXAMPLE_ID = "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# name, kind, SES message id, when it happened (the type's own timestamp, else the send's),
# bounce type.
EXAMPLES: list[tuple[str, str, str, datetime, str | None]] = [
    ("event_bounce", "Bounce", EXAMPLE_ID, at("2017-08-05T00:41:02.669"), "Permanent"),
    ("event_complaint", "Complaint", EXAMPLE_ID, at("2017-08-05T00:41:02.669"), None),
    ("event_delivery", "Delivery", EXAMPLE_ID, at("2016-10-19T23:21:04.133"), None),
    # ``send: {}`` and ``reject`` carry no timestamp of their own.
    ("event_send", "Send", EXAMPLE_ID, at("2016-10-14T05:02:16.645"), None),
    ("event_reject", "Reject", EXAMPLE_ID, at("2016-10-14T17:38:15.211"), None),
    ("event_open", "Open", EXAMPLE_ID, at("2017-08-09T22:00:19.652"), None),
    ("event_click", "Click", EXAMPLE_ID, at("2017-08-09T23:51:25.570"), None),
    (
        "event_rendering_failure",
        "Rendering Failure",
        EXAMPLE_ID,
        at("2018-01-22T18:43:06.197"),
        None,
    ),
    ("event_delivery_delay", "DeliveryDelay", EXAMPLE_ID, at("2020-06-16T00:25:40.095"), None),
    (
        "event_subscription",
        "Subscription",
        "EXAMPLEe4bccb684-777bc8de-afa7-4970-92b0-f515137b1497-000000",
        at("2022-01-12T01:00:17.910"),
        None,
    ),
    (
        "notification_bounce_with_dsn",
        "Bounce",
        "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
        at("2016-01-27T14:59:38.237"),
        "Permanent",
    ),
    (
        "notification_bounce_without_dsn",
        "Bounce",
        "00000137860315fd-34208509-5b74-41f3-95c5-22c1edc3c924-000000",
        at("2016-01-27T14:59:38.237"),
        "Permanent",
    ),
    (
        "notification_complaint_with_feedback_report",
        "Complaint",
        "000001378603177f-7a5433e7-8edb-42ae-af10-f0181f34d6ee-000000",
        at("2016-01-27T14:59:38.237"),
        None,
    ),
    (
        "notification_complaint_without_feedback_report",
        "Complaint",
        "0000013786031775-163e3910-53eb-4c8e-a04a-f29debf88a84-000000",
        at("2016-01-27T14:59:38.237"),
        None,
    ),
    (
        "notification_delivery",
        "Delivery",
        "0000014644fe5ef6-9a483358-9170-4cb4-a269-f5dcdf415321-000000",
        at("2016-01-27T14:59:38.237"),
        None,
    ),
]
# The key of each type's own object, as the guide's "contents" page names it.
DETAIL_KEYS = {
    "Send": "send",
    "Delivery": "delivery",
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Reject": "reject",
    "DeliveryDelay": "deliveryDelay",
    "Rendering Failure": "failure",
    "Open": "open",
    "Click": "click",
    "Subscription": "subscription",
}


def guide(name: str) -> dict[str, Any]:
    return payload(f"{GUIDE}/{name}")


def tagged(raw: dict[str, Any], transaction_id: str, row: int) -> dict[str, Any]:
    """The example as our sender's mail would produce it: with our two tags."""
    ours = {"transaction_id": [transaction_id], "row": [str(row)]}
    raw["mail"]["tags"] = raw["mail"].get("tags", {}) | ours
    return raw


def test_every_example_is_here_and_every_event_type_has_one() -> None:
    stored = {path.stem for path in (PAYLOADS / GUIDE).glob("*.json")}
    assert stored == {name for name, *_ in EXAMPLES}
    event_kinds = {kind for name, kind, *_ in EXAMPLES if name.startswith("event_")}
    assert event_kinds == set(SesEventKind)


@pytest.mark.parametrize(
    ("name", "kind", "ses_message_id", "timestamp", "bounce_type"),
    EXAMPLES,
    ids=[name for name, *_ in EXAMPLES],
)
def test_the_guide_examples_parse(
    name: str, kind: str, ses_message_id: str, timestamp: datetime, bounce_type: str | None
) -> None:
    raw = guide(name)
    event = parse_ses_event(raw)
    assert event.kind == kind
    assert event.ses_message_id == ses_message_id
    assert event.timestamp == timestamp
    assert event.bounce_type == bounce_type
    assert event.details == raw[DETAIL_KEYS[kind]]
    # As published they carry none of our tags: no message of ours is named.
    assert (event.transaction_id, event.row, event.message_id) == (None, None, None)


@pytest.mark.parametrize("name", [name for name, *_ in EXAMPLES if name.startswith("event_")])
def test_with_our_tags_they_name_our_message(name: str) -> None:
    event = parse_ses_event(tagged(guide(name), "tx-guide", 7))
    assert (event.transaction_id, event.row, event.message_id) == ("tx-guide", 7, "tx-guide:7")


def test_the_files_are_kept_as_published() -> None:
    # Tagging works on copies: the stored example still has no tags of ours.
    tagged(guide("event_send"), "tx-guide", 7)
    text = (PAYLOADS / GUIDE / "event_send.json").read_text()
    assert "transaction_id" not in text
    assert "transaction_id" not in json.dumps(guide("event_send"))


def test_an_unknown_event_type_parses() -> None:
    raw = tagged(guide("event_delivery"), "tx-guide", 3)
    del raw["delivery"]
    raw["eventType"] = "Teleport"
    raw["teleport"] = {"timestamp": "yesterday", "where": {"planet": "Mars"}}
    event = parse_ses_event(raw)
    assert event.kind == "Teleport"
    assert event.ses_message_id == EXAMPLE_ID
    assert event.message_id == "tx-guide:3"
    assert event.bounce_type is None
    # Nothing of its own that reads as a time: the send's.
    assert event.timestamp == at("2016-10-19T23:20:52.240")


@pytest.mark.parametrize("name", [name for name, *_ in EXAMPLES])
def test_unknown_extra_fields_change_nothing(name: str) -> None:
    raw = guide(name)
    kind = raw.get("eventType") or raw["notificationType"]
    extended = guide(name)
    extended["somethingNew"] = [1, {"two": 3}]
    extended["mail"]["newMailField"] = {"nested": True}
    extended["mail"]["tags"] = extended["mail"].get("tags", {}) | {"ses:new-tag": ["v"]}
    extended[DETAIL_KEYS[kind]]["newDetail"] = "x"
    before, after = parse_ses_event(raw), parse_ses_event(extended)
    assert (after.kind, after.ses_message_id, after.timestamp, after.bounce_type) == (
        before.kind,
        before.ses_message_id,
        before.timestamp,
        before.bounce_type,
    )
    assert after.details == before.details | {"newDetail": "x"}
