"""KRaft cluster ids the storage tool accepts: 22 base64url characters, never a leading dash."""

from __future__ import annotations

import base64

from deploy.stack.infra import _cluster_id


def test_cluster_ids_are_16_bytes_and_never_look_like_an_option() -> None:
    ids = [_cluster_id() for _ in range(2000)]  # a leading "-" would show in ~30 of them

    assert not [cluster for cluster in ids if cluster.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(cluster + "==")) == 16 for cluster in ids)
    assert len(set(ids)) == len(ids)
