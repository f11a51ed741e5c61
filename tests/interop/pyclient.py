#!/usr/bin/env python3
"""Independent gRPC client (C-core based: Debian's python3-grpcio on OpenSSL,
or PyPI's grpcio on BoringSSL) for the interop suite.

It builds the securityapi messages from a hand-written descriptor (no protoc
needed), makes one call and prints one line:
    OK <details>                 the call succeeded and the answer looks right
    STATUS <CODE> <details>      the call ended with a gRPC status
then "outcome: X" with X = OK, HANDSHAKE_FAIL (UNAVAILABLE because the TLS
handshake failed), or the status code name.
The exit code is 0 when the outcome matches --expect, 1 otherwise.
"""

import argparse
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

METHOD = "/securityapi.SecurityService/Certificate"


def message_classes():
    fdp = descriptor_pb2.FileDescriptorProto(
        name="interop_security.proto", package="securityapi", syntax="proto3")
    req = fdp.message_type.add(name="CertificateRequest")
    req.field.add(name="csr", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                  label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    resp = fdp.message_type.add(name="CertificateResponse")
    resp.field.add(name="ca", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                   label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    resp.field.add(name="crt", number=2, type=descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
                   label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    out = []
    for name in ("securityapi.CertificateRequest", "securityapi.CertificateResponse"):
        desc = pool.FindMessageTypeByName(name)
        if hasattr(message_factory, "GetMessageClass"):
            out.append(message_factory.GetMessageClass(desc))
        else:  # protobuf < 4.22 (Debian 12 ships 3.21/4.21)
            out.append(message_factory.MessageFactory(pool).GetPrototype(desc))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True, help="IP:PORT")
    ap.add_argument("--ca", required=True, help="CA bundle that verifies the serving cert")
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--csr", required=True, help="CSR PEM file")
    ap.add_argument("--case", default="ok", choices=["ok", "wrong-token", "unknown-method"])
    ap.add_argument("--expect", default="OK", help="OK, HANDSHAKE_FAIL, or a status code name, e.g. UNAUTHENTICATED")
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args()

    Req, Resp = message_classes()
    with open(args.ca, "rb") as f:
        ca_pem = f.read()
    with open(args.token_file) as f:
        token = f.read().strip()
    with open(args.csr, "rb") as f:
        csr = f.read()

    method = METHOD
    if args.case == "wrong-token":
        token = "abcdef.0123456789abcdef"
    elif args.case == "unknown-method":
        method = "/securityapi.SecurityService/ReadFile"

    creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
    outcome = None
    with grpc.secure_channel(args.target, creds) as ch:
        call = ch.unary_unary(method, request_serializer=Req.SerializeToString,
                              response_deserializer=Resp.FromString)
        try:
            resp = call(Req(csr=csr), metadata=[("token", token)], timeout=args.timeout)
        except grpc.RpcError as e:
            outcome = "STATUS %s %s" % (e.code().name, (e.details() or "").replace("\n", " ")[:300])
        else:
            problems = []
            if not resp.crt.startswith(b"-----BEGIN CERTIFICATE-----") or resp.crt.count(b"BEGIN") != 1:
                problems.append("crt is not one PEM certificate")
            if b"-----BEGIN CERTIFICATE-----" not in resp.ca:
                problems.append("ca holds no certificate")
            outcome = ("OK crt=%dB ca=%dB" % (len(resp.crt), len(resp.ca))) if not problems else \
                "BAD " + "; ".join(problems)

    print("%s grpc=%s: %s" % (args.case, grpc.__version__, outcome))
    got = outcome.split()[1] if outcome.startswith("STATUS") else outcome.split()[0]
    if got == "UNAVAILABLE" and "andshake" in outcome:
        got = "HANDSHAKE_FAIL"
    print("outcome: %s" % got)
    return 0 if got == args.expect else 1


if __name__ == "__main__":
    sys.exit(main())
