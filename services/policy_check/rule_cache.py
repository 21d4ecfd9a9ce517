"""Each tenant's rule book, kept in memory: policy-check asks the database nothing per message.

A tenant's book is read at most every ``RULES_TTL_SECONDS``: a rule added, changed or removed
applies to the messages policy-check reads that long after it at most (the bounded staleness).
"""

from __future__ import annotations

from collections.abc import Iterable

import asyncpg

from libs.cache import TtlCache
from libs.rules import RuleBook, rule_books

RULES_TTL_SECONDS = 5.0
MAX_TENANTS = 100_000


class RuleCache:
    """The rule books of the tenants policy-check saw lately."""

    def __init__(self, ttl: float = RULES_TTL_SECONDS) -> None:
        self._books: TtlCache[str, RuleBook] = TtlCache(ttl, MAX_TENANTS)

    async def books(self, pool: asyncpg.Pool, tenants: Iterable[str]) -> dict[str, RuleBook]:
        """The book of each tenant: cached, and those expired read again in one query."""
        wanted = set(tenants)
        found = {t: book for t in wanted if (book := self._books.fresh(t)) is not None}
        if missing := sorted(wanted - found.keys()):
            for tenant, book in (await rule_books(pool, missing)).items():
                self._books.put(tenant, book)
                found[tenant] = book
        return found
