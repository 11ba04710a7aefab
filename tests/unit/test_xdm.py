"""XDM JSON-LD -> short form, checked against Adobe's published examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from itinerary.engine.xdm import MAX_DEPTH, is_jsonld, namespace_code, normalise
from tests.xdm_fixtures import event_files, fixtures_dir, load

NS = "https://data.adobe.io/entities/namespace/"


def keys_everywhere(value: Any) -> list[Any]:
    out: list[Any] = []
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            out.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return out


def test_the_fixtures_are_found_with_their_licence() -> None:
    folder = fixtures_dir()
    assert (folder / "NOTICE.md").is_file()
    assert "CC-BY-4.0" in (folder / "NOTICE.md").read_text(encoding="utf-8")
    assert len(event_files()) == 11


@pytest.mark.parametrize("path", event_files(), ids=lambda p: p.name)
def test_every_event_example_normalises_to_short_form(path: Path) -> None:
    source = json.loads(path.read_text(encoding="utf-8"))
    before = copy.deepcopy(source)
    event = normalise(source)
    assert is_jsonld(source) and not is_jsonld(event)
    for key in keys_everywhere(event):
        assert not key.startswith(("xdm:", "@")), key
        assert ":" not in key or "://" in key, key  # only full URIs keep a colon
    assert source == before  # the JSON-LD input is not modified
    json.dumps(event)  # still plain JSON


def test_example_1_purchase() -> None:
    event = normalise(load("experienceevent.example.1.json"))
    assert event["_id"] == "https://data.adobe.io/experienceid-123456"
    assert event["timestamp"] == "2017-09-26T15:52:25+00:00"
    assert event["identityMap"] == {
        "ECID": [{"id": "92312748749128"}],
        "AAID": [{"id": "2394509340-30453470347"}],
        "TNTID": [{"id": "1233ce17-20e0-4a2c-8198-2a77fd60cf4d"}],
    }
    assert event["identityMap"]["ECID"][0]["id"] == "92312748749128"
    geo = event["placeContext"]["geo"]
    assert geo["_schema"] == {"latitude": 35.6185, "longitude": 139.73237}
    assert geo["_id"] == "https://data.adobe.io/entities/geo/tokyo" and geo["city"] == "Tōkyō"
    assert event["commerce"]["order"]["purchaseID"] == "a8g784hjq1mnp3"
    assert event["commerce"]["purchases"] == {"value": 1.0}
    assert event["productListItems"][0]["SKU"] == "1002352692"
    assert event["channel"] == {
        "_id": "https://ns.adobe.com/xdm/channels/apns",
        "_type": "https://ns.adobe.com/xdm/channel-types/mobile",
    }
    # a nested identityMap keyed by codes already: entries lose their prefixes only
    assert event["profileStitch"][0]["identityMap"]["ECID"][2] == {
        "id": "https://data.adobe.io/entities/identity/49312748749132"
    }


def test_example_2_keeps_identity_codes() -> None:
    event = normalise(load("experienceevent.example.2.json"))
    assert set(event["identityMap"]) == {"ECID", "AVID"}
    assert event["advertising"]["adViewability"]["implementationDetails"]["name"] == (
        "https://ns.adobe.com/experience/adcloud/viewability"
    )


def test_example_3_point_of_interest_entry() -> None:
    event = normalise(load("experienceevent.example.3.json"))
    poi = event["placeContext"]["POIinteraction"]
    assert poi["poiEntries"]["value"] == 1
    assert poi["POIID"] == "d8a5c08c-1e79-4051-8a8b-675fb235e03d"
    assert poi["beaconInteractionDetails"]["beaconMajor"] == 300
    shape = event["placeContext"]["activePOIs"][2]["geoInteractionDetails"]["geoShape"]
    # nested prefixed objects: schema:circle -> _schema.circle, with its own _schema inside
    circle = shape["_schema"]["circle"]
    assert circle["_id"] == "https://data.adobe.io/entities/geo/circleid123"
    assert circle["_schema"]["radius"] == 80000
    assert circle["_schema"]["coordinates"]["_schema"]["latitude"] == 37.3308953


def test_example_4_other_vocabularies_go_under_their_prefix() -> None:
    asset = normalise(load("experienceevent.example.4.json"))["media"]["mediaTimed"]["primaryAssetReference"]
    assert asset["_dc"] == {"title": "Floki Begs Helga for Freedom", "creator": "Video Author", "publisher": "tvonline"}
    assert asset["_xmpDM"] == {"duration": 87}
    assert asset["_iptc4xmpExt"]["Series"]["_iptc4xmpExt"]["Name"] == "show_highlights"
    assert asset["_iptc4xmpExt"]["Rating"][0]["_iptc4xmpExt"]["RatingValue"] == "TVGuru"
    assert asset["_iptc4xmpExt"]["Genre"] == ["sports"]
    assert asset["showType"] == "episode"


def test_example_7_push_tracking() -> None:
    event = normalise(load("experienceevent.example.7.json"))
    assert event["eventType"] == "pushTracking.customAction"
    assert event["pushNotificationTracking"]["customAction"] == {"actionID": "GAME_INVITATION", "value": 500}
    assert event["identityMap"] == {"ECID": [{"id": "92312743856228"}]}


def test_web_sdk_event_keeps_primary_flag_and_authenticated_state() -> None:
    event = normalise(load("aep-web-sdk-experienceevent.example.1.json"))
    hashed = event["identityMap"]["Email_LC_SHA256"][0]
    assert hashed["primary"] is True and hashed["authenticatedState"] == "ambiguous"
    assert event["identityMap"]["HYP"] == [{"id": "1234", "authenticatedState": "ambiguous"}]
    assert event["eventType"] == "page-view"
    assert event["timestamp"] == "2020-01-07T22:11:14.143Z"
    assert event["_experience"]["decisioning"]["propositions"][0]["items"][1] == {"id": "item2"}
    assert "_id" not in event  # the Web SDK sends none; ingest derives one


def test_short_form_passes_through_as_the_same_object() -> None:
    event = {
        "_id": "e1",
        "timestamp": "2024-05-01T10:00:00Z",
        "eventType": "web.webpagedetails.pageViews",
        "identityMap": {"ECID": [{"id": "1"}]},
        "web": {"webPageDetails": {"name": "Home"}},
        "placeContext": {"geo": {"_schema": {"latitude": 1.0}}},
    }
    before = copy.deepcopy(event)
    assert normalise(event) is event
    assert event == before


def test_only_the_top_level_decides_the_form() -> None:
    # Nested prefixes in a short-form event are left for the client to fix: no walk on
    # the hot path.
    event = {"timestamp": "2024-05-01T10:00:00Z", "web": {"xdm:name": "x"}}
    assert not is_jsonld(event) and normalise(event) is event
    assert is_jsonld({"@id": "x"}) and is_jsonld({"@type": "x"}) and is_jsonld({"xdm:a": 1})
    assert not is_jsonld({"schema:latitude": 1.0, "https://ns.adobe.com/x": 1})


def test_non_string_keys_do_not_break_detection_or_conversion() -> None:
    assert not is_jsonld({1: "a", "b": 2})
    assert is_jsonld({1: "a", "xdm:b": 2})
    assert normalise({1: "a", "xdm:b": {2: "c"}}) == {1: "a", "b": {2: "c"}}  # type: ignore[dict-item]


def test_namespace_uris_become_codes() -> None:
    assert namespace_code(NS + "4") == "ECID"
    assert namespace_code(NS + "6") == "Email"
    assert namespace_code(NS + "7") == "Phone"
    assert namespace_code(NS + "9") == "TNTID"
    assert namespace_code(NS + "10") == "AAID"
    assert namespace_code(NS + "411") == "AdCloud"
    assert namespace_code(NS + "12345") == "NS12345"
    assert namespace_code(NS + "CRMID") == "CRMID"
    assert namespace_code("Email") == "Email"
    assert namespace_code(NS + "77", {"77": "Loyalty"}) == "Loyalty"
    event = normalise({"xdm:identityMap": {NS + "77": [{"xdm:id": "L1", "xdm:primary": True}]}}, {"77": "Loyalty"})
    assert event == {"identityMap": {"Loyalty": [{"id": "L1", "primary": True}]}}


def test_full_uri_keys_are_kept() -> None:
    poi_exits = "https://ns.adobe.com/xdm/data/metrics/placecontext/poi-exits"
    event = normalise({"xdm:timestamp": "t", "xdm:metrics": {poi_exits: {"xdm:value": 1}}})
    assert event == {"timestamp": "t", "metrics": {poi_exits: {"value": 1}}}


def test_two_spellings_of_one_namespace_are_merged() -> None:
    event = normalise({"xdm:identityMap": {"ECID": [{"id": "a"}], NS + "4": [{"xdm:id": "b"}]}})
    assert event["identityMap"] == {"ECID": [{"id": "a"}, {"id": "b"}]}


def test_two_spellings_of_one_object_are_merged() -> None:
    event = normalise({"@id": "e", "xdm:web": {"xdm:a": 1}, "web": {"b": 2}, "_schema": {"x": 1}, "schema:y": 2})
    assert event == {"_id": "e", "web": {"a": 1, "b": 2}, "_schema": {"x": 1, "y": 2}}


@pytest.mark.parametrize(
    "event",
    [
        {"xdm:name": "a", "name": "b"},
        {"@id": "a", "_id": "b"},
        {"xdm:web": {"xdm:name": "a", "name": "b"}},
        {"xdm:a": 1, "_schema": 5, "schema:x": 1},
        {"xdm:identityMap": {"ECID": [{"id": "a"}], NS + "4": "b"}},
    ],
    ids=["top", "id", "nested", "group-over-scalar", "namespace"],
)
def test_colliding_keys_are_refused_with_the_place(event: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"collides|needs an object"):
        normalise(event)


def nested(levels: int) -> dict[str, Any]:
    root: dict[str, Any] = {"xdm:timestamp": "t"}
    node = root
    for _ in range(levels - 1):
        child: dict[str, Any] = {}
        node["xdm:a"] = child
        node = child
    return root


def test_nesting_up_to_the_cap_is_fine_and_beyond_it_a_value_error() -> None:
    assert normalise(nested(MAX_DEPTH))
    with pytest.raises(ValueError, match=f"deeper than {MAX_DEPTH} levels at a.a"):
        normalise(nested(MAX_DEPTH + 1))


def test_hostile_nesting_does_not_hit_the_recursion_limit() -> None:
    with pytest.raises(ValueError, match="deeper than"):
        normalise(nested(100_000))
    deep_list: list[Any] = []
    node = deep_list
    for _ in range(10_000):
        node.append([])
        node = node[0]
    with pytest.raises(ValueError, match=r"deeper than 64 levels at a\[0\]"):
        normalise({"@id": "x", "xdm:a": deep_list})
