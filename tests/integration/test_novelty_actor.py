"""The novelty filter as a Ray actor: same decisions as the in-process filter."""

from __future__ import annotations

import pytest

from medforge.generate.novelty import NoveltyFilter, make_novelty_actor

pytestmark = pytest.mark.integration

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_actor_matches_local_filter(ray_cluster):
    seeds = ["Explain the pathophysiology of asthma.", "List side effects of metformin."]
    cands = [
        "Explain the pathophysiology of asthma please.",
        "Describe the management of gout.",
        "Describe the management of gout flares.",
        "List the side effects of metformin.",
        "What is sepsis?",
    ]
    seed_ids = ["s0", "s1"]
    actor = make_novelty_actor(0.7, seed_texts=seeds, seed_ids=seed_ids, num_cpus=1)
    got = ray.get(actor.filter.remote(cands[:2], ["c0", "c1"])) + ray.get(
        actor.filter.remote(cands[2:], ["c2", "c3", "c4"])
    )
    local = NoveltyFilter(0.7)
    local.add(seeds, seed_ids)
    assert got == local.filter(cands, [f"c{k}" for k in range(len(cands))])
    assert ray.get(actor.size.remote()) == len(local)
    assert ray.get(actor.get_stats.remote())["candidates"] == len(cands)
