"""Journey versions across restarts: stored older versions run beside the config's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from itinerary.catalog import Catalog
from itinerary.journey_versions import merge_versions, rows
from itinerary.store.sqlite import SqliteJourneyStore
from tests.unit.journey_helpers import CART, WELCOME, catalog


def app_with(*journeys: dict[str, Any]) -> Any:
    return catalog(*journeys).config


def test_a_version_dropped_from_the_config_keeps_running_after_a_restart(tmp_path: Path) -> None:
    store = SqliteJourneyStore(tmp_path / "control.db")
    first = app_with(WELCOME, CART)
    store.save(rows(first))
    # the operator ships cart version 2 and restarts: version 1 is no longer in the file
    second = app_with(WELCOME, {**CART, "version": 2})
    store = SqliteJourneyStore(tmp_path / "control.db")  # as after a restart
    merged, notes = merge_versions(second, store.load())
    assert notes == []
    assert sorted((j.id, j.version) for j in merged.journeys) == [("cart", 1), ("cart", 2), ("welcome", 1)]
    engine = Catalog.build(merged).engine()
    assert {(j.id, j.version) for j in engine.journeys} == {("cart", 2), ("welcome", 1)}  # new entries: v2


def test_a_stored_version_that_no_longer_compiles_is_left_out_with_a_note(tmp_path: Path) -> None:
    store = SqliteJourneyStore(tmp_path / "control.db")
    old = {**WELCOME, "id": "old", "nodes": {**WELCOME["nodes"]}}
    old["nodes"]["start"] = {**WELCOME["nodes"]["start"], "event": "registration"}
    store.save(rows(app_with(old)))
    app = app_with(CART)
    # a config without the event the stored journey starts on
    app = app.model_copy(update={"events": {k: v for k, v in app.events.items() if k != "registration"}})
    merged, notes = merge_versions(app, store.load())
    assert [j.id for j in merged.journeys] == ["cart"]
    assert len(notes) == 1 and "'old' version 1 no longer compiles" in notes[0]


def test_a_changed_definition_under_the_same_version_is_noted_and_the_config_wins(tmp_path: Path) -> None:
    store = SqliteJourneyStore(tmp_path / "control.db")
    store.save(rows(app_with(CART)))
    changed = app_with({**CART, "name": "renamed without a new version"})
    merged, notes = merge_versions(changed, store.load())
    assert [j.name for j in merged.journeys] == ["renamed without a new version"]
    assert "give changes a new version" in notes[0]
