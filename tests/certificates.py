"""Code-signing certificates made on the spot (a CA and a leaf it issued), as a device would report them."""

from __future__ import annotations

import base64
from datetime import datetime, timedelta, timezone
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.reputation.publishers import Certificate, parse_certificates


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


@cache
def _key():
    return ec.generate_private_key(ec.SECP256R1())


def make(subject: str, issuer: str, *, ca: bool, days: tuple[int, int] = (-30, 365)) -> x509.Certificate:
    now = datetime.now(timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
               .public_key(_key().public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now + timedelta(days=days[0])).not_valid_after(now + timedelta(days=days[1]))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), critical=False)
    return builder.sign(_key(), hashes.SHA256())


def b64(cert: x509.Certificate) -> str:
    return base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()


def certificate_chain(publisher: str, *, days: tuple[int, int] = (-30, 365)) -> tuple[str, Certificate]:
    """(publisherCert text: the leaf then its CA, base64 DER separated by a space, the parsed leaf)."""
    leaf = make(publisher, f"{publisher} CA", ca=False, days=days)
    text = f"{b64(leaf)} {b64(make(f'{publisher} CA', f'{publisher} CA', ca=True))}"
    return text, parse_certificates(text)[0][0]
