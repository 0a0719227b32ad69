"""The sandbox templates run in: Jinja2's, with the time and memory a render may spend bounded.

Jinja2's sandbox keeps a template away from Python's object model, but not from spending:
``{{ 'a' * 10**9 }}``, ``{{ 9 ** 9 ** 9 }}``, two nested ``range(100000)`` loops or
``{{ 'a'|center(10**9) }}`` would hang the sender or exhaust its memory. Here every render
runs on a ``budget``: each loop iteration and call spends a step, each character a template
writes or builds (``*``, ``+``, ``~``, ``%``, filters) spends from its characters, and what
would overspend is refused *before* it is computed, as ``LimitExceeded``; so is a render
that runs past its time, which every one of those operations checks. The operators and
filters that spend are never folded at compile time, so compiling costs nothing either.

A list or dict is paid for by the text it would make, before any of it is made: whatever
writes a value (``{{ }}``, ``~``, ``%``, ``str.format``) or hands it to a filter (``string``,
``tojson``, ``pprint``, ``join``, ``sort``...) first walks it, counting a part it holds
twice twice, as printing would. A list built of shared references (``{% set a = [a, a] %}``
thirty times) is small in memory but prints 2^30 items; the walk stops at the budget.

The same walk pays for every list, tuple and dict a template builds, when it is built: a
literal, what a call returns and the arguments it is given (``dict()``, ``namespace()``,
``cycler()``, a macro's ``varargs``), what a filter returns, ``*`` and ``+`` on lists. So
no value a template holds is deeper than the budget, and comparing or hashing one
(``a == b``, ``a in l``, ``{b: 1}``, ``l.index(b)``, ``loop.changed(a)``, ``is eq``) takes
at most as long as a walk of the budget; the clock is read after each comparison, test,
subscript, slice and ``-``, which count nothing, so a thousand of them in a row stop too.

What is not bounded here: Python's recursion (macros calling themselves, deep nesting) ends
in ``RecursionError``, which ``shared.template`` turns into a template error. A namespace
changed after it was put in a list (``{% set ns.x = ... %}``) grows that list unpaid, but
comparing or hashing never goes into a namespace (it is compared by identity), and writing
it walks it first.
"""

from __future__ import annotations

import inspect
import math
import re
import string
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Set, ValuesView
from contextlib import contextmanager
from contextvars import ContextVar
from itertools import repeat
from typing import Any, Final, cast

from jinja2 import nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace
from jinja2.visitor import NodeTransformer

__all__ = ["BoundedEnvironment", "LimitExceeded", "budget"]

# Loop iterations and calls in one render (all parts of an email). An email's loops run over a few
# lines or items; 100 000 is Jinja's own largest `range`, and two nested ones would be
# 10^10 iterations.
MAX_STEPS: Final = 100_000
# Characters (or list items) one render may write or build, intermediate values and
# captured blocks included: a hundred times a large email, a few tens of MB at most.
MAX_BUILT_CHARS: Final = 10_000_000
# The longest one render may take. The counts above bound what a render builds,
# but not every bit of Python work between two counted operations (a loop body of a
# thousand comparisons, a macro called 100 000 times): the clock does, checked at every
# counted operation. A real email renders in milliseconds.
MAX_RENDER_SECONDS: Final = 1.0
# The largest integer a template may compute: `9 ** 9 ** 9` takes minutes, and Python
# refuses to print integers of more than 4300 digits (about 14 000 bits) anyway.
MAX_INT_BITS: Final = 4096


class LimitExceeded(SecurityError):
    """A render would spend more than its budget; the template, not the data, is at fault."""


class _Budget:
    __slots__ = ("chars", "deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.chars = MAX_BUILT_CHARS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


@contextmanager
def budget() -> Iterator[None]:
    """A fresh budget for the render run inside the ``with`` block."""
    token = _BUDGET.set(_Budget())
    try:
        yield
    finally:
        _BUDGET.reset(token)


def _current() -> _Budget:
    current = _BUDGET.get()
    if current is None:
        raise RuntimeError("a template ran outside shared.template_sandbox.budget()")
    if time.monotonic() > current.deadline:
        raise LimitExceeded(f"longer than {MAX_RENDER_SECONDS} s to render")
    return current


def _spend_steps(steps: int) -> None:
    current = _current()
    if steps > current.steps:
        raise LimitExceeded(f"more than {MAX_STEPS} loop iterations and calls")
    current.steps -= steps


def _spend_chars(chars: int) -> None:
    current = _current()
    if chars > current.chars:
        raise LimitExceeded(f"more than {MAX_BUILT_CHARS} characters built")
    current.chars -= chars


def _size(value: object) -> int:
    """What ``value`` holds, in characters or items; 0 for what has no size (numbers...)."""
    return len(value) if isinstance(value, str | bytes | list | tuple | dict | range) else 0


# How often a walk of a value looks at the clock, in elements.
_CLOCK_EVERY: Final = 4096
# What a walk's iterator gives when it runs out.
_DONE: Final = (None, -1)


def _spend_text(value: object, times: int = 1, indent: int = 1) -> None:
    """Pay for the text ``value`` makes, written ``times`` over, before any of it is made.

    Why a walk: `[a, a]` holds `a` once but prints it twice, so a list doubled thirty times
    over shared parts is 31 lists in memory and 2^30 items in text (repr, JSON, pprint; a
    filter's sort or hash goes as deep). Each element is counted each time it is reached,
    with its characters and its indentation (pprint and `tojson(indent=...)` indent every
    level, pprint by a dict's key too), and the walk stops as soon as the count passes what
    the budget has left: it never takes longer than the render may.
    """
    if isinstance(value, str):  # most of what is written: nothing to walk
        _spend_chars(len(value) * max(times, 1))
        return
    if isinstance(value, list | tuple) and len(value) * max(times, 1) <= _current().chars:
        flat = _flat_size(value, indent)  # most of what is built: a walk of one level
        if flat is not None:
            _spend_chars((1 + flat) * max(times, 1))
            return
    limit = _current().chars // max(times, 1)
    spent = visited = 0
    clock_at = _CLOCK_EVERY
    # A stack of (items, depth), not recursion: a chain nested 100 000 deep is walked too.
    pending: list[tuple[Iterator[tuple[object, int]], int]] = [(iter([(value, 0)]), 0)]
    while pending:
        items, depth = pending[-1]
        item, key = next(items, _DONE)
        if key < 0:
            pending.pop()
            continue
        spent += 1 + _leaf_size(item) + depth + key
        visited += 1
        level = depth + key + indent
        flat = None
        if isinstance(item, list | tuple):
            if spent + len(item) > limit:
                raise LimitExceeded(f"more than {MAX_BUILT_CHARS} characters built")
            flat = _flat_size(item, level)
            if flat is not None:
                spent += flat
                visited += len(item)
        if spent > limit:
            raise LimitExceeded(f"more than {MAX_BUILT_CHARS} characters built")
        if visited >= clock_at:
            _current()
            clock_at = visited + _CLOCK_EVERY
        if flat is None:
            parts = _parts(item)
            if parts is not None:
                pending.append((parts, level))
    _spend_chars(spent * max(times, 1))


def _flat_size(items: list[object] | tuple[object, ...], level: int) -> int | None:
    """What a walk would count for ``items`` if they are all strings or all integers (most
    lists a template builds), counted at C speed; None if they are not."""
    kinds = set(map(type, items))
    if kinds <= {str}:
        return len(items) * (1 + level) + sum(map(len, cast("list[str]", items)))
    if kinds == {int}:
        bits = sum(map(int.bit_length, cast("list[int]", items)))
        return len(items) * (2 + level) + bits // 3
    return None


def _leaf_size(value: object) -> int:
    """The characters of a value that holds no others: a string's, a number's digits."""
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, int):
        return value.bit_length() // 3 + 1  # log10(2) < 1/3
    return 24 if isinstance(value, float) else 0  # the longest float repr


def _parts(value: object) -> Iterator[tuple[object, int]] | None:
    """A container's elements, each with what it adds to the indentation (a dict's value:
    its key); None for what holds nothing a template built."""
    if isinstance(value, str | int | float):  # most of what is walked: no ABC checks
        return None
    if isinstance(value, Namespace):
        value = object.__getattribute__(value, "_Namespace__attrs")
    if isinstance(value, Mapping):
        return (part for k, v in value.items() for part in ((k, 0), (v, _leaf_size(k))))
    if isinstance(value, list | tuple | Set | ValuesView):
        return zip(value, repeat(0))
    return None


def _holds_parts(value: object) -> bool:
    """Whether ``value`` holds others a walk goes into (``_parts``)."""
    if isinstance(value, str):  # what most calls return: no ABC checks
        return False
    return isinstance(value, list | tuple | Mapping | Set | ValuesView | Namespace)


# --- operators -----------------------------------------------------------------------------


# What `*` repeats.
_SEQUENCES: Final = (str, bytes, list, tuple)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if operator == "*":
            bits = left.bit_length() + right.bit_length()
        elif operator == "**" and right > 0 and abs(left) > 1:
            bits = math.ceil(right * math.log2(abs(left)))
        else:
            bits = 0
        if bits > MAX_INT_BITS:
            raise LimitExceeded(f"a number of more than {MAX_INT_BITS} bits")
    elif operator == "*":
        # `[x] * n` holds `x` n times: paid by what it holds, as a literal is (`_built`).
        times, repeated = (right, left) if isinstance(left, _SEQUENCES) else (left, right)
        if isinstance(times, int) and times > 0 and isinstance(repeated, _SEQUENCES):
            _spend_text(repeated, times)
    elif operator == "+":
        if isinstance(left, list | tuple) or isinstance(right, list | tuple):
            _spend_text((left, right))
        else:
            _spend_chars(_size(left) + _size(right))
    elif operator == "%" and isinstance(left, str):
        conversions = _check_printf(left)
        _spend_text(right, conversions if isinstance(right, Mapping) else 1)


# A printf conversion's width and precision: `%-10.3f`, `%(name)08d`, `%*d`.
_PRINTF_SPEC: Final = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_printf(template: str) -> int:
    """Pay for ``template``'s widths; how many conversions it has (a mapping's value may be
    written by each)."""
    conversions = 0
    for match in _PRINTF_SPEC.finditer(template):
        conversions += 1
        for number in match.groups():
            if number == "*":
                raise LimitExceeded("a '*' width or precision in a format string")
            if number is not None:
                _spend_chars(int(number))
    return conversions


def _check_str_format(template: str) -> int:
    """Pay for ``template``'s widths; how many fields it has (each may write any argument)."""
    fields = 0
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is not None:
            fields += 1
        if field is not None and spec:
            if "{" in spec:
                raise LimitExceeded("a width or precision taken from an argument")
            for number in re.findall(r"\d+", spec):
                _spend_chars(int(number))
    return fields


# str (and bytes) methods that build a string of a size their arguments choose.
_STR_METHOD_SIZE: Final[dict[str, Callable[[Any, inspect.BoundArguments], int]]] = {
    "center": lambda s, a: max(len(s), a.arguments["width"]),
    "ljust": lambda s, a: max(len(s), a.arguments["width"]),
    "rjust": lambda s, a: max(len(s), a.arguments["width"]),
    "zfill": lambda s, a: max(len(s), a.arguments["width"]),
    "expandtabs": lambda s, a: len(s) * max(1, a.arguments.get("tabsize", 8)),
    "replace": lambda s, a: _replaced_size(s, *a.args),
    "join": lambda s, a: _joined_size(a.arguments["iterable"], s),
    "translate": lambda s, a: _translated_size(s, a.args[0]),
}


def _replaced_size(s: object, old: object, new: object, count: object = -1) -> int:
    s, old, new = str(s), str(old), str(new)
    found = len(s) + 1 if not old else s.count(old)
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    return len(s) + found * max(0, len(new) - len(old))


def _joined_size(items: object, separator: str | bytes) -> int:
    """The size of ``separator.join(items)``, an iterator drawn into a list (``_drawn``)."""
    if isinstance(items, str | bytes):
        return len(items) * (1 + len(separator))
    if isinstance(items, list | tuple):
        return sum(map(_size, items)) + len(separator) * len(items)
    return 0


def _translated_size(s: str | bytes, table: object) -> int:
    longest = max(map(_size, table.values()), default=1) if isinstance(table, dict) else 1
    return len(s) * max(longest, 1)


def _drawn(value: Any) -> Any:
    """An iterator drawn into a list, so that its size is known before it is joined."""
    return list(value) if isinstance(value, Iterator) else value


# --- filters -------------------------------------------------------------------------------


def _arg(args: tuple[Any, ...], kwargs: dict[str, Any], at: int, name: str, default: Any) -> Any:
    """A filter's argument, given by position (after the filtered value) or by name."""
    return args[at] if len(args) > at else kwargs.get(name, default)


def _indented_size(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    text, width = str(value), _arg(args, kwargs, 0, "width", 4)
    indent = width if isinstance(width, int) else len(str(width))
    return len(text) + (text.count("\n") + 1) * indent


# Filters that build a value of a size their arguments choose: that size, from the
# filtered value and the filter's arguments.
_FILTER_SIZE: Final[dict[str, Callable[[Any, tuple[Any, ...], dict[str, Any]], int]]] = {
    "center": lambda v, a, k: max(len(str(v)), _arg(a, k, 0, "width", 80)),
    "indent": _indented_size,
    "replace": lambda v, a, k: _replaced_size(
        v, _arg(a, k, 0, "old", ""), _arg(a, k, 1, "new", ""), _arg(a, k, 2, "count", None)
    ),
    "join": lambda v, a, k: _joined_size(v, str(_arg(a, k, 0, "d", ""))),
    "batch": lambda v, a, k: _size(v) + _arg(a, k, 0, "linecount", 0),
    "slice": lambda v, a, k: _size(v) + _arg(a, k, 0, "slices", 0),
    "wordwrap": lambda v, a, k: (
        len(str(v)) * (1 + len(str(_arg(a, k, 2, "wrapstring", None) or "")))
    ),
}


# Filters that run Python code for each item of their input (each character of a string):
# each item is a step, like a loop iteration. The others run in C.
_PER_ITEM_FILTERS: Final = frozenset(
    {
        *("map", "select", "reject", "selectattr", "rejectattr", "groupby", "unique"),
        *("sort", "dictsort", "sum", "min", "max", "batch", "slice", "join", "items"),
        *("pprint", "xmlattr", "urlencode"),
    }
)
# Filters that run Python code for each word of a text: a word is at least two characters
# (one and a separator), each a step.
_PER_WORD_FILTERS: Final = frozenset({"title", "urlize", "wordwrap"})


def _charged(name: str, f: Callable[..., Any]) -> Callable[..., Any]:
    """``f``, a filter, paying for its input and for what it builds before it runs, and
    for each item of what it returns, if that is a generator (`map`, `select`...).

    Wrapped as a ``pass_context`` filter, which Jinja never runs at compile time."""
    passes = getattr(getattr(f, "jinja_pass_arg", None), "name", None)
    size = _FILTER_SIZE.get(name)

    @pass_context
    def charged(context: Context, value: Any, *args: Any, **kwargs: Any) -> Any:
        lead: tuple[Any, ...] = ()
        if passes == "context":
            lead = (context,)
        elif passes == "eval_context":
            lead = (context.eval_ctx,)
        elif passes == "environment":
            lead = (context.environment,)
        if size is not None:
            value = _drawn(value)
        items = _size(value)
        if name in _PER_ITEM_FILTERS:
            _spend_steps(items)
        elif name in _PER_WORD_FILTERS:
            _spend_steps(items // 2)
        # Any filter may print, compare or hash what it is given: its input and arguments
        # pay for their text first, `format`'s named values once per conversion.
        conversions = 1
        if name == "format" and isinstance(value, str):
            conversions = _check_printf(value)
        elif size is not None:
            _spend_chars(size(value, args, kwargs))
        _spend_text(value, indent=_json_indent(args, kwargs) if name == "tojson" else 1)
        _spend_text((args, kwargs), conversions)
        result = f(*lead, value, *args, **kwargs)
        if isinstance(result, Generator):
            return _yielded(result)
        # What a filter builds may hold its arguments many times (`batch`'s fill).
        return _built(context, result) if _holds_parts(result) else result

    return charged


def _json_indent(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """What `tojson(indent)` writes per level of nesting: the indent and a line break."""
    indent = _arg(args, kwargs, 0, "indent", None)
    return 1 + (len(indent) if isinstance(indent, str) else max(indent or 0, 0))


@pass_context
def _iterate(_: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    """A `{% for %}` loop's items, a step each."""
    for item in iterable:
        _spend_steps(1)
        yield item


def _yielded(items: Iterator[Any]) -> Iterator[Any]:
    """A filter's generated items, a step each, each container paid for (``_built``)."""
    for item in items:
        _spend_steps(1)
        if _holds_parts(item):
            _spend_text(item)
        yield item


@pass_context
def _built(_: Context, value: Any) -> Any:
    """A list, tuple or dict a template builds, paid for by what it holds before it is kept.

    Why at construction, not where a value is compared or hashed: ``a == b``, ``a in l``,
    ``{b: 1}``, ``l.index(b)``, ``l.count(b)``, ``loop.changed(a)``, the ``eq``/``in``
    tests, ``unique``... each go down both values as deep as printing would, and there is
    no end of such places. Charging each container once, counting a part it holds
    twice twice (``_spend_text``), means no value a template holds goes deeper than the
    budget: ``[a, a]`` thirty times over is refused while it is built, and whatever is
    done with a value later costs at most a walk of the budget, however it is done. The
    clock (``_checked``) bounds how many times it is done.
    """
    _spend_text(value)
    return value


@pass_context
def _checked(_: Context, value: Any) -> Any:
    """The value of an operation that is not counted but may take as long as a walk of the
    largest value (a comparison, a test, a slice): the clock is read after each."""
    _current()
    return value


@pass_context
def _emit(_: Context, value: Any) -> Any:
    """A value written out by `{{ }}` or joined by `~`, paid for by its text first."""
    _spend_text(value)
    return value


@pass_context
def _literal(_: Context, size: int) -> str:
    """The literal text of an output, paid for each time it is written (in a loop...)."""
    _spend_chars(size)
    return ""


def _filter(name: str, node: nodes.Node, *args: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, name, list(args), [], None, None, lineno=node.lineno)


class _Metering(NodeTransformer):
    """Routes a parsed template's loops, outputs, ``~``, literals, comparisons, tests and
    slices through the budget filters."""

    def visit_List(self, node: nodes.List) -> nodes.Node:
        self.generic_visit(node)
        return _filter("_built", node)

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        self.generic_visit(node)
        return _filter("_built", node)

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        self.generic_visit(node)
        # A tuple may be the target of an assignment (`{% for k, v in ... %}`): built only
        # when loaded.
        return _filter("_built", node) if node.ctx == "load" else node

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        return _filter("_checked", node)

    def visit_Test(self, node: nodes.Test) -> nodes.Node:
        self.generic_visit(node)
        return _filter("_checked", node)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        # A slice bypasses `getitem` (which reads the clock).
        self.generic_visit(node)
        return _filter("_checked", node) if isinstance(node.arg, nodes.Slice) else node

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter("_iterate", node.iter)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        node.nodes = [_filter("_emit", n) for n in node.nodes]
        return node

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        literal = sum(len(n.data) for n in node.nodes if isinstance(n, nodes.TemplateData))
        node.nodes = [
            n if isinstance(n, nodes.TemplateData) else _filter("_emit", n) for n in node.nodes
        ]
        if literal:
            node.nodes.append(_filter("_literal", nodes.Const(literal, lineno=node.lineno)))
        return node


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox, each render on a budget (render inside ``budget()``).

    The immutable sandbox: a template cannot grow a list or a dict in place
    (``l.extend(l)`` forty times is 2^40 items); ``namespace()`` still carries state."""

    # Intercepted operators go through `call_binop` and are never folded at compile time.
    # `-` spends nothing but may take long: `d.items() - e.items()` hashes both.
    intercepted_binops = frozenset({"*", "**", "+", "%", "-"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        # `lipsum(10**6)` writes a novel; the other helpers are harmless and bounded.
        del self.globals["lipsum"]
        self.filters = {name: _charged(name, f) for name, f in self.filters.items()}
        self.filters.update(
            _iterate=_iterate, _emit=_emit, _literal=_literal, _built=_built, _checked=_checked
        )

    def metered(self, tree: nodes.Template) -> nodes.Template:
        """``tree`` with its loops, outputs, ``~`` and literals paying into the render's
        budget, and the clock read after its comparisons, tests and slices."""
        metered: nodes.Template = _Metering().visit(tree)
        return metered

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        _current()
        return result

    def getitem(self, obj: Any, argument: str | Any) -> Any:
        # `d[k]` hashes and compares `k`: as long as a walk of it, and not counted.
        item = super().getitem(obj, argument)
        _current()
        return item

    # The double underscores are Jinja's: a template may pass `obj=` or `context=` itself.
    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _spend_steps(1)
        if isinstance(__obj, LoopContext) and args:
            # `loop(children)` in a recursive loop: its items are loop iterations too.
            args = (_iterate(__context, args[0]), *args[1:])
        method = getattr(__obj, "__wrapped__", __obj)  # the sandbox wraps str.format
        owner = getattr(method, "__self__", None)
        if isinstance(owner, str | bytes):
            name = getattr(method, "__name__", "")
            if name in {"format", "format_map"} and isinstance(owner, str):
                _spend_text((args, kwargs), _check_str_format(owner))
            elif name in _STR_METHOD_SIZE:
                args = tuple(map(_drawn, args))
                bound = inspect.signature(method).bind(*args, **kwargs)
                _spend_chars(_STR_METHOD_SIZE[name](owner, bound))
        # A call may build from its arguments what no literal shows: `dict(x=a, y=a)`,
        # `namespace(...)`, `cycler(a, a).items`, a macro's `varargs` and `kwargs`; and
        # `{}.fromkeys(keys, a)` holds `a` once per key.
        if kwargs:
            _spend_text((args, kwargs))
        elif args:
            _spend_text(args)
        result = super().call(__context, __obj, *args, **kwargs)
        return _built(__context, result) if _holds_parts(result) else result
