"""A real DNS server on loopback (dnslib's, UDP and TCP on one port) answering what a test puts in.

Domain checks and DKIM verification in tests ask it over the network, as they would ask any
nameserver: nothing in the code under test knows it is a test.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import dns.rdatatype
import dns.resolver
from dnslib import AAAA, CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

TTL = 60
TXT_CHUNK = 255
"""A TXT record is a list of strings of at most 255 bytes each (a DKIM key is longer)."""


class LoopbackDns(BaseResolver):  # type: ignore[misc]
    """The records of one test, served by a DNS server it starts and stops."""

    def __init__(self) -> None:
        self._records: dict[DNSLabel, list[RR]] = {}
        self._failing: set[DNSLabel] = set()
        self._lock = threading.Lock()
        self.port = 0

    @property
    def nameserver(self) -> str:
        """The server as ``settings.dns_nameservers`` takes it."""
        return f"127.0.0.1:{self.port}"

    def add_txt(self, name: str, text: str) -> None:
        chunks = [text[i : i + TXT_CHUNK] for i in range(0, len(text), TXT_CHUNK)] or [""]
        self._add(RR(name, QTYPE.TXT, rdata=TXT(chunks), ttl=TTL))

    def add_cname(self, name: str, target: str) -> None:
        self._add(RR(name, QTYPE.CNAME, rdata=CNAME(target), ttl=TTL))

    def add_mx(self, name: str, exchange: str, preference: int = 10, ttl: int = TTL) -> None:
        """An MX record (``exchange`` ``"."`` with preference 0: a null MX, RFC 7505)."""
        self._add(RR(name, QTYPE.MX, rdata=MX(exchange, preference), ttl=ttl))

    def add_address(self, name: str, address: str, ttl: int = TTL) -> None:
        """An A (or, for an IPv6 address, AAAA) record."""
        if ":" in address:
            self._add(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=ttl))
        else:
            self._add(RR(name, QTYPE.A, rdata=A(address), ttl=ttl))

    def fail(self, name: str) -> None:
        """Answer SERVFAIL for every question about ``name``."""
        with self._lock:
            self._failing.add(DNSLabel(name))

    def clear(self, name: str) -> None:
        """Remove every record of ``name``."""
        with self._lock:
            self._records.pop(DNSLabel(name), None)
            self._failing.discard(DNSLabel(name))

    def _add(self, record: RR) -> None:
        with self._lock:
            self._records.setdefault(record.rname, []).append(record)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name, qtype = request.q.qname, request.q.qtype
        with self._lock:
            if name in self._failing:
                reply.header.rcode = RCODE.SERVFAIL
                return reply
            found = self._records.get(name)
            if found is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
            for record in found:
                if record.rtype == qtype:
                    reply.add_answer(record)
        return reply

    @contextmanager
    def running(self) -> Iterator[LoopbackDns]:
        """Serve on a free loopback port, UDP and TCP, until the block ends."""
        quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
        udp = DNSServer(self, address="127.0.0.1", port=0, logger=quiet)
        self.port = udp.server.server_address[1]
        tcp = DNSServer(self, address="127.0.0.1", port=self.port, tcp=True, logger=quiet)
        udp.start_thread()
        tcp.start_thread()
        try:
            yield self
        finally:
            udp.stop()
            tcp.stop()
            udp.server.server_close()
            tcp.server.server_close()


def txt_lookup(nameserver: LoopbackDns) -> Callable[[bytes, float], bytes]:
    """A ``dnsfunc`` for ``dkim.verify``: the TXT record at a name, asked of ``nameserver``."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = nameserver.port
    resolver.lifetime = 5.0

    def lookup(name: bytes, timeout: float = 5.0) -> bytes:
        try:
            answer = resolver.resolve(name.decode().rstrip("."), dns.rdatatype.TXT)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return b""
        return b"".join(b"".join(rdata.strings) for rdata in answer)

    return lookup
