"""Runs last (see conftest): nothing any inner run of this suite created is left on the engine."""

from __future__ import annotations

import docker
from conftest import INNER_RUN_IDS, leftovers


def test_no_inner_run_left_anything(docker_client: docker.DockerClient) -> None:
    assert INNER_RUN_IDS, "no inner run was recorded: the suite would prove nothing here"
    left = {run_id: leftovers(docker_client, run_id) for run_id in INNER_RUN_IDS}
    assert {run_id: found for run_id, found in left.items() if found} == {}
