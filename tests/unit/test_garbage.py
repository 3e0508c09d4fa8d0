"""The garbage collector's passes, timed from its own callbacks while a service serves."""

import gc

from ordermesh.garbage import Collections
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def count(registry: CollectorRegistry, generation: int) -> float:
    return samples(registry)[
        ("ordermesh_gc_pause_seconds_count", (("generation", str(generation)),))
    ]


def test_each_pass_is_counted_by_generation_with_its_duration_while_watched():
    registry = CollectorRegistry()
    collections = Collections()
    registry.register(collections)
    collections.watch()
    try:
        before = [count(registry, g) for g in range(3)]
        gc.collect(2)
        gc.collect(2)
        gc.collect(1)
        after = [count(registry, g) for g in range(3)]
    finally:
        collections.unwatch()
    assert after[2] - before[2] == 2
    assert after[1] - before[1] == 1
    seen = samples(registry)
    total = seen[("ordermesh_gc_pause_seconds_sum", (("generation", "2"),))]
    assert total > 0
    # Cumulative buckets, ending with every pass in +Inf.
    full = ("generation", "2")
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in seen.items()
        if name == "ordermesh_gc_pause_seconds_bucket" and full in labels
    )
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1] == (float("inf"), after[2])


def test_nothing_is_counted_once_unwatched_and_the_callback_is_gone():
    registry = CollectorRegistry()
    collections = Collections()
    registry.register(collections)
    collections.watch()
    collections.unwatch()
    gc.collect()
    assert count(registry, 2) == 0
    assert collections._callback not in gc.callbacks


def test_the_frozen_objects_are_shown():
    registry = CollectorRegistry()
    registry.register(Collections())
    assert samples(registry)[("ordermesh_gc_frozen_objects", ())] == gc.get_freeze_count()
