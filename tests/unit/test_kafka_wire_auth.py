"""The wire client's SASL login: SCRAM against RFC 7677's worked example."""

from __future__ import annotations

import pytest

from qctl.backends.kafka.wire.auth import SaslError, ScramClient

SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)


def rfc7677() -> ScramClient:
    return ScramClient("SCRAM-SHA-256", "user", "pencil", nonce="rOprNGfwEbeRWgbNEkqO")


def test_scram_sha_256_matches_rfc_7677() -> None:
    client = rfc7677()
    assert client.first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert client.final(SERVER_FIRST) == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
    )
    client.check(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_a_forged_server_signature_or_nonce_is_refused() -> None:
    client = rfc7677()
    client.final(SERVER_FIRST)
    with pytest.raises(SaslError, match="signature"):
        client.check(b"v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(SaslError, match="invalid-proof"):
        client.check(b"e=invalid-proof")
    with pytest.raises(SaslError, match="nonce"):
        rfc7677().final(b"r=someone-else,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_user_names_are_escaped() -> None:
    client = ScramClient("SCRAM-SHA-512", "a=b,c", "x", nonce="n")
    assert client.first() == b"n,,n=a=3Db=2Cc,r=n"
