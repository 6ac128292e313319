"""TLS certificates made with the openssl CLI: a CA of its own signs one per name set.

``ws-counter make-secrets`` uses it for a deployment and the local cluster and
the tests for throwaway ones. Lifetimes are long on purpose: a certificate
that expires takes Redis' TLS down with it (every new connection, replication
link and cluster-bus link fails), so the CA lasts ten years and a leaf
``LEAF_DAYS`` unless told otherwise; ``not_after`` and the expiry alert
(docs/operations.md, "Certificates") say when to renew.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .redisserver import require_binary

# Over two years: a leaf made today is good for a year and more (the target), and still
# under the 825 days that TLS clients which cap private-CA lifetimes accept.
LEAF_DAYS = 800
CA_DAYS = 3650
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
    """A CA in ``directory`` (made on first use) that signs certificates for names.

    ``ca.crt`` is what everyone trusts: the signing CA first, then, while a CA is
    being replaced, the one it replaces (``rotate``, then ``drop_old``): clients
    that trust the bundle accept leaves of either, so servers can change leaves
    one at a time with nothing refused.
    """

    def __init__(
        self, directory: Path, name: str = "ws-counter throwaway CA", *, days: int = LEAF_DAYS
    ) -> None:
        self.directory = directory
        self.days = days
        self.name = name
        self.cert = directory / "ca.crt"
        self._key = directory / "ca.key"
        directory.mkdir(parents=True, exist_ok=True)
        if not self.cert.exists():
            self._new_ca(self.cert)

    def rotate(self) -> None:
        """A new signing CA, trusted beside the old ones until ``drop_old``; leaves are
        signed by the new one from now on."""
        trusted = self.cert.read_text()
        fresh = self.directory / "ca-new.crt"
        self._new_ca(fresh)
        self.cert.write_text(fresh.read_text() + trusted)
        fresh.unlink()

    def drop_old(self) -> None:
        """Trust only the signing CA again: once every leaf is signed by it."""
        self.cert.write_text(_pem_blocks(self.cert.read_text())[0])

    def _new_ca(self, cert: Path) -> None:
        _openssl("req", "-x509", *KEY_OPTIONS, "-keyout", self._key, "-out", cert,
                 "-days", max(CA_DAYS, self.days), "-subj", f"/CN={self.name}")  # fmt: skip
        self._key.chmod(0o600)

    def issue(self, stem: str, names: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Certificate:
        """A certificate for ``names`` (DNS names and IP addresses), for servers and clients."""
        cert, key = self.directory / f"{stem}.crt", self.directory / f"{stem}.key"
        request = self.directory / f"{stem}.csr"
        extensions = self.directory / f"{stem}.ext"
        alt = ",".join(f"IP:{n}" if _is_address(n) else f"DNS:{n}" for n in names)
        extensions.write_text(f"subjectAltName={alt}\nextendedKeyUsage=serverAuth,clientAuth\n")
        _openssl("req", *KEY_OPTIONS, "-keyout", key, "-out", request, "-subj", f"/CN={names[0]}")
        signing = self.directory / "ca-signing.crt"
        signing.write_text(_pem_blocks(self.cert.read_text())[0])
        serial = self.directory / "ca.srl"
        signer = ("-CA", signing, "-CAkey", self._key, "-CAserial", serial, "-CAcreateserial")
        try:
            _openssl("x509", "-req", "-in", request, *signer, "-out", cert, "-days", self.days,
                     "-extfile", extensions)  # fmt: skip
        finally:
            signing.unlink()
        key.chmod(0o600)
        return Certificate(cert, key)


def not_after(cert: Path) -> datetime:
    """When the certificate at ``cert`` expires (UTC)."""
    binary = require_binary("openssl", "openssl")
    argv = [binary, "x509", "-noout", "-enddate", "-in", str(cert)]
    printed = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=60).stdout
    # notAfter=Dec  4 20:03:35 2028 GMT
    stamp = " ".join(printed.strip().removeprefix("notAfter=").split())
    return datetime.strptime(stamp, "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


def _pem_blocks(text: str) -> list[str]:
    """The certificates of a PEM bundle, each with its END line and a newline."""
    end = "-----END CERTIFICATE-----"
    return [block.strip() + f"\n{end}\n" for block in text.split(end) if block.strip()]


def _is_address(name: str) -> bool:
    return name.replace(".", "").isdigit() or ":" in name


def _openssl(*args: object) -> None:
    binary = require_binary("openssl", "openssl")
    subprocess.run([binary, *map(str, args)], check=True, capture_output=True, timeout=60)
