"""hoststall.py: how long the host held a test's own thread back, to tell a host stall from a
slow ufvm when a test checks a time (e2e_stop's storm, e2e_control's heatmap)."""
import threading
import time


class StallMeter:
    """How long the host held back a thread that only sleeps 10 ms at a time, from its
    start to stop(): the sum of every wake-up late by more than 50 ms (a stall, not
    scheduling noise). When the host stalls (a loaded CI machine has stalled for seconds),
    a time measured meanwhile says nothing of ufvm: a bound missed by no more than this is
    the host's doing (e2e_stop runs the case again; a second miss fails)."""

    def __init__(self):
        self.held, self.on = 0.0, True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self):
        last = time.monotonic()
        while self.on:
            time.sleep(0.01)
            now = time.monotonic()
            if now - last - 0.01 > 0.05:
                self.held += now - last - 0.01
            last = now

    def stop(self):
        self.on = False
        return self.held
