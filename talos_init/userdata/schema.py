"""The Talos machine config format as one table: every field, its type, and what we do with it.

Sources: Talos' ``v1alpha1_types.go`` (machine.*, cluster.*) and the multi-document
kinds. Each field is ``F`` (acted on by this node) or ``U`` (valid Talos, accepted and
reported once as not supported here); anything else is an unknown-field error.
Flipping a field from ``U`` to ``F`` is the whole change when a service starts to use it.
"""

from __future__ import annotations

import re

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
    Str,
    Struct,
    U,
    host_or_ip,
)

BOOL = Bool()
STR = Str()
STRS = ListOf(STR)
STRMAP = MapOf(STR)
UINT32 = Int(0, 2**32 - 1)

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
        "key": F(PEM(KEY_LABELS, "key (private key)", allow_empty=True)),
    },
)
CERT_ONLY = Struct("certificate", {"crt": F(PEM(CERT_LABELS, "crt (certificate)"), required=True)})
KEY_ONLY = Struct("private key", {"key": F(PEM(KEY_LABELS, "key (private key)"), required=True)})

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
        "equinixMetal": F(Struct("equinixMetal", {"apiToken": F(STR)})),
        "hcloud": F(Struct("hcloud", {"apiToken": F(STR)})),
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
        "privateKey": F(STR),
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
                    "filters": F(Struct("filters", {"endpoints": F(STRS)})),
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

    def check(self, node, path, walk, acted):  # type: ignore[no-untyped-def]
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
    "extraConfig": U(ANY),
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

MACHINE_FILE = Struct(
    "file",
    {
        "content": F(Str(), required=True),
        "permissions": F(FileMode(), required=True),
        "path": F(ABS_PATH, required=True),
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

ENCRYPTION = Struct(
    "encryption",
    {
        "provider": F(STR),
        "keys": F(ListOf(ANY)),
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
        "token": F(Str(nonempty=True), required=True),
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
                "mirrors": F(MapOf(ANY)),
                "config": U(MapOf(ANY), why="registry credentials are not passed to containerd yet"),
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
        "kernel": U(
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
        "flannel": U(Struct("flannel", {"extraArgs": F(STRS)})),
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
        "controlPlane": F(
            Struct(
                "controlPlane",
                {
                    "endpoint": F(URL("https"), required=True),
                    "localAPIServerPort": U(Int(1, 65535)),
                },
            ),
            required=True,
        ),
        "clusterName": F(Str(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?", "a cluster name")),
        "network": F(CLUSTER_NETWORK),
        "ca": F(CERT_AND_KEY, required=True),
        "token": F(TOKEN, required=True),
        "id": U(STR),
        "secret": U(STR),
        "aescbcEncryptionSecret": U(STR),
        "secretboxEncryptionSecret": U(STR),
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
        "extraManifestHeaders": U(STRMAP),
        "inlineManifests": U(
            ListOf(Struct("inlineManifest", {"name": F(STR, required=True), "contents": F(STR)}))
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


def kind_doc(kind: str, fields: dict[str, Field]) -> Struct:
    """A multi-document kind: its own fields plus apiVersion and kind."""
    return Struct(
        kind,
        {"apiVersion": F(Enum("v1alpha1"), required=True), "kind": F(STR, required=True), **fields},
    )


# The newer multi-document kinds this node folds into the v1alpha1 shape.
KIND_DOCS: dict[str, Struct] = {
    "HostnameConfig": kind_doc(
        "HostnameConfig",
        {
            "hostname": F(HOSTNAME),
            "auto": U(Enum("stable", "off"), why="hostnames are not generated here; set hostname"),
        },
    ),
    "ResolverConfig": kind_doc(
        "ResolverConfig",
        {
            "nameservers": F(ListOf(Struct("nameserver", {"address": F(IP, required=True)}))),
            "searchDomains": F(
                Struct("searchDomains", {"domains": F(ListOf(HOSTNAME)), "disableDefault": U(BOOL)})
            ),
            "hostDNS": U(
                Struct(
                    "hostDNS",
                    {
                        "enabled": F(BOOL),
                        "forwardKubeDNSToHost": F(BOOL),
                        "resolveMemberNames": F(BOOL),
                    },
                )
            ),
        },
    ),
    # Same fields as machine.kubelet, as a document of its own.
    "KubeletConfig": kind_doc("KubeletConfig", KUBELET_FIELDS),
    "TimeSyncConfig": kind_doc(
        "TimeSyncConfig",
        {
            "ntp": F(Struct("ntp", {"servers": F(ListOf(TIME_SERVER)), "useNTS": U(BOOL)})),
            "ptp": U(Struct("ptp", {"devices": F(ListOf(DEV_PATH))})),
            "enabled": U(BOOL),
            "bootTimeout": U(Duration()),
        },
    ),
}

# Talos kinds that are valid but not acted on here: accepted as a whole, reported once.
UNSUPPORTED_KINDS = frozenset(
    {
        "BlackholeRouteConfig",
        "BondConfig",
        "BridgeConfig",
        "DHCPv4Config",
        "DHCPv6Config",
        "DummyLinkConfig",
        "EthernetConfig",
        "HCloudVIPConfig",
        "KubeSpanConfig",
        "KubeSpanEndpointsConfig",
        "Layer2VIPConfig",
        "LinkAliasConfig",
        "LinkConfig",
        "MacVLANConfig",
        "NetworkDefaultActionConfig",
        "NetworkRuleConfig",
        "RoutingRuleConfig",
        "StaticHostConfig",
        "VLANConfig",
        "VRFConfig",
        "VXLANConfig",
        "WireguardConfig",
        "VolumeConfig",
        "UserVolumeConfig",
        "RawVolumeConfig",
        "ExistingVolumeConfig",
        "ExternalVolumeConfig",
        "SwapVolumeConfig",
        "ZswapConfig",
        "FilesystemScrubConfig",
        "ExtensionServiceConfig",
        "SideroLinkConfig",
        "EventSinkConfig",
        "KmsgLogConfig",
        "TrustedRootsConfig",
        "RegistryMirrorConfig",
        "RegistryAuthConfig",
        "RegistryTLSConfig",
        "ImageCacheConfig",
        "PCIDriverRebindConfig",
        "WatchdogTimerConfig",
        "DiscoveryServiceConfig",
        "DiscoveryIdentityConfig",
        "ProbeConfig",
        "NetworkLinkIngressConfig",
        "EnvironmentConfig",
    }
)

__all__ = ["ACTED", "KIND_DOCS", "UNSUPPORTED_KINDS", "V1ALPHA1"]


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
