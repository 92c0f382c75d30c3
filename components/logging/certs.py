"""The logging stack's own certificate authority and Elasticsearch's certificates (pulumi-tls).

A CA made for this stack alone signs one certificate for Elasticsearch's HTTP layer and one for
its transport layer, each valid for every name clients and nodes use (the Services and every
node's stable name). Private keys exist only as secret Outputs: in Pulumi's encrypted state and
in the Kubernetes Secret that Elasticsearch mounts. Clients get the CA certificate alone.

Rotation: a certificate is re-issued on the first ``pulumi up`` within 30 days of its expiry
(early_renewal_hours); the Secret changes and its checksum annotation rolls the nodes one at a time.
"""

from __future__ import annotations

import pulumi
import pulumi_tls as tls

CA_VALIDITY_HOURS = 10 * 365 * 24
CERT_VALIDITY_HOURS = 3 * 365 * 24
EARLY_RENEWAL_HOURS = 30 * 24


class ElasticCertificates:
    """CA + HTTP and transport key pairs; children of ``parent``."""

    def __init__(self, *, environment: str, dns_names: list[str], parent: pulumi.Resource):
        opts = pulumi.ResourceOptions(parent=parent)
        organization = "football-monitoring"
        ca_key = tls.PrivateKey("logging-ca-key", algorithm="RSA", rsa_bits=4096, opts=opts)
        ca = tls.SelfSignedCert(
            "logging-ca", private_key_pem=ca_key.private_key_pem, is_ca_certificate=True,
            validity_period_hours=CA_VALIDITY_HOURS, early_renewal_hours=EARLY_RENEWAL_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject={"common_name": f"football-monitoring logging CA ({environment})", "organization": organization},
            opts=opts)
        self.ca_cert_pem: pulumi.Output = ca.cert_pem
        self.keys: dict[str, pulumi.Output] = {}
        self.certs: dict[str, pulumi.Output] = {}
        for layer in ("http", "transport"):
            key = tls.PrivateKey(f"elasticsearch-{layer}-key", algorithm="RSA", rsa_bits=2048, opts=opts)
            request = tls.CertRequest(
                f"elasticsearch-{layer}-csr", private_key_pem=key.private_key_pem, dns_names=dns_names,
                ip_addresses=["127.0.0.1"],
                subject={"common_name": f"elasticsearch-{layer}", "organization": organization}, opts=opts)
            cert = tls.LocallySignedCert(
                f"elasticsearch-{layer}-cert", cert_request_pem=request.cert_request_pem,
                ca_private_key_pem=ca_key.private_key_pem, ca_cert_pem=ca.cert_pem,
                validity_period_hours=CERT_VALIDITY_HOURS, early_renewal_hours=EARLY_RENEWAL_HOURS,
                allowed_uses=["digital_signature", "key_encipherment", "server_auth", "client_auth"], opts=opts)
            # PKCS#8 PEM: what Elasticsearch reads for any key type. Already secret; said again.
            self.keys[layer] = pulumi.Output.secret(key.private_key_pem_pkcs8)
            self.certs[layer] = cert.cert_pem
