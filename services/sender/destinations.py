"""Where one message's SMTP connection goes: the hosts to try, in order, and their site.

A site is what traffic shaping counts against: the server of a relay or the simulator, or for
direct delivery the recipient domain's MX host group (every domain hosted by one provider shares
its limits and its throttling).
"""

from __future__ import annotations

from dataclasses import dataclass

from schemas.pipeline import Route, RouteKind


@dataclass(frozen=True)
class Destination:
    """The servers to offer one message to, best first, and the site they belong to."""

    site: str
    hosts: list[tuple[str, int]]


def server_site(host: str, port: int) -> str:
    """The site of one fixed server (a relay, the simulator)."""
    return f"{host.lower()}:{port}"


async def resolve(route: Route, recipient_domain: str) -> Destination:
    """The destination of a message to ``recipient_domain`` over ``route``."""
    if route.kind is RouteKind.MX:
        raise NotImplementedError("direct delivery resolves MX hosts (H2)")
    return Destination(server_site(route.host, route.port), [(route.host, route.port)])
