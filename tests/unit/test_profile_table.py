"""ProfileTable: idle profiles are packed, touched ones stay, counts survive both ways."""

from __future__ import annotations

from itinerary.engine.profile_table import ProfileTable, pack_profile


def profile(key: str, *journeys: str) -> dict:
    return {"key": key, "attrs": {"n": 1}, "journeys": {j: {"j": j, "n": "wait"} for j in journeys}}


def test_untouched_profiles_are_packed_after_one_full_period() -> None:
    table = ProfileTable()
    table.add("a", profile("a", "welcome"))
    table.add("b", profile("b"))
    assert table.passivate(table.idle_keys()) == 0  # both touched in this period
    table.get("a")
    assert table.passivate(table.idle_keys()) == 1  # b was idle for a whole period
    assert (table.active, table.passivated) == (1, 1)
    assert table.packed("b") == pack_profile(profile("b"))


def test_a_passivated_profile_comes_back_equal_and_active() -> None:
    table = ProfileTable()
    table.add("a", profile("a", "welcome"))
    table.idle_keys()
    table.passivate(table.idle_keys())
    assert table.passivated == 1
    again = table.get("a")
    assert again == profile("a", "welcome")
    assert (table.active, table.passivated, table.activations) == (1, 0, 1)
    again["attrs"]["n"] = 2  # the dict handed out is the one the table holds
    assert table.get("a")["attrs"]["n"] == 2


def test_a_profile_touched_between_idle_keys_and_passivate_stays_active() -> None:
    table = ProfileTable()
    table.add("a", profile("a"))
    table.idle_keys()
    idle = table.idle_keys()
    assert idle == ["a"]
    table.get("a")  # an input arrived while the sweep was in progress
    assert table.passivate(idle) == 0
    assert table.active == 1


def test_peek_reads_without_reactivating() -> None:
    table = ProfileTable()
    table.add("a", profile("a"))
    table.idle_keys()
    table.passivate(table.idle_keys())
    assert table.peek("a") == profile("a")
    assert table.passivated == 1
    assert table.peek("missing") is None and table.get("missing") is None


def test_instance_counts_include_passivated_profiles_without_unpacking_them() -> None:
    table = ProfileTable()
    table.add("a", profile("a", "welcome", "cart"))
    table.add("b", profile("b", "welcome"))
    table.idle_keys()
    table.get("b")
    table.passivate(table.idle_keys())
    assert table.instance_counts() == {"welcome": 2, "cart": 1}
    table.get("a")["journeys"].pop("cart")  # re-activated, then its instance ended
    assert table.instance_counts() == {"welcome": 2}


def test_recovery_loads_packed_and_recount_restores_the_counts() -> None:
    table = ProfileTable()
    table.add_passivated("a", pack_profile(profile("a", "welcome")), ())
    table.add("b", profile("b", "cart"))
    seen = dict(table.recount())
    assert seen == {"a": profile("a", "welcome"), "b": profile("b", "cart")}
    assert table.instance_counts() == {"welcome": 1, "cart": 1}
    assert (len(table), table.passivated, "a" in table) == (2, 1, True)


def test_replacing_a_passivated_profile_drops_its_counts() -> None:
    table = ProfileTable()
    table.add_packed("a", pack_profile(profile("a", "welcome")))
    assert table.instance_counts() == {"welcome": 1}
    table.add("a", profile("a"))
    assert table.instance_counts() == {}
    assert (table.active, table.passivated) == (1, 0)


def test_evictable_profiles_without_instances_are_dropped_and_the_rest_packed() -> None:
    table = ProfileTable()
    table.add("done", profile("done"))
    table.add("waiting", profile("waiting", "cart"))
    table.add("dirty", profile("dirty"))
    table.idle_keys()
    assert table.passivate(table.idle_keys(), evictable=lambda key: key != "dirty") == 3
    assert "done" not in table and table.evictions == 1
    assert (table.passivated, table.instance_counts()) == (2, {"cart": 1})
    # once written, the one that was dirty goes too; a re-activated one is left to a sweep
    assert table.evict_later(lambda key: True) == 1
    assert "dirty" not in table and "waiting" in table and table.evictions == 2
