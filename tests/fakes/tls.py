"""Certificates made for one test session, and a TLS-terminating gRPC proxy for Temporal.

The Temporal CLI's dev server speaks plain gRPC only (``temporal server start-dev`` has
no TLS flags), so the tests put this proxy in front of it: a real gRPC server (grpcio,
BoringSSL) that terminates TLS, optionally requires a client certificate signed by the
test's CA (mTLS) and an API key (``authorization: Bearer <key>``, the header Temporal
Cloud reads), and forwards every call, with its metadata and deadline, to the dev server.

    python -m tests.fakes.tls UPSTREAM PORT CERT KEY [--client-ca CA] [--api-key KEY]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import ipaddress
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from towline.worker.devserver import free_port, port_open


@dataclass(frozen=True)
class Certs:
    """PEM files: a CA, a server certificate it signed for localhost, a client certificate
    it signed, and another CA that signed nothing here."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _builder(subject: str, issuer: x509.Name, public_key: object) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        _builder(name, subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, name: str, *, server: bool
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _key()
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(name, ca.subject, key.public_key())
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def make_certs(folder: Path) -> Certs:
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca = _ca("towline test CA")
    server_key, server = _leaf(ca_key, ca, "localhost", server=True)
    client_key, client = _leaf(ca_key, ca, "towline worker", server=False)
    _, other = _ca("some other CA")
    certs = Certs(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
    )
    _write_cert(certs.ca, ca)
    _write_cert(certs.server_cert, server)
    _write_key(certs.server_key, server_key)
    _write_cert(certs.client_cert, client)
    _write_key(certs.client_key, client_key)
    _write_cert(certs.other_ca, other)
    return certs


class Proxy:
    """The proxy as a process of its own, on a free port of 127.0.0.1."""

    def __init__(
        self,
        upstream: str,
        certs: Certs,
        *,
        mtls: bool = False,
        api_key: str | None = None,
        log: Path,
    ) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        args = [str(certs.server_cert), str(certs.server_key)]
        if mtls:
            args += ["--client-ca", str(certs.ca)]
        if api_key is not None:
            args += ["--api-key", api_key]
        self._log = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.tls", upstream, str(self.port), *args],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "GRPC_VERBOSITY": "NONE"},
            cwd=Path(__file__).resolve().parents[2],
        )
        deadline = time.monotonic() + 20
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the TLS proxy did not start: {log.read_text()}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


async def _serve(argv: Sequence[str]) -> None:
    import grpc

    p = argparse.ArgumentParser()
    p.add_argument("upstream")
    p.add_argument("port", type=int)
    p.add_argument("cert")
    p.add_argument("key")
    p.add_argument("--client-ca")
    p.add_argument("--api-key")
    args = p.parse_args(argv)
    channel = grpc.aio.insecure_channel(args.upstream)
    expected = f"Bearer {args.api_key}" if args.api_key else None

    class Forward(grpc.GenericRpcHandler):
        def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[bytes, bytes]:
            # every WorkflowService call is unary; bytes in, bytes out
            call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
                details.method
            )

            async def forward(
                request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]
            ) -> bytes:
                metadata = [
                    (k, v) for k, v in context.invocation_metadata() or () if not k.startswith(":")
                ]
                if expected is not None and dict(metadata).get("authorization") != expected:
                    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "invalid API key")
                try:
                    reply: bytes = await call(
                        request, metadata=metadata, timeout=context.time_remaining()
                    )
                except grpc.aio.AioRpcError as e:
                    await context.abort(e.code(), e.details() or "")
                return reply

            return grpc.unary_unary_rpc_method_handler(forward)

    server = grpc.aio.server()
    server.add_generic_rpc_handlers([Forward()])
    client_ca = Path(args.client_ca).read_bytes() if args.client_ca else None
    credentials = grpc.ssl_server_credentials(
        [(Path(args.key).read_bytes(), Path(args.cert).read_bytes())],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )
    server.add_secure_port(f"127.0.0.1:{args.port}", credentials)
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(_serve(sys.argv[1:]))
