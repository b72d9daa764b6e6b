"""Certificates for the TLS tests, made with the `openssl` command line, as
an operator would make them: a test CA; a server certificate for
127.0.0.1 and localhost signed by it (good for client use too, as a
node's certificate is between nodes); a client certificate
`CN=alice,O=Kraftwerk` signed by it; a second, unrelated CA with a client
certificate of its own; and the same keys as encrypted PKCS#8.

Every private key is PKCS#8 (`BEGIN PRIVATE KEY`, or `BEGIN ENCRYPTED
PRIVATE KEY` with `KEY_PASSWORD`). A "bundle" is one PEM file holding the
private key, then the certificate, then the CA certificate: the layout of
Kafka's PEM keystore (`ssl.keystore.type=PEM`, `ssl.keystore.location`).

Encrypted keys come two ways. `openssl pkcs8 -topk8` with OpenSSL 3's
default, PBES2 (AES-256-CBC, HMAC-SHA256), is what an operator gets today,
but Java 17 cannot read it (Kafka 4.1.1 on it fails with "PBES2
SecretKeyFactory not available"); PBES1 with SHA-1 and 3DES
(`-v1 PBE-SHA1-3DES`) is what a Kafka deployment on Java 17 therefore uses,
and what the Java client's PEM keystore is given here.
"""

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY_PASSWORD = "key-secret"
CLIENT_SUBJECT = "/O=Kraftwerk/CN=alice"
# RFC 2253 writes the most specific name first.
CLIENT_DN = "CN=alice,O=Kraftwerk"
DAYS = 30


def require_openssl() -> str:
    path = shutil.which("openssl")
    if not path:
        pytest.skip("the openssl command line is not installed: no certificates can be made for the TLS tests")
    return path


def _openssl(*args, cwd=None):
    out = subprocess.run([require_openssl(), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(map(str, args))} failed:\n{out.stderr}")
    return out.stdout


@dataclass
class Leaf:
    """A key and a certificate signed by a CA, in the forms clients and
    brokers want them."""
    cert: Path            # the certificate alone
    key: Path             # PKCS#8, unencrypted
    key_encrypted: Path   # PKCS#8, encrypted with KEY_PASSWORD (PBES2, AES-256)
    bundle: Path          # key + certificate + CA certificate
    bundle_encrypted: Path  # encrypted key (PBES2) + certificate + CA certificate
    bundle_encrypted_pbes1: Path  # encrypted key (PBES1, SHA-1 and 3DES) + certificate + CA certificate
    serial: int


@dataclass
class Pki:
    ca: Path              # the CA certificate clients and the broker trust
    ca_key: Path
    server: Leaf          # CN=localhost, SAN IP:127.0.0.1, DNS:localhost; server and client
                          # use, so that nodes present it to each other too
    alice: Leaf           # CN=alice,O=Kraftwerk, for mutual TLS
    other_ca: Path        # a CA nobody here trusts
    mallory: Leaf         # CN=mallory, signed by other_ca
    directory: Path

    def new_server_cert(self, name: str, serial: int) -> Leaf:
        """Another server certificate from the same CA (for reloads)."""
        return issue(self.directory, name, self.ca, self.ca_key, "/O=Kraftwerk/CN=localhost", serial, server=True)


def make_ca(directory: Path, name: str, subject: str):
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", DAYS,
             "-subj", subject, "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def issue(directory: Path, name: str, ca: Path, ca_key: Path, subject: str, serial: int, server: bool) -> Leaf:
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    _openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", subject)
    ext = directory / f"{name}.ext"
    if server:
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n")
    else:
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
                       "extendedKeyUsage=clientAuth\n")
    _openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-set_serial", serial, "-days", DAYS,
             "-sha256", "-extfile", ext, "-out", cert)
    key_encrypted, key_pbes1 = directory / f"{name}-encrypted.key", directory / f"{name}-encrypted-pbes1.key"
    _openssl("pkcs8", "-topk8", "-in", key, "-out", key_encrypted, "-v2", "aes-256-cbc",
             "-passout", f"pass:{KEY_PASSWORD}")
    _openssl("pkcs8", "-topk8", "-in", key, "-out", key_pbes1, "-v1", "PBE-SHA1-3DES",
             "-passout", f"pass:{KEY_PASSWORD}")
    chain = cert.read_text() + ca.read_text()
    bundle = directory / f"{name}-bundle.pem"
    bundle.write_text(key.read_text() + chain)
    bundle_encrypted = directory / f"{name}-bundle-encrypted.pem"
    bundle_encrypted.write_text(key_encrypted.read_text() + chain)
    bundle_pbes1 = directory / f"{name}-bundle-encrypted-pbes1.pem"
    bundle_pbes1.write_text(key_pbes1.read_text() + chain)
    return Leaf(cert, key, key_encrypted, bundle, bundle_encrypted, bundle_pbes1, serial)


def make_pki(directory: Path) -> Pki:
    directory.mkdir(parents=True, exist_ok=True)
    ca, ca_key = make_ca(directory, "ca", "/O=Kraftwerk/CN=Kraftwerk Test CA")
    server = issue(directory, "server", ca, ca_key, "/O=Kraftwerk/CN=localhost", 1001, server=True)
    alice = issue(directory, "alice", ca, ca_key, CLIENT_SUBJECT, 2001, server=False)
    other_ca, other_ca_key = make_ca(directory, "other-ca", "/O=Elsewhere/CN=Unrelated Test CA")
    mallory = issue(directory, "mallory", other_ca, other_ca_key, "/O=Elsewhere/CN=mallory", 3001, server=False)
    return Pki(ca, ca_key, server, alice, other_ca, mallory, directory)


def presented_serial(port: int, ca: Path, host: str = "127.0.0.1", timeout: float = 5) -> int:
    """The serial number of the certificate a TLS listener presents to a
    new connection (verified against `ca`)."""
    import socket

    context = ssl.create_default_context(cafile=str(ca))
    with socket.create_connection((host, port), timeout=timeout) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return int(tls.getpeercert()["serialNumber"], 16)
