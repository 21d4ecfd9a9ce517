"""Checking a sending domain's records over DNS (dnspython's async resolver) and saving the verdict.

The nameservers are ``settings.dns_nameservers`` (tests point them at a DNS server on
loopback), or the system's when that is empty. A name that does not exist or has no record of
the type is *missing*; a server failure or a timeout means the record *could not be checked*,
which never counts against the domain.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import asyncpg
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.TXT
import dns.resolver

from libs.domain_records import (
    Answer,
    DnsRecord,
    Unanswered,
    check_record,
    dns_records,
    domain_status,
)
from libs.sending_domains import SendingDomain, domains_due, save_check, sending_domain
from libs.settings import Settings

log = logging.getLogger(__name__)

DNS_PORT = 53
UNPROVEN_RECHECK = timedelta(minutes=10)
"""How often a domain not verified yet (or failed) is checked again."""
VERIFIED_RECHECK = timedelta(days=1)
"""How often a verified domain is checked again, to notice records that were removed."""
CONCURRENT_CHECKS = 10
"""Domains checked at once by the periodic re-check: a slow nameserver delays the rest less."""


def resolver_of(settings: Settings) -> dns.asyncresolver.Resolver:
    """A resolver asking ``settings.dns_nameservers`` (``host`` or ``host:port``), or the
    system's nameservers when none are set."""
    listed = [entry.strip() for entry in settings.dns_nameservers.split(",") if entry.strip()]
    resolver = dns.asyncresolver.Resolver(configure=not listed)
    if listed:
        nameservers: list[str | dns.nameserver.Nameserver] = []
        for entry in listed:
            host, _, port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
            nameservers.append(dns.nameserver.Do53Nameserver(host, int(port or DNS_PORT)))
        resolver.nameservers = nameservers
    resolver.lifetime = settings.dns_timeout_seconds
    return resolver


async def lookup(resolver: dns.asyncresolver.Resolver, record: DnsRecord) -> Answer:
    """What DNS holds at the record's name for its type."""
    try:
        answer = await resolver.resolve(record.name, record.type, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return ()
    except dns.resolver.NoNameservers:
        return Unanswered("no nameserver answered (SERVFAIL or refused)")
    except dns.exception.Timeout:
        return Unanswered("DNS timed out")
    except dns.exception.DNSException as error:
        return Unanswered(f"{type(error).__name__}: {error}")
    found: list[str] = []
    for rdata in answer.rrset or ():
        if isinstance(rdata, dns.rdtypes.ANY.TXT.TXT):
            found.append(b"".join(rdata.strings).decode("utf-8", "replace"))
        elif isinstance(rdata, dns.rdtypes.ANY.CNAME.CNAME):
            found.append(rdata.target.to_text(omit_final_dot=True))
    return tuple(found)


async def verify_domain(
    pool: asyncpg.Pool, settings: Settings, domain: SendingDomain
) -> SendingDomain | None:
    """Check every record of ``domain`` now and save the verdict, unless a check begun later
    (the periodic one, another instance) saved its own first; the domain as it then stands
    (None: removed meanwhile)."""
    started = datetime.now(UTC)
    resolver = resolver_of(settings)
    records = dns_records(domain.domain, domain.dkim, settings)
    answers = await asyncio.gather(*(lookup(resolver, record) for record in records))
    checks = [check_record(r, a) for r, a in zip(records, answers, strict=True)]
    status = domain_status(domain.status, checks)
    saved = await save_check(pool, domain, status, checks, started)
    return saved or await sending_domain(pool, domain.tenant_id, domain.domain)


async def verify_due_domains(pool: asyncpg.Pool, settings: Settings, limit: int = 100) -> int:
    """Check the domains whose last check is older than their status allows; return how many."""
    now = datetime.now(UTC)
    due = await domains_due(
        pool, now - UNPROVEN_RECHECK, now - VERIFIED_RECHECK, limit, not settings.dev_mode
    )
    turns = asyncio.Semaphore(CONCURRENT_CHECKS)

    async def recheck(domain: SendingDomain) -> None:
        async with turns:
            checked = await verify_domain(pool, settings, domain)
        if checked is not None and checked.status is not domain.status:
            log.info("domain %s of %s is now %s", domain.domain, domain.tenant_id, checked.status)

    await asyncio.gather(*(recheck(domain) for domain in due))
    return len(due)
