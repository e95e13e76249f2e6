"""``gossipreg keygen`` and ``gossipreg tls``: keys, a CA and member certificates written to disk."""

from __future__ import annotations

import base64
import ipaddress
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from gossipreg.cli.main import cli
from gossipreg.core.crypto import Keyring
from gossipreg.tls import TLSFiles, contexts_from_files


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def failed(result: Result, message: str) -> None:
    """The command failed like a tool: exit 1, ``Error: ...`` on stderr, no traceback."""
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert result.stderr.startswith("Error: "), result.stderr
    assert message in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


@pytest.fixture
def ca_dir(tmp_path: Path) -> Path:
    out = tmp_path / "ca"
    result = run("tls", "ca", "create", "--out-dir", str(out), "--name", "test CA", "--days", "30")
    assert result.exit_code == 0, result.output
    return out


# ---------------------------------------------------------------- keygen


def test_keygen_prints_a_new_base64_32_byte_key_a_keyring_accepts() -> None:
    first, second = run("keygen"), run("keygen")
    assert first.exit_code == second.exit_code == 0
    key = first.stdout.strip()
    assert len(base64.b64decode(key, validate=True)) == 32
    assert first.stdout == key + "\n"
    assert second.stdout.strip() != key
    ring = Keyring.from_base64([key])
    assert ring.open(ring.seal(b"hello", b"label"), b"label") == b"hello"


# ---------------------------------------------------------------- tls ca create


def test_ca_create_writes_a_ca_certificate_and_a_private_key_readable_only_by_the_owner(ca_dir: Path) -> None:
    cert_path, key_path = ca_dir / "ca.pem", ca_dir / "ca-key.pem"
    assert mode(key_path) == 0o600
    assert mode(cert_path) == 0o644
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "test CA"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert 29 <= (cert.not_valid_after_utc - cert.not_valid_before_utc).days <= 31
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert sorted(p.name for p in ca_dir.iterdir()) == ["ca-key.pem", "ca.pem"]


def test_ca_create_defaults_to_the_current_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("tls", "ca", "create")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca-key.pem", "ca.pem"]
    cert = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "gossipreg cluster CA"


def test_ca_create_refuses_to_overwrite_without_force(ca_dir: Path) -> None:
    before = (ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes()
    failed(run("tls", "ca", "create", "--out-dir", str(ca_dir)), "refusing to overwrite")
    assert ((ca_dir / "ca.pem").read_bytes(), (ca_dir / "ca-key.pem").read_bytes()) == before

    result = run("tls", "ca", "create", "--out-dir", str(ca_dir), "--force")
    assert result.exit_code == 0, result.output
    assert (ca_dir / "ca.pem").read_bytes() != before[0]
    assert (ca_dir / "ca-key.pem").read_bytes() != before[1]
    assert mode(ca_dir / "ca-key.pem") == 0o600


def test_ca_create_refuses_if_only_the_key_exists(tmp_path: Path) -> None:
    (tmp_path / "ca-key.pem").write_bytes(b"precious")
    failed(run("tls", "ca", "create", "--out-dir", str(tmp_path)), "refusing to overwrite")
    assert (tmp_path / "ca-key.pem").read_bytes() == b"precious"
    assert not (tmp_path / "ca.pem").exists()


def test_ca_create_rejects_a_non_positive_validity(tmp_path: Path) -> None:
    failed(run("tls", "ca", "create", "--out-dir", str(tmp_path / "x"), "--days", "0"), "--days: must be")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- tls cert create


def test_cert_create_writes_a_member_certificate_signed_by_the_ca(ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "certs"
    result = run(
        "tls", "cert", "create", "--name", "web-1", "--ip", "127.0.0.1", "--ip", "::1",
        "--dns", "web-1.example", "--ca", str(ca_dir), "--out-dir", str(out), "--days", "10",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cert_path, key_path = out / "web-1.pem", out / "web-1-key.pem"
    assert mode(key_path) == 0o600
    assert mode(cert_path) == 0o644
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "web-1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert san.get_values_for_type(x509.DNSName) == ["web-1.example"]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    # The files are what a member loads for mutual TLS.
    contexts_from_files(TLSFiles(ca=ca_dir / "ca.pem", cert=cert_path, key=key_path))


def test_cert_create_takes_the_ca_files_separately(ca_dir: Path, tmp_path: Path) -> None:
    result = run(
        "tls", "cert", "create", "--name", "db-2", "--ca-cert", str(ca_dir / "ca.pem"),
        "--ca-key", str(ca_dir / "ca-key.pem"), "--out-dir", str(tmp_path),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ca = x509.load_pem_x509_certificate((ca_dir / "ca.pem").read_bytes())
    x509.load_pem_x509_certificate((tmp_path / "db-2.pem").read_bytes()).verify_directly_issued_by(ca)
    assert mode(tmp_path / "db-2-key.pem") == 0o600


def test_cert_create_finds_the_ca_in_the_current_directory_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("tls", "ca", "create").exit_code == 0
    result = run("tls", "cert", "create", "--name", "node-a")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ca-key.pem", "ca.pem", "node-a-key.pem", "node-a.pem"]


def test_cert_create_without_a_ca_says_where_it_looked(tmp_path: Path) -> None:
    result = run("tls", "cert", "create", "--name", "web-1", "--ca", str(tmp_path / "nowhere"))
    failed(result, f"CA certificate not found: {tmp_path / 'nowhere' / 'ca.pem'}")
    assert "gossipreg tls ca create" in result.stderr


def test_cert_create_with_a_missing_ca_key_fails(ca_dir: Path, tmp_path: Path) -> None:
    (ca_dir / "ca-key.pem").unlink()
    failed(run("tls", "cert", "create", "--name", "w", "--ca", str(ca_dir), "--out-dir", str(tmp_path)),
           "CA private key not found")  # fmt: skip
    assert list(tmp_path.glob("w*.pem")) == []


def test_cert_create_rejects_a_bad_ip_before_writing_anything(ca_dir: Path, tmp_path: Path) -> None:
    result = run("tls", "cert", "create", "--name", "web-1", "--ip", "300.1.1.1", "--ca", str(ca_dir),
                 "--out-dir", str(tmp_path))  # fmt: skip
    failed(result, "--ip: '300.1.1.1' is not an IP address")
    assert list(tmp_path.glob("web-1*")) == []


def test_cert_create_rejects_a_bad_dns_name(ca_dir: Path, tmp_path: Path) -> None:
    result = run("tls", "cert", "create", "--name", "web-1", "--dns", "not a name", "--ca", str(ca_dir),
                 "--out-dir", str(tmp_path))  # fmt: skip
    failed(result, "--dns: 'not a name' is not a DNS name")
    assert list(tmp_path.glob("web-1*")) == []


def test_cert_create_refuses_to_overwrite_without_force(ca_dir: Path, tmp_path: Path) -> None:
    args = ["tls", "cert", "create", "--name", "web-1", "--ca", str(ca_dir), "--out-dir", str(tmp_path)]
    assert run(*args).exit_code == 0
    before = (tmp_path / "web-1.pem").read_bytes()
    failed(run(*args), "refusing to overwrite")
    assert (tmp_path / "web-1.pem").read_bytes() == before
    assert run(*args, "--force").exit_code == 0
    assert (tmp_path / "web-1.pem").read_bytes() != before


def test_cert_create_rejects_a_file_that_is_not_a_ca_key(ca_dir: Path, tmp_path: Path) -> None:
    result = run("tls", "cert", "create", "--name", "web-1", "--ca-cert", str(ca_dir / "ca.pem"),
                 "--ca-key", str(ca_dir / "ca.pem"), "--out-dir", str(tmp_path))  # fmt: skip
    failed(result, f"CA private key {ca_dir / 'ca.pem'}: not an unencrypted PEM private key")


def test_cert_create_refuses_a_member_certificate_as_ca(ca_dir: Path, tmp_path: Path) -> None:
    made = run("tls", "cert", "create", "--name", "m", "--ca", str(ca_dir), "--out-dir", str(tmp_path))
    assert made.exit_code == 0, made.output
    result = run("tls", "cert", "create", "--name", "n", "--ca-cert", str(tmp_path / "m.pem"),
                 "--ca-key", str(tmp_path / "m-key.pem"), "--out-dir", str(tmp_path))  # fmt: skip
    failed(result, f"CA certificate {tmp_path / 'm.pem'}: the certificate is not a CA")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ca-cert", "ca.pem"], "--ca-cert and --ca-key go together"),
        (["--ca-key", "ca-key.pem"], "--ca-cert and --ca-key go together"),
        (["--ca", ".", "--ca-cert", "a", "--ca-key", "b"], "either --ca DIR or --ca-cert and --ca-key"),
    ],
)
def test_cert_create_rejects_contradictory_ca_options(args: list[str], message: str) -> None:
    failed(run("tls", "cert", "create", "--name", "web-1", *args), message)


@pytest.mark.parametrize("name", ["../escape", "a/b", ".."])
def test_cert_create_refuses_a_name_that_is_not_a_file_name(name: str, ca_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run("tls", "cert", "create", "--name", name, "--ca", str(ca_dir), "--out-dir", str(out))
    failed(result, "--name:")
    assert not out.exists()
    assert not (tmp_path / "escape.pem").exists()
