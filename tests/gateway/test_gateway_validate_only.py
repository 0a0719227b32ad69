"""``POST /api/v1/transactions?validate_only=true``: ingest's checks, a report, nothing created.

Both kinds of submission, against the real stack: the form's file is checked as it arrives
and never reaches S3; a JSON source is read from S3. Either way no transaction is recorded,
nothing is published and nothing is left in the bucket.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from services.gateway.report import FIRST_ERRORS
from services.gateway.source import tenant_prefix
from shared.settings import GatewaySettings
from tests.gateway.conftest import TENANT, ClientFactory

Client = AsyncTestClient[Litestar]

GOOD = b"email,first_name\nada@example.com,Ada\n\nalan@example.com,Alan\n"
# Row 2 good; rows 3-7 in error (row 8 is blank).
ROW_ERRORS = (
    b"Email,First Name\r\n"
    b"ada@example.com,Ada\r\n"
    b"not-an-address,Bob\r\n"
    b",Cy\r\n"
    b"dee@example.com,\r\n"
    b"eve@example.com,Eve,extra\r\n"
    b"ada@example.com,Ada again\r\n"
    b"\r\n"
)


async def _template(client: Client, subject: str = "Hi {{ first_name }}") -> str:
    response = await client.post(
        "/api/v1/templates", json={"name": "welcome", "subject": subject, "text": "Hello"}
    )
    assert response.status_code == 201, response.text
    template_id: str = response.json()["id"]
    return template_id


async def _validate(client: Client, template_id: str, body: bytes, **headers: str) -> Any:
    response = await client.post(
        "/api/v1/transactions",
        params={"validate_only": "true"},
        files={"file": ("people.csv", body, "text/csv")},
        data={"template_id": template_id},
        headers=headers,
    )
    return _report(response)


def _report(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


async def _in_s3(deps: GatewayDeps, settings: GatewaySettings) -> set[str]:
    """The tenant's objects and multipart uploads (the bucket outlives a test)."""
    prefix = tenant_prefix(TENANT)
    listed = await deps.s3.list_objects_v2(Bucket=settings.s3_bucket, Prefix=prefix)
    uploads = await deps.s3.list_multipart_uploads(Bucket=settings.s3_bucket, Prefix=prefix)
    return {o["Key"] for o in listed.get("Contents", [])} | {
        f"upload:{u['Key']}" for u in uploads.get("Uploads", [])
    }


async def _assert_nothing_created(
    deps: GatewayDeps, settings: GatewaySettings, s3_before: set[str]
) -> None:
    assert await deps.store.transactions.count_documents({}) == 0
    assert await deps.store.idempotency_keys.count_documents({}) == 0
    for stream in ("TX_ACCEPTED", "TX_STATUS"):
        info = await deps.broker.js.stream_info(stream)
        assert info.state.messages == 0, stream
    assert await _in_s3(deps, settings) == s3_before


async def test_a_good_file_is_valid_and_nothing_is_created(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    before = await _in_s3(deps, gateway_settings)
    report = await _validate(client, template_id, GOOD, **{"Idempotency-Key": "ignored"})
    assert report == {
        "valid": True,
        "rows": {"total": 2, "valid": 2, "invalid": 0},
        "errors_by_code": {},
        "first_errors": [],
        "missing_placeholders": [],
        "file_error": None,
    }
    await _assert_nothing_created(deps, gateway_settings, before)


async def test_row_errors_are_counted_by_code(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    before = await _in_s3(deps, gateway_settings)
    report = await _validate(client, template_id, ROW_ERRORS)
    assert report["valid"] is False
    assert report["file_error"] is None
    assert report["rows"] == {"total": 6, "valid": 1, "invalid": 5}
    assert report["errors_by_code"] == {
        "INVALID_EMAIL": 1,
        "MISSING_EMAIL": 1,
        "MISSING_PLACEHOLDER_VALUE": 1,
        "FIELD_COUNT_MISMATCH": 1,
        "DUPLICATE_RECIPIENT": 1,
    }
    first = report["first_errors"]
    assert [(e["code"], e["details"]["row"]) for e in first] == [
        ("INVALID_EMAIL", 3),
        ("MISSING_EMAIL", 4),
        ("MISSING_PLACEHOLDER_VALUE", 5),
        ("FIELD_COUNT_MISMATCH", 6),
        ("DUPLICATE_RECIPIENT", 7),
    ]
    # The shape of GET /transactions/{id}/errors' items.
    assert first[0] == {
        "code": "INVALID_EMAIL",
        "message": first[0]["message"],
        "details": {
            "row": 3,
            "field": "email",
            "value": "not-an-address",
            "expected_format": "an email address such as name@example.com",
        },
        "recovery_action": first[0]["recovery_action"],
    }
    await _assert_nothing_created(deps, gateway_settings, before)


async def test_first_errors_are_the_first_twenty(client: Client) -> None:
    template_id = await _template(client)
    body = b"email,first_name\nada@example.com,Ada\n" + b"bad,X\n" * 50
    report = await _validate(client, template_id, body)
    assert report["rows"] == {"total": 51, "valid": 1, "invalid": 50}
    assert report["errors_by_code"] == {"INVALID_EMAIL": 50}
    assert [e["details"]["row"] for e in report["first_errors"]] == list(range(3, 3 + FIRST_ERRORS))


async def test_header_and_file_errors(client: Client) -> None:
    template_id = await _template(client)
    cases: list[tuple[bytes, str, dict[str, Any]]] = [
        (b"name,first_name\nAda,Ada\n", "MISSING_EMAIL_COLUMN", {"column": "email"}),
        (b"email,Email,first_name\na@b.co,x,y\n", "DUPLICATE_COLUMN", {"column": "email"}),
        (b"\n\n\r\n", "EMPTY_FILE", {}),
        (b"email,first_name\nbad,X\n,Y\n", "NO_VALID_ROWS", {"invalid": 2}),
        (b"email,first_name\n\xff\xfe,X\n", "CSV_PARSING_ERROR", {}),
    ]
    for body, code, details in cases:
        report = await _validate(client, template_id, body)
        assert report["valid"] is False, code
        problem = report["file_error"]
        assert problem["code"] == code
        assert problem["details"] == details
        assert problem["message"]


async def test_a_missing_placeholder_column(client: Client) -> None:
    template_id = await _template(client, subject="Hi {{ first_name }}, {{ city }}")
    body = b"email,first_name\nada@example.com,Ada\nalan@example.com,\n"
    report = await _validate(client, template_id, body)
    assert report["valid"] is False
    assert report["missing_placeholders"] == ["city"]
    assert report["file_error"]["code"] == "MISSING_PLACEHOLDER_COLUMN"
    assert report["file_error"]["details"] == {"columns": ["city"]}
    # The rows are checked all the same.
    assert report["rows"] == {"total": 2, "valid": 1, "invalid": 1}
    assert report["errors_by_code"] == {"MISSING_PLACEHOLDER_VALUE": 1}


async def test_the_limits_apply(make_client: ClientFactory) -> None:
    async with make_client(max_rows=2, max_columns=3, max_field_chars=16) as client:
        template_id = await _template(client)
        rows = b"email,first_name\na@example.com,A\n\nb@example.com,B\nc@example.com,C\n"
        report = await _validate(client, template_id, rows)
        assert report["file_error"]["code"] == "TOO_MANY_ROWS"
        assert report["file_error"]["details"] == {"row": 5, "max_rows": 2}
        assert report["rows"] == {"total": 2, "valid": 2, "invalid": 0}

        wide = b"email,first_name,a,b\nx@example.com,X,1,2\n"
        report = await _validate(client, template_id, wide)
        assert report["file_error"]["code"] == "TOO_MANY_COLUMNS"

        long_field = b"email,first_name\na@example.com,Abcdefghijklmnopq\nb@example.com,B\n"
        report = await _validate(client, template_id, long_field)
        assert report["file_error"] is None
        assert report["errors_by_code"] == {"FIELD_TOO_LONG": 1}


async def test_the_upload_limit_applies(make_client: ClientFactory, deps: GatewayDeps) -> None:
    async with make_client(max_upload_bytes=32) as client:
        template_id = await _template(client)
        response = await client.post(
            "/api/v1/transactions?validate_only=true",
            files={"file": ("people.csv", GOOD * 4, "text/csv")},
            data={"template_id": template_id},
        )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "FILE_TOO_LARGE"


async def test_request_errors_stay_errors(client: Client) -> None:
    template_id = await _template(client)
    empty = await client.post(
        "/api/v1/transactions?validate_only=true",
        files={"file": ("people.csv", b"", "text/csv")},
        data={"template_id": template_id},
    )
    assert empty.status_code == 400
    assert empty.json()["error"]["code"] == "EMPTY_FILE"
    unknown = await client.post(
        "/api/v1/transactions?validate_only=true",
        files={"file": ("people.csv", GOOD, "text/csv")},
        data={"template_id": "nope"},
    )
    assert unknown.status_code == 400
    assert unknown.json()["error"]["code"] == "TEMPLATE_NOT_FOUND"
    # The file before its template: nothing to check its rows against yet.
    file_first = await client.post(
        "/api/v1/transactions?validate_only=true",
        files={"file": ("people.csv", GOOD, "text/csv"), "template_id": (None, template_id)},
    )
    assert file_first.status_code == 400
    error = file_first.json()["error"]
    assert (error["code"], error["details"]) == ("VALIDATION_ERROR", {"field": "template_id"})


async def test_a_json_source(
    client: Client, deps: GatewayDeps, gateway_settings: GatewaySettings
) -> None:
    template_id = await _template(client)
    key = f"{tenant_prefix(TENANT)}sources/{uuid.uuid4().hex}.csv"
    await deps.s3.put_object(Bucket=gateway_settings.s3_bucket, Key=key, Body=ROW_ERRORS)
    before = await _in_s3(deps, gateway_settings)
    response = await client.post(
        "/api/v1/transactions?validate_only=true",
        json={
            "template_id": template_id,
            "source": {"s3_uri": f"s3://{gateway_settings.s3_bucket}/{key}"},
        },
        headers={"Idempotency-Key": "ignored"},
    )
    report = _report(response)
    assert report["rows"] == {"total": 6, "valid": 1, "invalid": 5}
    assert len(report["first_errors"]) == 5
    assert report["file_error"] is None
    # The source is the client's: left as it is, and nothing else is added.
    await _assert_nothing_created(deps, gateway_settings, before)


async def test_the_report_is_in_the_openapi_schema(client: Client) -> None:
    spec = (await client.get("/schema/openapi.json")).json()
    submit = spec["paths"]["/api/v1/transactions"]["post"]
    assert "validate_only" in {p["name"] for p in submit["parameters"]}
    ok = submit["responses"]["200"]["content"]["application/json"]["schema"]
    assert {"$ref": "#/components/schemas/ValidationReport"} in ok["oneOf"]
    schemas = spec["components"]["schemas"]
    assert set(schemas["ValidationReport"]["required"]) == {
        "valid",
        "rows",
        "errors_by_code",
        "first_errors",
        "missing_placeholders",
        "file_error",
    }
    # Every code, with what it means.
    assert "INVALID_EMAIL" in schemas["RowErrorCode"]["enum"]
    assert "`DUPLICATE_RECIPIENT`:" in schemas["RowErrorCode"]["description"]
    file_code = schemas["FileProblem"]["properties"]["code"]["description"]
    assert "`TOO_MANY_ROWS`:" in file_code
    assert "`MISSING_EMAIL_COLUMN`:" in file_code
    assert "`IDEMPOTENCY_KEY_REUSED` (409):" in schemas["Code"]["description"]
