"""The one bounce classifier: what an SMTP reply or a delivery status notification says about a
recipient — why the mail did not go (a ``BounceCategory``) and whether the address itself is
dead (a hard bounce, to suppress) or the failure is about time, volume, content or the sender.

The sender classifies the synchronous replies it gets, the feedback listener the DSNs that come
back later; both read the same rule table, ``bounce_rules.toml`` beside this module.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from schemas.events import Bounce, BounceCategory
from schemas.pipeline import SmtpReply

RULES_FILE = Path(__file__).with_name("bounce_rules.toml")

_STATUS = r"[245]\.\d{1,3}\.\d{1,3}"
_LEADING_STATUS = re.compile(rf"^\s*(?:\d{{3}}[ -])?({_STATUS})(?:\s+|$)")
_ANY_STATUS = re.compile(rf"(?<![\w.\-])#?({_STATUS})(?!\.?\d)")
_COMMAND = re.compile(
    r"(?P<data>>>> data|in reply to (?:end of )?data|after (?:end of )?data\b|data command)"
    r"|(?P<rcpt>\brcpt\b|rcpt_to|does not like recipient)"
    r"|>>> mail from|mail from:|in reply to mail|\behlo\b|\bhelo\b|refused to talk to me"
)
_REPLY_CODE = re.compile(r"(?<![\w.\-#/:=])([245][0-5]\d)[ -]+(?=[245]\.\d|[^\d\s])")

MAILBOX_REJECTION_CODES = frozenset({550, 551, 553})
"""Reply codes of a rejected mailbox, trusted as a dead address when nothing else matches and
the text hints at no other cause."""

OTHER_CAUSE_HINTS = (
    "try again",
    "try later",
    "temporar",
    "greylist",
    "graylist",
    "rate limit",
    "too many",
    "quota",
    "mailbox full",
    "spam",
    "policy",
    "blocked",
    "blacklist",
    "blocklist",
    "rejected",
    "denied",
    "refused",
)
"""Words of a plain 550-style reply that blame time, volume or policy rather than the address."""

TEMPORARY_HINTS = (" temporar", " persistent", "try again later", "will retry", "deferred")
"""Words that make a failure with neither reply code nor status a temporary one."""


@dataclass(frozen=True)
class Classification:
    """Why a message to one recipient failed, and whether that recipient's address is dead."""

    category: BounceCategory
    hard: bool


@dataclass(frozen=True)
class Context:
    """What is known around a reply: the report text around it (read only for the SMTP command
    it answered), and whether words alone may call an address dead when no command is named."""

    text: str = ""
    command_required: bool = False
    """True for a text bounce, which seldom says which command failed: a "no such user" that
    names none is read as Sisimai reads it, a filter (soft)."""


NOTHING_AROUND = Context()
"""A reply on its own, such as the sender's synchronous one."""


@dataclass(frozen=True)
class Rule:
    """One row of the rule table: the words and status codes that mean one kind of failure."""

    name: str
    category: BounceCategory
    hard: bool
    statuses: frozenset[str]
    phrases: tuple[str, ...]
    pairs: tuple[tuple[str, ...], ...]
    unless: tuple[str, ...]
    status_yields_to: tuple[str, ...]
    after_data: str | None

    def says(self, text: str) -> bool:
        """True when lower-cased, whitespace-collapsed ``text`` has this rule's words."""
        if any(word in text for word in self.unless):
            return False
        return any(phrase in text for phrase in self.phrases) or any(
            _in_order(text, pieces) for pieces in self.pairs
        )


def _in_order(text: str, pieces: tuple[str, ...]) -> bool:
    """True when every piece is in ``text``, each after the one before."""
    at = 0
    for piece in pieces:
        found = text.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


def load_rules(path: Path = RULES_FILE) -> tuple[Rule, ...]:
    """The rule table in ``path``, in the order the rules are tried."""
    with path.open("rb") as file:
        table = tomllib.load(file)
    return tuple(
        Rule(
            name=row["name"],
            category=BounceCategory(row["category"]),
            hard=row["hard"],
            statuses=frozenset(row.get("statuses", ())),
            phrases=tuple(row.get("phrases", ())),
            pairs=tuple(tuple(pieces) for pieces in row.get("pairs", ())),
            unless=tuple(row.get("unless", ())),
            status_yields_to=tuple(row.get("status_yields_to", ())),
            after_data=row.get("after_data"),
        )
        for row in table["rule"]
    )


RULES = load_rules()
_BY_NAME = {rule.name: rule for rule in RULES}


def split_status(text: str) -> tuple[str | None, str]:
    """The RFC 3463 enhanced status at the start of a reply's text (after an optional reply
    code, as in ``550-5.1.1 ...``), and the text after it."""
    if match := _LEADING_STATUS.match(text):
        return match[1], text[match.end() :]
    return None, text


def find_status(text: str, classes: str = "245") -> str | None:
    """The first enhanced status of one of ``classes`` anywhere in ``text``, preferring a
    specific one to a bare ``X.0.0`` or the catch-all ``4.4.7`` (delivery time expired)."""
    found = [m[1] for m in _ANY_STATUS.finditer(text) if m[1][0] in classes]
    specific = [status for status in found if not status.endswith(".0.0") and status != "4.4.7"]
    return (specific or found or [None])[0]


def find_reply_code(text: str, status: str | None = None) -> int | None:
    """The first failure (4xx, 5xx) reply code in ``text``; with ``status``, the first one of
    the status's class."""
    wanted = status[0] if status else "45"
    return next((int(m[1]) for m in _REPLY_CODE.finditer(text) if m[1][0] in wanted), None)


def explains(text: str) -> bool:
    """True when ``text`` says why mail failed: a status, a reply code or a rule's words."""
    return (
        find_status(text) is not None
        or find_reply_code(text) is not None
        or matching_rule(None, _words(text)) is not None
    )


def _words(text: str) -> str:
    return " ".join(text.lower().split())


def _permanent(code: int | None, status: str | None, words: str) -> bool:
    if status is not None:
        return status.startswith("5")
    if code:
        return code >= 500
    return not any(hint in words for hint in TEMPORARY_HINTS)


def replied_to(words: str, context: str = "") -> str | None:
    """The SMTP command a reply answered, ``"data"``, ``"rcpt"`` or ``"other"`` (None: not
    known): the last one its text names, else the first one the report around it names."""
    named = list(_COMMAND.finditer(words)) or list(_COMMAND.finditer(context))[:1]
    if not named:
        return None
    last = named[-1]
    return "data" if last["data"] else "rcpt" if last["rcpt"] else "other"


def _gives_way(rule: Rule, status: str | None, words: str, context: Context) -> bool:
    """True when ``rule``, matched by its words, is about the message rather than the address:
    the reply answered DATA, or no command is named where one must be, or its status names a
    cause other than the address or the protocol (not X.0.Y, X.1.Y, X.5.Y) and nothing shows it
    answered RCPT. This is Sisimai's reading: a "no such user" to the message itself comes from
    a filter."""
    if rule.after_data is None or status in rule.statuses:
        return False
    command = replied_to(words, _words(context.text))
    if command is None and context.command_required:
        return True
    another_cause = status is not None and status[2:4] not in ("0.", "1.", "5.")
    return command == "data" or (another_cause and command != "rcpt")


def matching_rule(status: str | None, words: str, context: Context = NOTHING_AROUND) -> Rule | None:
    """The first rule whose words are in ``words`` or whose status codes hold ``status``; a
    rule with ``after_data`` matched by its words may give way to that rule (``_gives_way``)."""
    found = next(
        (
            rule
            for rule in RULES
            if rule.says(words)
            or (
                status in rule.statuses
                and not any(_BY_NAME[name].says(words) for name in rule.status_yields_to)
            )
        ),
        None,
    )
    if found is not None and found.after_data and _gives_way(found, status, words, context):
        return _BY_NAME[found.after_data]
    return found


def _fallback(code: int | None, status: str | None, words: str) -> Rule | None:
    """The rule for a reply no rule matched: its status class, or a plain mailbox rejection."""
    if status is not None and status[2:4] in ("6.", "7."):
        return _BY_NAME["content_error" if status[2] == "6" else "security_error"]
    informative = status is not None and not status.endswith(".0.0")
    if (
        not informative
        and code in MAILBOX_REJECTION_CODES
        and not any(hint in words for hint in OTHER_CAUSE_HINTS)
    ):
        return _BY_NAME["user_unknown"]
    return None


def classify(
    code: int | None, status: str | None, text: str, context: Context = NOTHING_AROUND
) -> Classification:
    """Classify a failure from its reply code (0 or None: none, such as a network error), its
    enhanced status (None: read it from ``text``), its diagnostic text, and what is known
    around it (a report's text, for the SMTP command the reply answered)."""
    status = status or find_status(text)
    words = _words(text)
    rule = matching_rule(status, words, context) or _fallback(code, status, words)
    if rule is None:
        return Classification(BounceCategory.OTHER, hard=False)
    return Classification(rule.category, hard=rule.hard and _permanent(code, status, words))


def reply_bounce(reply: SmtpReply) -> Bounce:
    """The classification a ``bounced`` or ``deferred`` event carries for a synchronous reply;
    the sender's own code 0 (a network error or timeout) says nothing about the recipient."""
    if reply.code == 0:
        return Bounce(category=BounceCategory.OTHER, hard=False)
    found = classify(reply.code, reply.enhanced_status, reply.text)
    return Bounce(category=found.category, hard=found.hard)
