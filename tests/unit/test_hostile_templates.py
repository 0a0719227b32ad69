"""Hostile templates: every escape attempt is refused, every resource hog refused or bounded.

A template is client input (ARCHITECTURE §8). Whatever it says, ``shared.template`` must
either refuse it with a ``TemplateError`` (at ``compile_template`` or at ``render``) or render
it within bounded time and size; it must never run Python the client chose.

Sandbox escapes are tried in this process: the sandbox refuses them at once. Templates that
eat CPU or memory are tried in a child process with a memory cap (``_MEMORY_LIMIT``) and a
wall-clock limit (``_TIME_LIMIT``), so a template that is not bounded fails its test instead
of hanging or exhausting the test run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import pytest

from shared.errors import TemplateError
from shared.template import compile_template

_ROOT: Final = Path(__file__).resolve().parents[2]
_MEMORY_LIMIT: Final = 1 << 30  # address space of the child process, bytes
_TIME_LIMIT: Final = 5.0  # seconds for the child, interpreter start-up included
# The most a rendered part may hold: far more than any real email, far less than a hog.
_MAX_OUTPUT_CHARS: Final = 10_000_000

_DATA: Final = {"name": "Ada"}


def _render_text(source: str) -> str | None:
    return compile_template("s", None, source).render(_DATA).text


# --- sandbox escapes: refused, in-process ---------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ name.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ joiner.__init__.__globals__ }}",
        "{{ namespace.__init__.__globals__ }}",
        "{{ lipsum.__globals__ }}",
        "{{ self._TemplateReference__context }}",
        "{{ self.__dict__ }}",
        "{{ ''|attr('__class__') }}",
        "{{ name|attr('__class__')|attr('__mro__') }}",
        "{{ cycler|attr('__init__')|attr('__globals__') }}",
        "{{ (name|attr('__class__')).__base__.__subclasses__() }}",
        "{{ '{0.__class__.__mro__}'.format(name) }}",
        "{{ '%s'|format(name.__class__) }}",
        "{% set ns = namespace() %}{{ ns.__class__ }}",
        "{{ name.__len__() }}",
        "{{ range.__self__ }}",
    ],
)
def test_sandbox_escapes_are_refused(source: str) -> None:
    with pytest.raises(TemplateError, match=r"unsafe|undefined|no attribute"):
        _render_text(source)


def test_attr_walking_never_reaches_a_class() -> None:
    # Even where the sandbox answers with an undefined rather than "unsafe", nothing of
    # Python's object model comes out.
    for source in (
        "{{ (name|attr('__class__')|attr('__mro__'))[1] }}",
        "{{ name|attr('__globals__') }}",
    ):
        with pytest.raises(TemplateError):
            _render_text(source)


def test_str_format_cannot_reach_attributes_through_a_filter() -> None:
    # `str.format` fetched with |attr is the sandbox's own format (it sees the field
    # names); the result is the value, never its class.
    assert _render_text("{{ name|attr('format')('{0.__class__}') }}") == "Ada"


@pytest.mark.parametrize(
    "source",
    [
        "{% include 'other' %}",
        "{% extends 'other' %}",
        "{% import 'other' as o %}",
        "{% from 'other' import m %}",
        "{% include '/etc/passwd' %}",
    ],
)
def test_templates_cannot_load_other_templates(source: str) -> None:
    with pytest.raises(TemplateError):
        _render_text(source)


def test_a_huge_range_is_refused() -> None:
    with pytest.raises(TemplateError, match="Range too big"):
        _render_text("{% for i in range(10**9) %}x{% endfor %}")


# --- resource hogs: refused or bounded, in a child process ---------------------------------

_CHILD: Final = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from shared.errors import TemplateError
from shared.template import compile_template
try:
    rendered = compile_template("s", None, sys.argv[1]).render({"name": "Ada"})
except TemplateError as e:
    outcome = {"outcome": "refused", "detail": str(e)[:300]}
except BaseException as e:
    outcome = {"outcome": "crashed", "detail": f"{type(e).__name__}: {e}"[:300]}
else:
    outcome = {"outcome": "rendered", "chars": len(rendered.text or "")}
print(json.dumps(outcome))
"""


def _run_isolated(source: str) -> dict[str, object]:
    """What compiling and rendering ``source`` as a text part does, in a capped child."""
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _CHILD, source, str(_MEMORY_LIMIT)],
            capture_output=True,
            text=True,
            timeout=_TIME_LIMIT,
            cwd=_ROOT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"outcome": "timeout", "detail": f"still running after {_TIME_LIMIT} s"}
    lines = done.stdout.strip().splitlines()
    if not lines:
        return {"outcome": "died", "detail": f"exit {done.returncode}: {done.stderr[-300:]}"}
    outcome: dict[str, object] = json.loads(lines[-1])
    return outcome


def _deep(opening: str, inner: str, closing: str, depth: int) -> str:
    return opening * depth + inner + closing * depth


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ 'a' * 10**9 }}", id="constant-string-times-10**9"),
        pytest.param("{{ name * 10**9 }}", id="value-times-10**9"),
        pytest.param("{{ ([1] * 10**9)|length }}", id="list-times-10**9"),
        pytest.param("{{ 'a'|center(10**9) }}", id="center-10**9"),
        pytest.param("{{ name|replace('', 'x' * 10**7) }}", id="replace-amplification"),
        pytest.param(
            "{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}",
            id="loop-times-big-string",
        ),
        pytest.param(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            id="nested-max-ranges",
        ),
        pytest.param("{{ lipsum(10**6) }}", id="lipsum-10**6"),
        pytest.param("{{ 9 ** (9 ** 9) }}", id="huge-power"),
        pytest.param("{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", id="macro-recursion"),
        pytest.param(
            "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}",
            id="mutual-macro-recursion",
        ),
        pytest.param("{{ " + _deep("(", "1", ")", 5000) + " }}", id="deep-parens"),
        pytest.param("{{ " + "-" * 20000 + "1 }}", id="deep-unary"),
        pytest.param(_deep("{% if 1 %}", "x", "{% endif %}", 3000), id="deep-if"),
        pytest.param("{{ " + "[" * 5000 + "]" * 5000 + " }}", id="deep-lists"),
        pytest.param("{{ name" + "|upper" * 20000 + " }}", id="long-filter-chain"),
        # Growth without `*`: doubling by `~`, `+`, a namespace or a macro's argument.
        pytest.param(
            "{% set a = 'xxxxxxxxxx' %}" + "{% set a = a ~ a %}" * 40 + "{{ a|length }}",
            id="concat-doubling",
        ),
        pytest.param(
            "{% set a = 'xxxxxxxxxx' %}" + "{% set a = a + a %}" * 40 + "{{ a|length }}",
            id="plus-doubling",
        ),
        pytest.param(
            "{% set ns = namespace(x='ab') %}{% for i in range(60) %}"
            "{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
            id="namespace-doubling",
        ),
        pytest.param(
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% else %}{{ s|length }}"
            "{% endif %}{% endmacro %}{{ d('x', 60) }}",
            id="macro-argument-doubling",
        ),
        pytest.param(
            "{% set l = [1] %}{% for i in range(40) %}{{ l.extend(l) }}{% endfor %}",
            id="list-extend-doubling",
        ),
        # Output captured by a block is never written out, but is built all the same.
        pytest.param(
            "{% set x %}{% for i in range(100000) %}" + "y" * 20000 + "{% endfor %}{% endset %}"
            "{{ x|length }}",
            id="captured-loop",
        ),
        # Widths and counts that amplify, by operator, filter and method.
        pytest.param("{{ '%0999999999d' % 1 }}", id="printf-width"),
        pytest.param("{{ '%0999999999d'|format(1) }}", id="format-filter-width"),
        pytest.param("{{ '{:>999999999}'.format(1) }}", id="str-format-width"),
        pytest.param("{{ '{:>{w}}'.format(1, w=999999999) }}", id="str-format-nested-width"),
        pytest.param("{{ 'a'.ljust(999999999) }}", id="ljust-10**9"),
        pytest.param("{{ 'a\tb'.expandtabs(999999999) }}", id="expandtabs-10**9"),
        pytest.param("{{ ('x' * 1000000).join('y' * 1000000) }}", id="join-amplification"),
        pytest.param("{{ 'aaaa'.translate({97: 'x' * 5000000}) }}", id="translate-amplification"),
        pytest.param("{{ [1]|batch(999999999, 0)|list|length }}", id="batch-fill"),
        pytest.param("{{ [1]|slice(999999999)|list|length }}", id="slice-count"),
        pytest.param("{{ 'a b'|wordwrap(1, wrapstring='x' * 9999999) }}", id="wordwrap-string"),
        # Python work per item or per word of a large input, and work no count sees.
        pytest.param(
            "{% set s = 'x' * 4000000 %}{{ s|select('eq', 'y')|list|length }}",
            id="select-over-big-string",
        ),
        pytest.param(
            "{% set s = 'word ' * 900000 %}{{ s|urlize|length }}", id="urlize-over-big-text"
        ),
        pytest.param(
            # Comparing two equal strings of a million characters (built at render, so two
            # objects): ten per iteration.
            "{% set s = 'x' * 1000000 ~ name %}{% set t = 'x' * 1000000 ~ name %}"
            "{% for i in range(99000) %}" + "{% if s == t %}{% endif %}" * 10 + "{% endfor %}",
            id="loop-of-uncounted-work",
        ),
    ],
)
def test_resource_hogs_are_refused_or_bounded(source: str) -> None:
    outcome = _run_isolated(source)
    assert outcome["outcome"] in {"refused", "rendered"}, outcome
    if outcome["outcome"] == "rendered":
        chars = outcome["chars"]
        assert isinstance(chars, int)
        assert chars <= _MAX_OUTPUT_CHARS, outcome


@pytest.mark.parametrize(
    "source",
    [
        pytest.param("{{ " + _deep("(", "name", ")", 100) + " }}", id="100-parens"),
        pytest.param(_deep("{% if 1 %}", "x", "{% endif %}", 100), id="100-ifs"),
        pytest.param(_deep("{% for i in [1] %}", "x", "{% endfor %}", 25), id="25-fors"),
        pytest.param("{{ name" + "|upper" * 1000 + " }}", id="1000-filters"),
        pytest.param("{{ " + "-" * 1000 + "1 }}", id="1000-minus-signs"),
    ],
)
def test_nesting_of_modest_depth_renders_or_is_a_template_error(source: str) -> None:
    # Depths a hand-written or generated template can reach: never a Python error
    # (RecursionError, SyntaxError, IndentationError from compiling the generated code).
    with contextlib.suppress(TemplateError):
        _render_text(source)


def test_the_child_harness_tells_refused_from_rendered() -> None:
    # The harness itself: a plain template renders, a broken one is refused.
    assert _run_isolated("{{ name }}") == {"outcome": "rendered", "chars": 3}
    assert _run_isolated("{{ 1 / 0 }}")["outcome"] == "refused"


# --- values whose text outgrows them: refused before printing, in a child process --------

# A list of 31 lists in memory whose text holds 2^30 items: each `[a, a]` holds the previous
# list twice. Dicts, macro arguments and namespace attributes share parts the same way.
_SHARED_LIST: Final = "{% set a = [1] %}" + "{% set a = [a, a] %}" * 30
_SHARED_DICT: Final = "{% set a = {'k': 1} %}" + "{% set a = {'k': a, 'j': a} %}" * 30
_SHARED_TUPLES: Final = "{% set b = (1,) %}" + "{% set b = (b, b) %}" * 30


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(_SHARED_LIST + "{{ a }}", id="output"),
        pytest.param(_SHARED_LIST + "{{ a ~ '' }}", id="concat"),
        pytest.param(_SHARED_LIST + "{{ a|string }}", id="string-filter"),
        pytest.param(_SHARED_LIST + "{{ a|tojson }}", id="tojson-filter"),
        pytest.param(_SHARED_LIST + "{{ a|pprint }}", id="pprint-filter"),
        pytest.param(_SHARED_LIST + "{{ a|join }}", id="join-filter"),
        pytest.param(_SHARED_LIST + "{{ a|list }}", id="list-filter"),
        pytest.param(_SHARED_LIST + "{{ a|map('string')|join }}", id="map-string"),
        pytest.param(_SHARED_LIST + "{{ '{}'.format(a) }}", id="str-format"),
        pytest.param(_SHARED_LIST + "{{ '{x}'.format_map({'x': a}) }}", id="str-format-map"),
        pytest.param(_SHARED_LIST + "{{ '%s' % (a,) }}", id="percent"),
        pytest.param(_SHARED_LIST + "{{ '%s'|format(a) }}", id="format-filter"),
        pytest.param(_SHARED_DICT + "{{ a }}", id="dict-output"),
        pytest.param(_SHARED_DICT + "{{ a|tojson }}", id="dict-tojson"),
        pytest.param(_SHARED_DICT + "{{ a|dictsort|list }}", id="dict-dictsort"),
        pytest.param(_SHARED_DICT + "{{ a.items() }}", id="dict-items-view"),
        pytest.param(_SHARED_TUPLES + "{{ b }}", id="tuple-output"),
        # Two equal structures built apart: sorting compares them to the bottom.
        pytest.param(
            _SHARED_LIST + "{% set b = [1] %}" + "{% set b = [b, b] %}" * 30 + "{{ [a, b]|sort }}",
            id="sort-filter",
        ),
        pytest.param(
            "{% macro d(x, n) %}{% if n %}{{ d([x, x], n - 1) }}{% else %}{{ x }}{% endif %}"
            "{% endmacro %}{{ d([1], 30) }}",
            id="macro-argument",
        ),
        pytest.param(
            "{% set ns = namespace(a=[1]) %}{% for i in range(30) %}"
            "{% set ns.a = [ns.a, ns.a] %}{% endfor %}{{ ns }}",
            id="namespace",
        ),
        # One value written once per conversion, and a large number written a million times.
        pytest.param("{{ '%(x)s' * 2000 % {'x': 'x' * 1000000} }}", id="percent-mapping"),
        pytest.param("{{ ('{0}' * 2000).format('x' * 1000000) }}", id="str-format-repeats"),
        pytest.param("{% set x = 2 ** 4000 %}{{ [x] * 1000000 }}", id="list-of-big-numbers"),
        pytest.param("{{ [1]|tojson(indent=10**9) }}", id="tojson-indent"),
    ],
)
def test_text_of_values_is_paid_for_before_it_is_made(source: str) -> None:
    outcome = _run_isolated(source)
    detail = str(outcome.get("detail"))
    # Refused by the budget, not by running out of memory after building it.
    assert outcome["outcome"] == "refused", outcome
    assert "characters built" in detail or "to render" in detail, outcome


# --- values compared or hashed: paid for when built, in a child process ------------------

# Two structures of 2^30 items built apart: comparing or hashing them goes to the bottom of
# both, without printing anything. Each builder doubles `a` (then `b`) thirty times.
_TWO_LISTS: Final = (
    "{% set a = [1] %}"
    + "{% set a = [a, a] %}" * 30
    + "{% set b = [1] %}"
    + "{% set b = [b, b] %}" * 30
)
_TWO_TUPLES: Final = (
    "{% set a = (1,) %}"
    + "{% set a = (a, a) %}" * 30
    + "{% set b = (1,) %}"
    + "{% set b = (b, b) %}" * 30
)


def _both(step: str, start: str = "[1]", times: int = 30) -> str:
    """``a`` and ``b`` built apart by ``step`` (``x`` stands for the name) ``times`` over."""
    return "".join(
        f"{{% set {x} = {start} %}}" + f"{{% set {x} = {step.replace('x', x)} %}}" * times
        for x in "ab"
    )


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(_TWO_LISTS + "{{ a == b }}", id="compare-output"),
        pytest.param(_TWO_LISTS + "{{ a in [b] }}", id="in-list"),
        pytest.param(_TWO_LISTS + "{% if a == b %}x{% endif %}", id="compare-if"),
        pytest.param(_TWO_LISTS + "{{ a is eq b }}", id="eq-test"),
        # A filter walked its input and arguments already; these stay refused.
        pytest.param(_TWO_LISTS + "{{ [a]|select('eq', b)|list|length }}", id="select-eq"),
        pytest.param(_TWO_TUPLES + "{{ [a, b]|unique|list|length }}", id="unique-filter"),
        pytest.param(_TWO_TUPLES + "{% if {b: 1} %}x{% endif %}", id="dict-key-hash"),
        pytest.param(_TWO_TUPLES + "{{ {}.get(b) }}", id="dict-get-hash"),
        pytest.param(_TWO_LISTS + "{{ [a].index(b) }}", id="list-index"),
        pytest.param(_TWO_LISTS + "{{ [a].count(b) }}", id="list-count"),
        pytest.param(
            _TWO_LISTS + "{% for i in [1, 2] %}{{ loop.changed(a if i == 1 else b) }}{% endfor %}",
            id="loop-changed",
        ),
        # Built without a literal holding the shared part twice.
        pytest.param(_both("[x] * 2") + "{{ a == b }}", id="list-times-doubling"),
        # 2^20 items, each a list of a thousand: only the items were counted.
        pytest.param(
            _both("x * 2", "[range(1000)|list]", 20) + "{{ a == b }}", id="list-times-flat"
        ),
        pytest.param(
            _both("x + x", "[range(1000)|list]", 20) + "{{ a == b }}", id="list-plus-flat"
        ),
        pytest.param(_both("dict(k=x, j=x)") + "{{ a == b }}", id="dict-call-doubling"),
        pytest.param(_both("{}.fromkeys('kj', x)") + "{{ a == b }}", id="fromkeys-doubling"),
        pytest.param(_both("cycler(x, x).items") + "{{ a == b }}", id="cycler-doubling"),
        pytest.param(
            "{% set ns = namespace(a=[1], b=[1]) %}"
            "{% macro pa() %}{% set ns.a = varargs %}{% endmacro %}"
            "{% macro pb() %}{% set ns.b = varargs %}{% endmacro %}"
            "{% for i in range(30) %}{{ pa(ns.a, ns.a) }}{{ pb(ns.b, ns.b) }}{% endfor %}"
            "{{ ns.a == ns.b }}",
            id="macro-varargs-doubling",
        ),
        # One step that holds a large value once per key: 10^5 keys times 10^5 items.
        pytest.param(
            "{% set x = range(100000)|list %}{% set y = range(100000)|list %}"
            "{{ {}.fromkeys(range(100000), x) == {}.fromkeys(range(100000), y) }}",
            id="fromkeys-amplification",
        ),
        pytest.param(
            "{% set x = range(10000)|list %}{% set y = range(10000)|list %}"
            "{{ ([1]|batch(100000, x)|list) == ([1]|batch(100000, y)|list) }}",
            id="batch-fill-amplification",
        ),
    ],
)
def test_values_are_paid_for_when_built(source: str) -> None:
    outcome = _run_isolated(source)
    detail = str(outcome.get("detail"))
    assert outcome["outcome"] == "refused", outcome
    assert "characters built" in detail or "to render" in detail, outcome


# Values as large as the budget lets a template build, then an operation that counts nothing
# repeated five hundred times in the template's text, never in a loop: each takes
# milliseconds, all of them together seconds, unless the clock is read between them.
_LARGE_NESTED: Final = (
    "{% set x = range(1000)|list %}{% set a = [x] * 600 %}"
    "{% set y = range(1000)|list %}{% set b = [y] * 600 %}"
)


@pytest.mark.parametrize(
    "source",
    [
        pytest.param(_LARGE_NESTED + "{% if a == b %}{% endif %}" * 500, id="comparisons"),
        pytest.param(_LARGE_NESTED + "{% if a is eq b %}{% endif %}" * 500, id="tests"),
        pytest.param(
            "{% set d = {} %}{% set t = (0,) * 2200000 %}" + "{% set v = d[t] %}" * 500,
            id="subscripts",
        ),
        pytest.param("{% set s = [0] * 2200000 %}" + "{% set v = s[1:] %}" * 500, id="slices"),
        # `k - k` hashes each item, `('k', t)`, on both sides.
        pytest.param(
            "{% set t = (0,) * 600000 %}{% set k = {'k': t}.items() %}"
            + "{% set v = k - k %}" * 500,
            id="set-differences",
        ),
    ],
)
def test_repeated_uncounted_work_is_stopped_by_the_clock(source: str) -> None:
    outcome = _run_isolated(source)
    assert outcome["outcome"] == "refused", outcome
    assert "to render" in str(outcome.get("detail")), outcome


def _doubled(times: int) -> list[object]:
    value: list[object] = [1]
    for _ in range(times):
        value = [value, value]
    return value


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("{{ [1, 'a', {'k': (2.5, none)}] }}", "[1, 'a', {'k': (2.5, None)}]"),
        ("{{ {'a': [1, 2]}|tojson }}", '{"a": [1, 2]}'),
        ("{{ [[1], [2]]|tojson(indent=1) }}", json.dumps([[1], [2]], indent=1)),
        ("{{ '%(x)s and %(x)s' % {'x': [name]} }}", "['Ada'] and ['Ada']"),
        ("{{ '{0}{0}'.format([name]) }}", "['Ada']['Ada']"),
        ("{% set ns = namespace(n=[1]) %}{{ ns }}", "<Namespace {'n': [1]}>"),
        # Built, compared, hashed, sliced and unpacked at an ordinary size.
        (
            "{% set rows = [] %}{% set t = range(3000)|list %}{% set u = range(3000)|list %}"
            "{% set grid = [t, u, t[::2], [t, u], {'k': (t, u)}] %}"
            "{{ grid|length }} {{ t == u }} {{ (t + u)|length }} {{ ([t] * 3)|length }}"
            " {{ t[10:13] }} {{ {(1, 2): 'p'}[(1, 2)] }} {{ 2 in (1, 2) }} {{ t is eq u }}",
            "5 True 6000 3 [10, 11, 12] p True True",
        ),
        (
            "{% set a, b = 1, 2 %}{% for k, v in {'x': [a, b]}.items() %}{{ k }}={{ v }}"
            "{% endfor %}{% macro m() %}{{ varargs|length }}{{ kwargs|length }}{% endmacro %}"
            "{{ m([1], [2], z=[3]) }} {{ dict(p=[1], q=(2,))|length }}"
            " {{ cycler([1], [2]).items|length }} {{ 5 - 3 }}",
            "x=[1, 2]21 2 2 2",
        ),
        # Shared parts of an ordinary size: 2^10 items.
        (
            "{% set a = [1] %}" + "{% set a = [a, a] %}" * 10 + "{{ a|string|length }}",
            str(len(str(_doubled(10)))),
        ),
    ],
)
def test_values_of_ordinary_size_still_print(source: str, text: str) -> None:
    assert _render_text(source) == text


# --- escaping: HTML part escaped, text part and subject not ---------------------------------

_HOSTILE_VALUES: Final = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "' onmouseover='alert(1)",
    "&lt;already&gt; & raw",
    "</p><iframe src=javascript:alert(1)>",
]


@pytest.mark.parametrize("value", _HOSTILE_VALUES)
def test_values_are_escaped_in_the_html_part_only(value: str) -> None:
    template = compile_template(
        "{{ v }}", "<p title=\"{{ v }}\">{{ v }}</p><a href='{{ v }}'>x</a>", "{{ v }}"
    )
    rendered = template.render({"v": value})
    escaped = (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&#34;")
        .replace("'", "&#39;")
    )
    assert rendered.html == f"<p title=\"{escaped}\">{escaped}</p><a href='{escaped}'>x</a>"
    assert rendered.text == value
    assert rendered.subject == " ".join(value.split())


def test_script_in_a_value_never_reaches_the_html_part_raw() -> None:
    rendered = compile_template("s", "<div>{{ v }}</div>", "{{ v }}").render(
        {"v": "<script>alert(1)</script>"}
    )
    assert rendered.html is not None
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered.html
    assert rendered.text == "<script>alert(1)</script>"


@pytest.mark.parametrize(
    "value",
    [
        "{{ 7 * 7 }}",
        "{% for i in range(10**9) %}x{% endfor %}",
        "{{ ''.__class__.__mro__ }}",
        "{{ undefined_name }}",
    ],
)
def test_values_are_data_never_template_code(value: str) -> None:
    rendered = compile_template("{{ v }}", "<p>{{ v }}</p>", "{{ v }}").render({"v": value})
    assert rendered.text == value
    escaped = value.replace("'", "&#39;")
    assert rendered.html == f"<p>{escaped}</p>"


def test_filters_on_values_are_escaped_too() -> None:
    html = "<p>{{ v|upper }} {{ v|replace('x', '<b>') }} {{ v ~ '<i>' }}</p>"
    rendered = compile_template("s", html, None).render({"v": "<x>"})
    assert rendered.html == "<p>&lt;X&gt; &lt;&lt;b&gt;&gt; &lt;x&gt;&lt;i&gt;</p>"
