"""Keys and certificates: ``gossipreg keygen`` and ``gossipreg tls``.

* ``gossipreg keygen`` prints a new cluster key: 32 random bytes (AES-256),
  base64-encoded, the form ``open_registry(keyring=...)``, ``GOSSIPREG_KEYRING``
  and ``serf keygen`` use.
* ``gossipreg tls ca create`` writes a cluster CA (``ca.pem`` and
  ``ca-key.pem``) for mutual TLS between members.
* ``gossipreg tls cert create --name NODE`` writes a member certificate signed
  by that CA (``NODE.pem`` and ``NODE-key.pem``).

Certificates come from :mod:`gossipreg.pki` (EC P-256, SHA-256). Private keys
are written with mode 0600, certificates with 0644. Existing files are never
overwritten unless ``--force`` is given, and nothing is written unless every
file can be. Errors are reported as ``Error: ...`` with exit status 1.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Sequence
from pathlib import Path

import click

from .._files import write_atomically
from ..core.crypto import Keyring
from ..core.errors import ConfigError
from ..pki import DEFAULT_CA_DAYS, DEFAULT_MEMBER_DAYS, create_ca, create_member_cert
from .main import CommandError, cli

__all__ = ["CA_CERT_FILE", "CA_KEY_FILE", "keygen", "tls"]

#: File name of the CA certificate inside a CA directory.
CA_CERT_FILE = "ca.pem"
#: File name of the CA private key inside a CA directory.
CA_KEY_FILE = "ca-key.pem"

_KEY_MODE = 0o600
_CERT_MODE = 0o644


@cli.command()
def keygen() -> None:
    """Print a new cluster key: 32 random bytes, base64-encoded.

    Give it to every member (``keyring=`` or ``GOSSIPREG_KEYRING``); keep it secret.
    """
    click.echo(base64.b64encode(Keyring.generate_key()).decode("ascii"))


@cli.group()
def tls() -> None:
    """Make a cluster CA and member certificates for mutual TLS between members."""


@tls.group("ca")
def tls_ca() -> None:
    """The cluster certificate authority."""


@tls.group("cert")
def tls_cert() -> None:
    """Member certificates signed by the cluster CA."""


_out_dir = click.option(
    "--out-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Directory to write the files to (created if missing).",
)
_force = click.option("--force", is_flag=True, help="Overwrite existing files.")


@tls_ca.command("create")
@_out_dir
@click.option("--name", default="gossipreg cluster CA", show_default=True, help="The CA's common name.")
@click.option("--days", type=int, default=DEFAULT_CA_DAYS, show_default=True, help="Validity in days.")
@_force
def tls_ca_create(out_dir: Path, name: str, days: int, force: bool) -> None:
    """Create a cluster CA: writes ca.pem and ca-key.pem (mode 0600).

    Members need only ca.pem; keep ca-key.pem off the members.
    """
    cert_path, key_path = out_dir / CA_CERT_FILE, out_dir / CA_KEY_FILE
    _refuse_existing([cert_path, key_path], force)
    try:
        cert_pem, key_pem = create_ca(name, days=days)
    except ConfigError as exc:
        raise CommandError(_option_message(str(exc), {"common_name": "--name", "days": "--days"})) from None
    _write_all(out_dir, [(cert_path, cert_pem, _CERT_MODE), (key_path, key_pem, _KEY_MODE)])
    click.echo(f"Saved {cert_path} (CA certificate)")
    click.echo(f"Saved {key_path} (CA private key, mode 0600: keep it off the members)")


@tls_cert.command("create")
@click.option("--name", required=True, help="The member's name: the common name and the file names.")
@click.option("--ip", "ips", multiple=True, metavar="ADDRESS", help="An IP address for the SAN (repeatable).")
@click.option(
    "--dns", "dns_names", multiple=True, metavar="NAME", help="A DNS name for the SAN (repeatable)."
)
@click.option(
    "--ca",
    "ca_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help=f"Directory holding {CA_CERT_FILE} and {CA_KEY_FILE} [default: the current directory].",
)
@click.option("--ca-cert", type=click.Path(dir_okay=False, path_type=Path), help="The CA certificate file.")
@click.option("--ca-key", type=click.Path(dir_okay=False, path_type=Path), help="The CA private key file.")
@_out_dir
@click.option("--days", type=int, default=DEFAULT_MEMBER_DAYS, show_default=True, help="Validity in days.")
@_force
def tls_cert_create(
    name: str,
    ips: Sequence[str],
    dns_names: Sequence[str],
    ca_dir: Path | None,
    ca_cert: Path | None,
    ca_key: Path | None,
    out_dir: Path,
    days: int,
    force: bool,
) -> None:
    """Create a member certificate signed by the cluster CA: writes NAME.pem and NAME-key.pem (mode 0600).

    The CA is read from --ca DIR (ca.pem and ca-key.pem, default the current
    directory) or from --ca-cert and --ca-key.
    """
    _check_file_name(name)
    for ip in ips:
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise CommandError(f"--ip: {ip!r} is not an IP address") from None
    if (ca_cert is None) != (ca_key is None):
        raise CommandError("--ca-cert and --ca-key go together: give both, or --ca DIR")
    if ca_cert is not None and ca_key is not None:
        if ca_dir is not None:
            raise CommandError("give either --ca DIR or --ca-cert and --ca-key, not both")
        cert_file, key_file = ca_cert, ca_key
    else:
        directory = ca_dir if ca_dir is not None else Path(".")
        cert_file, key_file = directory / CA_CERT_FILE, directory / CA_KEY_FILE
    ca_cert_pem = _read(cert_file, "CA certificate")
    ca_key_pem = _read(key_file, "CA private key")
    cert_path, key_path = out_dir / f"{name}.pem", out_dir / f"{name}-key.pem"
    _refuse_existing([cert_path, key_path], force)
    try:
        cert_pem, key_pem = create_member_cert(
            ca_cert_pem, ca_key_pem, name, ips=ips, dns=dns_names, days=days
        )
    except ConfigError as exc:
        fields = {
            "name": "--name",
            "ips": "--ip",
            "dns": "--dns",
            "days": "--days",
            "ca_cert_pem": f"CA certificate {cert_file}",
            "ca_key_pem": f"CA private key {key_file}",
        }
        raise CommandError(_option_message(str(exc), fields)) from None
    _write_all(out_dir, [(cert_path, cert_pem, _CERT_MODE), (key_path, key_pem, _KEY_MODE)])
    click.echo(f"Saved {cert_path} (member certificate for {name})")
    click.echo(f"Saved {key_path} (member private key, mode 0600)")


# ---------------------------------------------------------------- helpers


def _option_message(message: str, fields: dict[str, str]) -> str:
    """Rename the leading ``field:`` of a library error to the option or file the user gave."""
    field, sep, rest = message.partition(":")
    if sep and field in fields:
        return f"{fields[field]}:{rest}"
    return message


def _check_file_name(name: str) -> None:
    """The member name becomes file names: refuse what would escape the output directory."""
    if not name.strip():
        raise CommandError("--name: must not be empty")
    if "/" in name or "\\" in name or "\0" in name or name in (".", ".."):
        raise CommandError(f"--name: {name!r} cannot be used as a file name (no '/', '\\', '.' or '..')")


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CommandError(
            f"{what} not found: {path} (create a CA with `gossipreg tls ca create`, "
            "or point at one with --ca DIR or --ca-cert/--ca-key)"
        ) from None
    except OSError as exc:
        raise CommandError(f"cannot read {what} {path}: {exc.strerror or exc}") from None


def _refuse_existing(paths: Sequence[Path], force: bool) -> None:
    if force:
        return
    existing = [str(p) for p in paths if p.exists() or p.is_symlink()]
    if existing:
        raise CommandError(f"refusing to overwrite {' and '.join(existing)} (use --force)")


def _write_all(out_dir: Path, files: Sequence[tuple[Path, bytes, int]]) -> None:
    """Write every file atomically (a temporary file renamed into place) with its mode."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CommandError(f"cannot create directory {out_dir}: {exc.strerror or exc}") from None
    for path, data, mode in files:
        try:
            write_atomically(path, data, mode)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
