"""Issue 20's fault-injection suite: a live server, 3 agents (subprocesses) and the real
Docker Engine through server kill -9 at three points of a rollout (once each on SQLite, and
once mid-batch on PostgreSQL, after its restart; `make soak` repeats them at random), agent kill and restart, agent SIGSTOP/SIGCONT, an engine stop/start and a
PostgreSQL restart mid-deploy, SIGTERM with a waiting client, and racing deploys and
rollbacks. After each fault `faults.verify` asserts: no acknowledged deployment lost,
nothing stuck (all ended within faults.ENDED_WITHIN s), converged to the last accepted
desired state within faults.CONVERGED_WITHIN s (one running instance per replica of the
current release on every host, nothing of a removed app), no release marked bad, no
traceback. The figures are printed at the end of the run (tests/e2e/conftest.py).
The scenarios are in fault_scenarios.py; `make soak` runs them at random (bench/soak.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import Images
from tests.e2e import fault_scenarios as scenarios
from tests.e2e.fault_scenarios import Setting


@pytest.fixture
def setting(tmp_path: Path, docker_url: str, images: Images) -> Setting:
    return Setting(tmp_path, docker_url, (images.v1, images.v2, images.v3))


async def test_server_kill_9_at_three_points_sqlite(setting: Setting) -> None:
    # once each: a second round took 30 s of the suite's 15-minute budget; repetition is the
    # soak's job (`make soak`, bench/soak.py, runs every scenario again and again at random)
    await scenarios.server_kill_9(setting, rounds=1)


async def test_agent_kill_and_restart(setting: Setting) -> None:
    await scenarios.agent_kill(setting)


async def test_agent_sigstop_sigcont(setting: Setting) -> None:
    await scenarios.agent_freeze(setting)


async def test_engine_stop_start_during_a_deploy(setting: Setting) -> None:
    await scenarios.engine_restart(setting)


@pytest.mark.timeout(240)
async def test_postgresql_restart_during_a_deploy_and_a_server_kill_9(setting: Setting) -> None:
    await scenarios.postgres_restart(setting)


async def test_sigterm_with_a_waiting_client(setting: Setting) -> None:
    await scenarios.sigterm_with_waiting_client(setting)


async def test_racing_deploys_and_rollbacks(setting: Setting) -> None:
    await scenarios.racing(setting)
