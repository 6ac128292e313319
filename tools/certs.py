"""Throwaway TLS certificates for a local cluster and the tests, made with the openssl CLI.

A CA of its own signs one certificate per name set. The certificates last a
few days and are never meant for a real deployment: production takes its
certificates from its own CA or cert-manager (docs/operations.md, "TLS").
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from .redisserver import require_binary

DAYS = "7"
# P-256: quick to make, and every TLS stack here (OpenSSL, Chromium, HAProxy) takes it.
KEY_OPTIONS = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


@dataclass(frozen=True, slots=True)
class Certificate:
    cert: Path
    key: Path

    def pem_bundle(self, path: Path) -> Path:
        """Certificate and key in one file, as HAProxy's ``crt`` takes them."""
        path.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        return path


class Authority:
    """A CA in ``directory`` (made on first use) that signs certificates for names."""

    def __init__(self, directory: Path, name: str = "ws-counter throwaway CA") -> None:
        self.directory = directory
        self.cert = directory / "ca.crt"
        self._key = directory / "ca.key"
        directory.mkdir(parents=True, exist_ok=True)
        if not self.cert.exists():
            _openssl("req", "-x509", *KEY_OPTIONS, "-keyout", self._key, "-out", self.cert,
                     "-days", DAYS, "-subj", f"/CN={name}")  # fmt: skip

    def issue(self, stem: str, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certificate:
        """A certificate for ``names`` (DNS names and IP addresses), for servers and clients."""
        cert, key = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        request = self.directory / f"{stem}.csr"
        extensions = self.directory / f"{stem}.ext"
        alt = ",".join(f"IP:{n}" if _is_address(n) else f"DNS:{n}" for n in names)
        extensions.write_text(f"subjectAltName={alt}\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", *KEY_OPTIONS, "-keyout", key, "-out", request, "-subj", f"/CN={names[0]}")
        signer = ("-CA", self.cert, "-CAkey", self._key, "-CAcreateserial")
        _openssl("x509", "-req", "-in", request, *signer, "-out", cert, "-days", DAYS,
                 "-extfile", extensions)  # fmt: skip
        key.chmod(0o600)
        return Certificate(cert, key)


def _is_address(name: str) -> bool:
    return name.replace(".", "").isdigit() or ":" in name


def _openssl(*args: object) -> None:
    binary = require_binary("openssl", "openssl")
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True, timeout=60)
