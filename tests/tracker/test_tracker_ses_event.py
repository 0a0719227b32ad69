"""Parsing SES events in both formats, from the SES developer guide's example payloads."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.tracker.ses_event import SesEventKind, parse_ses_event
from tests.tracker.tracker_builders import payload


def test_configuration_set_delivery() -> None:
    event = parse_ses_event(payload("event_delivery"))
    assert event.kind == SesEventKind.DELIVERY
    assert (event.transaction_id, event.row, event.message_id) == ("tx-example", 2, "tx-example:2")
    assert event.ses_message_id == "EXAMPLE7c191be45-e9aedb9a-02f9-4d12-a87d-dd0099a07f8a-000000"
    assert event.timestamp == datetime(2016, 10, 19, 23, 21, 4, 133000, tzinfo=UTC)
    assert event.bounce_type is None
    assert event.details["smtpResponse"] == "250 2.6.0 Message received"


def test_configuration_set_bounce() -> None:
    event = parse_ses_event(payload("event_bounce"))
    assert event.kind == SesEventKind.BOUNCE
    assert event.message_id == "tx-example:3"
    assert event.bounce_type == "Permanent"
    assert event.details["bounceSubType"] == "General"
    assert event.timestamp == datetime(2017, 8, 5, 0, 41, 2, 669000, tzinfo=UTC)


def test_configuration_set_complaint_with_a_message_id_tag() -> None:
    # SES tag values cannot hold ":"; the message id travels as "<transaction>-<row>".
    event = parse_ses_event(payload("event_complaint"))
    assert event.kind == SesEventKind.COMPLAINT
    assert event.message_id == "txexample:4"
    assert event.details["complaintFeedbackType"] == "abuse"


@pytest.mark.parametrize(
    ("name", "kind", "ses_id_start"),
    [
        ("notification_delivery", "Delivery", "0000014644fe5ef6-9a483358-9170-4cb4-a269"),
        ("notification_bounce", "Bounce", "00000138111222aa-33322211-cccc-cccc-cccc"),
        ("notification_complaint", "Complaint", "000001378603177f-7a5433e7-8edb-42ae-af10"),
    ],
)
def test_identity_notifications_carry_no_tags(name: str, kind: str, ses_id_start: str) -> None:
    event = parse_ses_event(payload(name))
    assert event.kind == kind
    assert event.message_id is None
    assert event.ses_message_id is not None
    assert event.ses_message_id.startswith(ses_id_start)
    assert event.timestamp == datetime(2016, 1, 27, 14, 59, 38, 237000, tzinfo=UTC)


def test_notification_bounce_type() -> None:
    assert parse_ses_event(payload("notification_bounce")).bounce_type == "Permanent"


def test_other_documented_types_take_their_own_object() -> None:
    raw = payload("event_delivery")
    del raw["delivery"]
    raw |= {"eventType": "Rendering Failure", "failure": {"errorMessage": "x", "templateName": "t"}}
    event = parse_ses_event(raw)
    assert event.kind == SesEventKind.RENDERING_FAILURE
    assert event.details == {"errorMessage": "x", "templateName": "t"}
    # No timestamp of its own: the send's.
    assert event.timestamp == datetime(2016, 10, 19, 23, 20, 52, 240000, tzinfo=UTC)


def test_unknown_fields_and_types_are_kept_not_errors() -> None:
    raw = payload("event_delivery")
    raw["eventType"] = "Teleport"
    raw["teleport"] = {"where": "mars"}
    raw["somethingNew"] = [1, 2, 3]
    raw["mail"]["newField"] = {"a": 1}
    event = parse_ses_event(raw)
    assert event.kind == "Teleport"
    assert event.message_id == "tx-example:2"
    # A type we do not know is kept whole (but for the envelope), so nothing it says is lost.
    assert event.details["teleport"] == {"where": "mars"}
    assert event.details["somethingNew"] == [1, 2, 3]
    assert "mail" not in event.details


@pytest.mark.parametrize(
    "raw",
    [
        {},
        {"eventType": 5},
        {"eventType": "Delivery", "mail": "not an object", "delivery": []},
        {"eventType": "Delivery", "mail": {"tags": {"transaction_id": "x", "row": ["two"]}}},
        {"eventType": "Delivery", "mail": {"timestamp": "yesterday", "tags": []}},
    ],
)
def test_malformed_values_read_as_absent(raw: dict[str, object]) -> None:
    event = parse_ses_event(raw)
    assert event.message_id is None
    assert event.timestamp is None
