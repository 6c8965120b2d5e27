"""PID 1's service graph: definitions, graph checks, state machine and supervisor.

Pure modules (no I/O): ``definition`` (validation), ``graph``, ``state``,
``backoff``, ``core``. The I/O shell: ``supervisor`` with ``spawn``,
``cgroups``, ``notify``, ``probes``, ``logring``, ``conditions``.
"""
