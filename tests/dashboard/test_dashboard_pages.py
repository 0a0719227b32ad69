"""The dashboard with Litestar's test client: login, logout, the session, CSRF, the pages,
and the offline API docs.

The session cookie authorises the dashboard only: the API keeps asking for a Bearer key.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps
from shared.api_keys import create_key, revoke_key
from shared.documents import (
    DeadLetter,
    RowError,
    S3Location,
    StatusEntry,
    StoredRowError,
    Transaction,
    to_document,
)
from shared.status import TxStatus
from tests.conftest import issue_key
from tests.gateway.conftest import TENANT, ClientFactory, bearer

Client = AsyncTestClient[Litestar]

_META_TOKEN = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


class _Assets(HTMLParser):
    """Every URL a page loads by itself: scripts, style sheets, icons, images."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script" and found.get("src"):
            self.urls.append(str(found["src"]))
        elif tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))
        elif tag == "img" and found.get("src"):
            self.urls.append(str(found["src"]))


def own(url: str) -> bool:
    """A URL of this origin: a path, not another host's (``//host/...``, ``https://...``)."""
    return url.startswith("/") and not url.startswith("//")


def assets_of(html: str) -> list[str]:
    parser = _Assets()
    parser.feed(html)
    return parser.urls


async def csrf_token(client: Client, path: str = "/dashboard/login") -> str:
    page = await client.get(path)
    assert page.status_code == 200, page.text
    found = _META_TOKEN.search(page.text)
    assert found is not None
    return found.group(1)


async def log_in(client: Client, key: str) -> None:
    token = await csrf_token(client)
    answer = await client.post(
        "/dashboard/login",
        data={"api_key": key, "next": "/dashboard/", "_csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/dashboard/"


@pytest.fixture
async def browser(make_client: ClientFactory) -> AsyncIterator[Client]:
    """A client without a Bearer key: a browser, which holds only cookies."""
    async with make_client(api_key=None) as opened:
        yield opened


def transaction(status: TxStatus, *, tenant: str = TENANT) -> Transaction:
    at = datetime(2030, 1, 1, tzinfo=UTC)
    history = [
        StatusEntry(status=TxStatus.ACCEPT, at=at),
        StatusEntry(status=TxStatus.PROCESSING, at=at + timedelta(seconds=1)),
        StatusEntry(status=TxStatus.READY_TO_SEND, at=at + timedelta(seconds=3)),
        StatusEntry(status=TxStatus.SENT, at=at + timedelta(seconds=10)),
    ]
    if status is TxStatus.COMPLETED:
        history.append(StatusEntry(status=TxStatus.COMPLETED, at=at + timedelta(seconds=30)))
    return Transaction(
        id=uuid.uuid4().hex,
        tenant=tenant,
        status=status,
        template_id="t1",
        source=S3Location(bucket="b", key="k"),
        filename="people.csv",
        columns=["email", "name"],
        counters={"total": 10, "invalid": 1, "delivered": 7, "bounced": 2, "sent": 1},
        status_history=history,
        created_at=at,
        updated_at=at,
    )


async def test_pages_ask_for_a_login_first(browser: Client) -> None:
    page = await browser.get("/dashboard/", follow_redirects=False)
    assert page.status_code == 303
    assert page.headers["location"] == "/dashboard/login?next=%2Fdashboard"
    deep = await browser.get("/dashboard/transactions/abc?x=1", follow_redirects=False)
    assert (
        deep.headers["location"]
        == "/dashboard/login?next=%2Fdashboard%2Ftransactions%2Fabc%3Fx%3D1"
    )
    # A live part fetched by the script: 401, the script reloads the page.
    fragment = await browser.get(
        "/dashboard/transactions/rows", headers={"x-dashboard-fragment": "1"}
    )
    assert fragment.status_code == 401
    proxied = await browser.get("/dashboard/api/transactions")
    assert proxied.status_code == 401
    assert proxied.json()["error"]["code"] == "UNAUTHORIZED"


async def test_login_sets_a_strict_http_only_cookie_and_logout_ends_it(
    browser: Client, api_key: str
) -> None:
    token = await csrf_token(browser)
    wrong = await browser.post(
        "/dashboard/login",
        data={"api_key": "ep_live_" + "A" * 43, "_csrf_token": token},
        follow_redirects=False,
    )
    assert wrong.status_code == 401
    assert "unknown or revoked" in wrong.text

    answer = await browser.post(
        "/dashboard/login",
        data={"api_key": api_key, "next": "/dashboard/alerts", "_csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/dashboard/alerts"
    cookie = next(
        c for c in answer.headers.get_list("set-cookie") if c.startswith("dashboard_session=")
    )
    attributes = {part.strip().lower() for part in cookie.split(";")}
    assert {"httponly", "samesite=strict", "path=/dashboard"} <= attributes
    assert api_key not in cookie  # encrypted, not merely signed

    page = await browser.get("/dashboard/")
    assert page.status_code == 200
    assert TENANT in page.text
    assert api_key not in page.text  # the key never goes back to the page
    assert "default-src 'self'" in page.headers["content-security-policy"]

    token = await csrf_token(browser, "/dashboard/")
    out = await browser.post(
        "/dashboard/logout", data={"_csrf_token": token}, follow_redirects=False
    )
    assert out.status_code == 303
    assert out.headers["location"] == "/dashboard/login"
    again = await browser.get("/dashboard/", follow_redirects=False)
    assert again.status_code == 303


async def test_login_goes_back_only_to_dashboard_paths(browser: Client, api_key: str) -> None:
    token = await csrf_token(browser)
    for target in ("https://evil.example/", "//evil.example/dashboard", "/api/v1/keys"):
        answer = await browser.post(
            "/dashboard/login",
            data={"api_key": api_key, "next": target, "_csrf_token": token},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/dashboard", target


async def test_unsafe_requests_need_the_csrf_token(browser: Client, api_key: str) -> None:
    # The login form itself.
    await browser.get("/dashboard/login")
    refused = await browser.post(
        "/dashboard/login", data={"api_key": api_key}, follow_redirects=False
    )
    assert refused.status_code == 403
    forged = await browser.post(
        "/dashboard/login",
        data={"api_key": api_key, "_csrf_token": "0" * 128},
        follow_redirects=False,
    )
    assert forged.status_code == 403

    await log_in(browser, api_key)
    template = {"name": "n", "subject": "Hi {{ name }}", "text": "Hello {{ name }}"}
    # The scripts' calls through /dashboard/api.
    assert (await browser.post("/dashboard/api/templates", json=template)).status_code == 403
    token = await csrf_token(browser, "/dashboard/")
    created = await browser.post(
        "/dashboard/api/templates", json=template, headers={"x-csrftoken": token}
    )
    assert created.status_code == 201, created.text
    # A button's form.
    assert (
        await browser.post("/dashboard/dead-letters/x/discard", follow_redirects=False)
    ).status_code == 403
    assert (await browser.post("/dashboard/logout", follow_redirects=False)).status_code == 403


async def test_the_session_does_not_open_the_api(browser: Client, api_key: str) -> None:
    await log_in(browser, api_key)
    assert (await browser.get("/dashboard/api/transactions")).status_code == 200
    # The API itself still wants a Bearer key: the cookie is for /dashboard only.
    assert (await browser.get("/api/v1/transactions")).status_code == 401
    assert (await browser.get("/api/v1/transactions", headers=bearer(api_key))).status_code == 200


async def test_a_revoked_key_ends_the_session(browser: Client, deps: GatewayDeps) -> None:
    key, stored = await create_key(deps.store, tenant=TENANT)
    await log_in(browser, key)
    assert (await browser.get("/dashboard/")).status_code == 200
    await revoke_key(deps.store, stored.key_id)
    page = await browser.get("/dashboard/", follow_redirects=False)
    assert page.status_code == 303
    assert (await browser.get("/dashboard/api/transactions")).status_code == 401


async def test_transaction_pages_show_progress_timeline_outcomes_and_errors(
    browser: Client, api_key: str, deps: GatewayDeps
) -> None:
    sent = transaction(TxStatus.SENT)
    done = transaction(TxStatus.COMPLETED)
    theirs = transaction(TxStatus.COMPLETED, tenant="globex")
    for tx in (sent, done, theirs):
        await deps.store.transactions.insert_one(to_document(tx))
    error = RowError(
        code="INVALID_EMAIL",
        message="Row 3: 'x' is not a valid email address",
        row=3,
        field="email",
        value="x",
        recovery_action="fix it",
    )
    await deps.store.row_errors.insert_one(
        to_document(
            StoredRowError(
                id=f"{done.id}:3", transaction_id=done.id, error=error, fields=["x", "Ann"]
            )
        )
    )
    await log_in(browser, api_key)

    listing = (await browser.get("/dashboard/")).text
    assert done.id in listing
    assert sent.id in listing
    assert theirs.id not in listing
    # 9 of 10 messages final (delivered and bounced), one still SENT.
    assert re.search(rf'data-tx="{sent.id}" data-status="SENT"', listing)
    assert '<progress max="100" value="90.0">' in listing

    page = await browser.get(f"/dashboard/transactions/{done.id}")
    assert page.status_code == 200
    html = page.text
    assert 'data-status="COMPLETED"' in html
    assert 'data-final="true"' in html
    # The timeline: READY_TO_SEND lasted 7 s, SENT 20 s.
    assert "7.0 s" in html
    assert "20.0 s" in html
    assert 'data-outcome="delivered" data-count="7"' in html
    assert 'data-outcome="bounced" data-count="2"' in html
    assert "INVALID_EMAIL" in html
    assert f"/dashboard/api/transactions/{done.id}/errors.csv" in html
    csv = await browser.get(f"/dashboard/api/transactions/{done.id}/errors.csv")
    assert csv.status_code == 200
    assert csv.text.splitlines()[1].startswith("x,Ann,INVALID_EMAIL")

    live = await browser.get(f"/dashboard/transactions/{sent.id}/live")
    assert 'data-live="/dashboard/transactions/' in live.text
    assert "data-final" not in live.text

    missing = await browser.get(f"/dashboard/transactions/{theirs.id}")
    assert missing.status_code == 404


async def test_dead_letters_and_alerts_pages_follow_the_api(
    browser: Client, api_key: str, deps: GatewayDeps
) -> None:
    await log_in(browser, api_key)
    # Not an admin key: the API refuses, the page says why.
    page = await browser.get("/dashboard/dead-letters")
    assert page.status_code == 200
    assert "No dead letters to show" in page.text
    admin = await issue_key(deps.store, TENANT, admin=True)
    await log_in(browser, admin)
    page = await browser.get("/dashboard/dead-letters")
    assert page.status_code == 200
    assert "No dead letters to show" not in page.text
    assert (await browser.get("/dashboard/alerts")).status_code == 200
    token = await csrf_token(browser, "/dashboard/dead-letters")
    answer = await browser.post(
        "/dashboard/dead-letters/nope/retry", data={"_csrf_token": token}, follow_redirects=False
    )
    assert answer.status_code == 303
    notice = answer.headers["location"]
    assert notice.startswith("/dashboard/dead-letters?notice=nope")
    assert "DEAD_LETTER_NOT_FOUND" in notice


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_api_docs_load_nothing_from_elsewhere(browser: Client, path: str) -> None:
    page = await browser.get(path)
    assert page.status_code == 200
    assert "cdn." not in page.text
    assert "googleapis" not in page.text
    urls = assets_of(page.text)
    assert urls
    for url in urls:
        assert own(url), url
        assert (await browser.get(url)).status_code == 200, url


async def test_dashboard_pages_load_nothing_from_elsewhere(browser: Client, api_key: str) -> None:
    await log_in(browser, api_key)
    for path in ("/dashboard/login", "/dashboard/", "/dashboard/submit", "/dashboard/alerts"):
        page = await browser.get(path)
        assert page.status_code == 200, path
        for url in assets_of(page.text):
            if url.startswith("data:"):
                continue
            assert own(url), url
            assert (await browser.get(url)).status_code == 200, url


async def test_a_dead_letter_is_discarded_from_its_button(
    browser: Client, deps: GatewayDeps
) -> None:
    letter = DeadLetter(
        id=uuid.uuid4().hex,
        service="ingest",
        subject="email.tx.accepted",
        stream_seq=7,
        deliveries=5,
        payload='{"transaction_id": "t"}',
        error="the file could not be read",
        at=datetime(2030, 1, 1, tzinfo=UTC),
        tenant=TENANT,  # its admins review it
    )
    await deps.store.dead_letters.insert_one(to_document(letter))
    await log_in(browser, await issue_key(deps.store, TENANT, admin=True))
    page = await browser.get("/dashboard/dead-letters")
    assert f'data-letter="{letter.id}"' in page.text
    assert f"/dashboard/dead-letters/{letter.id}/discard" in page.text
    assert "the file could not be read" in page.text

    token = await csrf_token(browser, "/dashboard/dead-letters")
    answer = await browser.post(
        f"/dashboard/dead-letters/{letter.id}/discard",
        data={"_csrf_token": token},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert "discarded" in answer.headers["location"]
    stored = await deps.store.dead_letters.find_one({"_id": letter.id})
    assert stored is not None
    assert stored["state"] == "discarded"
    page = await browser.get("/dashboard/dead-letters")
    assert f"/dashboard/dead-letters/{letter.id}/discard" not in page.text
