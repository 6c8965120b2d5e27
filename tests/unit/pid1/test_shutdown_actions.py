"""Which signal asks for which action, and which reboot(2) command each action uses."""

import os
import signal

import pytest

from talos_init import shutdown, signals, syscalls
from talos_init.events import EventLog
from talos_init.loop import Loop
from talos_init.reaper import Reaper


def test_busybox_signals_map_to_actions():
    """SIGTERM and SIGINT reboot, SIGUSR2 powers off, SIGUSR1 halts, others ask nothing."""
    assert signals.action_for(signal.SIGTERM) == "reboot"
    assert signals.action_for(signal.SIGINT) == "reboot"
    assert signals.action_for(signal.SIGUSR2) == "poweroff"
    assert signals.action_for(signal.SIGUSR1) == "halt"
    assert signals.action_for(signal.SIGHUP) is None


@pytest.mark.parametrize(("signum", "command"), [
    (signal.SIGTERM, 0x01234567), (signal.SIGINT, 0x01234567),
    (signal.SIGUSR2, 0x4321FEDC), (signal.SIGUSR1, 0xCDEF0123),
])
def test_reboot_command_per_signal(signum, command):
    """Each signal ends in the reboot(2) command the kernel defines for its action."""
    assert shutdown.reboot_command(signals.action_for(signum)) == command


def test_cad_off_is_linux_reboot_cmd_cad_off():
    """Ctrl-Alt-Del is turned off with LINUX_REBOOT_CMD_CAD_OFF (0), on with 0x89ABCDEF."""
    assert syscalls.RB_DISABLE_CAD == 0 and syscalls.RB_ENABLE_CAD == 0x89ABCDEF


def test_unknown_action_is_named_in_the_error():
    """A bad action is rejected before anything is stopped, naming the action."""
    with pytest.raises(ValueError, match="'suspend'"):
        shutdown.reboot_command("suspend")


def test_ignored_signals_do_not_include_the_ones_that_mean_something():
    """No signal is both an action and ignored, and SIGCHLD stays the reaper's."""
    assert not set(signals.IGNORED) & set(signals.ACTIONS)
    assert signal.SIGCHLD not in signals.IGNORED


@pytest.mark.skipif(os.getpid() == 1, reason="this checks the refusal when not PID 1")
def test_kill_everything_scope_is_refused_when_not_pid_1():
    """scope='all' (kill -1) is refused outright unless we are PID 1."""
    loop = Loop()
    try:
        with pytest.raises(ValueError, match="only for PID 1"):
            shutdown.Shutdown(loop, Reaper(loop), EventLog(), final=lambda a: None, scope="all")
    finally:
        loop.close()
