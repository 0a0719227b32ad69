"""Email templates: placeholder extraction and sandboxed rendering (ARCHITECTURE §8).

A template has three parts: a subject, an HTML body and a text body (at least one body is
expected; this module does not insist). Each part is Jinja2 run in a sandbox with
``StrictUndefined``: a placeholder without a value is an error, never an empty string.
Only the HTML part is autoescaped; the subject is a header, so its line breaks are
collapsed to single spaces (no header injection).

Parse once, render many: ``compile_template`` does the parsing and compiling, and the
sender calls ``CompiledTemplate.render`` for each recipient.

Every jinja2 error becomes ``shared.errors.TemplateError`` here, so nothing above this
module sees a jinja2 exception. A template is client input: it runs in
``shared.template_sandbox``, which bounds what a render may spend, and a template nested
too deeply for the parser or for Python's compiler is a TemplateError too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

import jinja2
import msgspec
from jinja2 import meta

from shared.errors import TemplateError
from shared.template_sandbox import BoundedEnvironment, budget

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
# What a template too deep or too big for Python raises: from Jinja's recursive parser and
# code generator, from compiling the generated code ("too many statically nested blocks"),
# and at render from a macro calling itself. The template's fault too, so a TemplateError.
_RESOURCE_ERRORS: Final = (RecursionError, MemoryError, SyntaxError)
_TEMPLATE_FAULTS: Final = (*_EXPRESSION_ERRORS, *_RESOURCE_ERRORS)
# The longest part a render may return. SES refuses a message over 10 MB, encoding
# included; no real email comes near.
_MAX_PART_CHARS: Final = 5_000_000


def _environment(*, autoescape: bool) -> BoundedEnvironment:
    return BoundedEnvironment(
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

    def __init__(self, name: str, source: str, environment: BoundedEnvironment) -> None:
        self.name = name
        tree = _parse(name, source, environment)
        self.variables = _variables(name, tree)
        try:
            self.template = environment.from_string(environment.metered(tree))
        except _TEMPLATE_FAULTS as e:
            raise TemplateError(f"{name} part: {_describe(e)}") from e

    def render(self, data: Mapping[str, str]) -> str:
        try:
            text = self.template.render(data)
        except jinja2.UndefinedError as e:
            raise TemplateError(f"{self.name} part: {e.message}") from e
        except _TEMPLATE_FAULTS as e:
            raise TemplateError(f"{self.name} part: {_describe(e)}") from e
        if len(text) > _MAX_PART_CHARS:
            raise TemplateError(f"{self.name} part: longer than {_MAX_PART_CHARS} characters")
        return text


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
        """Render every part with ``data``; a placeholder missing from it is a TemplateError,
        and so is a render over its budget (``shared.template_sandbox``), one for all parts."""
        with budget():
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
            names |= _variables(name, _parse(name, source, environment))
    return sorted(names)


def _parse(name: str, source: str, environment: BoundedEnvironment) -> nodes.Template:
    try:
        return environment.parse(source)
    except jinja2.TemplateSyntaxError as e:
        raise TemplateError(f"{name} part, line {e.lineno}: {e.message}") from e
    except _TEMPLATE_FAULTS as e:
        raise TemplateError(f"{name} part: {_describe(e)}") from e


def _variables(name: str, tree: nodes.Template) -> frozenset[str]:
    try:
        return frozenset(meta.find_undeclared_variables(tree))
    except _TEMPLATE_FAULTS as e:  # a tree too deep for the code generator
        raise TemplateError(f"{name} part: {_describe(e)}") from e


def _describe(e: BaseException) -> str:
    if isinstance(e, jinja2.TemplateSyntaxError):
        return f"line {e.lineno}: {e.message}"
    if isinstance(e, jinja2.TemplateError):
        return e.message or type(e).__name__
    if isinstance(e, RecursionError):
        return "nested too deeply"
    if isinstance(e, SyntaxError):
        return f"too complex to compile: {e.msg}"
    if isinstance(e, MemoryError):
        return "needs too much memory"
    return f"{type(e).__name__}: {e}"


def _one_line(subject: str) -> str:
    """Collapse every run of whitespace, line breaks included, to one space."""
    return " ".join(subject.split())
