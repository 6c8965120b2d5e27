"""Well-known paths on the node, in one place so tests can point them elsewhere."""

from __future__ import annotations

from pathlib import Path

from talos_init.record import record


@record(frozen=True)
class Paths:
    root: Path = Path("/")

    def at(self, path: str) -> Path:
        return self.root / path.lstrip("/")

    @property
    def run(self) -> Path:  # runtime state of talos-init itself
        return self.at("/run/talos")

    @property
    def control_socket(self) -> Path:  # PID 1's root-only API for apid and osctl's helpers
        return self.at("/run/talos/init.sock")

    @property
    def notify_socket(self) -> Path:  # sd_notify readiness for every service
        return self.at("/run/talos/notify.sock")

    @property
    def var_early(self) -> Path:  # PID 1's early /var decision; the var service waits for it
        return self.at("/run/talos/var.early")

    @property
    def config(self) -> Path:  # the validated machine config, as fetched (YAML, root only)
        return self.at("/run/talos/config.yaml")

    @property
    def effective_config(self) -> Path:  # normalized v1alpha1 form as JSON (root only)
        return self.at("/run/talos/config.json")

    @property
    def config_source(self) -> Path:  # where the config in /run/talos came from (store, url...)
        return self.at("/run/talos/config.source")

    @property
    def maintenance(self) -> Path:  # userdata: no config is coming by itself; apid serves insecure
        return self.at("/run/talos/maintenance")

    @property
    def state(self) -> Path:  # the STATE partition's mountpoint: the stored machine config
        return self.at("/system/state")

    @property
    def services(self) -> Path:  # service definitions shipped in the image
        return self.at("/usr/lib/talos/services")

    @property
    def cmdline(self) -> Path:
        return self.at("/proc/cmdline")
