"""``signing.verify``, what a receiver does with ``Milepost-Signature``: it answers for any
header a stranger sends, never raising."""

from __future__ import annotations

import pytest

from milepost_common.domain.webhooks import signing

SECRET = "mpwh_test"
BODY = b'{"id":"x","type":"ping"}'
NOW = 1_700_000_000


def test_a_signature_of_the_body_verifies() -> None:
    header = signing.sign(SECRET, BODY, NOW)
    assert signing.verify(SECRET, BODY, header, now=NOW)
    assert not signing.verify(SECRET, BODY + b" ", header, now=NOW)
    assert not signing.verify("mpwh_other", BODY, header, now=NOW)


def test_a_stale_signature_is_a_replay() -> None:
    header = signing.sign(SECRET, BODY, NOW)
    assert not signing.verify(SECRET, BODY, header, now=NOW + signing.DEFAULT_TOLERANCE_S + 1)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "t=abc,v1=00",
        f"t={NOW}",
        f"t={NOW},v1=é",  # not ASCII: compare_digest refuses such str with a TypeError
        f"t={NOW},v1=\u0660\u0661",
        f"t={NOW},v1={'ff' * 32},v1=ü",
    ],
)
def test_a_forged_header_is_refused_not_an_error(header: str) -> None:
    assert signing.verify(SECRET, BODY, header, now=NOW) is False
