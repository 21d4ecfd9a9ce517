"""The Bloom filter in front of the suppression look-ups: no false negatives, few positives."""

from __future__ import annotations

from services.policy_check.view import FALSE_POSITIVE_RATE, AddressFilter


def test_every_added_key_is_found_and_few_others_are() -> None:
    bloom = AddressFilter(10_000)
    added = [("tenant-a", f"user{i}@example.test") for i in range(10_000)]
    for key in added:
        bloom.add(key)
    assert all(key in bloom for key in added)
    others = [("tenant-b", f"user{i}@example.test") for i in range(20_000)]
    false_positives = sum(key in bloom for key in others) / len(others)
    assert false_positives < 2 * FALSE_POSITIVE_RATE
    assert not bloom.full


def test_a_filter_is_full_beyond_its_capacity() -> None:
    bloom = AddressFilter(2)
    for i in range(3):
        bloom.add(("t", f"{i}@example.test"))
    assert bloom.full


def test_a_million_keys_fit_in_little_memory() -> None:
    assert len(AddressFilter(1_000_000).bits) < 1_300_000
