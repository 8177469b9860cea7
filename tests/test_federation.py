"""Federation between two running nsdx servers through ckanapi: `nsdx catalogue push`
and `nsdx catalogue harvest`, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import pytest
from ckanapi import RemoteCKAN

from tests.conftest import run_cli
from tests.test_ckan_client import DATASETS, second_server, server  # noqa: F401

pytestmark = pytest.mark.xdist_group("ckan_server")
UA = "nsdx-tests/1.0"


def test_push_then_harvest(server, second_server, nsdx_env):  # noqa: F811
    a, b = server, second_server
    with RemoteCKAN(a.url, apikey=a.token, user_agent=UA) as ckan:
        for d in DATASETS:
            ckan.action.package_create(**d)
        ckan.action.package_create(name="internal", title="内部", owner_org="bureau",
                                   private=True)  # fmt: skip
    env_a = {**nsdx_env, "NSDX_DATABASE_URL": a.database_url}
    out = run_cli("catalogue", "push", "--to", b.url, "--token", b.token, "--json", env=env_a)
    report = json.loads(out.stdout)
    assert sorted(report["created"]) == ["guangzhou-metro-ridership", "nansha-bus-gps"]
    assert report["failed"] == []
    with RemoteCKAN(b.url, apikey=b.token, user_agent=UA) as ckan:
        pushed = ckan.action.package_show(id="nansha-bus-gps")
        assert pushed["title"] == "南沙公交车辆GPS轨迹"
        assert pushed["organization"]["title"] == "南沙区交通运输局"
        assert {t["name"] for t in pushed["tags"]} == {"公交", "gps"}
        assert ckan.action.package_search(q="地铁")["count"] == 1
        with pytest.raises(Exception):  # noqa: B017 - private datasets are not pushed
            ckan.action.package_show(id="internal")
        # the other portal changes one dataset and adds one
        ckan.action.package_patch(id="nansha-bus-gps", title="南沙公交GPS（更新）")
        ckan.action.package_create(name="ferry", title="南沙渡轮班次", owner_org="bureau",
                                   tags=[{"name": "轮渡"}])  # fmt: skip
    again = json.loads(
        run_cli(
            "catalogue",
            "push",
            "--to",
            b.url,
            "--token",
            b.token,
            "--json",
            "nansha-bus-gps",
            env=env_a,
        ).stdout  # fmt: skip
    )
    assert again["updated"] == ["nansha-bus-gps"]
    with RemoteCKAN(b.url, user_agent=UA) as ckan:  # our push wins over their edit
        assert ckan.action.package_show(id="nansha-bus-gps")["title"] == "南沙公交车辆GPS轨迹"
        ckan_b_title = ckan.action.package_show(id="ferry")["title"]
    with RemoteCKAN(a.url, user_agent=UA) as ckan:
        before = {
            n: ckan.action.package_show(id=n)
            for n in ("nansha-bus-gps", "guangzhou-metro-ridership")
        }
    out = run_cli("catalogue", "harvest", "--from", b.url, "--json", env=env_a)
    report = json.loads(out.stdout)
    assert report["created"] == ["ferry"]
    # harvesting back what we pushed never overwrites our own datasets
    assert report["updated"] == []
    assert sorted(report["skipped"]) == ["guangzhou-metro-ridership", "nansha-bus-gps"]
    with RemoteCKAN(a.url, user_agent=UA) as ckan:
        for name, pkg in before.items():
            assert ckan.action.package_show(id=name) == pkg
        ferry = ckan.action.package_show(id="ferry")
        assert ferry["title"] == ckan_b_title
        assert {e["key"]: e["value"] for e in ferry["extras"]}["harvest_source"] == b.url
        assert ckan.action.package_search(q="轮渡")["count"] == 1
    # a dataset harvested from that portal before is updated by the next harvest
    with RemoteCKAN(b.url, apikey=b.token, user_agent=UA) as ckan:
        ckan.action.package_patch(id="ferry", title="南沙渡轮班次（夏季）")
    report = json.loads(
        run_cli("catalogue", "harvest", "--from", b.url, "--json", env=env_a).stdout
    )
    assert report["updated"] == ["ferry"] and report["created"] == []
    with RemoteCKAN(b.url, user_agent=UA) as ckan:
        at_origin = ckan.action.package_show(id="ferry")
    with RemoteCKAN(a.url, user_agent=UA) as ckan:
        copy = ckan.action.package_show(id="ferry")
        assert copy["title"] == "南沙渡轮班次（夏季）"
        # the copy keeps the origin's dates: an update there, not the hour of our harvest
        assert (copy["metadata_modified"], copy["metadata_created"]) == (
            at_origin["metadata_modified"],
            at_origin["metadata_created"],
        )
    # a harvest that finds nothing new changes nothing here (a re-harvest used to stamp
    # every copy with its own time, as if the origin had changed them all)
    run_cli("catalogue", "harvest", "--from", b.url, "--json", env=env_a)
    with RemoteCKAN(a.url, user_agent=UA) as ckan:
        assert (
            ckan.action.package_show(id="ferry")["metadata_modified"] == copy["metadata_modified"]
        )
    r = run_cli("catalogue", "harvest", "--from", "http://127.0.0.1:9", env=env_a, check=False)
    assert r.returncode == 1
    assert "cannot reach the CKAN portal at http://127.0.0.1:9" in r.stderr
