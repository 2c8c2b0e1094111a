"""How ``./dev test`` (pytest-xdist, ``--dist loadscope``) shares the tests out among its
workers: by module as xdist does, with two changes.

* Modules that need the same costly session fixture form one work unit, so that one
  worker builds the fixture once instead of each worker that gets one of them.
* The longest units are handed out first, so that they start at once on different
  workers and the short ones fill in at the end. xdist alone queues the units by their
  number of tests, which puts a module of a few long tests (the Spark job's) last while
  the other worker has nothing left to do.

Every test still runs, on some worker. ``tests/conftest.py`` imports the hook; other
``--dist`` modes, ``-n 0`` and ``-p no:xdist`` are left as they are.
"""

from __future__ import annotations

import pytest

#: Modules that use the security suite's ``recorded`` fixture (a real Chromium session
#: of the dashboard, about a minute): one unit, so that it is recorded once.
GROUPS = {
    "tests/security/test_scope_named.py": "security-recorded",
    "tests/security/test_scope_callbacks.py": "security-recorded",
    "tests/security/test_scope_redirects.py": "security-recorded",
    "tests/security/test_fuzz_targets.py": "security-recorded",
}

#: The longest units, longest first (set-up included; re-measure with
#: ``./dev test --durations=0`` when a module grows). The others follow in xdist's order.
LONGEST = (
    "security-recorded",
    "tests/browser/test_live_demo_page.py",
    "tests/browser/test_dashboard.py",
    "tests/browser/test_live_feed.py",
    "tests/test_spark.py",
    "tests/test_outlook.py",
    "tests/browser/test_admin_imports.py",
    "tests/test_owner.py",
    "tests/browser/test_admin_pages.py",
    "tests/security/test_names_dashboard.py",
    "tests/browser/test_access.py",
    "tests/browser/test_dashboard_live.py",
    "tests/security/test_names_reports.py",
    "tests/browser/test_ranking_grid.py",
    "tests/test_schedules.py",
    "tests/security/test_renderer_chromium.py",
    "tests/test_lake.py",
    "tests/test_live_demo.py",
    "tests/test_code_habits.py",
    "tests/test_cube.py",
    "tests/test_durability.py",
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    rank = {unit: i for i, unit in enumerate(LONGEST)}

    class Scheduling(LoadScopeScheduling):
        _ordered = False

        def _split_scope(self, nodeid: str) -> str:
            return GROUPS.get(nodeid.split("::", 1)[0]) or super()._split_scope(nodeid)

        def _assign_work_unit(self, node) -> None:
            if not self._ordered:  # the queue is complete at the first assignment
                units = sorted(self.workqueue.items(), key=lambda unit: rank.get(unit[0], len(rank)))
                self.workqueue.clear()
                self.workqueue.update(units)
                self._ordered = True
            super()._assign_work_unit(node)

    return Scheduling(config, log)
