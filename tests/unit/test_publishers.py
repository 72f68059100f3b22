"""Publisher facts (services/reputation/publishers.py): reading publisherCert text (base64 DER or PEM), picking the
signer, the certificate's fields checked against cryptography and hashlib, and rule value normalisation."""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from services.reputation.publishers import (
    Certificate,
    leaf,
    normalize_name,
    normalize_thumbprint,
    parse_certificates,
)
from tests.certificates import b64, certificate_chain, make

NOT_BEFORE = datetime(2025, 1, 1, 8, 30, tzinfo=timezone.utc)
NOT_AFTER = datetime(2027, 1, 1, 8, 30, tzinfo=timezone.utc)
KEY = ec.generate_private_key(ec.SECP256R1())
PROBLEM = "publisherCert is not a base64 X.509 certificate ({})"


def name(common_name: str | None = None, organization: str = "Contoso") -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                  x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)]
    if common_name:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def build(subject: x509.Name, issuer: x509.Name, *, ca: bool | None) -> x509.Certificate:
    """A certificate with fixed validity; `ca=None` leaves out BasicConstraints."""
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(KEY.public_key())
               .serial_number(4242).not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER))
    if ca is not None:
        builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    return builder.sign(KEY, hashes.SHA256())


LEAF = build(name("Contoso Code Signing"), name("Contoso Issuing CA"), ca=False)
CA = build(name("Contoso Issuing CA"), name("Contoso Issuing CA"), ca=True)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def parsed(cert: x509.Certificate) -> Certificate:
    certificates, problem = parse_certificates(b64(cert))
    assert problem == "" and len(certificates) == 1
    return certificates[0]


# --- parse_certificates -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\t \r\n"])
def test_no_text_is_no_certificate_and_no_problem(text):
    assert parse_certificates(text) == ([], "")


@pytest.mark.parametrize("separator", [" ", "\n", "\r\n", ",", ", ", ";", " ; ", "|", " | ", ",\n"])
def test_base64_der_certificates_separated_by_whitespace_commas_semicolons_or_bars(separator):
    certificates, problem = parse_certificates(f"  {b64(LEAF)}{separator}{b64(CA)}  ")
    assert problem == ""
    assert [c.subject for c in certificates] == ["Contoso Code Signing", "Contoso Issuing CA"]


def test_a_single_base64_certificate():
    assert parse_certificates(b64(LEAF)) == ([parsed(LEAF)], "")
    assert parsed(LEAF).thumbprint == hashlib.sha1(der(LEAF)).hexdigest()


def test_pem_blocks_with_text_around_them():
    text = f"subject=CN = Contoso Code Signing\n{pem(LEAF)}\nissuer and more notes\n{pem(CA)}trailing words"
    certificates, problem = parse_certificates(text)
    assert problem == ""
    assert certificates == [parsed(LEAF), parsed(CA)]


def test_pem_with_windows_line_ends():
    certificates, problem = parse_certificates(pem(LEAF).replace("\n", "\r\n"))
    assert (certificates, problem) == ([parsed(LEAF)], "")


@pytest.mark.parametrize(("text", "error"), [
    ("not-a-certificate", "Error"),                               # not base64 at all
    ("abc", "Error"),                                             # bad padding
    (base64.b64encode(b"hello, world").decode(), "ValueError"),  # base64, but not DER
    ("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----", "ValueError"),
])
def test_garbage_is_a_problem_not_an_exception(text, error):
    assert parse_certificates(text) == ([], PROBLEM.format(error))


def test_the_certificates_before_the_garbage_are_kept():
    certificates, problem = parse_certificates(f"{b64(LEAF)} ### {b64(CA)}")
    assert [c.subject for c in certificates] == ["Contoso Code Signing"]
    assert problem == PROBLEM.format("Error")


def test_the_test_helpers_chain_parses_leaf_first():
    text, signer = certificate_chain("Fabrikam")
    certificates, problem = parse_certificates(text)
    assert problem == "" and [c.subject for c in certificates] == ["Fabrikam", "Fabrikam CA"]
    assert certificates[0] == signer and leaf(certificates) == signer
    assert not signer.is_ca and certificates[1].is_ca and certificates[1].self_signed


# --- leaf -------------------------------------------------------------------------------------------------

def test_leaf_is_the_first_certificate_that_is_not_a_ca():
    leaf_cert, ca_cert = parsed(LEAF), parsed(CA)
    other = parsed(build(name("Other Signer"), name("Contoso Issuing CA"), ca=False))
    assert leaf([ca_cert, leaf_cert]) == leaf_cert
    assert leaf([leaf_cert, ca_cert]) == leaf_cert
    assert leaf([ca_cert, other, leaf_cert]) == other
    assert leaf([ca_cert]) == ca_cert  # only CAs: the first one
    assert leaf([]) is None


# --- the certificate's fields -------------------------------------------------------------------------------

def test_certificate_fields():
    cert = parsed(LEAF)
    assert cert.subject == "Contoso Code Signing" and cert.issuer == "Contoso Issuing CA"
    assert cert.thumbprint == LEAF.fingerprint(hashes.SHA1()).hex() == hashlib.sha1(der(LEAF)).hexdigest()
    assert cert.thumbprint_sha256 == hashlib.sha256(der(LEAF)).hexdigest()
    assert cert.tbs_sha256 == hashlib.sha256(LEAF.tbs_certificate_bytes).hexdigest()
    assert cert.tbs_sha256 != cert.thumbprint_sha256  # the signed part, not the whole certificate
    assert len(cert.thumbprint) == 40 and cert.thumbprint == cert.thumbprint.lower()
    assert (cert.not_before, cert.not_after) == (NOT_BEFORE, NOT_AFTER)
    assert cert.not_before.tzinfo is not None
    assert cert.self_signed is False and cert.is_ca is False


def test_a_ca_that_issued_itself_is_self_signed():
    cert = parsed(CA)
    assert cert.subject == cert.issuer == "Contoso Issuing CA"
    assert cert.self_signed is True and cert.is_ca is True


def test_a_self_signed_leaf_is_self_signed_and_not_a_ca():
    cert = parsed(build(name("Me"), name("Me"), ca=False))
    assert cert.self_signed is True and cert.is_ca is False


def test_same_common_name_but_another_subject_is_not_self_signed():
    cert = parsed(build(name("Contoso", "Contoso"), name("Contoso", "Contoso Root Authority"), ca=False))
    assert cert.subject == cert.issuer == "Contoso"
    assert cert.self_signed is False  # whole names are compared, not the common names


def test_without_a_common_name_the_whole_subject_is_used():
    cert = parsed(build(name(None, "Contoso"), name(None, "Contoso Root"), ca=None))
    assert cert.subject == "O=Contoso,C=US" and cert.issuer == "O=Contoso Root,C=US"


def test_without_basic_constraints_it_is_not_a_ca():
    assert parsed(build(name("x"), name("y"), ca=None)).is_ca is False


def test_validity_is_read_to_the_second_from_the_helper_certificates():
    cert = parsed(make("Northwind", "Northwind CA", ca=False, days=(-10, 20)))
    assert cert.not_after - cert.not_before == timedelta(days=30)
    assert cert.not_before < datetime.now(timezone.utc) < cert.not_after


# --- normalisation ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "expected"), [
    ("Contoso Ltd", "contoso ltd"),
    ("  CONTOSO   Ltd\t", "contoso ltd"),
    ("Contoso\n Code  Signing", "contoso code signing"),
    ("", ""),
    ("   ", ""),
])
def test_normalize_name(value, expected):
    assert normalize_name(value) == expected


SHA1_HEX = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
SHA256_HEX = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@pytest.mark.parametrize(("value", "expected"), [
    (SHA1_HEX, SHA1_HEX),
    (SHA1_HEX.upper(), SHA1_HEX),
    (":".join(SHA1_HEX[i:i + 2] for i in range(0, 40, 2)).upper(), SHA1_HEX),
    (" ".join(SHA1_HEX[i:i + 2] for i in range(0, 40, 2)), SHA1_HEX),
    (f"  {SHA1_HEX}\n", SHA1_HEX),
    (SHA256_HEX.upper(), SHA256_HEX),
    (":".join(SHA256_HEX[i:i + 2] for i in range(0, 64, 2)), SHA256_HEX),
    (SHA1_HEX[:-1], None),                  # 39 digits
    (SHA1_HEX + "a", None),                 # 41
    (SHA256_HEX[:-2], None),                # 62
    (SHA256_HEX + "00", None),              # 66
    ("z" * 40, None),                       # not hex
    ("-".join(SHA1_HEX[i:i + 2] for i in range(0, 40, 2)), None),  # dashes are not allowed
    ("", None),
])
def test_normalize_thumbprint(value, expected):
    assert normalize_thumbprint(value) == expected


def test_a_certificates_thumbprints_normalize_to_themselves():
    cert = parsed(LEAF)
    assert normalize_thumbprint(cert.thumbprint.upper()) == cert.thumbprint
    assert normalize_thumbprint(cert.thumbprint_sha256) == cert.thumbprint_sha256
