"""The reaper hands each watched child its real status."""

import os
import signal

from talos_init.loop import Loop
from talos_init.reaper import Reaper


def _fork(code: int | None = None, sig: int | None = None) -> int:
    pid = os.fork()
    if pid == 0:
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)  # past pytest's faulthandler
            os.kill(os.getpid(), sig)
        os._exit(code or 0)
    return pid


def test_exit_code_and_signal_are_delivered():
    loop = Loop()
    reaper = Reaper(loop)
    got = {}
    a, b = _fork(code=3), _fork(sig=signal.SIGSEGV)
    reaper.watch(a, lambda s: got.__setitem__("a", s))
    reaper.watch(b, lambda s: got.__setitem__("b", s))
    assert loop.run_until(lambda: len(got) == 2, timeout=10)
    assert got["a"].code == 3 and got["a"].signal is None
    assert got["b"].signal == signal.SIGSEGV and got["b"].code is None
    assert "SIGSEGV" in str(got["b"]) and not got["b"].success
    loop.close()
