"""Apply a machine config handed over by the API (``osctl apply-config``), not fetched.

apid calls ``apply_config(data, paths)``: the same validator as the fetch path, and on
success the same atomic writes. A ``userdata`` service that is waiting because the
command line has no ``talos.config=`` sees ``config.json`` appear and finishes, so the
dependents start exactly as after a fetch.
"""

from __future__ import annotations

from talos_init.paths import Paths
from talos_init.userdata import store, validate


def apply_config(data: bytes, paths: Paths) -> validate.Result:
    """Validate and, when valid, write config.yaml and config.json; the result lists every problem."""
    result = validate.parse(data)
    if result.config is not None:
        store.write_source(paths.config_source, "apply-config")
        store.write_config(data, result.config.effective, paths.config, paths.effective_config)
    return result
