"""Ctrl-C and SIGTERM in the training programs (``nicodec-train``, ``decoder_finetune``,
``entropy_finetune``): the loop ends after the step in hand and the checkpoint is written."""

from __future__ import annotations

import contextlib
import os
import signal
import threading

from .messages import console

TRAINING_BEGAN = threading.Event()
"""Set as ``Run.train`` (nicodec.training.loop) starts its loop: a Ctrl-C the command catches before then wrote nothing
(under ``torchrun`` the loop has no handler of its own, and one may come later)."""


class Stop:
    """Ctrl-C and SIGTERM (``timeout``, a scheduler) end a training loop after the step in hand,
    so that the program writes its checkpoint; ``signal`` is the number of the one received (0: none).
    The fine-tuning programs (``decoder_finetune``, ``entropy_finetune``) stop the same way."""

    def __init__(self):
        self.signal = 0
        self.name = ""

    def _handle(self, number, frame) -> None:
        if self.signal:  # a second one: stop now, without the checkpoint, with its own exit code
            _say(f"{signal.Signals(number).name} again: stopped at once, writing nothing more")
            raise SystemExit(128 + number)
        self.signal, self.name = number, signal.Signals(number).name
        _say(f"{self.name}: stopping after this step and writing a checkpoint (again to stop at once)")

    @contextlib.contextmanager
    def on_signals(self, enabled: bool = True):
        """Stop on the signals within the block (``enabled`` false, or off the main thread: as before;
        several processes of a run would each stop at another step and wait on the others)."""
        if not enabled or threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {number: signal.signal(number, self._handle) for number in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for number, handler in previous.items():
                if handler is not None:  # None: set outside Python (an embedding program), which cannot be put back
                    signal.signal(number, handler)


def _say(line: str) -> None:
    """A line from a signal handler. A signal that came while the loop wrote to standard error
    (the progress bar) found its buffer in use, and the handler's write raised "reentrant call
    inside BufferedWriter" into the loop, which ended with exit code 1 and no checkpoint
    (unseen where PYTHONUNBUFFERED is set: no buffer then). Then the line goes to the file
    descriptor itself."""
    try:
        console.print(line)
    except RuntimeError:
        try:
            os.write(console.file.fileno(), (line + "\n").encode(errors="backslashreplace"))
        except (AttributeError, OSError, ValueError):  # no descriptor (a stream in memory), or none left
            pass
