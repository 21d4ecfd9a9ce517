"""The site of an MX host group: what traffic shaping counts against."""

from __future__ import annotations

import pytest

from services.sender.destinations import mx_site


@pytest.mark.parametrize(
    ("hosts", "site"),
    [
        (["gmail-smtp-in.l.google.com.", "alt1.gmail-smtp-in.l.google.com"], "google"),
        (["aspmx.googlemail.com"], "google"),
        (["acme-com.mail.protection.outlook.com"], "microsoft"),
        (["mx1.hotmail.com.outlook.com"], "microsoft"),
        (["mta5.am0.yahoodns.net", "mta6.am0.yahoodns.net"], "yahoo"),
        (["mx01.mail.icloud.com", "mx02.mail.icloud.com"], "apple"),
        (["MX2.Example.test.", "mx1.example.test"], "mx1.example.test,mx2.example.test"),
        (["aspmx.l.google.com", "mx.example.test"], "aspmx.l.google.com,mx.example.test"),
        (["notgoogle.com"], "notgoogle.com"),
    ],
)
def test_known_providers_collapse_others_are_their_hosts(hosts: list[str], site: str) -> None:
    assert mx_site(hosts) == site
