"""The sandbox tenant templates run in: Jinja2's immutable sandbox with a time and size budget.

Templates are tenant-written code that render runs for every message of a lane, so one template
must not be able to stall the lane or exhaust its memory. Jinja's sandbox already refuses unsafe
attributes and caps ``range``; on top of it every render gets a ``RenderBudget`` (a deadline and
an output size) that is checked at the sandbox's own interception points — each call, each loop
iteration, each growing operator (``*``, ``**``, ``+``, ``%``), each width-taking filter, each
namespace assignment and each output chunk — so a runaway template stops with
``RenderLimitExceeded`` within one step of crossing the budget, without threads or signals.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache, wraps
from typing import Any

from jinja2 import StrictUndefined, nodes, pass_context
from jinja2 import Template as JinjaTemplate
from jinja2.compiler import CodeGenerator, Frame
from jinja2.runtime import Context
from jinja2.sandbox import MAX_RANGE, ImmutableSandboxedEnvironment
from jinja2.utils import Namespace

from libs.sendable import MAX_MESSAGE_BYTES
from libs.template_filters import LOCALE_FILTERS

RENDER_SECONDS = 0.25
"""Time one message's render may take (every part and the layout together)."""
MAX_VALUE_CHARS = MAX_MESSAGE_BYTES
"""Largest string or sequence a template may build: none larger could be sent."""
MAX_BUILT_CHARS = 8 * MAX_VALUE_CHARS
"""Characters one render's growing operations may build in all (what a loop that keeps building
large values would otherwise hold in memory until the deadline)."""
MAX_WIDTH = 100_000
"""Largest width, length or count a filter or string method may be given."""
MAX_INT_BITS = 4096
"""Largest integer arithmetic may produce (``2 ** 10 ** 9`` would take minutes)."""
LOOP_FILTER = "budgeted_loop"
"""The filter every ``{% for %}`` iterates through (inserted by the compiler)."""
WIDTH_FILTERS = (
    "center", "indent", "wordwrap", "truncate", "format", "batch", "slice", "join", "replace",
)  # fmt: skip
"""Built-in filters whose arguments size their output."""
PADDING_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_FORMAT_NUMBER = re.compile(r"\d{6,}")
"""A run of digits in a format string large enough to be a huge width or precision."""


class RenderLimitExceeded(Exception):
    """A render went over its time or size budget."""


@dataclass
class RenderBudget:
    """What is left of one render's time and output."""

    deadline: float = field(default_factory=lambda: time.perf_counter() + RENDER_SECONDS)
    output_left: int = MAX_MESSAGE_BYTES
    built: int = 0

    def tick(self) -> None:
        """Stop the render once its time is up."""
        if time.perf_counter() > self.deadline:
            raise RenderLimitExceeded(f"the render took longer than {RENDER_SECONDS * 1000:.0f} ms")

    def fits(self, size: int, what: str) -> None:
        """Refuse a value of ``size`` characters or items."""
        if size > MAX_VALUE_CHARS:
            raise RenderLimitExceeded(f"{what} would hold {size} items, at most {MAX_VALUE_CHARS}")

    def allow(self, size: int, what: str) -> None:
        """Refuse to build a value of ``size`` characters or items, or one more than the render
        may build in all."""
        self.fits(size, what)
        self.built += size
        if self.built > MAX_BUILT_CHARS:
            raise RenderLimitExceeded(f"the render built over {MAX_BUILT_CHARS} characters")

    def width(self, value: Any, what: str) -> None:
        """Refuse an integer argument too large to be a sensible width or count."""
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_WIDTH:
            raise RenderLimitExceeded(f"{what} was given {value}, at most {MAX_WIDTH}")

    def spend(self, chunk: str) -> None:
        """Count a chunk of output against the budget (and the clock)."""
        self.output_left -= len(chunk)
        if self.output_left < 0:
            raise RenderLimitExceeded(f"the output is larger than {MAX_MESSAGE_BYTES} characters")
        self.tick()


_BUDGET: ContextVar[RenderBudget | None] = ContextVar("render_budget", default=None)


def current_budget() -> RenderBudget:
    """The budget of the render under way (outside one, e.g. while Jinja folds constants at
    compile time, a fresh one: the same size limits apply)."""
    return _BUDGET.get() or RenderBudget()


@contextmanager
def budgeted(budget: RenderBudget) -> Iterator[RenderBudget]:
    """Make ``budget`` the one every check inside this block spends."""
    token = _BUDGET.set(budget)
    try:
        yield budget
    finally:
        _BUDGET.reset(token)


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


def _check_format(template: Any, args: Iterable[Any], what: str) -> None:
    """Refuse a ``%`` or ``str.format`` template whose widths or precisions are huge."""
    budget = current_budget()
    if isinstance(template, str) and (found := _FORMAT_NUMBER.search(template)):
        budget.width(int(found.group()), what)
    for arg in args:
        budget.width(arg, what)


def _check_binop(operator: str, left: Any, right: Any) -> None:
    budget = current_budget()
    if operator == "*":
        for sequence, count in ((left, right), (right, left)):
            if (size := _sized(sequence)) is not None and isinstance(count, int):
                budget.allow(size * count, "'*'")
        integers = isinstance(left, int) and isinstance(right, int)
        if integers and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise RenderLimitExceeded(f"'*' would make an integer over {MAX_INT_BITS} bits")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise RenderLimitExceeded(f"'**' would make an integer over {MAX_INT_BITS} bits")
    elif operator == "+":
        if (size := _sized(left)) is not None and (other := _sized(right)) is not None:
            budget.allow(size + other, "'+'")
    elif operator == "%" and isinstance(left, str):
        _check_format(left, right if isinstance(right, tuple) else (right,), "'%'")


def _check_call(function: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    budget = current_budget()
    budget.tick()
    # the sandbox hands str.format out wrapped: the string is the wrapped method's
    owner = getattr(getattr(function, "__wrapped__", function), "__self__", None)
    if not isinstance(owner, str):
        return
    name = getattr(function, "__name__", "")
    if name in PADDING_METHODS:
        for arg in (*args, *kwargs.values()):
            budget.width(arg, f"str.{name}")
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str):
        new = args[1] if isinstance(args[1], str) else ""
        budget.allow(len(owner) + (owner.count(args[0]) * len(new)), "str.replace")
    elif name in {"format", "format_map"}:
        _check_format(owner, (*args, *kwargs.values()), f"str.{name}")
    elif name == "join" and isinstance(args[0] if args else None, list | tuple):
        budget.allow(len(owner) * len(args[0]), "str.join")


def _guarded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """``function`` (a built-in filter) refusing huge widths and huge results."""
    skip = 2 if hasattr(function, "jinja_pass_arg") else 1  # the environment, the value

    @wraps(function)  # keeps Jinja's pass_context/pass_environment marks
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = current_budget()
        budget.tick()
        widths = [*args[skip:], *kwargs.values()]
        for arg in widths:
            budget.width(arg, f"the {name} filter")
        if name == "indent":
            _check_indent(args, kwargs)
        elif name == "format":
            _check_format(args[0] if args else None, widths, "the format filter")
        elif name in ("join", "replace", "wordwrap") and len(args) >= skip:
            args = (*args[: skip - 1], *_check_growth(name, list(args[skip - 1 :]), kwargs))
        result = function(*args, **kwargs)
        if (size := _sized(result)) is not None:
            budget.allow(size, f"the {name} filter")
        return result

    return guarded


def _check_growth(name: str, args: list[Any], kwargs: Mapping[str, Any]) -> list[Any]:
    """Refuse a ``join``, ``replace`` or ``wordwrap`` whose separator is repeated into a huge
    result; ``args`` starts with the filtered value (a join's iterable comes back as a list)."""
    budget = current_budget()
    if name == "join":
        args[0] = items = list(args[0])
        separator = kwargs.get("d", args[1] if len(args) > 1 else "")
        budget.allow(len(str(separator)) * len(items), "the join filter")
    elif name == "replace" and len(args) >= 3:
        value, old, new = (str(arg) for arg in args[:3])
        budget.allow(len(value) + value.count(old) * len(new), "the replace filter")
    elif name == "wordwrap":
        value = str(args[0])
        separator = kwargs.get("wrapstring", args[3] if len(args) > 3 else None)
        budget.allow(len(value) * (1 + len(str(separator or ""))), "the wordwrap filter")
    return args


def _check_indent(args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """``indent`` writes its width once per line: the product must fit."""
    value = str(args[0]) if args else ""
    width = kwargs.get("width", args[1] if len(args) > 1 else 4)
    size = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    current_budget().allow(len(value) + (value.count("\n") + 1) * size, "the indent filter")


@pass_context
def budgeted_loop(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: each iteration checks the clock."""
    budget = current_budget()
    for item in iterable:
        budget.tick()
        yield item


def budgeted_range(*args: int) -> range:
    """``range`` of at most the sandbox's ``MAX_RANGE`` numbers, on the clock."""
    current_budget().tick()
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:  # more numbers than an index can count
        size = MAX_RANGE + 1
    if size > MAX_RANGE:
        raise RenderLimitExceeded(f"range() may give at most {MAX_RANGE} numbers")
    return numbers


class BudgetedNamespace(Namespace):
    """``namespace()`` whose attributes may not outgrow the budget (``{% set ns.s = ns.s ~
    ns.s %}`` in a loop doubles a string each turn)."""

    def __setitem__(self, name: str, value: Any) -> None:
        if (size := _sized(value)) is not None:
            current_budget().fits(size, f"namespace attribute {name!r}")
        super().__setitem__(name, value)


class _BudgetedLoops(CodeGenerator):
    """Compiles every ``{% for x in items %}`` as ``{% for x in items | budgeted_loop %}``."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == LOOP_FILTER):
                loop.iter = nodes.Filter(
                    loop.iter, LOOP_FILTER, [], [], None, None, lineno=loop.lineno
                )
        super().visit_Template(node, frame)


class TemplateSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with ``StrictUndefined``, the locale filters and the budget."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _BudgetedLoops

    def __init__(self, autoescape: bool) -> None:
        super().__init__(
            undefined=StrictUndefined, autoescape=autoescape, keep_trailing_newline=True
        )
        self.filters.update(LOCALE_FILTERS)
        for name in WIDTH_FILTERS:
            self.filters[name] = _guarded_filter(name, self.filters[name])
        self.filters[LOOP_FILTER] = budgeted_loop
        self.globals["range"] = budgeted_range
        self.globals["namespace"] = BudgetedNamespace
        del self.globals["lipsum"]  # placeholder text, megabytes of it: no mail needs it

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right)
        return super().call_binop(context, operator, left, right)

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


SANDBOXES = {escaped: TemplateSandbox(escaped) for escaped in (False, True)}
"""The html sandbox escapes data (autoescape); the subject's and text's do not."""


@lru_cache(maxsize=1024)
def compiled(source: str, autoescape: bool) -> JinjaTemplate:
    """A compiled template; the same few sources serve every message of a tenant."""
    return SANDBOXES[autoescape].from_string(source)


def render_source(
    source: str, autoescape: bool, variables: Mapping[str, Any], budget: RenderBudget
) -> str:
    """``source`` rendered with ``variables`` chunk by chunk, spending ``budget``."""
    chunks: list[str] = []
    with budgeted(budget):
        for chunk in compiled(source, autoescape).generate(variables):
            budget.spend(chunk)
            chunks.append(chunk)
    return "".join(chunks)
