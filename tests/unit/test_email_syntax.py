"""``normalize_email`` agrees with email-validator (syntax only) on every address.

The fast path decides addresses of the common shape from a memo of email-validator's
verdict per domain (see services/ingest/validation.py). These tests compare it with
email-validator called on the whole address: the same rejections with the same message,
the same normalized form for every address it accepts. No known difference: where the two
could part (IDN, quoted local parts, IP literals, lengths, special-use domains) the fast
path does not apply and email-validator decides.
"""

from __future__ import annotations

import string

import pytest
from email_validator import EmailNotValidError, validate_email
from hypothesis import example, given, settings
from hypothesis import strategies as st

from services.ingest.validation import _check_domain, normalize_email

Outcome = tuple[str, str]


def _expected(address: str) -> Outcome:
    try:
        return "accepted", validate_email(address, check_deliverability=False).normalized
    except EmailNotValidError as e:
        return "rejected", str(e)


def _ours(address: str) -> Outcome:
    try:
        return "accepted", normalize_email(address)
    except EmailNotValidError as e:
        return "rejected", str(e)


def _assert_agree(address: str) -> None:
    expected = _expected(address)
    # Twice: the first call may fill the domain memo, the second certainly reads it.
    assert _ours(address) == expected
    assert _ours(address) == expected


LONG_DOMAIN = ".".join(["d" * 60] * 4) + ".com"  # 248 characters

TRICKY = [
    # Plain, and normalization of case.
    "ada@example.com",
    "Ada.Lovelace+news@Example.COM",
    "Postmaster@example.com",  # an RFC 2142 mailbox name: lower-cased
    "SALES@EXAMPLE.ORG",
    "o'brien@example.ie",
    "!#$%&'*+-/=?^_`{|}~@example.com",
    # Internationalized.
    "ü@exämple.de",
    "a@EXÄMPLE.DE",
    "a@xn--exmple-cua.de",
    "a@XN--EXMPLE-CUA.DE",
    "a@xn--invalid-.com",
    "a@xn--zz.com",
    "e\u0301@example.com",  # NFD local part: normalized to NFC
    "用户@例子.广告",
    "a@ex\u00a0ample.com",
    "a@ab--cd.com",  # two letters and two dashes: only Punycode may
    "a@exa_mple.com",
    # Quoted local parts, display names, IP literals: refused by default.
    '"a b"@example.com',
    '"ab"@example.com',
    '"a\\"b"@example.com',
    "Ada <ada@example.com>",
    "<ada@example.com>",
    "a@[192.0.2.1]",
    "a@[IPv6:2001:db8::1]",
    "a@[300.1.1.1]",
    # Dots.
    "a@example.com.",
    "a.@example.com",
    ".a@example.com",
    "a..b@example.com",
    "a@example..com",
    "a@.example.com",
    # Hyphens.
    "a@-example.com",
    "a@example-.com",
    "a@ex-ample.com",
    # Single-label and special-use domains.
    "a@b",
    "a@localhost",
    "x@test",
    "x@invalid",
    "x@mail.test",
    "x@printer.local",
    "x@hidden.onion",
    "x@1.0.0.127.in-addr.arpa",
    "x@home.arpa",
    "x@example",
    "x@example.com",
    "x@example.123",
    "x@123.com",
    "x@com",
    # Lengths.
    "a" * 64 + "@example.com",
    "a" * 65 + "@example.com",  # email-validator only checks the local length in strict mode
    "a" * 200 + "@example.com",
    "a@" + LONG_DOMAIN,  # 250 characters
    "abcd@" + LONG_DOMAIN,  # 253
    "abcde@" + LONG_DOMAIN,  # 254
    "abcdef@" + LONG_DOMAIN,  # 255
    "a@" + "d" * 64 + ".com",  # a label over 63
    "a@" + ".".join(["d" * 63] * 4) + ".com",  # a domain over 253
    "ü" * 120 + "@example.com",  # short in characters, long in UTF-8 bytes
    "a@" + "ä" * 60 + ".de",  # IDNA makes it longer
    # No @, several, empty parts, look-alikes, controls.
    "",
    "@",
    "a@",
    "@example.com",
    "ada",
    "a@b@example.com",
    "a\uff20example.com",
    "a\ufe6bexample.com",
    "a b@example.com",
    "a\t@example.com",
    "a\x00@example.com",
    "a@exam ple.com",
    "a@example.com\n",
    "a\u200b@example.com",
]


@pytest.mark.parametrize("address", TRICKY)
def test_tricky_addresses_agree(address: str) -> None:
    _assert_agree(address)


def test_the_fixed_list_covers_both_verdicts() -> None:
    verdicts = [_expected(address)[0] for address in TRICKY]
    assert verdicts.count("accepted") >= 15
    assert verdicts.count("rejected") >= 40


_LOCAL_ALPHABET = (
    string.ascii_letters + string.digits + ".+-_'!#$%&*/=?^`{|}~\"\\ ()<>,;:@[]éüß\u0301"
)
_LABEL_ALPHABET = "abcxyzABZ019-_.äüßé"
_LABEL = st.text(_LABEL_ALPHABET, max_size=10)
_TLD = st.sampled_from(
    [
        "com",
        "co.uk",
        "de",
        "test",
        "localhost",
        "local",
        "invalid",
        "onion",
        "arpa",
        "example",
        "123",
        "xn--p1ai",
        "c",
        "",
    ]
)
_DOMAIN = st.one_of(
    st.lists(_LABEL, min_size=1, max_size=4).map(".".join),
    st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, max_size=3), _TLD),
    st.builds(lambda n, k: ".".join(["d" * n] * k) + ".com", st.integers(1, 64), st.integers(1, 5)),
    st.sampled_from(["[192.0.2.1]", "[IPv6:::1]", "[::1]", "example.com.", "EXAMPLE.COM"]),
)
_LOCAL = st.one_of(
    st.text(_LOCAL_ALPHABET, max_size=20),
    st.builds(lambda n: "a" * n, st.integers(0, 250)),
)


@settings(max_examples=2000, deadline=None)
@given(st.builds(lambda local, domain: f"{local}@{domain}", _LOCAL, _DOMAIN))
@example("a@b")
@example("x@localhost")
def test_generated_addresses_agree(address: str) -> None:
    _assert_agree(address)


@settings(max_examples=300, deadline=None)
@given(st.emails())
def test_generated_valid_addresses_agree(address: str) -> None:
    _assert_agree(address)


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_any_text_agrees(text: str) -> None:
    _assert_agree(text)


def test_the_common_shape_takes_the_memo() -> None:
    # Without it the agreement above would prove nothing about the fast path.
    before = _check_domain.cache_info()
    for local in ("ada", "bob", "Carla.Diaz+news"):
        assert normalize_email(f"{local}@memo-check.example.com") == (
            f"{local}@memo-check.example.com"
        )
    after = _check_domain.cache_info()
    assert after.misses - before.misses <= 1
    assert after.hits - before.hits >= 2
