"""A template the sender could never compile is refused at ``POST /api/v1/templates``.

The gateway compiles a new template, not only parses it: a template nested too deeply for
Jinja's parser or for Python's compiler is answered 400 ``TEMPLATE_SYNTAX_ERROR`` and is
not stored, instead of being stored and failing every batch that uses it at send time.
(What only a render can tell, ``{{ ''.__class__ }}`` or ``{{ 'a' * 10**9 }}``, is refused
per message by the sender: tests/unit/test_hostile_templates.py, tests/services.)
"""

from __future__ import annotations

from typing import Final

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from services.gateway.deps import GatewayDeps

Client = AsyncTestClient[Litestar]


def _nested(opening: str, inner: str, closing: str, depth: int) -> str:
    return opening * depth + inner + closing * depth


# Each is refused by a different stage, so each proves that stage's errors are caught.
HOSTILE: Final = [
    # Jinja's parser recurses once per parenthesis: RecursionError.
    pytest.param("{{ " + _nested("(", "1", ")", 5000) + " }}", id="deep-parens-parse"),
    # Parse, but the Python generated from them is nested deeper than Python compiles
    # ("too many statically nested blocks", "too many levels of indentation"): only
    # compiling finds it.
    pytest.param(_nested("{% for i in [1] %}", "x", "{% endfor %}", 25), id="fors-compile"),
    pytest.param(_nested("{% if name %}", "x", "{% endif %}", 100), id="ifs-compile"),
    # Recursion in the parser's handling of a filter chain.
    pytest.param("{{ name" + "|upper" * 20000 + " }}", id="filter-chain-parse"),
]


@pytest.mark.parametrize("text", HOSTILE)
async def test_a_template_too_deep_to_compile_is_refused_and_not_stored(
    client: Client, deps: GatewayDeps, text: str
) -> None:
    response = await client.post(
        "/api/v1/templates", json={"name": "hostile", "subject": "Hi", "text": text}
    )

    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "TEMPLATE_SYNTAX_ERROR"
    assert error["message"].startswith("text part: "), error
    assert await deps.store.templates.count_documents({}) == 0


async def test_a_modest_template_is_stored(client: Client, deps: GatewayDeps) -> None:
    # The same shapes, at depths a real template reaches, are fine: the refusals above are
    # about depth, and the store check above would see a stored template.
    text = _nested("{% if 1 %}", "{{ (((name))) }}", "{% endif %}", 10) + "{{ name|upper }}"
    response = await client.post(
        "/api/v1/templates", json={"name": "modest", "subject": "Hi", "text": text}
    )

    assert response.status_code == 201, response.text
    assert response.json()["placeholders"] == ["name"]
    assert await deps.store.templates.count_documents({}) == 1
