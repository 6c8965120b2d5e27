"""`osctl get config` leaks no credential, against a real apid (issue #22, finding 7)."""

from __future__ import annotations

import json

from talos_init import pki

SECRETS = ("dXNlcjpodW50ZXIy", "hunter2", "Bearer s3cr3t-header", "kind: Secret\ndata: c2VjcmV0",
           "proxypass", "id-token-value", "sbox-secret", "abcdef.0123456789abcdef")


def test_get_config_redacts_what_the_schema_marks_secret(node):
    """Registry auth, manifest headers, inline manifests and URL passwords never leave the node."""
    config = {
        "version": "v1alpha1",
        "machine": {
            "type": "worker", "token": "abcdef.0123456789abcdef",
            "ca": {"crt": pki.encode_field(pki.cert_pem(node.certs.ca)),
                   "key": pki.encode_field(pki.key_pem(node.certs.ca_key))},
            "env": {"https_proxy": "http://alice:proxypass@proxy.test:3128", "LANG": "C"},
            "registries": {"config": {"registry.test": {
                "auth": {"username": "alice", "password": "hunter2", "auth": "dXNlcjpodW50ZXIy",
                         "identityToken": "id-token-value"}}}},
        },
        "cluster": {
            "clusterName": "test", "token": "abcdef.0123456789abcdef",
            "secretboxEncryptionSecret": "sbox-secret",
            "extraManifestHeaders": {"Authorization": "Bearer s3cr3t-header"},
            "inlineManifests": [{"name": "creds", "contents": "kind: Secret\ndata: c2VjcmV0"}],
        },
    }
    (node.tmp / "config.json").write_text(json.dumps(config))
    r = node.osctl(node.osctlconfig("admin", ["os:admin"]), "-o", "json", "get", "config")
    assert r.returncode == 0, r.stderr
    for secret in SECRETS:
        assert secret not in r.stdout, (secret, r.stdout)
    out = json.loads(r.stdout)
    assert out["machine"]["registries"]["config"]["registry.test"]["auth"]["username"] == "alice"
    assert out["machine"]["env"]["https_proxy"] == "http://[redacted]@proxy.test:3128"
    assert out["cluster"]["extraManifestHeaders"] == {"Authorization": "[redacted]"}
    assert out["cluster"]["inlineManifests"] == [{"name": "creds", "contents": "[redacted]"}]
    assert out["machine"]["ca"]["crt"] == config["machine"]["ca"]["crt"]
