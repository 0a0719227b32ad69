"""Email templates: placeholder extraction and sandboxed rendering (ARCHITECTURE §8).

A template has three parts: a subject, an HTML body and a text body (at least one body is
expected; this module does not insist). Each part is Jinja2 run in a sandbox with
``StrictUndefined``: a placeholder without a value is an error, never an empty string.
Only the HTML part is autoescaped; the subject is a header, so its line breaks are
collapsed to single spaces (no header injection).

Parse once, render many: ``compile_template`` does the parsing and compiling, and the
sender calls ``CompiledTemplate.render`` for each recipient.

Every jinja2 error becomes ``shared.errors.TemplateError`` here, so nothing above this
module sees a jinja2 exception.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import jinja2
import msgspec
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from shared.errors import TemplateError

if TYPE_CHECKING:
    from jinja2 import nodes

__all__ = ["CompiledTemplate", "RenderedEmail", "compile_template", "placeholders"]

# What a template expression can raise besides jinja2's own errors (`{{ a / 0 }}`,
# `{{ a + 1 }}` on a string, `{{ range(10**9) }}` in the sandbox...): all of them are the
# template's fault, so all of them are a TemplateError.
_EXPRESSION_ERRORS: Final = (
    jinja2.TemplateError,
    ArithmeticError,
    LookupError,
    TypeError,
    ValueError,
)


def _environment(*, autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(
        undefined=jinja2.StrictUndefined,
        autoescape=autoescape,
        # A text body ending in a newline keeps it: what the client wrote is what is sent.
        keep_trailing_newline=True,
        auto_reload=False,
    )


# Built once: an environment holds no per-render state.
_PLAIN: Final = _environment(autoescape=False)
_HTML: Final = _environment(autoescape=True)


class RenderedEmail(msgspec.Struct, frozen=True, kw_only=True):
    subject: str
    html: str | None = None
    text: str | None = None


class _Part:
    __slots__ = ("name", "template", "variables")

    def __init__(self, name: str, source: str, environment: SandboxedEnvironment) -> None:
        self.name = name
        tree = _parse(name, source, environment)
        self.variables: frozenset[str] = frozenset(meta.find_undeclared_variables(tree))
        try:
            self.template = environment.from_string(tree)
        except jinja2.TemplateError as e:
            raise TemplateError(f"{name} part: {_describe(e)}") from e

    def render(self, data: Mapping[str, str]) -> str:
        try:
            return self.template.render(data)
        except jinja2.UndefinedError as e:
            raise TemplateError(f"{self.name} part: {e.message}") from e
        except _EXPRESSION_ERRORS as e:
            raise TemplateError(f"{self.name} part: {_describe(e)}") from e


class CompiledTemplate:
    """A parsed and compiled template; ``render`` is safe to call many times."""

    __slots__ = ("_html", "_subject", "_text", "placeholders")

    def __init__(self, subject: str, html: str | None, text: str | None) -> None:
        self._subject = _Part("subject", subject, _PLAIN)
        self._html = None if html is None else _Part("html", html, _HTML)
        self._text = None if text is None else _Part("text", text, _PLAIN)
        parts = [p for p in (self._subject, self._html, self._text) if p is not None]
        self.placeholders: list[str] = sorted(frozenset().union(*(p.variables for p in parts)))

    def render(self, data: Mapping[str, str]) -> RenderedEmail:
        """Render every part with ``data``; a placeholder missing from it is a TemplateError."""
        return RenderedEmail(
            subject=_one_line(self._subject.render(data)),
            html=None if self._html is None else self._html.render(data),
            text=None if self._text is None else self._text.render(data),
        )


def compile_template(subject: str, html: str | None, text: str | None) -> CompiledTemplate:
    return CompiledTemplate(subject, html, text)


def placeholders(subject: str, html: str | None, text: str | None) -> list[str]:
    """Sorted unique names of the variables the template uses and does not define itself.

    ``{{ user.name }}`` uses ``user``; loop variables and ``{% set %}`` names are not counted.
    """
    names: set[str] = set()
    for name, source, environment in (
        ("subject", subject, _PLAIN),
        ("html", html, _HTML),
        ("text", text, _PLAIN),
    ):
        if source is not None:
            names |= meta.find_undeclared_variables(_parse(name, source, environment))
    return sorted(names)


def _parse(name: str, source: str, environment: SandboxedEnvironment) -> nodes.Template:
    try:
        return environment.parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{name} part, line {e.lineno}: {e.message}") from e


def _describe(e: BaseException) -> str:
    if isinstance(e, jinja2.TemplateSyntaxError):
        return f"line {e.lineno}: {e.message}"
    if isinstance(e, jinja2.TemplateError):
        return e.message or type(e).__name__
    return f"{type(e).__name__}: {e}"


def _one_line(subject: str) -> str:
    """Collapse every run of whitespace, line breaks included, to one space."""
    return " ".join(subject.split())
