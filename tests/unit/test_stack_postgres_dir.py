"""The PostgreSQL data folder moves out of a repository its account cannot enter."""

from __future__ import annotations

import pwd
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.stack.infra import _reachable_by, postgres_data_dir
from deploy.stack.profiles import TEST


@pytest.fixture
def account() -> str:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no postgres account on this machine")
    return "postgres"


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder whose every parent is world-enterable (pytest's own tmp_path is not)."""
    path = Path(tempfile.mkdtemp(dir="/var/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def test_private_parent_is_unreachable(folder: Path, account: str) -> None:
    private = folder / "private"
    private.mkdir(mode=0o700)
    public = folder / "public"
    public.mkdir(mode=0o755)

    assert not _reachable_by(private / "repo" / ".state" / "postgres", account)
    assert _reachable_by(public / "repo" / ".state" / "postgres", account)


def test_data_stays_in_the_state_folder_without_an_owner_switch() -> None:
    assert postgres_data_dir(TEST, None) == TEST.state_dir / "postgres"
