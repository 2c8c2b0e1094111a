"""Background work that gives way to people: the callbacks being served, and the views
prepared ahead of a user's next click."""

from __future__ import annotations

import queue
import threading

from auth.viewer import Viewer
from views.model import Model, ViewerModel


class Activity:
    """Count of callback requests being served, so background work can give way to them."""

    def __init__(self):
        self._n = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def enter(self) -> None:
        with self._lock:
            self._n += 1

    def leave(self) -> None:
        with self._lock:
            self._n = max(0, self._n - 1)
            if self._n == 0:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no request is being served (at most ``timeout`` seconds)."""
        with self._lock:
            return self._idle.wait_for(lambda: self._n == 0, timeout)


class Prefetcher:
    """One background worker preparing the views a user is likely to open next (the
    children of the current view), so that a drill-down mostly reads the cache.

    With an :class:`Activity`, each step waits (up to ``patience`` seconds) for the
    requests being served to finish: on two cores a prefetch running beside a user's
    callbacks slows the view the user is waiting for."""

    def __init__(self, model: Model, activity: Activity | None = None, patience: float = 1.0):
        self.model = model
        self.activity = activity
        self.patience = patience
        self.queue: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="emap-prefetch", daemon=True)
        self.thread.start()

    def after_view(self, viewer: Viewer, scope: str, day: str, hour: int, gcj02: bool = False) -> None:
        """Prepare the children of ``scope`` that ``viewer`` is likely to open next (the
        work runs under that viewer: it reads only nodes the viewer holds)."""
        viewer.require(scope)
        self.queue.put((viewer, scope, day, hour, gcj02))

    def _run(self) -> None:
        while True:
            viewer, scope, day, hour, gcj02 = self.queue.get()
            if not self.queue.empty():  # the user moved on: only the newest view matters
                continue
            seen = ViewerModel(self.model, viewer)
            try:
                self._give_way()
                for child in seen.drill_targets(scope, day, hour):
                    self._give_way()
                    if not self.queue.empty():
                        break
                    seen.prepare(child, day, gcj02)
            except Exception:  # a failed prefetch only means a slower drill-down
                pass

    def _give_way(self) -> None:
        if self.activity is not None:
            self.activity.wait_idle(self.patience)
