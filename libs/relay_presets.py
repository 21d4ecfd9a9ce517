"""Relay presets: the big providers' submission settings, and the sending limits they document.

A relay route that names a preset gets its host, port, TLS mode and AUTH method
(``libs.routes.RouteFields``); the limits are what the provider enforces per account, for the
tenant to plan with and for traffic shaping to stay under.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from schemas.pipeline import AuthMethod, TlsMode


class ProviderLimits(BaseModel):
    """A provider's documented sending limits for one account (None: not published)."""

    recipients_per_day: int | None = None
    recipients_per_message: int | None = None
    messages_per_minute: int | None = None
    concurrent_connections: int | None = None


class Preset(BaseModel):
    """A provider's submission settings, filled in for a relay route that names it."""

    model_config = ConfigDict(frozen=True)

    name: str
    provider: str
    host: str
    port: int
    tls: TlsMode
    auth: AuthMethod
    username: str
    """What the provider takes as the AUTH user name."""
    password: str
    """What the provider takes as the AUTH password."""
    limits: ProviderLimits
    notes: str
    sources: tuple[str, ...]


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="gmail",
            provider="Gmail (personal Google account)",
            host="smtp.gmail.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.PLAIN,
            username="the full Gmail address",
            password="a 16-character app password (needs 2-Step Verification); Google stopped"
            " accepting the account password over SMTP in 2025",
            limits=ProviderLimits(recipients_per_day=500, recipients_per_message=100),
            notes="About 500 recipients a day over a rolling 24 h; over the limit Gmail refuses"
            " mail for up to a day. For testing and very small volumes only.",
            sources=(
                "https://support.google.com/mail/answer/22839 (Gmail sending limits)",
                "https://support.google.com/accounts/answer/185833 (app passwords)",
            ),
        ),
        Preset(
            name="google-workspace",
            provider="Google Workspace SMTP relay service",
            host="smtp-relay.gmail.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.PLAIN,
            username="a registered Workspace user's address (or none with IP authentication,"
            " configured by the Workspace admin)",
            password="that user's app password",
            limits=ProviderLimits(recipients_per_day=10_000),
            notes="Per registered user: 10,000 messages and 10,000 unique recipients in 24 h"
            " (550 5.4.5 beyond); the admin must turn the relay service on, and SMTP AUTH there"
            " requires TLS.",
            sources=("https://support.google.com/a/answer/2956491 (SMTP relay limits)",),
        ),
        Preset(
            name="outlook",
            provider="Outlook.com (personal Microsoft account)",
            host="smtp-mail.outlook.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.LOGIN,
            username="the full Outlook.com / Hotmail / Live address",
            password="an app password when two-step verification is on, else the account's",
            limits=ProviderLimits(recipients_per_day=300, recipients_per_message=100),
            notes="About 300 recipients a day for a free account, less while an account is new;"
            " Microsoft 365 subscribers get up to 5,000 a day and 500 per message.",
            sources=(
                "https://support.microsoft.com/office/sending-limits-in-outlook-com-"
                "279ee200-594c-40f0-9ec8-bb6af7735c2e",
                "https://www.msoutlook.info/question/235 (free account limits)",
            ),
        ),
        Preset(
            name="yahoo",
            provider="Yahoo Mail",
            host="smtp.mail.yahoo.com",
            port=465,
            tls=TlsMode.IMPLICIT,
            auth=AuthMethod.PLAIN,
            username="the full Yahoo address",
            password="an app password (Yahoo refuses the account password over SMTP)",
            limits=ProviderLimits(recipients_per_day=500, recipients_per_message=100),
            notes="Yahoo does not publish consumer limits; its small-business SMTP help gives"
            " 500 recipients a day and 100 per message, which is what to plan for.",
            sources=(
                "https://help.yahoo.com/kb/SLN4075.html (server settings)",
                "https://help.yahoo.com/kb/SLN17518.html (SMTP sending limits)",
            ),
        ),
        Preset(
            name="office365",
            provider="Microsoft 365 / Exchange Online (SMTP AUTH client submission)",
            host="smtp.office365.com",
            port=587,
            tls=TlsMode.STARTTLS,
            auth=AuthMethod.LOGIN,
            username="the mailbox's address",
            password="its password or app password (the tenant admin must enable SMTP AUTH for"
            " the mailbox; Microsoft is retiring Basic auth for client submission)",
            limits=ProviderLimits(
                recipients_per_day=10_000,
                recipients_per_message=500,
                messages_per_minute=30,
                concurrent_connections=3,
            ),
            notes="Per mailbox: 10,000 recipients a day, 30 messages a minute, 3 concurrent"
            " connections (432 4.3.2 beyond).",
            sources=(
                "https://learn.microsoft.com/office365/servicedescriptions/"
                "exchange-online-service-description/exchange-online-limits",
                "https://techcommunity.microsoft.com/t5/exchange-team-blog/changes-coming-to-"
                "the-smtp-authenticated-submission-client/ba-p/607825",
            ),
        ),
    )
}
"""The relay presets. The figures were checked against the providers' pages named in each
``sources`` (through copies and third-party summaries of them) when written; providers change
them without notice, so they are guidance for shaping, not guarantees."""
