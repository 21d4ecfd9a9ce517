"""RFC 8058 one-click unsubscribe: the ``List-Unsubscribe`` headers of the mail that offers it.

Gmail and Yahoo require one-click unsubscribe of bulk senders, and every mailbox provider shows
an "unsubscribe" button next to mail that carries it — which is far better for the sender's
reputation than the "report spam" button the recipient would press instead. The link points at
the gateway (``POST /v1/unsubscribe/{token}``), its token signed for the message and its stream
(``libs.message_tokens``), so it unsubscribes that recipient from that stream only.
"""

from __future__ import annotations

from dataclasses import dataclass

from libs.message_tokens import Purpose, sign
from libs.verp import UNSUBSCRIBE_LOCAL, UNSUBSCRIBE_PATH, bounce_domain, token_address
from schemas.common import Lane, natural_lane
from schemas.pipeline import MessageSpec

ONE_CLICK = "List-Unsubscribe=One-Click"
LIST_HEADERS = frozenset({"list-unsubscribe", "list-unsubscribe-post"})


@dataclass(frozen=True)
class OneClick:
    """Where one message's recipient unsubscribes: the link to POST to, and an address."""

    url: str
    mailto: str

    def header_lines(self) -> str:
        """``List-Unsubscribe`` (the https link first, as RFC 8058 wants) and
        ``List-Unsubscribe-Post``, each on its own lines."""
        return (
            f"List-Unsubscribe: <{self.url}>,\r\n <mailto:{self.mailto}>\r\n"
            f"List-Unsubscribe-Post: {ONE_CLICK}\r\n"
        )


def offers_unsubscribe(spec: MessageSpec) -> bool:
    """Whether a message carries the one-click headers: broadcast mail always, transactional
    mail unless it is account-security mail or sets its own list headers.

    Security mail (one-time codes, password resets, login verification, security alerts — the
    critical categories) is never offered: a recipient cannot opt out of the codes that let them
    into their account, and an unsubscribe button on a reset mail would only invite a click that
    locks them out of the next one. A message with its own ``List-Unsubscribe`` keeps it: the
    customer runs that list.
    """
    if any(name.lower() in LIST_HEADERS for name in spec.headers):
        return False
    return natural_lane(spec.category, spec.stream) is not Lane.CRITICAL


def one_click(key: bytes, spec: MessageSpec, public_url: str, bounce_address: str) -> OneClick:
    """The one-click unsubscribe of ``spec``: its token signed with its stream; the mailto form
    is the same token at the bounce domain, which the feedback listener takes too."""
    token = sign(key, Purpose.UNSUBSCRIBE, spec.tenant_id, spec.message_id, spec.stream)
    return OneClick(
        url=f"{public_url.rstrip('/')}{UNSUBSCRIBE_PATH}{token}",
        mailto=token_address(UNSUBSCRIBE_LOCAL, bounce_domain(bounce_address), token),
    )
