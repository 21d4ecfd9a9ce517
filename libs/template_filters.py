"""Locale-aware Jinja2 filters: dates, times, numbers and money as the reader's locale writes them.

Each filter reads the render's locale from the template context (``locale``, the locale of the
version's sources that was chosen), so ``{{ total | money("BRL") }}`` gives ``R$ 1.234,50`` in a
``pt-BR`` template and ``R$1,234.50`` in an ``en`` one. Data arrives as JSON, so dates may be ISO
strings. Bad input raises ``FilterInputError`` with a sentence saying what was wrong: the render
fails with that reason, never with a stack trace.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, tzinfo
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_datetime, format_time
from babel.numbers import format_currency, format_decimal, format_percent
from jinja2 import pass_context
from jinja2.runtime import Context

FALLBACK_LOCALE = "en"


class FilterInputError(ValueError):
    """A filter was given a value it cannot format."""


@lru_cache(maxsize=256)
def babel_locale(tag: str | None) -> Locale:
    """Babel's locale for a BCP 47 tag (``pt-BR``); its language alone, then English, when
    Babel does not know the tag."""
    for candidate in (tag, (tag or "").split("-")[0], FALLBACK_LOCALE):
        if not candidate:
            continue
        try:
            return Locale.parse(candidate, sep="-")
        except (UnknownLocaleError, ValueError):
            continue
    return Locale.parse(FALLBACK_LOCALE)


def text_direction(tag: str | None) -> str:
    """``rtl`` for right-to-left locales (ar, he, fa, ur, ...), else ``ltr``."""
    return "rtl" if babel_locale(tag).text_direction == "rtl" else "ltr"


def _locale(context: Context) -> Locale:
    tag = context.get("locale")
    return babel_locale(tag if isinstance(tag, str) else None)


def _zone(tz: str | None) -> tzinfo | None:
    if tz is None:
        return None
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as error:
        reason = f"{tz!r} is not a time zone (use a name like 'Europe/Paris')"
        raise FilterInputError(reason) from error


def _moment(value: Any, filter_name: str) -> datetime | date:
    """A datetime (naive ones are UTC) or a date from a value or its ISO 8601 text."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        try:
            return (
                date.fromisoformat(text)
                if len(text) == 10
                else _moment(datetime.fromisoformat(text), filter_name)
            )
        except ValueError:
            pass
    raise FilterInputError(f"{filter_name}: {value!r} is not an ISO 8601 date or date-time")


def _number(value: Any, filter_name: str) -> Decimal:
    if not isinstance(value, bool) and isinstance(value, int | float | Decimal | str):
        try:
            number = Decimal(str(value).strip())
        except InvalidOperation:
            pass
        else:
            if number.is_finite():
                return number
    raise FilterInputError(f"{filter_name}: {value!r} is not a number")


@pass_context
def date_filter(context: Context, value: Any, format: str = "medium", tz: str | None = None) -> str:
    """``{{ due | date("long") }}``: the day of a date or date-time (in ``tz`` when given)."""
    moment = _moment(value, "date")
    if isinstance(moment, datetime):
        zone = _zone(tz)
        moment = (moment.astimezone(zone) if zone else moment).date()
    return format_date(moment, format, locale=_locale(context))


@pass_context
def time_filter(context: Context, value: Any, format: str = "short", tz: str | None = None) -> str:
    """``{{ at | time(tz="America/Sao_Paulo") }}``: the time of a date-time."""
    moment = _moment(value, "time")
    if not isinstance(moment, datetime):
        raise FilterInputError(f"time: {value!r} has no time of day")
    return format_time(moment, format, tzinfo=_zone(tz) or UTC, locale=_locale(context))


@pass_context
def datetime_filter(
    context: Context, value: Any, format: str = "medium", tz: str | None = None
) -> str:
    """``{{ at | datetime("short", tz="Europe/Lisbon") }}``: date and time (UTC unless ``tz``)."""
    moment = _moment(value, "datetime")
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(), UTC)
    return format_datetime(moment, format, tzinfo=_zone(tz) or UTC, locale=_locale(context))


@pass_context
def decimal_filter(context: Context, value: Any, format: str | None = None) -> str:
    """``{{ 1234.5 | number }}`` → ``1,234.5`` (en), ``1.234,5`` (pt-BR)."""
    return format_decimal(_number(value, "number"), format, locale=_locale(context))


@pass_context
def percent_filter(context: Context, value: Any, format: str | None = None) -> str:
    """``{{ 0.25 | percent }}`` → ``25%``: the value is a fraction."""
    return format_percent(_number(value, "percent"), format, locale=_locale(context))


@pass_context
def currency_filter(
    context: Context, value: Any, currency: str = "USD", format: str | None = None
) -> str:
    """``{{ total | money("BRL") }}`` → ``R$ 1.234,50`` in pt-BR: an ISO 4217 code."""
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
        raise FilterInputError(f"money: {currency!r} is not an ISO 4217 currency code")
    amount = _number(value, "money")
    return format_currency(amount, currency.upper(), format, locale=_locale(context))


LOCALE_FILTERS: dict[str, Callable[..., str]] = {
    "date": date_filter,
    "time": time_filter,
    "datetime": datetime_filter,
    "number": decimal_filter,
    "decimal": decimal_filter,
    "percent": percent_filter,
    "currency": currency_filter,
    "money": currency_filter,
}
"""The filters every template may use, by name."""
