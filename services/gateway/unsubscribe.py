"""``/u/{token}``: the unsubscribe link of marketing mail (RFC 8058 one-click).

No API key: the signed token is the credential (``shared.unsubscribe``).

- ``GET`` only shows a page with a button; it changes nothing. Mail scanners and link
  previews fetch every link of a mail, and RFC 8058 §3.2 says a GET must not unsubscribe.
- ``POST`` puts the address on the tenant's suppression list (reason ``unsubscribed``) and
  answers 200 at once, never a redirect (RFC 8058 §3.2). It is what a mail client's
  "Unsubscribe" button sends (the form body ``List-Unsubscribe=One-Click``) and what the
  page's button sends. The body is not required: the token alone decides. Repeating it
  changes nothing, and an address already suppressed (by a bounce, say) keeps its reason.

A token that is malformed or not signed with ``unsubscribe_secret`` answers 404
``INVALID_UNSUBSCRIBE_LINK``. The pages load nothing from elsewhere, are not cached, and send
no ``Referer`` (the URL holds the token).
"""

from __future__ import annotations

from html import escape
from typing import Final

from litestar import Controller, MediaType, Response, get, post
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK

from services.gateway.deps import Deps, Settings
from services.gateway.errors import ApiError, Code, error_responses
from services.gateway.records import insert_suppression, utc_now
from shared.documents import Suppression, suppression_id
from shared.log import get_logger
from shared.settings import require_unsubscribe_secret
from shared.unsubscribe import (
    ONE_CLICK,
    UNSUBSCRIBE_PATH,
    InvalidUnsubscribeToken,
    verify_token,
)

__all__ = ["REASON", "UnsubscribeController"]

log = get_logger("gateway.unsubscribe")

REASON: Final = "unsubscribed"

_HEADERS: Final = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
    ),
}
_FIELD, _VALUE = ONE_CLICK.split("=")

_PAGE: Final = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto;
       padding: 0 1rem; line-height: 1.5; color: #222; }}
button {{ font: inherit; padding: .5rem 1.25rem; cursor: pointer; }}
</style>
</head>
<body>
<h1>{title}</h1>
{body}
</body>
</html>
"""


def _page(title: str, body: str) -> Response[str]:
    return Response(
        _PAGE.format(title=escape(title), body=body),
        status_code=HTTP_200_OK,
        media_type=MediaType.HTML,
        headers=_HEADERS,
    )


def _verified(settings: Settings, token: str) -> tuple[str, str]:
    try:
        return verify_token(require_unsubscribe_secret(settings), token)
    except InvalidUnsubscribeToken as e:
        raise ApiError(Code.INVALID_UNSUBSCRIBE_LINK, "this unsubscribe link is not valid") from e


class UnsubscribeController(Controller):
    path = UNSUBSCRIBE_PATH
    tags = ["unsubscribe"]  # noqa: RUF012 -- Litestar's declared attribute type is a list

    @get(
        "/{token:str}",
        summary="Confirm an unsubscription (changes nothing)",
        description=(
            "The page behind a marketing mail's unsubscribe link: names the address and "
            "offers a button that POSTs to the same URL. A GET never unsubscribes: mail "
            "scanners follow links (RFC 8058)."
        ),
        media_type=MediaType.HTML,
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.INVALID_UNSUBSCRIBE_LINK, authenticated=False
        ),
    )
    async def confirm(self, token: FromPath[str], settings: Settings) -> Response[str]:
        _, email = _verified(settings, token)
        return _page(
            "Unsubscribe",
            f"<p>Stop sending these emails to <strong>{escape(email)}</strong>?</p>\n"
            '<form method="post">\n'
            f'<input type="hidden" name="{_FIELD}" value="{_VALUE}">\n'
            "<button type=submit>Unsubscribe</button>\n"
            "</form>",
        )

    @post(
        "/{token:str}",
        status_code=HTTP_200_OK,
        summary="Unsubscribe (RFC 8058 one-click)",
        description=(
            "Puts the link's address on the tenant's suppression list; idempotent. Mail "
            f"clients send the form body `{ONE_CLICK}`; no body is required."
        ),
        media_type=MediaType.HTML,
        responses=error_responses(
            Code.VALIDATION_ERROR, Code.INVALID_UNSUBSCRIBE_LINK, authenticated=False
        ),
    )
    async def unsubscribe(
        self, token: FromPath[str], settings: Settings, deps: Deps
    ) -> Response[str]:
        tenant, email = _verified(settings, token)
        suppression = Suppression(
            id=suppression_id(tenant, email),
            tenant=tenant,
            email=email,
            reason=REASON,
            created_at=utc_now(),
        )
        new = await insert_suppression(deps.store, suppression)
        # No address in the log: the line needs only to say that it happened.
        log.info("unsubscribed", tenant=tenant, already_suppressed=not new)
        return _page(
            "Unsubscribed",
            f"<p><strong>{escape(email)}</strong> will get no more of these emails.</p>",
        )
