"""The Talos machine config format as one table: every field, its type, and what we do with it.

Sources: Talos' ``v1alpha1_types.go`` (machine.*, cluster.*) and the multi-document
kinds. Each field is ``F`` (acted on by this node) or ``U`` (valid Talos, accepted and
reported once as not supported here); anything else is an unknown-field error.
Flipping a field from ``U`` to ``F`` is the whole change when a service starts to use it.
"""

from __future__ import annotations

import base64
import re

from talos_init.userdata import talos_types
from talos_init.userdata.spec import (
    ACTED,
    ADDRESS,
    ANY,
    CERT_LABELS,
    CIDR,
    HOST_OR_IP,
    HOSTNAME,
    IP,
    KEY_LABELS,
    PEM,
    SUBNET_FILTER,
    UNSUPPORTED,
    URL,
    Bool,
    Duration,
    Enum,
    F,
    Field,
    FileMode,
    Int,
    ListOf,
    MapOf,
    Number,
    Spec,
    Str,
    Struct,
    U,
    check_pem,
    host_or_ip,
)
from talos_init.userdata.targets import file_path_problem, mirror_name_problem

BOOL = Bool()
STR = Str()
STRS = ListOf(STR)
STRMAP = MapOf(STR)
UINT32 = Int(0, 2**32 - 1)
NUMBER = Number()

TOKEN_RE = r"[a-z0-9]{6}\.[a-z0-9]{16}"
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
SYSCTL_RE = re.compile(r"[a-zA-Z0-9_*-]+([./][a-zA-Z0-9_*-]+)*")


def _env_name(key: str) -> str:
    if not ENV_NAME_RE.fullmatch(key):
        raise ValueError(f"{key!r} is not an environment variable name")
    return key


def _sysctl_name(key: str) -> str:
    if not SYSCTL_RE.fullmatch(key):
        raise ValueError(f"{key!r} is not a sysctl name such as net.ipv4.ip_forward")
    return key


def _abs_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError(f"{text!r} is not an absolute path")
    if "\0" in text or any(part == ".." for part in text.split("/")):
        raise ValueError(f"{text!r} must not contain '..' or NUL")
    return text


def _file_path(text: str) -> str:
    why = file_path_problem(text)
    if why:
        raise ValueError(why)
    return text


def _mirror_name(key: str) -> str:
    why = mirror_name_problem(key)
    if why:
        raise ValueError(why)
    return key


def _dev_path(text: str) -> str:
    if not text.startswith("/dev/") or len(text) <= 5:
        raise ValueError(f"{text!r} is not a device path such as /dev/vda")
    return _abs_path(text)


def _time_server(text: str) -> str:
    if text.startswith("/dev/"):
        return _dev_path(text)  # a PTP device, e.g. /dev/ptp0
    return host_or_ip(text)


ABS_PATH = Str(check=_abs_path, nonempty=True)
DEV_PATH = Str(check=_dev_path, nonempty=True)
TIME_SERVER = Str(check=_time_server, nonempty=True)
MAC_PATTERN = Str(
    r"[0-9a-fA-F*?]{1,2}(:[0-9a-fA-F*?]{1,2}){0,19}|\*",
    "a MAC address (wildcards * allowed)",
    lower=True,
)
TOKEN = Str(TOKEN_RE, "a token of the form [a-z0-9]{6}.[a-z0-9]{16}")

CERT_AND_KEY = Struct(
    "certificate and key",
    {
        "crt": F(PEM(CERT_LABELS, "crt (certificate)"), required=True),
        "key": F(PEM(KEY_LABELS, "key (private key)", allow_empty=True), secret=True),
    },
)
CERT_ONLY = Struct("certificate", {"crt": F(PEM(CERT_LABELS, "crt (certificate)"), required=True)})
KEY_ONLY = Struct(
    "private key", {"key": F(PEM(KEY_LABELS, "key (private key)"), required=True, secret=True)}
)

ROUTE = Struct(
    "route",
    {
        "network": F(Str()),  # "" or absent: the default route of the gateway's family
        "gateway": F(Str()),
        "source": F(IP),
        "metric": F(UINT32),
        "mtu": F(UINT32),
    },
)

DEVICE_SELECTOR = Struct(
    "deviceSelector",
    {
        "hardwareAddr": F(MAC_PATTERN),
        "permanentAddr": F(MAC_PATTERN),
        "busPath": F(STR),
        "pciID": F(STR),
        "driver": F(STR),
        "physical": F(BOOL),
    },
)

DHCP_OPTIONS = Struct(
    "dhcpOptions",
    {
        "routeMetric": F(UINT32),
        "ipv4": F(BOOL),
        "ipv6": U(BOOL),
        "duidv6": U(Str(r"([0-9a-fA-F]{2})+", "a hex string")),
    },
)

VIP = Struct(
    "vip",
    {
        "ip": F(IP),
        "equinixMetal": F(Struct("equinixMetal", {"apiToken": F(STR, secret=True)})),
        "hcloud": F(Struct("hcloud", {"apiToken": F(STR, secret=True)})),
    },
)

VLAN = Struct(
    "vlan",
    {
        "vlanId": F(Int(1, 4094), required=True),
        "addresses": F(ListOf(ADDRESS, unique=True)),
        "cidr": F(ADDRESS),  # deprecated single-address form
        "routes": F(ListOf(ROUTE)),
        "dhcp": F(BOOL),
        "mtu": F(Int(68, 65535)),
        "vip": U(VIP),
        "dhcpOptions": F(DHCP_OPTIONS),  # networkd: routeMetric
    },
)

BOND = Struct(
    "bond",
    {
        "interfaces": F(STRS),
        "deviceSelectors": F(ListOf(DEVICE_SELECTOR)),
        "arpIPTarget": U(ListOf(IP)),
        "mode": F(STR),
        "xmitHashPolicy": F(STR),
        "lacpRate": F(STR),
        "adActorSystem": U(STR),
        "arpValidate": F(STR),
        "arpAllTargets": F(STR),
        "primary": U(STR),
        "primaryReselect": F(STR),
        "failOverMac": F(STR),
        "adSelect": F(STR),
        "miimon": F(UINT32),
        "updelay": F(UINT32),
        "downdelay": F(UINT32),
        "arpInterval": F(UINT32),
        "resendIgmp": F(UINT32),
        "minLinks": F(UINT32),
        "lpInterval": F(UINT32),
        "packetsPerSlave": F(UINT32),
        "numPeerNotif": F(Int(0, 255)),
        "tlbDynamicLb": F(Int(0, 255)),
        "allSlavesActive": F(Int(0, 255)),
        "useCarrier": F(BOOL),
        "adActorSysPrio": F(Int(0, 65535)),
        "adUserPortKey": F(Int(0, 65535)),
        "peerNotifyDelay": U(UINT32),
    },
)

BRIDGE = Struct(
    "bridge",
    {
        "interfaces": F(STRS),
        "stp": F(Struct("stp", {"enabled": F(BOOL)})),
        "vlan": F(Struct("vlan", {"vlanFiltering": F(BOOL)})),
    },
)

WIREGUARD = Struct(
    "wireguard",
    {
        "privateKey": F(STR, secret=True),
        "listenPort": F(Int(0, 65535)),
        "firewallMark": F(UINT32),
        "peers": F(
            ListOf(
                Struct(
                    "wireguard peer",
                    {
                        "publicKey": F(STR),
                        "endpoint": F(STR),
                        "persistentKeepaliveInterval": F(Duration()),
                        "allowedIPs": F(ListOf(CIDR)),
                    },
                )
            )
        ),
    },
)

INTERFACE = Struct(
    "interface",
    {
        "interface": F(
            Str(r"[^\s/]{1,15}", "an interface name (1-15 characters, no '/' or spaces)")
        ),
        "deviceSelector": F(DEVICE_SELECTOR),
        "addresses": F(ListOf(ADDRESS, unique=True)),
        "cidr": F(ADDRESS),  # deprecated single-address form, folded into addresses
        "routes": F(ListOf(ROUTE)),
        "vlans": F(ListOf(VLAN)),
        "mtu": F(Int(68, 65535)),
        "dhcp": F(BOOL),
        "ignore": F(BOOL),
        "dhcpOptions": F(DHCP_OPTIONS),  # networkd: routeMetric
        "bond": F(BOND),  # networkd (all but primary, adActorSystem, arpIPTarget, peerNotifyDelay)
        "bridge": U(BRIDGE),
        "bridgePort": U(Struct("bridgePort", {"master": F(STR)})),
        "dummy": U(BOOL),
        "wireguard": U(WIREGUARD),
        "vip": U(VIP),
    },
)

NETWORK = Struct(
    "network",
    {
        "hostname": F(HOSTNAME),
        "interfaces": F(ListOf(INTERFACE)),
        "nameservers": F(ListOf(IP, unique=True)),
        "searchDomains": F(ListOf(HOSTNAME)),
        "disableSearchDomain": U(BOOL),
        "extraHostEntries": F(  # networkd writes them to /etc/hosts
            ListOf(Struct("extraHostEntry", {"ip": F(IP), "aliases": F(ListOf(HOSTNAME))}))
        ),
        "kubespan": U(
            Struct(
                "kubespan",
                {
                    "enabled": F(BOOL),
                    "advertiseKubernetesNetworks": F(BOOL),
                    "allowDownPeerBypass": F(BOOL),
                    "harvestExtraEndpoints": F(BOOL),
                    "mtu": F(UINT32),
                    "filters": F(
                        Struct(
                            "filters",
                            {"endpoints": F(STRS), "excludeAdvertisedNetworks": F(STRS)},
                        )
                    ),
                },
            )
        ),
    },
)

EXTRA_MOUNT = Struct(
    "extraMount",
    {
        "destination": F(ABS_PATH, required=True),
        "type": F(STR),
        "source": F(STR),
        "options": F(STRS),
        "uidMappings": U(
            ListOf(
                Struct(
                    "idMapping", {"containerID": F(UINT32), "hostID": F(UINT32), "size": F(UINT32)}
                )
            )
        ),
        "gidMappings": U(
            ListOf(
                Struct(
                    "idMapping", {"containerID": F(UINT32), "hostID": F(UINT32), "size": F(UINT32)}
                )
            )
        ),
    },
)


class ArgValue(Str):
    """extraArgs values: text, or (newer Talos) a list of text for repeated flags."""

    def check(self, node, path, walk, acted):
        import yaml

        if isinstance(node, yaml.SequenceNode):
            return STRS.check(node, path, walk, acted)
        return super().check(node, path, walk, acted)


def _flag_name(key: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", key):
        raise ValueError(f"{key!r} is not a flag name (write it without the leading '--')")
    return key


ARGS = MapOf(ArgValue(), key=_flag_name)

KUBELET_FIELDS: dict[str, Field] = {
    "extraArgs": F(ARGS),
    "extraMounts": F(ListOf(EXTRA_MOUNT)),
    "nodeIP": F(Struct("nodeIP", {"validSubnets": F(ListOf(SUBNET_FILTER))})),
    "clusterDNS": F(ListOf(IP)),
    "image": U(STR, why="the kubelet binary is built into the image"),
    "extraConfig": F(ANY),  # merged into /etc/kubernetes/kubelet.yaml
    "credentialProviderConfig": U(ANY),
    "defaultRuntimeSeccompProfileEnabled": F(BOOL),
    "registerWithFQDN": F(BOOL),
    "skipNodeRegistration": U(BOOL),
    "disableManifestsDirectory": U(BOOL),
}
KUBELET = Struct("kubelet", KUBELET_FIELDS)

INSTALL = Struct(
    "install",
    {
        "disk": F(DEV_PATH),
        "wipe": F(BOOL),
        "diskSelector": F(
            Struct(
                "diskSelector",
                {
                    "size": U(STR, why="select the disk by model, serial, wwid, modalias or busPath"),
                    "name": U(STR, why="select the disk by model, serial, wwid, modalias or busPath"),
                    "model": F(STR),
                    "serial": F(STR),
                    "modalias": F(STR),
                    "uuid": U(STR, why="select the disk by model, serial, wwid, modalias or busPath"),
                    "wwid": F(STR),
                    "type": F(Enum("ssd", "hdd", "nvme", "sd")),
                    "busPath": F(STR),
                },
            )
        ),
        "image": U(STR, why="talos-init runs from its initramfs; there is no installer image"),
        "extraKernelArgs": U(STRS),
        "extensions": U(ListOf(Struct("extension", {"image": F(STR)}))),
        "bootloader": U(BOOL),
        "legacyBIOSSupport": U(BOOL),
        "grubUseUKICmdline": U(BOOL),
    },
)

REGISTRY_MIRROR = Struct(
    "registry mirror",
    {
        "endpoints": F(STRS),
        "overridePath": F(BOOL),
        "skipFallback": U(BOOL),
    },
)

REGISTRY_CONFIG = Struct(
    "registry config",
    {
        "tls": F(
            Struct(
                "registry tls",
                {
                    "clientIdentity": U(
                        Struct(
                            "clientIdentity",
                            {"crt": F(STR), "key": F(STR, secret=True)},
                        )
                    ),
                    "ca": F(STR),
                    "insecureSkipVerify": F(BOOL),
                },
            )
        ),
        "auth": U(
            Struct(
                "registry auth",
                {
                    "username": F(STR),
                    "password": F(STR, secret=True),
                    "auth": F(STR, secret=True),
                    "identityToken": F(STR, secret=True),
                },
            ),
            why="registry credentials are not passed to containerd yet",
        ),
    },
)

MACHINE_FILE = Struct(
    "file",
    {
        "content": F(Str(), required=True),
        "permissions": F(FileMode(), required=True),
        "path": F(Str(check=_file_path, nonempty=True), required=True),
        "op": F(Enum("create", "append", "overwrite"), required=True),
    },
)

RESOURCES = Struct("resources", {"requests": F(ANY), "limits": F(ANY)})
VOLUME = Struct(
    "extraVolume",
    {
        "hostPath": F(ABS_PATH, required=True),
        "mountPath": F(ABS_PATH, required=True),
        "readonly": F(BOOL),
    },
)
COMPONENT = {
    "image": F(STR),
    "extraArgs": F(ARGS),
    "extraVolumes": F(ListOf(VOLUME)),
    "env": F(MapOf(STR, key=_env_name)),
    "resources": F(RESOURCES),
}


class LazyTalos(Spec):
    """A type of the generated table, built when first used (the builder is defined below)."""

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name
        self.expect = f"a mapping ({type_name})"

    def check(self, node, path, walk, acted):
        return talos_spec(self.type_name).check(node, path, walk, acted)


ENCRYPTION = Struct(
    "encryption",
    {
        "provider": F(STR),
        "keys": F(ListOf(LazyTalos("v1alpha1.EncryptionKey")), secret=True),  # passphrases, KMS
        "cipher": F(STR),
        "keySize": F(UINT32),
        "blockSize": F(Int(0, 2**63 - 1)),
        "options": F(STRS),
    },
)

FEATURES = Struct(
    "features",
    {
        "rbac": F(BOOL),
        "stableHostname": F(BOOL),
        "apidCheckExtKeyUsage": F(BOOL),
        "diskQuotaSupport": F(BOOL),
        "kubernetesTalosAPIAccess": F(
            Struct(
                "kubernetesTalosAPIAccess",
                {
                    "enabled": F(BOOL),
                    "allowedRoles": F(STRS),
                    "allowedKubernetesNamespaces": F(STRS),
                },
            )
        ),
        "kubePrism": F(Struct("kubePrism", {"enabled": F(BOOL), "port": F(Int(0, 65535))})),
        "hostDNS": F(
            Struct(
                "hostDNS",
                {
                    "enabled": F(BOOL),
                    "forwardKubeDNSToHost": F(BOOL),
                    "resolveMemberNames": F(BOOL),
                },
            )
        ),
        "imageCache": F(Struct("imageCache", {"localEnabled": F(BOOL)})),
        "nodeAddressSortAlgorithm": F(Enum("v1", "v2")),
    },
)

MACHINE = Struct(
    "machine",
    {
        "type": F(
            Enum("controlplane", "worker", aliases={"join": "worker", "init": "controlplane"}),
            required=True,
        ),
        "token": F(Str(nonempty=True), required=True, secret=True),
        "ca": F(CERT_AND_KEY, required=True),
        "network": F(NETWORK),
        "install": F(INSTALL),
        "kubelet": F(KUBELET),
        "sysctls": F(MapOf(STR, key=_sysctl_name)),
        "files": F(ListOf(MACHINE_FILE)),
        "env": F(MapOf(STR, key=_env_name)),
        "time": F(
            Struct(
                "time",
                {
                    "servers": F(ListOf(TIME_SERVER)),
                    "disabled": U(BOOL),
                    "bootTimeout": U(Duration()),
                },
            )
        ),
        "acceptedCAs": U(ListOf(CERT_ONLY)),
        "certSANs": F(ListOf(HOST_OR_IP)),
        "controlPlane": U(
            Struct(
                "controlPlane",
                {
                    "controllerManager": F(Struct("controllerManager", {"disabled": F(BOOL)})),
                    "scheduler": F(Struct("scheduler", {"disabled": F(BOOL)})),
                },
            )
        ),
        "pods": F(ListOf(ANY)),  # the kubelet's staticPodPath (rules: rule_pods)
        "disks": U(
            ListOf(
                Struct(
                    "disk",
                    {
                        "device": F(DEV_PATH),
                        "partitions": F(
                            ListOf(Struct("partition", {"size": F(STR), "mountpoint": F(ABS_PATH)}))
                        ),
                    },
                )
            )
        ),
        "sysfs": U(STRMAP),
        "registries": F(
            Struct("registries", {
                "mirrors": F(MapOf(REGISTRY_MIRROR, key=_mirror_name)),
                "config": F(MapOf(REGISTRY_CONFIG)),  # containerd: tls (ca, insecureSkipVerify)
            })
        ),
        "systemDiskEncryption": U(
            Struct("systemDiskEncryption", {"state": F(ENCRYPTION), "ephemeral": F(ENCRYPTION)})
        ),
        "features": U(FEATURES),
        "udev": U(Struct("udev", {"rules": F(STRS)})),
        "logging": U(
            Struct(
                "logging",
                {
                    "destinations": F(
                        ListOf(
                            Struct(
                                "destination",
                                {
                                    "endpoint": F(URL("tcp", "udp"), required=True),
                                    "format": F(Enum("json_lines"), required=True),
                                    "extraTags": F(STRMAP),
                                },
                            )
                        )
                    )
                },
            )
        ),
        "kernel": F(  # machine-setup loads the modules (modprobe NAME PARAMETERS...)
            Struct(
                "kernel",
                {
                    "modules": F(
                        ListOf(
                            Struct(
                                "module",
                                {
                                    "name": F(Str(nonempty=True), required=True),
                                    "parameters": F(STRS),
                                },
                            )
                        )
                    )
                },
            )
        ),
        "seccompProfiles": U(
            ListOf(
                Struct(
                    "seccompProfile",
                    {"name": F(STR, required=True), "value": F(ANY, required=True)},
                )
            )
        ),
        "baseRuntimeSpecOverrides": U(ANY),
        "nodeLabels": F(STRMAP),
        "nodeAnnotations": U(STRMAP),
        "nodeTaints": U(STRMAP),
    },
)

CNI = Struct(
    "cni",
    {
        "name": F(Enum("flannel", "custom", "none")),
        "urls": F(ListOf(URL("http", "https"))),
        "flannel": U(
            Struct("flannel", {"extraArgs": F(STRS), "kubeNetworkPoliciesEnabled": F(BOOL)})
        ),
    },
)

CLUSTER_NETWORK = Struct(
    "cluster network",
    {
        "dnsDomain": F(HOSTNAME, default="cluster.local"),
        "podSubnets": F(ListOf(CIDR), default=lambda: ["10.244.0.0/16"]),
        "serviceSubnets": F(ListOf(CIDR), default=lambda: ["10.96.0.0/12"]),
        "cni": F(CNI),
    },
)

CLUSTER = Struct(
    "cluster",
    {
        # Required after folding: KubeClusterConfig.endpoint may carry it (validate._require).
        "controlPlane": F(
            Struct(
                "controlPlane",
                {
                    "endpoint": F(URL("https")),
                    "localAPIServerPort": U(Int(1, 65535)),
                },
            ),
        ),
        "clusterName": F(Str(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?", "a cluster name")),
        "network": F(CLUSTER_NETWORK),
        "ca": F(CERT_AND_KEY),  # or KubeAPIServerCAConfig (validate._require)
        "token": F(TOKEN, required=True, secret=True),
        "id": U(STR),
        "secret": U(STR, secret=True),
        "aescbcEncryptionSecret": U(STR, secret=True),
        "secretboxEncryptionSecret": U(STR, secret=True),
        "acceptedCAs": F(ListOf(CERT_ONLY)),
        "aggregatorCA": U(CERT_AND_KEY),
        "serviceAccount": U(KEY_ONLY),
        "apiServer": U(
            Struct(
                "apiServer",
                {
                    **COMPONENT,
                    "certSANs": F(ListOf(HOST_OR_IP)),
                    "disablePodSecurityPolicy": F(BOOL),
                    "admissionControl": F(
                        ListOf(
                            Struct(
                                "admissionPlugin",
                                {"name": F(STR, required=True), "configuration": F(ANY)},
                            )
                        )
                    ),
                    "auditPolicy": F(ANY),
                    "authorizationConfig": F(
                        ListOf(
                            Struct(
                                "authorizer",
                                {
                                    "type": F(STR, required=True),
                                    "name": F(STR, required=True),
                                    "webhook": F(ANY),
                                },
                            )
                        )
                    ),
                },
            )
        ),
        "controllerManager": U(Struct("controllerManager", COMPONENT)),
        "scheduler": U(Struct("scheduler", {**COMPONENT, "config": F(ANY)})),
        "proxy": U(
            Struct(
                "proxy",
                {"disabled": F(BOOL), "image": F(STR), "mode": F(STR), "extraArgs": F(ARGS)},
            )
        ),
        "discovery": U(
            Struct(
                "discovery",
                {
                    "enabled": F(BOOL),
                    "registries": F(
                        Struct(
                            "registries",
                            {
                                "kubernetes": F(Struct("kubernetes", {"disabled": F(BOOL)})),
                                "service": F(
                                    Struct(
                                        "service",
                                        {"disabled": F(BOOL), "endpoint": F(URL("http", "https"))},
                                    )
                                ),
                            },
                        )
                    ),
                },
            )
        ),
        "etcd": U(
            Struct(
                "etcd",
                {
                    "image": F(STR),
                    "ca": F(CERT_AND_KEY),
                    "extraArgs": F(ARGS),
                    "subnet": F(STR),
                    "advertisedSubnets": F(ListOf(SUBNET_FILTER)),
                    "listenSubnets": F(ListOf(SUBNET_FILTER)),
                },
            )
        ),
        "coreDNS": U(Struct("coreDNS", {"disabled": F(BOOL), "image": F(STR)})),
        "externalCloudProvider": U(
            Struct("externalCloudProvider", {"enabled": F(BOOL), "manifests": F(STRS)})
        ),
        "extraManifests": U(ListOf(URL("http", "https"))),
        "extraManifestHeaders": U(STRMAP, secret=True),  # Authorization and the like
        "inlineManifests": U(
            ListOf(Struct("inlineManifest", {"name": F(STR, required=True), "contents": F(STR, secret=True)}))
        ),
        "adminKubeconfig": U(Struct("adminKubeconfig", {"certLifetime": F(Duration())})),
        "allowSchedulingOnMasters": U(BOOL),
        "allowSchedulingOnControlPlanes": U(BOOL),
    },
)

V1ALPHA1 = Struct(
    "v1alpha1 config",
    {
        "version": F(Enum("v1alpha1"), required=True),
        "machine": F(MACHINE, required=True),
        "cluster": F(CLUSTER, required=True),
        "debug": U(BOOL),
        "persist": U(BOOL, why="deprecated in Talos"),
    },
)


def _pem_text(labels: tuple[str, ...], what: str):
    """PEM as plain text (the newer kinds), checked like the base64 form of v1alpha1."""

    def check(text: str) -> str:
        check_pem(base64.b64encode(text.encode()).decode(), labels, what)
        return text

    return Str(check=check, nonempty=True)


CERT_PEM = _pem_text(CERT_LABELS, "certificate")
KEY_PEM = _pem_text(KEY_LABELS, "private key")
CERTS_PEM = Str(nonempty=True)  # a CA bundle (RegistryTLSConfig.ca), possibly with comments

# Fields of the generated table (talos_types) that hold secrets: redaction walks by them.
# What each kind's Redact() blanks in Talos (config/types/*/: SecretDocument), by name,
# plus two fields that are secret as a whole (etcd encryption keys; the join token in
# SideroLink's URL).
SECRET_NAMES = frozenset(
    {
        "key", "password", "auth", "identityToken", "privateKey", "presharedKey",
        "secret", "token", "apiToken", "passphrase", "clusterSecret", "uniqueToken",
        "aescbcEncryptionSecret", "secretboxEncryptionSecret", "bootstrapToken",
    }
)
SECRET_FIELDS = frozenset(
    {("k8s.KubeEtcdEncryptionConfigV1Alpha1", "config"), ("siderolink.ConfigV1Alpha1", "apiUrl")}
)
_GENERATED: dict[str, Struct] = {}


def talos_spec(code: object) -> Spec:
    """A spec for a type code of talos_types: plain types, as Go's YAML decoder checks them."""
    if isinstance(code, list):
        return ListOf(talos_spec(code[0]))
    if isinstance(code, dict):
        return MapOf(talos_spec(code["*"]))
    if code == "s":
        return STR
    if code == "i":
        return Int(-(2**63), 2**64 - 1)
    if code == "n":
        return NUMBER
    if code == "b":
        return BOOL
    if code == "args":
        return ArgValue()
    if code == "a":
        return ANY
    assert isinstance(code, str), code
    if code not in _GENERATED:
        short = code.rsplit(".", 1)[-1].removesuffix("V1Alpha1")
        struct = Struct(short, {})
        _GENERATED[code] = struct  # before the fields: types may refer to themselves
        struct.fields.update(
            {
                name: U(talos_spec(sub),
                        secret=name in SECRET_NAMES or (code, name) in SECRET_FIELDS)
                for name, sub in talos_types.TYPES[code].items()
            }
        )
    return _GENERATED[code]


def kind_doc(kind: str, acted: dict[str, Field] | None = None) -> Struct:
    """A document kind from the generated table; ``acted`` overrides fields with ours.

    Fields not in ``acted`` are accepted, type-checked and reported unsupported. An
    ``acted`` field Talos does not have is a mistake here (tests check it never happens).
    """
    generated = talos_spec(talos_types.KINDS[kind])
    assert isinstance(generated, Struct)
    fields = dict(generated.fields)  # each U(...), secret where Talos redacts
    fields["apiVersion"] = F(Enum("v1alpha1"), required=True)
    fields["kind"] = F(STR, required=True)
    for name, fld in (acted or {}).items():
        fields[name] = fld
    return Struct(kind, fields)


ADDRESS_CONFIG = ListOf(
    Struct("address", {"address": F(ADDRESS, required=True), "routePriority": U(UINT32)})
)
ROUTE_CONFIG = ListOf(
    Struct(
        "route",
        {
            "destination": F(CIDR),
            "gateway": F(IP),
            "source": F(IP),
            "metric": F(UINT32),
            "mtu": F(UINT32),
            "table": U(STR),
        },
    )
)
LINK_COMMON: dict[str, Field] = {
    "name": F(Str(nonempty=True), required=True),
    "addresses": F(ADDRESS_CONFIG),
    "routes": F(ROUTE_CONFIG),
    "mtu": F(Int(68, 65535)),
}
# BondConfig field -> machine.network.interfaces[*].bond field, for those networkd applies.
BOND_FIELDS = {
    "links": "interfaces",
    "bondMode": "mode",
    "xmitHashPolicy": "xmitHashPolicy",
    "lacpRate": "lacpRate",
    "arpValidate": "arpValidate",
    "arpAllTargets": "arpAllTargets",
    "primaryReselect": "primaryReselect",
    "failOverMac": "failOverMac",
    "adSelect": "adSelect",
    "miimon": "miimon",
    "updelay": "updelay",
    "downdelay": "downdelay",
    "arpInterval": "arpInterval",
    "resendIGMP": "resendIgmp",
    "minLinks": "minLinks",
    "lpInterval": "lpInterval",
    "packetsPerSlave": "packetsPerSlave",
    "numPeerNotif": "numPeerNotif",
    "tlbLogicalLb": "tlbDynamicLb",
    "allSlavesActive": "allSlavesActive",
    "useCarrier": "useCarrier",
    "adActorSysPrio": "adActorSysPrio",
    "adUserPortKey": "adUserPortKey",
}
_BOND_TYPES = {name: BOND.fields[v1].spec for name, v1 in BOND_FIELDS.items()}

# The kinds this node acts on: each is folded into the v1alpha1 shape by validate._fold,
# so the consumers of the v1alpha1 field act on it. Every other Talos kind is accepted,
# type-checked and reported unsupported as a whole.
KIND_DOCS: dict[str, Struct] = {
    "HostnameConfig": kind_doc(
        "HostnameConfig",
        {
            "hostname": F(HOSTNAME),
            "auto": U(STR, why="hostnames are not generated here; set hostname"),
        },
    ),
    "ResolverConfig": kind_doc(
        "ResolverConfig",
        {
            "nameservers": F(
                ListOf(
                    Struct(
                        "nameserver",
                        {
                            "address": F(IP, required=True),
                            "protocol": U(STR),
                            "tlsServerName": U(STR),
                        },
                    )
                )
            ),
            "searchDomains": F(
                Struct("searchDomains", {"domains": F(ListOf(HOSTNAME)), "disableDefault": U(BOOL)})
            ),
        },
    ),
    "TimeSyncConfig": kind_doc(
        "TimeSyncConfig",
        {"ntp": F(Struct("ntp", {"servers": F(ListOf(TIME_SERVER)), "useNTS": U(BOOL)}))},
    ),
    "KubeletConfig": kind_doc(
        "KubeletConfig",
        {
            # Talos k8s/kubelet.go Validate: "kubelet image cannot be empty".
            "image": Field(
                Str(nonempty=True),
                support=UNSUPPORTED,
                required=True,
                why="the kubelet binary is built into the image",
            ),
            "config": F(ANY),  # merged into /etc/kubernetes/kubelet.yaml (extraConfig)
            "extraArgs": F(ARGS),
            "clusterDNS": F(ListOf(IP)),
        },
    ),
    "KubeClusterConfig": kind_doc(
        "KubeClusterConfig",
        {  # Talos k8s/cluster.go Validate: both must be specified.
            "clusterName": F(CLUSTER.fields["clusterName"].spec, required=True),
            "endpoint": F(URL("https"), required=True),
        },
    ),
    "KubeAPIServerCAConfig": kind_doc(
        "KubeAPIServerCAConfig",
        {  # meta.CertificateAndKey.Validate: cert and key both required, PEM
            "issuingCA": F(
                Struct(
                    "issuingCA",
                    {
                        "cert": F(CERT_PEM, required=True),
                        "key": F(KEY_PEM, required=True, secret=True),
                    },
                )
            ),
            "acceptedCAs": F(ListOf(CERT_PEM)),
        },
    ),
    "KubeNodeConfig": kind_doc(
        "KubeNodeConfig",
        {
            "nodeIP": F(Struct("nodeIP", {"validSubnets": F(ListOf(SUBNET_FILTER))})),
            "labels": F(STRMAP),
        },
    ),
    "KubeNetworkConfig": kind_doc(
        "KubeNetworkConfig",
        {
            "dnsDomain": F(HOSTNAME),
            "podSubnets": F(ListOf(CIDR)),
            "serviceSubnets": F(ListOf(CIDR)),
            # Talos k8s/network.go Validate: mask sizes 1..32 and 1..128.
            "nodeCIDRMaskSizeIPv4": U(Int(1, 32)),
            "nodeCIDRMaskSizeIPv6": U(Int(1, 128)),
        },
    ),
    "LinkConfig": kind_doc("LinkConfig", LINK_COMMON),
    "DHCPv4Config": kind_doc(
        "DHCPv4Config",
        {"name": F(Str(nonempty=True), required=True), "routeMetric": F(UINT32)},
    ),
    "VLANConfig": kind_doc(
        "VLANConfig",
        {
            **LINK_COMMON,
            "parent": F(Str(nonempty=True), required=True),
            "vlanID": F(Int(1, 4094), required=True),
        },
    ),
    "BondConfig": kind_doc(
        "BondConfig",
        {**LINK_COMMON, **{name: F(spec) for name, spec in _BOND_TYPES.items()}},
    ),
    # The selector's CEL expression is translated to a deviceSelector when it has one of
    # the forms fold.alias_selector reads; other expressions are warned about, not applied.
    "LinkAliasConfig": kind_doc(
        "LinkAliasConfig",
        {
            "name": F(Str(nonempty=True), required=True),
            "selector": F(Struct("selector", {"match": F(Str(nonempty=True), required=True)}),
                          required=True),
        },
    ),
    "StaticHostConfig": kind_doc(
        "StaticHostConfig",
        {"name": F(IP, required=True), "hostnames": F(ListOf(HOSTNAME))},
    ),
    "RegistryMirrorConfig": kind_doc(
        "RegistryMirrorConfig",
        {
            "name": F(Str(check=_mirror_name, nonempty=True), required=True),
            "endpoints": F(
                ListOf(
                    Struct(
                        "endpoint",
                        {"url": F(URL("http", "https"), required=True), "overridePath": F(BOOL)},
                    )
                )
            ),
        },
    ),
    "RegistryTLSConfig": kind_doc(
        "RegistryTLSConfig",
        {
            "name": F(Str(nonempty=True), required=True),
            "ca": F(CERTS_PEM),
            "insecureSkipVerify": F(BOOL),
        },
    ),
    # Folded into machine.registries.config.<name>.auth, which containerd is not given yet.
    "RegistryAuthConfig": kind_doc(
        "RegistryAuthConfig", {"name": F(Str(nonempty=True), required=True)}
    ),
    "SysctlConfig": kind_doc("SysctlConfig", {"params": F(MapOf(STR, key=_sysctl_name))}),
    "KernelModuleConfig": kind_doc(
        "KernelModuleConfig",
        {"name": F(Str(nonempty=True), required=True), "parameters": F(STRS)},
    ),
    "EnvironmentConfig": kind_doc(
        "EnvironmentConfig", {"variables": F(MapOf(STR, key=_env_name))}
    ),
}

# Every Talos kind (1.5 to 1.15) that is not acted on: accepted and type-checked.
OTHER_KINDS: dict[str, Struct] = {
    kind: kind_doc(kind) for kind in talos_types.KINDS if kind not in KIND_DOCS
}
# Kinds with a name field: Talos refuses two documents of the same kind and name.
NAMED_KINDS = frozenset(
    kind for kind, t in talos_types.KINDS.items() if "name" in talos_types.TYPES[t]
)

__all__ = ["ACTED", "KIND_DOCS", "NAMED_KINDS", "OTHER_KINDS", "V1ALPHA1"]


def field_paths(spec: object = V1ALPHA1, prefix: str = "", support: str = ACTED):
    """Yield (path, support) for every field of the table, children inheriting 'unsupported'."""
    from talos_init.userdata.spec import UNSUPPORTED, ListOf, MapOf

    while isinstance(spec, (ListOf, MapOf)):
        if isinstance(spec, ListOf):
            prefix += "[*]"
            spec = spec.item
        else:
            prefix += ".*"
            spec = spec.value
    if not isinstance(spec, Struct):
        return
    for name, fld in spec.fields.items():
        path = f"{prefix}.{name}" if prefix else name
        mine = UNSUPPORTED if UNSUPPORTED in (support, fld.support) else ACTED
        yield path, mine
        yield from field_paths(fld.spec, path, mine)
