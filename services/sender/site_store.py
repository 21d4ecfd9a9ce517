"""What a sender tells the queue view about its sites: ``delivery_sites`` and ``queue_events``."""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from services.sender.sites import Site, SiteTransition

ACTOR = "sender"


async def write_sites(
    pool: asyncpg.Pool,
    sender_id: str,
    sites: Sequence[Site],
    transitions: Sequence[SiteTransition],
) -> None:
    """This sender's snapshot of ``sites`` (one upsert) and the state changes since the last
    one, in one transaction."""
    if not sites and not transitions:
        return
    async with pool.acquire() as connection, connection.transaction():
        if transitions:
            await connection.execute(
                "INSERT INTO queue_events (kind, actor, scope, detail)"
                " SELECT kind, $1, scope, detail"
                " FROM unnest($2::text[], $3::jsonb[], $4::jsonb[]) AS e (kind, scope, detail)",
                ACTOR,
                [change.change.value for change in transitions],
                [{"site": change.site, "lane": change.lane.value} for change in transitions],
                [_detail(change) for change in transitions],
            )
        if sites:
            await connection.execute(
                "INSERT INTO delivery_sites (sender_id, site, lane, state, in_flight, limits,"
                " rate_per_minute, last_replies, updated_at)"
                " SELECT $1, site, lane, state, in_flight, limits, rate, replies::jsonb, now()"
                " FROM unnest($2::text[], $3::text[], $4::text[], $5::int[], $6::jsonb[],"
                " $7::float8[], $8::text[]) AS s (site, lane, state, in_flight, limits, rate,"
                " replies)"
                " ON CONFLICT (sender_id, site, lane) DO UPDATE SET state = EXCLUDED.state,"
                " in_flight = EXCLUDED.in_flight, limits = EXCLUDED.limits,"
                " rate_per_minute = EXCLUDED.rate_per_minute,"
                " last_replies = EXCLUDED.last_replies, updated_at = EXCLUDED.updated_at",
                sender_id,
                [site.name for site in sites],
                [site.lane.value for site in sites],
                [site.state.value for site in sites],
                [site.in_flight for site in sites],
                [site.limits.as_json() for site in sites],
                [site.rate_per_minute for site in sites],
                # as text: a list per site would read as a second dimension of the array
                [_replies(site) for site in sites],
            )


def _replies(site: Site) -> str:
    return json.dumps([reply.model_dump(mode="json") for reply in site.last_replies])


def _detail(change: SiteTransition) -> dict[str, object]:
    detail: dict[str, object] = {
        "state": change.state.value,
        "rate_per_minute": change.rate_per_minute,
    }
    if change.reply is not None:
        detail["reply"] = change.reply.model_dump(mode="json")
    return detail


async def forget_sites(pool: asyncpg.Pool, sender_id: str) -> None:
    """Remove this sender's snapshot (it stops cleanly: nothing of its is in flight)."""
    await pool.execute("DELETE FROM delivery_sites WHERE sender_id = $1", sender_id)
