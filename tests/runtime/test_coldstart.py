"""The runtime's cold-start clock: where it starts, and how the parts are counted."""

from __future__ import annotations

import subprocess
import sys
import time

from v2w_runtime import coldstart


def test_a_process_start_time_is_read_from_proc():
    before = time.time()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"])
    try:
        start = coldstart.process_start_time(child.pid)
    finally:
        child.kill()
        child.wait()
    assert start is not None and before - 1.0 <= start <= time.time()


def test_the_launcher_exports_its_start_and_keeps_an_earlier_one(monkeypatch):
    monkeypatch.delenv(coldstart.START_ENV, raising=False)
    coldstart.export_start_time()
    assert abs(float(coldstart.os.environ[coldstart.START_ENV]) - coldstart.process_start_time()) < 0.01
    monkeypatch.setenv(coldstart.START_ENV, "1000.5")
    coldstart.export_start_time()
    assert coldstart.os.environ[coldstart.START_ENV] == "1000.5"
    assert coldstart.ColdStart().origin == 1000.5


def test_the_parts_are_unions_of_intervals_and_add_up(monkeypatch):
    clock = coldstart.ColdStart(origin=100.0)
    clock._spans["download"] = [(110.0, 120.0), (115.0, 125.0), (140.0, 142.0)]  # two ranks' waits overlap
    clock._spans["load"] = [(130.0, 150.0)]  # a download inside the load counts once, as download
    clock._sampling = 155.0
    figures = clock.first_step(now=170.0)
    assert figures == {"seconds": 70.0, "download": 17.0, "load": 18.0, "compile": 15.0, "other": 20.0}
    assert clock.first_step(now=180.0) is None and clock.figures == figures  # only the first step counts


def test_spans_are_timed_from_any_thread():
    import threading

    clock = coldstart.ColdStart(origin=time.time())

    def work():
        with clock.span("download"):
            time.sleep(0.05)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    figures = clock.first_step()
    assert 0.05 <= figures["download"] < 0.15  # three overlapping downloads: their union, not their sum
