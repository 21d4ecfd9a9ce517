"""IP pools: addresses checked, a weighted choice that is the same for every redelivery, warm-up
ramps, and the built-in pools from the settings."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from libs.ip_pools import IpPool, PoolAddress, PoolFields, built_in_pools, choose_source
from libs.settings import Settings

NOW = datetime(2026, 3, 11, 12, 0, tzinfo=UTC)
IDS = [f"message-{n}" for n in range(4000)]


def address(last: int, weight: int = 100, **warmup: object) -> PoolAddress:
    return PoolAddress.model_validate(
        {"address": f"203.0.113.{last}", "ehlo": f"mta{last}.example.test", "weight": weight}
        | warmup
    )


def shares(pool: IpPool, now: datetime = NOW) -> Counter[str]:
    chosen = (choose_source(pool, message_id, now) for message_id in IDS)
    return Counter(source.address for source in chosen if source is not None)


def test_the_choice_is_the_same_for_every_redelivery_of_a_message() -> None:
    pool = IpPool(name="p", addresses=[address(1), address(2), address(3)])
    assert [choose_source(pool, i, NOW) for i in IDS[:50]] == [
        choose_source(pool, i, NOW) for i in IDS[:50]
    ]
    first = choose_source(pool, "m-1", NOW)
    assert first is not None and first.ehlo == f"mta{first.address.rsplit('.', 1)[1]}.example.test"


def test_addresses_share_the_mail_by_weight() -> None:
    counted = shares(IpPool(name="p", addresses=[address(1, 100), address(2, 300), address(3, 0)]))
    assert "203.0.113.3" not in counted
    assert counted["203.0.113.2"] / len(IDS) == pytest.approx(0.75, abs=0.04)


def test_removing_an_address_moves_only_its_own_mail() -> None:
    three = IpPool(name="p", addresses=[address(1), address(2), address(3)])
    two = IpPool(name="p", addresses=[address(1), address(2)])
    moved = [
        i
        for i in IDS
        if (before := choose_source(three, i, NOW)) is not None
        and before.address != "203.0.113.3"
        and before != choose_source(two, i, NOW)
    ]
    assert moved == []


def test_a_warming_address_ramps_from_one_percent_to_its_full_weight() -> None:
    warming = address(2, 100, warmup_start=date(2026, 3, 1), warmup_days=10)
    assert warming.weight_at(datetime(2026, 2, 28, tzinfo=UTC)) == 0
    assert warming.weight_at(datetime(2026, 3, 1, tzinfo=UTC)) == pytest.approx(1.0)
    assert warming.weight_at(datetime(2026, 3, 6, tzinfo=UTC)) == pytest.approx(50.5)
    assert warming.weight_at(datetime(2026, 3, 11, tzinfo=UTC)) == 100
    assert warming.weight_at(datetime(2026, 6, 1, tzinfo=UTC)) == 100
    pool = IpPool(name="p", addresses=[address(1), warming])
    start = datetime(2026, 3, 1, tzinfo=UTC)
    assert shares(pool, start)["203.0.113.2"] / len(IDS) < 0.03
    assert shares(pool, start + timedelta(days=10))["203.0.113.2"] / len(IDS) > 0.45


def test_a_pool_without_an_address_in_service_lets_the_system_pick() -> None:
    assert choose_source(IpPool(name="p"), "m", NOW) is None
    future = address(1, warmup_start=date(2027, 1, 1), warmup_days=5)
    assert choose_source(IpPool(name="p", addresses=[future, address(2, 0)]), "m", NOW) is None


@pytest.mark.parametrize(
    "fields",
    [
        {"address": "203.0.113.300", "ehlo": "mta.example.test"},
        {"address": "203.0.113.1", "ehlo": "not a host"},
        {"address": "203.0.113.1", "ehlo": "mta.example.test", "weight": 1001},
        {"address": "203.0.113.1", "ehlo": "mta.example.test", "warmup_days": 5},
    ],
)
def test_a_bad_address_is_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PoolAddress.model_validate(fields)


def test_addresses_are_normalised_and_appear_once() -> None:
    assert PoolAddress(address="2001:DB8::1", ehlo="MTA.Example.TEST").address == "2001:db8::1"
    with pytest.raises(ValidationError, match="once"):
        PoolFields(addresses=[address(1), address(1)])


def test_the_built_in_pools_come_from_the_settings() -> None:
    settings = Settings(
        ip_pools='{"security": [{"address": "127.0.0.2", "ehlo": "otp.example.test"}]}',
        critical_return_path_domain="bounces-otp.example.test",
    )
    pools = built_in_pools(settings)
    assert set(pools) == {"security", "transactional", "bulk"}
    assert [a.address for a in pools["security"].addresses] == ["127.0.0.2"]
    assert pools["security"].return_path_domain == "bounces-otp.example.test"
    assert pools["bulk"].addresses == [] and pools["bulk"].return_path_domain is None
    assert all(pool.built_in for pool in pools.values())
    assert built_in_pools(Settings())["security"].return_path_domain is None
