"""The child process of contract/run.py: Django's own storage tests, FileSystemStorage replaced by NatsStorage.

It runs apart from run.py because Django's tests/runtests.py changes global
state (settings, warnings filters, sys.path) and a stuck test must be killable
without losing the outcomes so far: each one is written as a JSON line at once.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import sys
import tempfile
import time
import unittest
from pathlib import Path
from typing import Any, TextIO

REPO = Path(__file__).resolve().parent.parent


class TestTimeout(Exception):
    """A test ran past --test-timeout; raised in it by SIGALRM so the run goes on."""


def _first_line(err: Any) -> str:
    exc_type, value, _ = err
    text = str(value).strip().splitlines()
    return f"{exc_type.__name__}: {text[0] if text else ''}".rstrip(": ")


class RecordingResult(unittest.TextTestResult):
    """Writes each test's outcome (subtests folded into their test) as one JSON line."""

    sink: TextIO
    test_timeout: float = 60.0

    def startTest(self, test: unittest.TestCase) -> None:
        super().startTest(test)
        self._outcome: dict[str, Any] = {"id": test.id(), "status": "passed", "problems": []}
        self._started = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, self.test_timeout)

    def stopTest(self, test: unittest.TestCase) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self._outcome["seconds"] = round(time.monotonic() - self._started, 3)
        self._write(self._outcome)
        super().stopTest(test)

    def _write(self, outcome: dict[str, Any]) -> None:
        self.sink.write(json.dumps(outcome) + "\n")
        self.sink.flush()

    def _problem(self, test: Any, err: Any, status: str) -> None:
        problem = {"message": _first_line(err), "traceback": self._exc_info_to_string(err, test)}
        outcome = getattr(self, "_outcome", None)
        if outcome is None or outcome["id"] != test.id():  # setUpClass, module import: no startTest
            self._write({"id": test.id(), "status": status, "problems": [problem]})
            return
        if outcome["status"] != "error":
            outcome["status"] = status
        outcome["problems"].append(problem)

    def addError(self, test: Any, err: Any) -> None:
        super().addError(test, err)
        self._problem(test, err, "error")

    def addFailure(self, test: Any, err: Any) -> None:
        super().addFailure(test, err)
        self._problem(test, err, "failed")

    def addSubTest(self, test: Any, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            status = "failed" if issubclass(err[0], test.failureException) else "error"
            self._problem(test, err, status)
            self._outcome["problems"][-1]["message"] += f"  [{subtest._subDescription()}]"

    def addSkip(self, test: Any, reason: str) -> None:
        super().addSkip(test, reason)
        outcome = getattr(self, "_outcome", None)
        if outcome is None or outcome["id"] != test.id():  # a skipped class: no startTest
            self._write({"id": test.id(), "status": "skipped", "problems": [{"message": reason}]})
        else:
            outcome.update(status="skipped", problems=[{"message": reason}])

    def addExpectedFailure(self, test: Any, err: Any) -> None:
        super().addExpectedFailure(test, err)

    def addUnexpectedSuccess(self, test: Any) -> None:
        super().addUnexpectedSuccess(test)
        self._outcome.update(status="failed", problems=[{"message": "unexpected success"}])


# Where unittest catches what a test raises: a timeout raised anywhere else would end the whole run.
GUARDED = frozenset({"_callSetUp", "_callTestMethod", "_callTearDown", "_callCleanup"})
RETRY_SECONDS = 0.5


def _alarm(signum: int, frame: Any) -> None:
    while frame is not None:
        if frame.f_code.co_name in GUARDED and frame.f_code.co_filename.endswith(os.path.join("unittest", "case.py")):
            raise TestTimeout(f"test still running after {RecordingResult.test_timeout:g} s")
        frame = frame.f_back
    signal.setitimer(signal.ITIMER_REAL, RETRY_SECONDS)  # between test parts: try again shortly


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tests", required=True, help="Django's tests/ directory")
    parser.add_argument("--results", required=True, help="file for the JSON lines")
    parser.add_argument("--nats", required=True, help="URL of the nats-server")
    parser.add_argument("--test-timeout", type=float, default=60.0)
    parser.add_argument("-v", "--verbosity", type=int, default=1)
    parser.add_argument("labels", nargs="+")
    args = parser.parse_args()

    tests_dir = str(Path(args.tests).resolve())
    sys.path[:0] = [tests_dir, str(REPO)]  # Django's test apps first, as when runtests.py is run
    tempfile.tempdir = os.environ["TMPDIR"] = tempfile.mkdtemp(prefix="django_")
    os.environ["DJANGO_SETTINGS_MODULE"] = "contract.settings"
    os.environ["NATSSTORAGE_CONTRACT_URL"] = args.nats

    from contract import adapter, excluded

    janitor = adapter.install(args.nats)  # before any test module imports FileSystemStorage

    spec = importlib.util.spec_from_file_location("runtests", Path(tests_dir, "runtests.py"))
    assert spec is not None and spec.loader is not None
    runtests = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runtests)  # its warnings filters (ResourceWarning is an error...) apply

    from django.test.runner import DiscoverRunner
    from django.test.utils import iter_test_cases

    sink = Path(args.results).open("a")  # noqa: SIM115  (open for the whole run)

    class Runner(DiscoverRunner):
        """Drops excluded tests (recording them) and records every outcome."""

        def build_suite(self, *build_args: Any, **build_kwargs: Any) -> Any:
            suite = super().build_suite(*build_args, **build_kwargs)
            kept = []
            for test in iter_test_cases(suite):
                found = excluded.reason_for(test.id())
                if found is None:
                    kept.append(test)
                else:
                    pattern, reason = found
                    outcome = {"id": test.id(), "status": "excluded", "pattern": pattern, "problems": []}
                    sink.write(json.dumps(outcome | {"reason": reason}) + "\n")
            sink.flush()
            return self.test_suite(kept)

        def get_resultclass(self) -> Any:
            return RecordingResult

    RecordingResult.sink = sink
    RecordingResult.test_timeout = args.test_timeout
    signal.signal(signal.SIGALRM, _alarm)

    labels, state = runtests.setup_run_tests(args.verbosity, None, None, args.labels)
    if any(label.split(".")[0] == "staticfiles_tests" for label in labels):
        adapter.install_staticfiles()
    from django.conf import settings

    settings.ROOT_URLCONF = "contract.urls"  # runtests.py set "urls"; this adds natsstorage.urls to it
    runner = Runner(verbosity=args.verbosity, interactive=False, parallel=1)
    runner.run_tests(labels)
    runtests.teardown_run_tests(state)
    buckets = janitor.bucket_count()
    janitor.close()

    import django

    done = {"done": True, "django": django.get_version(), "buckets": buckets, "directories": adapter.directory_count()}
    sink.write(json.dumps(done) + "\n")
    sink.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
