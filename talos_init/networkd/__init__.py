"""networkd: the node's network, configured through netlink, as a supervised service.

Runs as ``python3.11 -I -m talos_init.networkd`` (never inside PID 1: pyroute2
is heavy). Modules, one job each:

- ``model``: cmdline ``ip=`` and ``machine.network`` into a plan, errors by field path (no I/O)
- ``links``: the link table, kept from netlink events; deviceSelector matching
- ``ethtool``: a link's driver and bus path (ETHTOOL_GDRVINFO ioctl)
- ``apply``: make links/addresses/routes match the plan, changing only the difference
- ``dhcp``: one DHCPv4 client per link (pyroute2's), lease events
- ``files``: hostname, /etc/hosts, /etc/resolv.conf, written atomically
- ``stablename``: the generated ``talos-xxx-yyy`` hostname of a node nobody named
- ``watch``: inotify on the effective config
- ``daemon``: the service, readiness and the event handling around all of it
"""
