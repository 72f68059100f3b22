"""Publisher facts from what a device reports: the signing certificates (Graph `publisherCert`) and the publisher
name. Pure: parses and normalises, decides nothing."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

PEM = re.compile(r"-----BEGIN CERTIFICATE-----(.+?)-----END CERTIFICATE-----", re.S)
SEPARATORS = re.compile(r"[\s,;|]+")


@dataclass(frozen=True)
class Certificate:
    subject: str          # common name (or the whole subject when it has none)
    issuer: str
    thumbprint: str       # SHA-1 of the DER, lowercase hex (what Windows shows)
    thumbprint_sha256: str
    tbs_sha256: str       # SHA-256 of the to-be-signed part (how LOLDrivers and WDAC name a signer)
    not_before: datetime
    not_after: datetime
    self_signed: bool
    is_ca: bool


def parse_certificates(text: str) -> tuple[list[Certificate], str]:
    """(certificates, problem): PEM blocks, or base64 DER separated by whitespace, commas, semicolons or bars.
    `problem` says why some text was not a certificate ("" when all of it was)."""
    text = text.strip()
    if not text:
        return [], ""
    blobs = [block for block in PEM.findall(text)] or [p for p in SEPARATORS.split(text) if p]
    certificates = []
    for blob in blobs:
        try:
            certificates.append(_certificate(base64.b64decode("".join(blob.split()), validate=True)))
        except (binascii.Error, ValueError) as exc:
            return certificates, f"publisherCert is not a base64 X.509 certificate ({type(exc).__name__})"
    return certificates, ""


def leaf(certificates: list[Certificate]) -> Certificate | None:
    """The signer: the first certificate that is not a CA (or the first one)."""
    return next((c for c in certificates if not c.is_ca), certificates[0] if certificates else None)


def normalize_name(name: str) -> str:
    """A publisher name as rules compare it: lowercase, single spaces."""
    return " ".join(name.lower().split())


def normalize_thumbprint(value: str) -> str | None:
    """A SHA-1 or SHA-256 thumbprint as lowercase hex (colons and spaces allowed); None when it is not one."""
    text = re.sub(r"[\s:]", "", value).lower()
    return text if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", text) else None


def _certificate(der: bytes) -> Certificate:
    cert = x509.load_der_x509_certificate(der)
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    return Certificate(
        subject=_name(cert.subject), issuer=_name(cert.issuer),
        thumbprint=cert.fingerprint(hashes.SHA1()).hex(),  # nosec B303 # the one Windows shows; rules may use SHA-256
        thumbprint_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        tbs_sha256=hashlib.sha256(cert.tbs_certificate_bytes).hexdigest(),
        not_before=cert.not_valid_before_utc, not_after=cert.not_valid_after_utc,
        self_signed=cert.subject == cert.issuer, is_ca=is_ca)


def _name(name: x509.Name) -> str:
    common = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(common[0].value) if common else name.rfc4514_string()
