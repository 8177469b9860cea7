"""Registering a product with a scenario, as every offer now needs (exchange.registration):
the shared step of the tests that trade."""

from __future__ import annotations

from datetime import timedelta


def register(ex, dataset: str, holder: str | None = None, *, scenario: str | None = None) -> dict:
    """Put ``dataset`` in a scenario (created when missing, else extended) and run its
    initial registration to the issued code, the public notice ending today (the
    exchange's clock). ``holder``: the owning organisation (looked up when not given)."""
    from sqlalchemy import select

    from catalogue.models import Dataset, Scenario
    from catalogue.scenarios import ScenarioSpec, save_scenarios
    from exchange.registration import register_product

    name = scenario or f"scenario-{dataset}"
    with ex.catalogue.Session() as s:
        names = dict(s.execute(select(Dataset.id, Dataset.name)).all())
        ds = s.scalar(select(Dataset).where(Dataset.name == dataset))
        holder = holder or ds.organization.name
        sc = s.scalar(select(Scenario).where(Scenario.name == name))
        refs = [(names[u.dataset_id], u.version) for u in sc.uses] if sc else []
    refs = [r for r in refs if r[0] != dataset] + [(dataset, None)]
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
