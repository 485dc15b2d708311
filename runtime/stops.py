"""Stops from outside: Ctrl-C, SIGTERM, SIGHUP, SIGXCPU and (Windows) SIGBREAK raised as
exceptions where the command line does its work, so that what is being written is cleaned up
(:func:`stop_like_ctrl_c`), and held back around work that must not be cut short
(:func:`signals_held`). A library leaves its host's signals alone: only the command line, and
the training and export tools, install these handlers.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, SIGHUP, SIGXCPU or (Windows) SIGBREAK (``timeout``, systemd, a closed terminal, a CPU-time limit), raised where Ctrl-C's
    KeyboardInterrupt would be, so that a file being written is cleaned up the same way.

    Attributes:
        signum: the signal's number (the exit code is 128 plus it).
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


STOPS: list[int] = []
"""The signals that stopped work in this process while :func:`stop_like_ctrl_c`'s handlers were
in place, in order (SIGINT, SIGTERM, SIGHUP, SIGXCPU): the command line reads the last for a stop that
reached Typer, which keeps nothing of it but exit code 130."""


def _raise_terminated(signum, frame):
    STOPS.append(signum)
    if signum == XCPU:
        # Sent again every CPU second past the soft limit: once stops the work, and the next ones,
        # through the clean-up and the interpreter's exit, must neither stop it again nor (by the
        # default action) end the process with a core dump.
        signal.signal(signum, signal.SIG_IGN)
    raise Terminated(signum)


def _raise_interrupted(signum, frame):
    STOPS.append(signum)
    raise KeyboardInterrupt


# SIGXCPU: a soft CPU-time limit reached (ulimit -S -t, a batch scheduler's s_cpu), whose default
# action ends the process at once, leaving its temporary files; SIGBREAK: Ctrl-Break in a
# Windows console, likewise (and there no later run removes what it left).
XCPU = getattr(signal, "SIGXCPU", None)
TERMINATING = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP", "SIGXCPU", "SIGBREAK")
                    if hasattr(signal, name))


def stop_like_ctrl_c() -> dict:
    """Make SIGTERM, SIGHUP, SIGXCPU and (Windows) SIGBREAK raise :class:`Terminated` in the main thread (the command line
    does this; a library leaves its host's signals alone), and note each stop, Ctrl-C's too,
    in :data:`STOPS`. Ones set to anything but the default, such as ignored by ``nohup``, are
    left as they are, and so is everything off the main thread, where no handler can be set.
    Returns the handlers replaced, to put back."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    replaced = {}
    for signum in TERMINATING:
        if signal.getsignal(signum) == signal.SIG_DFL:
            replaced[signum] = signal.signal(signum, _raise_terminated)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        replaced[signal.SIGINT] = signal.signal(signal.SIGINT, _raise_interrupted)
    return replaced


def interrupting(handler) -> bool:
    return handler in (signal.default_int_handler, _raise_terminated, _raise_interrupted)


def put_back(handlers: dict) -> None:
    """Set the signals' handlers back, with the signals blocked meanwhile: one arriving between two
    of them would raise there, leaving the others in place for good. The mask is then the one
    found (signals the host program had blocked stay blocked); one that came meanwhile, and was
    not blocked before, is raised now."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, handlers) if hasattr(signal, "pthread_sigmask") else None
    try:
        for signum, handler in handlers.items():
            signal.signal(signum, handler)
    finally:
        if before is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, before)


@contextmanager
def signals_held(raise_after: bool = True):
    """Hold Ctrl-C, SIGTERM, SIGHUP, SIGXCPU and SIGBREAK back inside the block (on the main thread, where they
    are delivered, and only where they would raise), then raise the first one held: the
    block's work is not cut short and still ends, and the stop is not lost.

    With ``raise_after`` false nothing is raised: the block's value, a list, holds the numbers
    of the signals that came (for work that, once done, is to be reported as done)."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return
    saved = {}
    for signum in (signal.SIGINT, *TERMINATING):
        handler = signal.getsignal(signum)
        if interrupting(handler):
            saved[signum] = handler
            signal.signal(signum, lambda signum, frame: held.append(signum))
    try:
        yield held
    finally:
        put_back(saved)
        if held and raise_after:
            signal.raise_signal(held[0])  # its exception, now
