"""The dashboard's pages: server-rendered HTML (Jinja2), no front-end build, no CDN.

- ``/dashboard``: the tenant's transactions, newest first, each with its status and a
  progress bar; ``/dashboard/transactions/{id}``: one transaction's progress, timeline (time
  in each status), counts by outcome as an SVG chart, first row errors (and the CSV of all
  of them), callbacks. Both read the store as the API does (``records``, ``own_transaction``,
  ``compute_progress``): one computation of each number.
- The live part of each is also served alone (``.../rows``, ``.../live``); ``dashboard.js``
  fetches it again every second and swaps it in, until it says it is final
  (``data-final``). Polling a fragment keeps the numbers computed here, once.
- ``/dashboard/dead-letters`` and ``/dashboard/alerts`` render what the API's own endpoints
  answer (``call_api``): those endpoints decide who may see and do what (an admin key for
  dead letters); the buttons post here and are carried out by the API.
- ``/dashboard/submit``: a template and a CSV, posted by ``dashboard.js`` through
  ``/dashboard/api`` to the API's submission endpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import quote, urlencode

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, URLEncodedBody
from litestar.response import Redirect, Template
from litestar.status_codes import (
    HTTP_303_SEE_OTHER,
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
)

from services.gateway.callbacks import callback_view
from services.gateway.dashboard.chart import outcome_bars
from services.gateway.dashboard.forward import ApiAnswer, call_api
from services.gateway.dashboard.session import (
    DASHBOARD_PATH,
    LoginRequired,
    Viewer,
    log_in,
    log_out,
    viewer_from_scope,
)
from services.gateway.dashboard.timeline import timeline
from services.gateway.deps import Deps
from services.gateway.errors import Code
from services.gateway.records import find_transaction, page_row_errors, page_transactions
from services.gateway.views import row_error_item
from shared.callback_outbox import load_deliveries
from shared.progress import compute_progress
from shared.status import FINAL_TX_STATUSES

__all__ = ["DashboardController", "provide_viewer", "to_login"]

# How many transactions the list shows, and row errors the transaction page.
_LIST_SIZE: Final = 50
_ERRORS_SHOWN: Final = 50
# The header dashboard.js sends when it fetches a fragment: no redirect, a 401.
_FRAGMENT_HEADER: Final = "x-dashboard-fragment"
_DEAD_LETTER_ACTIONS: Final = frozenset({"retry", "discard"})
# What the API answers for a path it has no route for.
_NO_ROUTE: Final = frozenset({Code.NOT_FOUND, Code.METHOD_NOT_ALLOWED})


# How handlers ask for the logged-in key.
CurrentViewer = NamedDependency[Viewer]


class LoginForm(msgspec.Struct, frozen=True, kw_only=True):
    api_key: str = ""
    # Where to go once logged in: a dashboard path.
    next: str = ""


async def provide_viewer(request: Request[Any, Any, Any]) -> Viewer:
    viewer = await viewer_from_scope(request.scope)
    if viewer is None:
        raise LoginRequired
    return viewer


def _safe_next(path: str) -> str:
    """Only a path of ours: never another host (``//evil``, ``/\\evil``)."""
    if path.startswith(DASHBOARD_PATH) and not path.startswith(("//", "/\\")) and "\\" not in path:
        return path
    return DASHBOARD_PATH


def to_login(request: Request[Any, Any, Any], _: LoginRequired) -> Redirect | Template:
    """A page asked without a valid session: to the login form, and back after it. A
    fragment's fetch gets 401 instead (the script then reloads the page)."""
    if request.headers.get(_FRAGMENT_HEADER):
        return Template(template_name="expired.html", status_code=HTTP_401_UNAUTHORIZED)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return Redirect(
        f"{DASHBOARD_PATH}/login?{urlencode({'next': target})}", status_code=HTTP_303_SEE_OTHER
    )


def _page(name: str, viewer: Viewer | None, **context: Any) -> Template:
    return Template(template_name=name, context={"viewer": viewer, **context})


def _now() -> datetime:
    return datetime.now(UTC)


def _items(answer: ApiAnswer) -> list[dict[str, Any]]:
    body = answer.body
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return [item for item in body["items"] if isinstance(item, dict)]
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    return []


def _problem(answer: ApiAnswer) -> str | None:
    """What went wrong, if anything: the API's error message, or that the endpoint is not
    there (a gateway older than this dashboard)."""
    if answer.status_code < 300:
        return None
    body = answer.body
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {answer.status_code}"
    if error.get("code") in _NO_ROUTE:
        return "this gateway does not have that endpoint"
    return f"{error.get('code')}: {error.get('message')}"


class DashboardController(Controller):
    path = "/"

    @get("/login", name="dashboard-login")
    async def login_page(
        self, request: Request[Any, Any, Any], next: FromQuery[str] = ""
    ) -> Template:
        viewer = await viewer_from_scope(request.scope)
        return _page("login.html", viewer, next=_safe_next(next), problem=None)

    @post("/login", status_code=HTTP_303_SEE_OTHER)
    async def login(
        self,
        request: Request[Any, Any, Any],
        deps: Deps,
        data: URLEncodedBody[LoginForm],
    ) -> Redirect | Template:
        viewer = await log_in(request, deps, data.api_key)
        if viewer is None:
            return Template(
                template_name="login.html",
                context={
                    "viewer": None,
                    "next": _safe_next(data.next),
                    "problem": "That key is unknown or revoked.",
                },
                status_code=HTTP_401_UNAUTHORIZED,
            )
        return Redirect(_safe_next(data.next), status_code=HTTP_303_SEE_OTHER)

    @post("/logout", status_code=HTTP_303_SEE_OTHER)
    async def logout(self, request: Request[Any, Any, Any]) -> Redirect:
        log_out(request)
        return Redirect(f"{DASHBOARD_PATH}/login", status_code=HTTP_303_SEE_OTHER)

    @get("/")
    async def transactions(
        self,
        request: Request[Any, Any, Any],
        viewer: CurrentViewer,
        deps: Deps,
        new: FromQuery[str] = "",
    ) -> Template:
        alerts = await call_api(request.scope, viewer.key, "GET", "/alerts")
        return _page(
            "transactions.html",
            viewer,
            rows=await self._rows(viewer, deps),
            new=new,
            alerts=_items(alerts),
        )

    @get("/transactions/rows")
    async def transaction_rows(
        self, viewer: CurrentViewer, deps: Deps, new: FromQuery[str] = ""
    ) -> Template:
        return _page("_rows.html", viewer, rows=await self._rows(viewer, deps), new=new)

    async def _rows(self, viewer: Viewer, deps: Deps) -> list[dict[str, Any]]:
        found = await page_transactions(
            deps.store, viewer.tenant, status=None, after=None, limit=_LIST_SIZE
        )
        now = _now()
        return [{"tx": tx, "progress": compute_progress(tx, now)} for tx in found]

    @get("/transactions/{transaction_id:str}")
    async def transaction(
        self, transaction_id: FromPath[str], viewer: CurrentViewer, deps: Deps
    ) -> Template:
        context = await self._transaction(transaction_id, viewer, deps)
        if context is None:
            return Template(
                template_name="not_found.html",
                context={"viewer": viewer, "what": f"transaction {transaction_id}"},
                status_code=HTTP_404_NOT_FOUND,
            )
        return _page("transaction.html", viewer, **context)

    @get("/transactions/{transaction_id:str}/live")
    async def transaction_live(
        self, transaction_id: FromPath[str], viewer: CurrentViewer, deps: Deps
    ) -> Template:
        context = await self._transaction(transaction_id, viewer, deps)
        if context is None:
            return Template(
                template_name="not_found.html",
                context={"viewer": viewer, "what": f"transaction {transaction_id}"},
                status_code=HTTP_404_NOT_FOUND,
            )
        return _page("_transaction_live.html", viewer, **context)

    async def _transaction(
        self, transaction_id: str, viewer: Viewer, deps: Deps
    ) -> dict[str, Any] | None:
        tx = await find_transaction(deps.store, viewer.tenant, transaction_id)
        if tx is None:
            return None
        now = _now()
        final = tx.status in FINAL_TX_STATUSES
        errors = await page_row_errors(deps.store, tx.id, after=None, limit=_ERRORS_SHOWN + 1)
        deliveries = await load_deliveries(deps.store, tx.id)
        return {
            "tx": tx,
            "final": final,
            "progress": compute_progress(tx, now),
            "steps": timeline(tx.status_history, now, final=final),
            "bars": outcome_bars(tx.counters),
            "errors": [row_error_item(stored.error) for stored in errors[:_ERRORS_SHOWN]],
            "more_errors": len(errors) > _ERRORS_SHOWN,
            "errors_csv": f"{DASHBOARD_PATH}/api/transactions/{quote(tx.id)}/errors.csv",
            "callbacks": [callback_view(delivery) for delivery in deliveries],
        }

    @get("/submit")
    async def submit(self, viewer: CurrentViewer, template_id: FromQuery[str] = "") -> Template:
        return _page("submit.html", viewer, template_id=template_id)

    @get("/dead-letters")
    async def dead_letters(
        self,
        request: Request[Any, Any, Any],
        viewer: CurrentViewer,
        kind: FromQuery[str] = "",
        notice: FromQuery[str] = "",
    ) -> Template:
        query = urlencode({"kind": kind}).encode() if kind else b""
        answer = await call_api(request.scope, viewer.key, "GET", "/admin/dead-letters", query)
        return _page(
            "dead_letters.html",
            viewer,
            items=_items(answer),
            problem=_problem(answer),
            kind=kind,
            notice=notice,
        )

    @post("/dead-letters/{dead_letter_id:str}/{action:str}", status_code=HTTP_303_SEE_OTHER)
    async def dead_letter_action(
        self,
        request: Request[Any, Any, Any],
        dead_letter_id: FromPath[str],
        action: FromPath[str],
        viewer: CurrentViewer,
    ) -> Redirect:
        if action not in _DEAD_LETTER_ACTIONS:
            notice = f"unknown action {action!r}"
        else:
            path = f"/admin/dead-letters/{quote(dead_letter_id, safe='')}/{action}"
            answer = await call_api(request.scope, viewer.key, "POST", path)
            problem = _problem(answer)
            done = "retried" if action == "retry" else "discarded"
            notice = f"{dead_letter_id}: {problem or done}"
        return Redirect(
            f"{DASHBOARD_PATH}/dead-letters?{urlencode({'notice': notice})}",
            status_code=HTTP_303_SEE_OTHER,
        )

    @get("/alerts")
    async def alerts(self, request: Request[Any, Any, Any], viewer: CurrentViewer) -> Template:
        answer = await call_api(request.scope, viewer.key, "GET", "/alerts")
        return _page("alerts.html", viewer, items=_items(answer), problem=_problem(answer))
