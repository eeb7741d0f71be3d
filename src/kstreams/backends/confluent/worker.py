"""The one thread that owns a librdkafka consumer and makes every call to it."""

from __future__ import annotations

import collections
import concurrent.futures
import itertools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kstreams.exceptions import ConsumerStoppedError

T = TypeVar("T")

_Job = tuple[Callable[[], Any], "concurrent.futures.Future[Any]"]


def _run_job(job: _Job) -> None:
    fn, future = job
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


class Worker:
    """The one thread that makes every call to a consumer.

    Jobs run in submission order, *control* jobs (everything but fetching and
    closing) ahead of the others. Control jobs are also served while the
    thread waits inside a fetch, between ``consume()`` slices, and while a
    rebalance callback waits for the listener on the event loop: the calls a
    listener makes run then, instead of queueing behind the callback.
    """

    _names = itertools.count(1)

    def __init__(self, name: str) -> None:
        self._cond = threading.Condition()
        self._control: collections.deque[_Job] = collections.deque()
        self._main: collections.deque[_Job] = collections.deque()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"{name}-{next(self._names)}", daemon=True
        )
        self._thread.start()

    @property
    def ident(self) -> int | None:
        return self._thread.ident

    def submit(self, fn: Callable[[], T], *, control: bool) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        if threading.get_ident() == self._thread.ident:
            _run_job((fn, future))
            return future
        with self._cond:
            if self._closed:
                raise ConsumerStoppedError("the consumer was stopped")
            (self._control if control else self._main).append((fn, future))
            self._cond.notify_all()
        return future

    def close(self) -> None:
        """Take no more jobs; the thread ends once the queued ones ran."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def serve_control(self) -> None:
        while True:
            with self._cond:
                if not self._control:
                    return
                job = self._control.popleft()
            _run_job(job)

    def serve_until(self, waited: concurrent.futures.Future[Any], timeout_s: float) -> bool:
        """Serve control jobs until ``waited`` is done; False if ``timeout_s`` passed first."""
        deadline = time.monotonic() + timeout_s
        waited.add_done_callback(self._wake)
        while True:
            self.serve_control()
            with self._cond:
                while not self._control and not waited.done():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                if waited.done() and not self._control:
                    return True

    def _wake(self, _future: concurrent.futures.Future[Any]) -> None:
        with self._cond:
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._control or self._main or self._closed):
                    self._cond.wait()
                if self._control:
                    job = self._control.popleft()
                elif self._main:
                    job = self._main.popleft()
                else:
                    return
            _run_job(job)
