"""Each kind of error names the path and the line:column of the offending node."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import pytest

from talos_init.userdata import validate
from tests.unit.userdata.pki import MACHINE_CA, fill

BASE = """version: v1alpha1
machine:
    type: worker
    token: 328hom.uqjzh6jnn2eie9oi
    ca:
        crt: @MACHINE_CRT@
        key: ""
#MACHINE
cluster:
    controlPlane:
        endpoint: https://10.0.2.15:6443
    token: wlzjyw.bei2zfylhs2by0wd
    ca:
        crt: @CLUSTER_CRT@
#CLUSTER
"""


@dataclass
class Case:
    name: str
    machine: str = ""  # lines inserted in machine:, 4-space indented
    cluster: str = ""  # lines inserted in cluster:
    after: str = ""  # further documents
    replace: tuple[str, str] = ("", "")
    path: str = ""
    message: str = ""
    marker: str = ""  # the text whose first occurrence is the reported line:column
    severity: str = "error"  # "warning": Talos accepts it, we only point at it

    def text(self) -> str:
        t = (
            BASE.replace("#MACHINE\n", self.machine).replace("#CLUSTER\n", self.cluster)
            + self.after
        )
        if self.replace[0]:
            t = t.replace(*self.replace, 1)
        return fill(t)


KEY_AS_CRT = base64.b64encode(base64.b64decode(MACHINE_CA.key)).decode()
CORRUPT_PEM = base64.b64encode(
    b"-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n"
).decode()

CASES = [
    Case(
        "unknown field",
        machine="    netwrk: {}\n",
        path="machine.netwrk",
        message="unknown field 'netwrk' in machine (did you mean 'network'?)",
        marker="netwrk",
    ),
    Case(
        "unknown nested field",
        machine="    install:\n        dsk: /dev/vda\n",
        path="machine.install.dsk",
        message="unknown field 'dsk'",
        marker="dsk",
    ),
    Case(
        "wrong type",
        machine="    sysctls: [a]\n",
        path="machine.sysctls",
        message="expected a mapping, got a list",
        marker="[a]",
    ),
    Case(
        "bool",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              dhcp: maybe\n",
        path="machine.network.interfaces[0].dhcp",
        message="expected true or false, got str 'maybe'",
        marker="maybe",
    ),
    Case(
        "int range",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              mtu: 70000\n",
        path="machine.network.interfaces[0].mtu",
        message="70000 is out of range 68..65535",
        marker="70000",
    ),
    Case(
        "enum",
        replace=("type: worker", "type: wroker"),
        path="machine.type",
        message="'wroker' is not one of controlplane, worker",
        marker="wroker",
    ),
    Case(
        "cidr",
        cluster="    network:\n        podSubnets: [10.0.0.0]\n",
        path="cluster.network.podSubnets[0]",
        message="is not a CIDR",
        marker="10.0.0.0]",
    ),
    Case(
        "ip",
        machine="    network:\n        nameservers: [1.2.3]\n",
        path="machine.network.nameservers[0]",
        message="'1.2.3' is not an IP address",
        marker="1.2.3",
    ),
    Case(
        "address",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              addresses: [10.0.0.1/40]\n",
        path="machine.network.interfaces[0].addresses[0]",
        message="is not an IP address or address/prefix",
        marker="10.0.0.1/40",
    ),
    Case(
        "url scheme",
        replace=("https://10.0.2.15:6443", "http://10.0.2.15:6443"),
        path="cluster.controlPlane.endpoint",
        message="the scheme must be https",
        marker="http://",
    ),
    Case(
        "url port",
        replace=("https://10.0.2.15:6443", "https://10.0.2.15:99999"),
        path="cluster.controlPlane.endpoint",
        message="is not a valid URL",
        marker="https://",
    ),
    Case(
        "pem not base64",
        replace=("crt: @MACHINE_CRT@", "crt: '%%%'"),
        path="machine.ca.crt",
        message="is not base64",
        marker="'%%%'",
    ),
    Case(
        "pem wrong block",
        replace=("crt: @MACHINE_CRT@", f"crt: {KEY_AS_CRT}"),
        path="machine.ca.crt",
        message="PEM block is 'ED25519 PRIVATE KEY', expected CERTIFICATE",
        marker=KEY_AS_CRT[:20],
    ),
    Case(
        "pem corrupt",
        replace=("crt: @MACHINE_CRT@", f"crt: {CORRUPT_PEM}"),
        path="machine.ca.crt",
        message="not DER data",
        marker=CORRUPT_PEM[:20],
    ),
    Case(
        "hostname",
        machine="    network:\n        hostname: bad_name\n",
        path="machine.network.hostname",
        message="'bad_name' is not a valid hostname",
        marker="bad_name",
    ),
    Case(
        "file mode",
        machine="    files:\n        - content: x\n          permissions: rw-r--r--\n"
        "          path: /var/x\n          op: create\n",
        path="machine.files[0].permissions",
        message="is not a file mode such as 0o644",
        marker="rw-r--r--",
    ),
    Case(
        "file outside what machine.files may write",
        machine="    files:\n        - content: x\n          permissions: 0o644\n"
        "          path: /etc/passwd\n          op: append\n",
        path="machine.files[0].path",
        message="'/etc/passwd' is not allowed (allowed: /var/...",
        marker="/etc/passwd",
    ),
    Case(
        "file the node itself writes",
        machine="    files:\n        - content: x\n          permissions: 0o644\n"
        "          path: /etc/kubernetes/kubelet.yaml\n          op: overwrite\n",
        path="machine.files[0].path",
        message="is not allowed",
        marker="/etc/kubernetes/kubelet.yaml",
    ),
    Case(
        "file path not normalized",
        machine="    files:\n        - content: x\n          permissions: 0o644\n"
        "          path: /var//x/\n          op: create\n",
        path="machine.files[0].path",
        message="is not a normalized file path",
        marker="/var//x/",
    ),
    Case(
        "registry mirror name",
        machine="    registries:\n        mirrors:\n            ../../x:\n"
        "                endpoints: [https://m.test]\n",
        path="machine.registries.mirrors.../../x",
        message="'../../x' is not a registry host name",
        marker="../../x",
    ),
    Case(
        "registry mirror document name",
        after="---\napiVersion: v1alpha1\nkind: RegistryMirrorConfig\nname: ../../x\n"
        "endpoints:\n  - url: https://m.test\n",
        path="RegistryMirrorConfig(../../x).name",
        message="'../../x' is not a registry host name",
        marker="../../x",
    ),
    Case(
        "required",
        machine="    files:\n        - content: x\n          permissions: 0o644\n"
        "          path: /var/x\n",
        path="machine.files[0].op",
        message="required field 'op' is missing in file",
        marker="content: x",
    ),
    Case(
        "required top",
        replace=("    token: wlzjyw.bei2zfylhs2by0wd\n", ""),
        path="cluster.token",
        message="required field 'token' is missing in cluster",
        marker="controlPlane:",
    ),
    Case(
        "duplicate key",
        machine="    env:\n        A: '1'\n        A: '2'\n",
        path="machine.env.A",
        message="duplicate key (first defined on line",
        marker="A: '2'",
    ),
    Case(
        "env name",
        machine="    env:\n        1BAD: x\n",
        path="machine.env.1BAD",
        message="is not an environment variable name",
        marker="1BAD",
    ),
    Case(
        "sysctl name",
        machine="    sysctls:\n        'net ipv4': '1'\n",
        path="machine.sysctls.net ipv4",
        message="is not a sysctl name",
        marker="'net ipv4'",
    ),
    Case(
        "flag name",
        machine="    kubelet:\n        extraArgs:\n            --v: '2'\n",
        path="machine.kubelet.extraArgs.--v",
        message="without the leading '--'",
        marker="--v",
    ),
    Case(
        "install disk",
        machine="    install:\n        disk: sda\n",
        path="machine.install.disk",
        message="is not a device path such as /dev/vda",
        marker="sda",
    ),
    Case(
        "time server",
        machine="    time:\n        servers: ['not a host']\n",
        path="machine.time.servers[0]",
        message="neither an IP address nor a hostname",
        marker="'not a host'",
    ),
    Case(
        "cluster token",
        replace=("wlzjyw.bei2zfylhs2by0wd", "short"),
        path="cluster.token",
        message="is not a token of the form",
        marker="short",
    ),
    Case(
        "interface and selector",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              deviceSelector: {driver: e1000}\n",
        path="machine.network.interfaces[0]",
        message="set exactly one of 'interface' and 'deviceSelector'",
        marker="interface: eth0",
    ),
    Case(
        "neither interface nor selector",
        machine="    network:\n        interfaces:\n            - dhcp: true\n",
        path="machine.network.interfaces[0]",
        message="set exactly one of",
        marker="dhcp: true",
    ),
    Case(
        "duplicate interface",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "            - interface: eth0\n              mtu: 9000\n",
        path="machine.network.interfaces[1].interface",
        message="'eth0' is configured twice (also interfaces[0])",
        marker="interface: eth0\n              mtu",
        severity="warning",
    ),
    Case(
        "route family",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              routes:\n                  - network: 10.0.0.0/8\n                    gateway: fe80::1\n",
        path="machine.network.interfaces[0].routes[0]",
        message="network is IPv4, gateway is IPv6",
        marker="network: 10.0.0.0/8",
        severity="warning",
    ),
    Case(
        "route empty",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              routes:\n                  - metric: 5\n",
        path="machine.network.interfaces[0].routes[0]",
        message="needs a network, a gateway, or both",
        marker="metric: 5",
    ),
    Case(
        "route bad gateway",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              routes:\n                  - gateway: nope\n",
        path="machine.network.interfaces[0].routes[0].gateway",
        message="'nope' is not an IP address",
        marker="gateway: nope",
    ),
    Case(
        "vlan twice",
        machine="    network:\n        interfaces:\n            - interface: eth0\n"
        "              vlans:\n                  - vlanId: 7\n                  - vlanId: 7\n                    dhcp: true\n",
        path="machine.network.interfaces[0].vlans[1].vlanId",
        message="VLAN 7 is defined twice",
        marker="vlanId: 7\n                    dhcp",
        severity="warning",
    ),
    Case(
        "subnets overlap",
        cluster="    network:\n        podSubnets: [10.96.0.0/16]\n"
        "        serviceSubnets: [10.96.0.0/12]\n",
        path="cluster.network.serviceSubnets",
        message="overlaps pod subnet",
        marker="serviceSubnets",
        severity="warning",
    ),
    Case(
        "cni custom without urls",
        cluster="    network:\n        cni: {name: custom}\n",
        path="cluster.network.cni.urls",
        message="needs at least one manifest URL",
        marker="cni:",
        severity="warning",
    ),
    Case(
        "controlplane key",
        replace=("type: worker", "type: controlplane"),
        path="machine.ca.key",
        message="a controlplane node needs the CA private key",
        marker='key: ""',
    ),
    Case(
        "unknown kind",
        after="---\napiVersion: v1alpha1\nkind: FooConfig\n",
        path="FooConfig",
        message="unknown document kind 'FooConfig'",
        marker="FooConfig",
    ),
    Case(
        "kind field",
        after="---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostnme: a\n",
        path="HostnameConfig.hostnme",
        message="unknown field 'hostnme' in HostnameConfig (did you mean 'hostname'?)",
        marker="hostnme",
    ),
    Case(
        "kind apiVersion",
        after="---\napiVersion: v1alpha2\nkind: HostnameConfig\nhostname: a\n",
        path="HostnameConfig.apiVersion",
        message="'v1alpha2' is not one of v1alpha1",
        marker="v1alpha2",
    ),
    Case(
        "kind twice",
        after="---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n"
        "---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: b\n",
        path="HostnameConfig",
        message="a second HostnameConfig document",
        marker="HostnameConfig\nhostname: b",
    ),
    Case(
        "kind conflict",
        machine="    network:\n        hostname: one\n",
        after="---\napiVersion: v1alpha1\nkind: HostnameConfig\nhostname: two\n",
        path="HostnameConfig.hostname",
        message="conflicts with machine.network.hostname",
        marker="hostname: two",
    ),
    Case(
        "second v1alpha1",
        after="---\nversion: v1alpha1\n",
        path="<document>",
        message="a second v1alpha1 document",
        marker="---\nversion",
    ),
    Case(
        "yaml syntax",
        machine="    env: {a: [1, 2}\n",
        path="<document>",
        message="not valid YAML",
        marker="}",
    ),
    Case(
        "tabs", machine="\tenv: {}\n", path="<document>", message="not valid YAML", marker="\tenv"
    ),
    Case(
        "static pod without a name",
        machine="    pods:\n      - apiVersion: v1\n        kind: Pod\n        metadata: {labels: {}}\n"
        "        spec: {containers: [{name: app, image: a/b:1}]}\n",
        path="machine.pods[0].metadata.name",
        message="a static pod needs a name",
        marker="apiVersion: v1",
        severity="warning",
    ),
    Case(
        "static pod without containers",
        machine="    pods:\n      - {apiVersion: v1, kind: Pod, metadata: {name: ok}, spec: {}}\n"
        "      - {apiVersion: v1, kind: Pod, metadata: {name: empty}, spec: {containers: []}}\n",
        path="machine.pods[1].spec.containers",
        message="a pod needs at least one container",
        marker="{apiVersion: v1, kind: Pod, metadata: {name: empty}",
        severity="warning",
    ),
    Case(
        "static pod container without an image",
        machine="    pods:\n      - {apiVersion: v1, kind: Pod, metadata: {name: p},"
        " spec: {containers: [{name: app}]}}\n",
        path="machine.pods[0].spec.containers[0].image",
        message="a container needs an image",
        marker="{apiVersion: v1",
        severity="warning",
    ),
]


def _locate(text: str, marker: str) -> tuple[int, int]:
    at = text.index(marker)
    if marker.startswith("---\n"):
        at += 4
    line = text.count("\n", 0, at) + 1
    col = at - (text.rfind("\n", 0, at) + 1) + 1
    return line, col


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_error_names_path_and_position(case):
    """The error is reported at the path and line:column of the bad node, and no config is produced."""
    text = case.text()
    result = validate.parse(text)
    assert (result.config is None) == (case.severity == "error")
    where = _locate(text, case.marker)
    found = [
        p
        for p in result.problems
        if p.path == case.path and case.message in p.message and p.severity == case.severity
    ]
    assert found, "\n".join(p.format() for p in result.problems)
    assert (found[0].line, found[0].column) == where, found[0].format()


def test_extra_mount_without_bind_is_accepted():
    """Talos adds the bind option itself: options without bind or rbind are not refused."""
    text = fill(
        BASE.replace(
            "#MACHINE\n",
            "    kubelet:\n        extraMounts:\n            - destination: /var/a\n"
            "              type: bind\n              source: /var/a\n              options: [ro]\n",
        ).replace("#CLUSTER\n", "")
    )
    result = validate.parse(text)
    assert result.errors == []
    assert result.config.machine.kubelet.extra_mounts[0].options == ("ro",)


def test_all_errors_are_reported_together():
    """Several independent mistakes come back in one pass, sorted by position."""
    text = fill(
        BASE.replace(
            "#MACHINE\n",
            "    network:\n        hostname: bad_name\n        nameservers: [x]\n"
            "    colour: blue\n",
        )
        .replace("type: worker", "type: wroker")
        .replace("#CLUSTER\n", "    network:\n        podSubnets: [nope]\n")
    )
    result = validate.parse(text)
    assert [p.path for p in result.errors] == [
        "machine.type",
        "machine.network.hostname",
        "machine.network.nameservers[0]",
        "machine.colour",
        "cluster.network.podSubnets[0]",
    ]
    assert [p.line for p in result.errors] == sorted(p.line for p in result.errors)


def test_no_v1alpha1_document():
    """Only kind documents: the missing v1alpha1 document is named."""
    result = validate.parse("apiVersion: v1alpha1\nkind: HostnameConfig\nhostname: a\n")
    assert [p.message for p in result.errors] == [
        "no v1alpha1 document (version: v1alpha1 with machine: and cluster:)"
    ]


def test_empty_and_non_mapping_documents():
    """An empty file and a list document are errors, not exceptions."""
    assert validate.parse("").errors[0].message.startswith("no v1alpha1 document")
    result = validate.parse("- a\n- b\n")
    assert result.errors[0].message == "document 1: expected a mapping, got a list"


def test_oversized_and_binary_input():
    """Input past 1 MiB or not UTF-8 is refused with the reason."""
    assert (
        "the limit is 1048576" in validate.parse(b"#" * (validate.MAX_BYTES + 1)).errors[0].message
    )
    assert "not UTF-8" in validate.parse(b"version: \xff\xfe\n").errors[0].message


def test_alias_bomb_is_refused():
    """A billion-laughs document stops at the node limit instead of eating memory."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    text = "version: v1alpha1\nmachine:\n    pods:\n      - " + "\n        ".join(lines) + "\n"
    result = validate.parse(text)
    assert any("too many nodes" in p.message for p in result.errors)


def test_problem_format():
    """A problem prints as source:line:column: path: message, as compilers do."""
    result = validate.parse(fill(BASE.replace("type: worker", "type: x")).replace("#MACHINE\n", ""))
    assert (
        result.errors[0].format("w.yaml")
        == "w.yaml:3:11: machine.type: 'x' is not one of controlplane, worker"
    )
