"""Signals PID 1 obeys, as busybox init: the only way in besides the API.

SIGTERM and SIGINT reboot (Ctrl-Alt-Del arrives as SIGINT once the kernel's
CAD is turned off), SIGUSR2 powers off, SIGUSR1 halts. Every other catchable
signal that would end or stop a process gets a logging no-op handler: a
caught signal, unlike SIG_IGN or a blocked mask, is reset to its default
when a service execs, so children do not inherit our deafness.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from talos_init.log import get_logger
from talos_init.loop import Loop

log = get_logger("signals")

ACTIONS: dict[int, str] = {
    signal.SIGTERM: "reboot",
    signal.SIGINT: "reboot",
    signal.SIGUSR2: "poweroff",
    signal.SIGUSR1: "halt",
}

# Default action "terminate", "core" or "stop": fatal or freezing for PID 1 in host mode.
IGNORED: tuple[int, ...] = (
    signal.SIGHUP, signal.SIGQUIT, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF,
    signal.SIGPWR, signal.SIGXCPU, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU,
    signal.SIGSYS, signal.SIGTRAP, signal.SIGIO,
)

OnRequest = Callable[[str, str], object]  # (action, reason)


def action_for(signum: int) -> str | None:
    """The shutdown action a signal asks for, or None if it asks for nothing."""
    return ACTIONS.get(signum)


def install(loop: Loop, on_request: OnRequest) -> None:
    """Route the busybox signals to ``on_request(action, reason)``; ignore the rest."""

    def requested(signum: int) -> None:
        name = signal.Signals(signum).name
        action = ACTIONS[signum]
        log.info("signal_received", signal=name, action=action)
        on_request(action, f"signal {name}")

    def ignored(signum: int) -> None:
        log.info("signal_ignored", signal=signal.Signals(signum).name)

    for signum in ACTIONS:
        loop.add_signal_handler(signum, requested)
    for signum in IGNORED:
        loop.add_signal_handler(signum, ignored)
