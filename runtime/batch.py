"""Whole folders: plan which files to code, run them on worker threads, count the outcomes.

The CLI's ``encode DIR`` and ``decode DIR`` are built on this. One bad file never
stops a batch: its error becomes a ``failed`` outcome with the reason.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from contextlib import contextmanager
from dataclasses import dataclass, field

from .batch_plan import Item, Outcome, Resolved, collision_text, collisions, triage
from .errors import NicodecError
from .stops import TERMINATING, Terminated, interrupting, put_back, signals_held


class Abandoned(KeyboardInterrupt):
    """A second stop while a batch's files in flight finish: those still being coded are left
    unfinished. Their threads cannot be stopped, so the process is to end at once, as the
    ``nicodec`` command does (:func:`nicodec.launch.nicodec`), rather than wait for them at exit.

    Attributes:
        signum: the second stop's signal (the exit code is 128 plus it).
        unfinished: how many files were still being coded.
    """

    def __init__(self, signum: int, unfinished: int):
        super().__init__(signum, unfinished)
        self.signum, self.unfinished = signum, unfinished


ABANDONED: list[int] = []
"""The count of files the latest batch left unfinished (:class:`Abandoned`), once it has: their
threads may still run, and only ending the process at once ends them (the nicodec command does)."""

_COMMIT = threading.Lock()
"""Taken for :func:`unless_abandoned`'s check, and by :func:`run` as it gives a batch up: a file
is either renamed into place before the batch is given up (and waited for, to be counted as
written) or never renamed."""


class _Books:
    """One batch's record of its workers, for a stop that gives it up. Each batch keeps its own:
    a program that runs the command line again in-process (a notebook's next cell) started a new
    batch while the threads of one given up still coded, and the new one, clearing a flag they
    shared, let them put their files in place afterwards (stale: made at the first run's
    settings, then called up to date); a batch given up on the main thread also removed the
    temporary files of another running on a thread of its own."""

    def __init__(self) -> None:
        self.given_up = False  # set (with _COMMIT held) as the batch is given up: nothing is renamed after
        self.renaming: dict[int, object] = {}  # the items past unless_abandoned's check, by thread
        self.writing: dict[int, str] = {}  # the temporary file each thread writes (writing_to), until its item ends


_CODING = threading.local()
"""A worker thread's item and its batch's :class:`_Books`, while it codes the item."""


def unless_abandoned(write: Callable) -> Callable:
    """``write`` (a writer for :func:`nicodec.files.write_atomic`, in a work function that
    :func:`run` calls), which raises :class:`Abandoned` once it has written if the batch was
    given up meanwhile: the file being written is then removed, not renamed into place after
    the batch said it was left unfinished."""

    def writing(f) -> None:
        write(f)
        with _COMMIT:
            books = _own_books()
            if books is not None:
                books.renaming[threading.get_ident()] = _CODING.item

    return writing


def writing_to(temporary: str) -> None:
    """``created`` for :func:`nicodec.files.write_atomic` beside :func:`unless_abandoned`: notes
    the temporary file an item is written to, so that a batch given up removes it, since the
    nicodec command then ends its process while the file may still be written (a large PNG
    takes seconds); raises :class:`Abandoned` if the batch was given up already."""
    with _COMMIT:
        books = _own_books()
        if books is not None:
            books.writing[threading.get_ident()] = temporary


def _own_books() -> _Books | None:
    """The books of the batch whose worker this thread is (None: it is no batch's worker), with
    ``_COMMIT`` held; raises :class:`Abandoned` if that batch was given up."""
    books = getattr(_CODING, "books", None)
    if books is not None and books.given_up:
        raise Abandoned(signal.SIGINT, 0)
    return books


def _remove_unrenamed(books: _Books) -> None:
    """Remove the temporary files of the batch's items being written and not past
    :func:`unless_abandoned`'s check (with ``_COMMIT`` held, as the batch is given up): they are
    never renamed into place, and their threads may be cut short before they remove them.
    Where an open file cannot be removed (Windows), its thread removes it as its writer raises."""
    for ident, temporary in list(books.writing.items()):
        if ident not in books.renaming:
            try:
                os.unlink(temporary)
            except OSError:
                pass
            del books.writing[ident]


@contextmanager
def _abandoning():
    """Inside the block, Ctrl-C, SIGTERM, SIGHUP, SIGXCPU and SIGBREAK raise :class:`Abandoned` (on the main
    thread, and only where they would raise), so that a stop while a batch waits for its files in
    flight (a file on a pipe that nothing writes, a slow refinement) ends the wait."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def again(signum, frame):
        raise Abandoned(signum, 0)

    saved = {}
    for signum in (signal.SIGINT, *TERMINATING):
        handler = signal.getsignal(signum)
        if interrupting(handler):
            saved[signum] = handler
            signal.signal(signum, again)
    try:
        yield
    finally:
        put_back(saved)


@dataclass
class Summary:
    """Counts over a batch's outcomes."""

    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def totals(self) -> tuple[int, int, int]:
        done = [o for o in self.outcomes if o.status == "done"]
        return sum(o.bytes_in for o in done), sum(o.bytes_out for o in done), sum(o.pixels for o in done)


def run(
    items: list[Item],
    work: Callable[[Item], Outcome],
    *,
    force: bool,
    jobs: int = 1,
    on_outcome: Callable[[Outcome], None] = lambda outcome: None,
    differs: Callable[[Item], str | None] | None = None,
    on_stop: Callable[[BaseException], None] = lambda stop: None,
) -> Summary:
    """Code every item with ``work`` on ``jobs`` threads; errors become ``failed`` outcomes,
    and the summary's outcomes are in the order of ``items``.

    ``on_outcome`` is called from the calling thread as each item finishes (for progress), and
    ``on_stop`` once, with the interrupt, when it starts the wait for the items in flight;
    ``differs`` tells an existing newer output made with other settings (see :func:`triage`).
    KeyboardInterrupt (Ctrl-C: a person, who may press it again) stops the batch: items not
    started are dropped; those being coded (at most ``jobs``) finish, are written and reported
    through ``on_outcome``, and then the interrupt is raised again. A second stop during that
    wait raises :class:`Abandoned` at once instead, after reporting the items finished by then
    (on the main thread; elsewhere the wait is not cut short). A :class:`Terminated` (SIGTERM
    and the like: a supervisor, which kills the process after a grace period, Docker's 10 s,
    that a file being coded can outlast) is such a second stop from the first: no wait, and no
    ``on_stop``. A file interrupted while written is removed by
    :func:`nicodec.files.write_atomic`.
    """
    summary = Summary()
    start = time.perf_counter()
    ABANDONED.clear()
    books = _Books()

    finished: list[Outcome] = []  # every item coded, in the order they ended (list.append is atomic)
    started: list[Item] = []

    def guarded(item: Item) -> Outcome:
        started.append(item)
        _CODING.item, _CODING.books = item, books
        begun = time.perf_counter()
        try:
            try:
                outcome = work(item)
            except NicodecError as exc:
                outcome = Outcome(item, "failed", str(exc), shared=getattr(exc, "shared", False))
            except Exception as exc:  # noqa: BLE001 - one bad file must not stop the batch
                outcome = Outcome(item, "failed", f"internal error: {type(exc).__name__}: {exc}")
            outcome.seconds = time.perf_counter() - begun
            finished.append(outcome)
        finally:
            _CODING.item = _CODING.books = None
            with _COMMIT:
                books.renaming.pop(threading.get_ident(), None)
                books.writing.pop(threading.get_ident(), None)
        return outcome

    pending = []
    resolved = Resolved()
    itself = {item for item in items if not item.problem and resolved.real(item.source) == resolved.real(item.target)}
    # A file named that does not exist is no input an output could replace (it fails on its own).
    inputs = {resolved.fold(item.source): item for item in items if not item.problem or os.path.lexists(item.source)}
    # An output that is another input of the batch (an image named x.nic beside x.png): --force
    # would replace an input, which nothing may.
    other_input = {item: inputs[folded] for item in items
                   if not item.problem and item not in itself and (folded := resolved.fold(item.target)) in inputs}
    shared = collisions([item for item in items if item not in itself and item not in other_input and not item.problem],
                        resolved.fold)
    for item in items:
        if item.problem:
            early = Outcome(item, "failed", item.problem)
        elif item in itself:
            early = Outcome(item, "failed", f"the output {item.target} would be the input; write elsewhere with -o")
        elif item in other_input:
            early = Outcome(item, "failed", f"the output {item.target} would replace {other_input[item].source}, an "
                                            "input of this run; write elsewhere with -o")
        elif item in shared:
            early = Outcome(item, "failed", collision_text(item, shared[item]))
        else:
            early = triage(item, force, differs)
        if early is None:
            pending.append(item)
        else:
            summary.outcomes.append(early)
            on_outcome(early)
    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    reported: set[int] = set()
    # Submitted a few at a time as others end, not all at once: a future and the pool's work
    # item for every file of a large batch held about 1.8 kB each until the batch ended.
    ahead = iter(pending)
    in_flight: dict = {}  # future -> item: submitted, and not reported yet
    ended = _Ended()
    try:
        _submit_more(pool, guarded, ahead, in_flight, ended, WINDOW_PER_JOB * max(1, jobs))
        for future in ended:
            outcome = future.result()
            with signals_held():  # reported once: a stop amid it reported it again after (2 files counted for 1)
                summary.outcomes.append(outcome)
                on_outcome(outcome)
                reported.add(id(outcome))
                del in_flight[future]
            _submit_more(pool, guarded, ahead, in_flight, ended, WINDOW_PER_JOB * max(1, jobs))
    except BaseException as stop:
        # Items not started are dropped. Threads cannot be stopped: the items being coded
        # finish and are written, so wait for them and report them too (the count of files
        # written is then the true one), and only then let the interrupt go on. A second stop
        # during the wait gives up on the items still being coded (a file on a pipe that nothing
        # writes, a slow refinement): Abandoned, at once. Their threads write nothing after
        # that (:func:`unless_abandoned`), and the nicodec command ends its process rather
        # than wait for them at exit.
        abandoned = stop if isinstance(stop, Terminated) else None
        if abandoned is None:
            try:
                with _abandoning():
                    on_stop(stop)
                    pool.shutdown(wait=False, cancel_futures=True)
                    for _ in _completed(list(in_flight)):  # the items being coded end (the others were cancelled)
                        pass
            except Abandoned as again:
                abandoned = again
            except KeyboardInterrupt:  # one more, as the handlers were put back: the wait had ended
                pass
        if abandoned is not None:
            with signals_held(raise_after=False):  # marked, waited for and counted, before another stop
                with _COMMIT:
                    books.given_up = True  # no file is renamed into place after this
                    ABANDONED.append(0)
                    pool.shutdown(wait=False, cancel_futures=True)  # and none started (as a worker ends its file)
                    begun = list(started)
                    past = {id(item) for item in books.renaming.values()}
                    _remove_unrenamed(books)
                    renaming = [future for future, item in in_flight.items() if id(item) in past]
                # Those past the check are renaming their files: counted as written, once they are
                wait_for(renaming, timeout=RENAMING_SECONDS)
                done = {id(outcome.item) for outcome in finished}
                unfinished = sum(id(item) not in done for item in begun)
                ABANDONED[:] = [unfinished]
        try:
            with signals_held():
                for outcome in list(finished):
                    if id(outcome) not in reported:
                        on_outcome(outcome)
        except KeyboardInterrupt:
            pass
        if abandoned is not None:
            raise Abandoned(abandoned.signum, unfinished) from stop
        raise stop
    finally:
        if not books.given_up:
            pool.shutdown(wait=True)
    # In the order of the items, not the order their threads ended: the report's lines are the
    # same from run to run whatever --jobs.
    position: dict[Item, int] = {}
    for number, item in enumerate(items):
        position.setdefault(item, number)
    summary.outcomes.sort(key=lambda outcome: position.get(outcome.item, len(items)))
    summary.seconds = time.perf_counter() - start
    return summary


WINDOW_PER_JOB = 4
"""How many items a batch keeps submitted to its pool per thread: enough that a thread ending a
file finds the next one waiting, few enough that the books of a batch of millions stay small."""


def _submit_more(pool: ThreadPoolExecutor, fn: Callable, ahead: Iterator, in_flight: dict, ended: _Ended,
                 window: int) -> None:
    """``pool.submit(fn, item)`` for the next items of ``ahead`` until ``window`` are in flight
    (``in_flight``: future to item), each watched by ``ended``, with Ctrl-C (and SIGTERM, SIGHUP,
    SIGXCPU) held back until they are in: an interrupt while the pool starts a thread leaves that
    thread out of the pool's books, so shutting down would not wait for it, and it would go on
    writing files after the batch reported its count."""
    with signals_held():
        while len(in_flight) < window:
            item = next(ahead, None)
            if item is None:
                return
            future = pool.submit(fn, item)
            in_flight[future] = item
            ended.watch(future)


RENAMING_SECONDS = 2.0
"""The longest a batch given up waits for the files its workers are putting into place (the
temporary file's sync and rename, and the outcome's few details), to count them as written:
short beside a supervisor's grace period (Docker's 10 s); one slower is counted unfinished."""

POLL_SECONDS = 0.1
"""The longest the main thread blocks at a time while it waits for a batch's workers. The kernel
may hand a signal to any thread that does not block it (a worker, one of onnxruntime's), and
Python runs its handler only in the main thread, once that thread wakes: blocked without a
timeout, it would miss a Ctrl-C or SIGTERM until the files in flight end, or for ever."""


class _Ended:
    """Futures as they complete (those that end together in no set order), iterated until every
    future watched has ended, the main thread waking every :data:`POLL_SECONDS` meanwhile;
    futures watched during the iteration are waited for too, and one the pool's shutdown
    cancelled counts as ended. Each future says it ended through its done-callback, which wakes
    the main thread by a plain lock: ``concurrent.futures.wait`` took every pending future's
    lock in turn, each time the main thread woke, so a batch of n files cost n² (5,000 tiny
    files: 12.5 s, now 1.6 s), and a stop raised while it held some of those locks left a
    worker waiting for one for ever (a single Ctrl-C or SIGTERM hung a large batch). A stop
    raised while the main thread waits on the plain lock leaves nothing held."""

    def __init__(self) -> None:
        self._ended: deque = deque()
        self._wake = threading.Lock()
        self._wake.acquire()
        self._left = 0

    def watch(self, future) -> None:
        """Wait for ``future`` too (a future's lock is taken to add the callback: call it with
        stops held, :func:`signals_held`)."""
        self._left += 1
        future.add_done_callback(self._note)

    def _note(self, future) -> None:
        self._ended.append(future)
        try:
            self._wake.release()
        except RuntimeError:  # released already: the main thread has not looked since
            pass

    def __iter__(self):
        while self._left:
            self._wake.acquire(timeout=POLL_SECONDS)
            while self._ended:
                self._left -= 1
                yield self._ended.popleft()


def _completed(futures: list):
    """``futures`` as they complete (:class:`_Ended`)."""
    ended = _Ended()
    with signals_held():
        for future in futures:
            ended.watch(future)
    return iter(ended)
