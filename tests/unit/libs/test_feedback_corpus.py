"""The feedback parser against a labelled corpus of real bounces, complaints and auto-replies.

The corpus (Sisimai's ``set-of-emails``, with Sisimai's results as the labels) is not part of
the repository: it is read from ``../shared/corpus/bounces`` beside the repository, or from
``$SENDARIX_BOUNCE_CORPUS``, and the test is skipped where neither exists. The bar: at least
95 % of the failed recipients agree with the labels on the enhanced status and on hard/soft,
every complaint and auto-reply is recognised, and no file makes the parser crash.

Where a message carries no status code at all, Sisimai labels it with a code of its own
derived from its reason (``5.0.911`` for an unknown user, ``4.0.947`` for an expired one…, the
``X.0.9NN`` codes). Those are not RFC 3463 codes and the parser does not invent them: such a
recipient agrees on status when the parser finds no specific code of its own either (none,
or a bare ``X.0.0`` of the same class) and its category is the one of Sisimai's reason.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from libs.feedback_report import FeedbackKind, FeedbackReport, RecipientReport, parse_feedback
from schemas.events import BounceCategory

REPO_ROOT = Path(__file__).resolve().parents[3]
CORPUS = Path(
    os.environ.get("SENDARIX_BOUNCE_CORPUS") or REPO_ROOT.parent / "shared" / "corpus" / "bounces"
)
BAR = 0.95

SISIMAI_PSEUDO_STATUS = re.compile(r"^[45]\.0\.9\d\d$")

REASON_CATEGORY = {
    "userunknown": BounceCategory.INVALID_RECIPIENT,
    "hasmoved": BounceCategory.INVALID_RECIPIENT,
    "suspend": BounceCategory.INVALID_RECIPIENT,
    "hostunknown": BounceCategory.BAD_DOMAIN,
    "notaccept": BounceCategory.BAD_DOMAIN,
    "mailboxfull": BounceCategory.MAILBOX_FULL,
    "spamdetected": BounceCategory.SPAM_BLOCK,
    "virusdetected": BounceCategory.SPAM_BLOCK,
    "blocked": BounceCategory.SPAM_BLOCK,
    "badreputation": BounceCategory.SPAM_BLOCK,
    "filtered": BounceCategory.POLICY,
    "rejected": BounceCategory.POLICY,
    "policyviolation": BounceCategory.POLICY,
    "contenterror": BounceCategory.POLICY,
    "mesgtoobig": BounceCategory.POLICY,
    "exceedlimit": BounceCategory.POLICY,
    "notcompliantrfc": BounceCategory.POLICY,
    "norelaying": BounceCategory.POLICY,
    "requireptr": BounceCategory.POLICY,
    "securityerror": BounceCategory.POLICY,
    "speeding": BounceCategory.THROTTLING,
    "toomanyconn": BounceCategory.THROTTLING,
    "systemfull": BounceCategory.THROTTLING,
    "authfailure": BounceCategory.AUTH_FAILURE,
}
"""Sisimai's reasons as Sendarix categories (expired, network, system and mailer errors,
syntax errors, onhold and undefined are ``other``)."""


@dataclass
class Tally:
    """What the run found, for the figures and the bar."""

    recipients: int = 0
    status_agree: int = 0
    hard_agree: int = 0
    category_agree: int = 0
    complaints: int = 0
    complaints_seen: int = 0
    auto_replies: int = 0
    auto_replies_seen: int = 0
    crashes: int = 0


def _status_agrees(expected: dict[str, object], got: RecipientReport) -> bool:
    status = str(expected["status"])
    if not SISIMAI_PSEUDO_STATUS.match(status):
        return got.status == (status or None)
    no_code = got.status is None or got.status == f"{status[0]}.0.0"
    return no_code and got.category == _category(expected)


def _category(expected: dict[str, object]) -> BounceCategory:
    return REASON_CATEGORY.get(str(expected["reason"]), BounceCategory.OTHER)


def _paired(
    expected: list[dict[str, object]], got: tuple[RecipientReport, ...]
) -> list[tuple[dict[str, object], RecipientReport | None]]:
    """Labels and parsed recipients paired in order (the labels name no address)."""
    return [(e, got[i] if i < len(got) else None) for i, e in enumerate(expected)]


def _tally(cases: list[dict[str, object]], disagreements: list[str]) -> Tally:
    tally = Tally()
    for case in cases:
        name = str(case["file"])
        expected: list[dict[str, object]] = case["expected"]  # type: ignore[assignment]
        try:
            report = parse_feedback((CORPUS / "messages" / name).read_bytes())
        except Exception as error:  # the parser must never raise: count it and go on
            tally.crashes += 1
            disagreements.append(f"{name}: CRASH {error!r}")
            report = FeedbackReport(FeedbackKind.OTHER, (), None, None, {})
        reasons = {str(e["reason"]) for e in expected}
        if "feedback" in reasons:
            tally.complaints += 1
            tally.complaints_seen += report.kind is FeedbackKind.COMPLAINT
        if "vacation" in reasons:
            tally.auto_replies += 1
            tally.auto_replies_seen += report.kind is FeedbackKind.AUTO_REPLY
        if reasons & {"feedback", "vacation"}:
            if report.kind not in (FeedbackKind.COMPLAINT, FeedbackKind.AUTO_REPLY):
                disagreements.append(f"{name}: kind {report.kind} for {sorted(reasons)}")
            continue
        for label, got in _paired(expected, report.recipients):
            tally.recipients += 1
            status_ok = got is not None and _status_agrees(label, got)
            hard_ok = got is not None and got.hard_bounce == label["hard_bounce"]
            tally.status_agree += status_ok
            tally.hard_agree += hard_ok
            tally.category_agree += got is not None and got.category == _category(label)
            if not (status_ok and hard_ok):
                seen = (
                    "no recipient"
                    if got is None
                    else f"{got.status} {got.category} hard={got.hard_bounce} "
                    f"{(got.diagnostic or '')[:100]!r}"
                )
                disagreements.append(
                    f"{name}: want {label['status']} {label['reason']} "
                    f"hard={label['hard_bounce']}; got {seen}"
                )
    return tally


@pytest.mark.skipif(
    not (CORPUS / "expected.json").is_file(),
    reason=f"no bounce corpus at {CORPUS} (set SENDARIX_BOUNCE_CORPUS to its folder)",
)
def test_feedback_parser_agrees_with_the_labelled_corpus(
    capsys: pytest.CaptureFixture[str],
) -> None:
    cases = json.loads((CORPUS / "expected.json").read_text())
    disagreements: list[str] = []
    tally = _tally(cases, disagreements)
    status_rate = tally.status_agree / tally.recipients
    hard_rate = tally.hard_agree / tally.recipients
    files = {line.split(":")[0] for line in disagreements}
    with capsys.disabled():  # the figures show in every run, not only a failing one
        print(f"\nbounce corpus: {len(cases)} messages, {tally.recipients} failed recipients")
        print(
            f"  enhanced status agrees: {tally.status_agree}/{tally.recipients} = {status_rate:.1%}"
        )
        print(f"  hard/soft agrees:       {tally.hard_agree}/{tally.recipients} = {hard_rate:.1%}")
        print(f"  category agrees:        {tally.category_agree}/{tally.recipients} (not asserted)")
        print(f"  complaints recognised:  {tally.complaints_seen}/{tally.complaints}")
        print(f"  auto-replies recognised: {tally.auto_replies_seen}/{tally.auto_replies}")
        print(f"  crashes: {tally.crashes}; files with a disagreement: {len(files)}")
    for line in disagreements:  # shown when the test fails
        print("  ", line)
    assert tally.crashes == 0
    assert tally.complaints_seen == tally.complaints
    assert tally.auto_replies_seen == tally.auto_replies
    assert status_rate >= BAR and hard_rate >= BAR
