"""Registering a product with a scenario, as every offer now needs (exchange.registration):
the shared step of the tests that trade."""

from __future__ import annotations

from datetime import timedelta


def register(ex, dataset: str, holder: str, *, scenario: str | None = None) -> dict:
    """Put ``dataset`` in a scenario (created when missing) and run its initial
    registration to the issued code, the notice having ended today (the exchange's clock)."""
    from catalogue.scenarios import ScenarioSpec, save_scenarios
    from catalogue.models import Scenario
    from exchange.registration import register_product

    name = scenario or f"scenario-{dataset}"
    with ex.catalogue.Session() as s:
        exists = s.query(Scenario).filter(Scenario.name == name).one_or_none()
        uses = [] if exists is None else [
            (u.dataset_id, u.version) for u in exists.uses
        ]
    from catalogue.models import Dataset

    with ex.catalogue.Session() as s:
        names = {d.id: d.name for d in s.query(Dataset).all()}
    refs = [(names[i], v) for i, v in uses if names[i] != dataset] + [(dataset, None)]
    save_scenarios(
        ex.catalogue,
        [ScenarioSpec(name=name, title="测试场景", title_en="Test scenario", sector="other",
                      proposer="tests", datasets=refs)],
    )  # fmt: skip
    applied = ex.today() - timedelta(days=ex.rules.registration_notice_days)
    return register_product(
        ex, dataset, name, holder=holder, applied_on=applied,
        compliance_statement="已脱敏，符合个人信息保护法 (masked; PIPL)",
        legality_pledge="数据来源合法 (lawfully collected)",
    )  # fmt: skip
