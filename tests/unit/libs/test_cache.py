"""The TTL cache: one load per key while fresh, misses never cached, bounded size."""

from __future__ import annotations

import asyncio

from libs.cache import TtlCache


class Loader:
    def __init__(self, value: str | None) -> None:
        self.value = value
        self.calls = 0

    async def __call__(self) -> str | None:
        self.calls += 1
        return self.value


async def test_fresh_value_is_loaded_once() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl=3600)
    load = Loader("v1")
    assert await cache.get("k", load) == "v1"
    load.value = "v2"
    assert await cache.get("k", load) == "v1"
    assert load.calls == 1


async def test_expired_value_is_loaded_again() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl=0)
    load = Loader("v1")
    await cache.get("k", load)
    load.value = "v2"
    assert await cache.get("k", load) == "v2"
    assert load.calls == 2


async def test_miss_is_not_cached() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl=3600)
    load = Loader(None)
    assert await cache.get("k", load) is None
    load.value = "created"
    assert await cache.get("k", load) == "created"


async def test_size_is_bounded() -> None:
    cache: TtlCache[int, str] = TtlCache(ttl=3600, size=3)
    for key in range(10):
        await cache.get(key, Loader(str(key)))
    assert len(cache._entries) == 3
    assert await cache.get(9, Loader("reloaded")) == "9"


async def test_concurrent_lookups_of_one_key_share_one_load() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl=3600)
    release = asyncio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "v"

    waiting = [asyncio.create_task(cache.get("k", slow)) for _ in range(50)]
    await asyncio.sleep(0)
    release.set()
    assert [await task for task in waiting] == ["v"] * 50
    assert calls == 1


async def test_forgotten_values_are_loaded_again() -> None:
    cache: TtlCache[str, str] = TtlCache(ttl=3600)
    stale, kept = Loader("stale"), Loader("kept")
    await cache.get("a", stale)
    await cache.get("b", kept)
    cache.forget(lambda value: value == "stale")
    await cache.get("a", stale)
    await cache.get("b", kept)
    assert (stale.calls, kept.calls) == (2, 1)


def test_values_put_together_are_fresh_until_they_expire() -> None:
    lasting: TtlCache[str, str] = TtlCache(ttl=3600)
    lasting.put("a", "1")
    assert (lasting.fresh("a"), lasting.fresh("b")) == ("1", None)
    gone: TtlCache[str, str] = TtlCache(ttl=0)
    gone.put("a", "1")
    assert gone.fresh("a") is None
