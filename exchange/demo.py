"""A realistic sample of exchange activity over the demo datasets (``nsdx exchange demo``,
run by ``make demo``).

Seven firms with valid credit codes buy and sell; one contract is refunded, one buyer is
outside the district, one buyer shares its legal representative and phone with the seller
(a related party), three firms pass data products round in a circle within a month (a
wash trade), and one group buys enough to hit the ¥2,000,000 annual cap — so that
`nsdx audit verify`, `nsdx audit rewards --year Y` and `nsdx audit flags` show every rule
at once. Idempotent: a second run finds the demo contracts and records nothing.
"""

from __future__ import annotations

import zlib
from datetime import date

from sqlalchemy import func, select

from catalogue.models import Dataset

from . import credit_code, trade
from .actors import Actor
from .context import Exchange
from .errors import CrossBorderBlocked, CrossBorderRefused, ExchangeError, InvalidState
from .models import CrossBorderDecision, Order, Registration

MARK = "NSDX-DEMO-"
DEMO_ORDERS = 11  # contracts the demo records; the last one granted means it completed

# org, legal name, division, org code, group, legal rep, address, phone, in Nansha, authority
FIRMS = [
    ("nansha-transport-bureau", "广州市南沙区交通运输局", "440115", "MB2C9178", None, "林国华",
     "广州市南沙区凤凰大道1号", "020-39912345", True, "1"),
    ("nansha-drone-operator", "广州南沙翼航无人机科技有限公司", "440115", "MA59DL9U", None, "黄海峰",
     "广州市南沙区黄阁镇麒麟一路8号", "020-39001122", True, "9"),
    ("nansha-zhixing-ai", "广州南沙智行人工智能科技有限公司", "440115", "MA5AK3F2", "智行科技集团", "陈志强",
     "广州市南沙区海滨路171号", "020-39886601", True, "9"),
    ("zhixing-robotics", "广州智行机器人有限公司", "440115", "MA5BN7Q1", "智行科技集团", "陈志远",
     "广州市南沙区环市大道南33号", "020-39886602", True, "9"),
    ("nansha-haiyun-data", "广州南沙海运数据服务有限公司", "440115", "MA5C1X8W", "海运数据集团", "周海",
     "广州市南沙区龙穴岛港前大道9号", "020-39550088", True, "9"),
    ("lingang-insight", "广州临港洞察科技有限公司", "440115", "MA5D6R2T", None, "吴倩",
     "广州市南沙区进港大道12号", "020-39772200", True, "9"),
    ("baiyun-vision", "广州白云视觉科技有限公司", "440111", "MA5E8H4K", None, "郑明",
     "广州市白云区云城西路890号", "020-86661234", False, "9"),
    # shares the drone operator's legal representative and phone: a related party
    ("nansha-qiming-ai", "广州南沙启明智能有限公司", "440115", "MA5F0P6N", None, "黄海峰",
     "广州市南沙区金隆路26号", "020-39001122", True, "9"),
    # outside the mainland: a Hong Kong buyer (the GBA route) and an overseas one (refused)
    ("hk-harbour-analytics", "港湾数据分析有限公司 Harbour Analytics Ltd", "440115", "MA5G2K7P",
     None, "李家明", "香港九龙尖沙咀广东道30号", "+852-2345-6789", False, "9"),
    ("paris-mobility-lab", "Paris Mobility Lab SAS", "440115", "MA5H4M9R", None, "Claire Martin",
     "12 rue de Rivoli, 75004 Paris", "+33-1-4000-0000", False, "9"),
]  # fmt: skip
# where the firms outside the mainland are registered (exchange.crossborder.regions)
REGIONS = {"hk-harbour-analytics": "hong-kong", "paris-mobility-lab": "abroad"}
# the exchange operator: records regions outside the mainland and the authorities' numbers
OPERATOR = Actor.operator("demo:operator")
# core data (GB/T 43697-2024) offered for cross-border sale: the rules refuse every order
CORE = ("haiyun-port-operations-core", "南沙港区码头作业调度数据（核心数据）", "nansha-haiyun-data",
        80_000_000)  # fmt: skip

# data products of the AI firms (catalogue entries the demo adds if missing), list price fen
PRODUCTS = [
    ("zhixing-congestion-forecast", "南沙道路拥堵预测数据产品", "nansha-zhixing-ai", 50_000_000),
    ("haiyun-port-logistics-index", "南沙港物流指数数据产品", "nansha-haiyun-data", 50_000_000),
    ("lingang-demand-heatmap", "临港出行需求热力数据产品", "lingang-insight", 50_000_000),
]
# the list prices of datasets.yaml, for a deployment where they were not ingested
RIDE, DRONE = ("nansha-ride-hailing-orders", 28_000_000), ("nansha-drone-flight-logs", 15_000_000)


def _code(division: str, org8: str, authority: str) -> str:
    return credit_code.make(division, org8, authority=authority, category="1")


def _ensure_dataset(
    ex: Exchange, name: str, title: str, org: str, price_fen: int, **classification
) -> None:
    """The dataset, added as a catalogue entry if this deployment did not ingest it
    (``classification``: grade, has_pi, sensitive_pi as datasets.yaml would declare)."""
    with ex.catalogue.Session.begin() as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == name))
        if ds is not None:
            if ds.price_fen is None:
                ds.price_fen = price_fen
            if ds.current_version is None:
                for k, v in classification.items():
                    setattr(ds, k, v)
            return
        o = ex.catalogue.ensure_organization(s, org)
        s.add(
            Dataset(
                name=name,
                title=title,
                domain="transport",
                access="restricted",
                organization_id=o.id,
                price_fen=price_fen,
                extras={"demo": "true"},  # an extra is a string, as CKAN has it
                **classification,
            )
        )


# scenarios for the offered products, used when scenarios.yaml (`nsdx scenario load`) did not
# already put them in one: (name, title, title_en, sector, proposer, datasets)
SCENARIOS = [
    ("nansha-travel-demand", "南沙出行需求预测", "Travel-demand forecasting in Nansha",
     "mobility-demand", "广州市南沙区交通运输局 Nansha Transport Bureau", [RIDE[0]]),
    ("nansha-low-altitude-safety", "南沙低空飞行安全监测", "Low-altitude flight safety in Nansha",
     "low-altitude", "南沙低空无人机运营企业 Nansha drone operator", [DRONE[0]]),
    ("nansha-port-city-ai-products", "南沙港城智能数据产品", "Nansha port-city AI data products",
     "logistics", "南沙区数据交易服务中心 Nansha data-exchange service centre",
     [name for name, *_ in PRODUCTS] + [CORE[0]]),
]  # fmt: skip


def _scenario_for(ex: Exchange, dataset: str) -> str:
    """A scenario that uses ``dataset``: one already in the catalogue, else the demo's."""
    from catalogue.models import Scenario, ScenarioDataset
    from catalogue.scenarios import ScenarioSpec, save_scenario

    with ex.catalogue.Session.begin() as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == dataset))
        used = s.scalar(
            select(Scenario.name)
            .join(ScenarioDataset, ScenarioDataset.scenario_id == Scenario.id)
            .where(ScenarioDataset.dataset_id == ds.id)
            .order_by(Scenario.name)
        )
        if used:
            return used
        name, title, title_en, sector, proposer, datasets = next(
            sc for sc in SCENARIOS if dataset in sc[5]
        )
        have = s.scalar(select(Scenario).where(Scenario.name == name))
        refs: list[tuple[str, int | None]] = [
            (n, None) for n in datasets if s.scalar(select(Dataset.id).where(Dataset.name == n))
        ]
        if have is not None:  # keep what it uses, add this dataset
            names = dict(s.execute(select(Dataset.id, Dataset.name)).all())
            refs = [(names[u.dataset_id], u.version) for u in have.uses] + [(dataset, None)]
        spec = ScenarioSpec(
            name=name, title=title, title_en=title_en, sector=sector, proposer=proposer,
            description=have.description if have else "", datasets=refs,
            description_en=have.description_en if have else "",
            query=have.query if have else "", evaluation=have.evaluation if have else {},
        )  # fmt: skip
        save_scenario(s, spec)
        return name


def _register(ex: Exchange, dataset: str, org: str, applied_on: date) -> None:
    from .registration import register_product

    with ex.catalogue.Session() as s:
        ds = s.scalar(select(Dataset).where(Dataset.name == dataset))
        done = s.scalar(
            select(func.count(Registration.id)).where(
                Registration.dataset_id == ds.id, Registration.status == "registered"
            )
        )
    if done:
        return
    register_product(
        ex,
        dataset,
        _scenario_for(ex, dataset),
        holder=org,
        applied_on=applied_on,
        compliance_statement="数据已按《个人信息保护法》去标识化处理，仅含经授权采集的数据 "
        "(de-identified under the PIPL; collected with authorisation)",
        legality_pledge="本单位承诺数据来源合法、权属清晰 (we pledge the data was lawfully "
        "obtained and its rights are clear)",
    )


def already_done(ex: Exchange) -> bool:
    """True when an earlier run completed; InvalidState when one was interrupted (its ledger
    entries cannot be removed, so the demo cannot be finished or redone on this ledger)."""
    with ex.catalogue.Session() as s:
        found = s.scalar(select(func.count(Order.id)).where(Order.contract_no.like(f"{MARK}%")))
        last = s.execute(
            select(Order.status, CrossBorderDecision.version)
            .outerjoin(CrossBorderDecision, CrossBorderDecision.order_id == Order.id)
            .where(Order.contract_no.like(f"{MARK}%-{DEMO_ORDERS:03d}"))
        ).first()
    if not found:
        return False
    # the last (Hong Kong) order is granted — or, where nothing was ingested, stays paid:
    # no version was assessed for it to go abroad (exchange.trade._granted_version)
    if found >= DEMO_ORDERS and last is not None:
        status, assessed = last
        if status in ("granted", "delivered") or (status == "paid" and assessed is None):
            return True
    raise InvalidState(
        f"an earlier `nsdx exchange demo` was interrupted: the ledger holds {found} of its "
        f"{DEMO_ORDERS} sample contracts, and ledger entries can never be removed",
        hint="run the demo on a fresh deployment (another NSDX_HOME / NSDX_DATABASE_URL); "
        "this ledger keeps the partial demo as it is",
    )


def run_demo(ex: Exchange, *, year: int | None = None, force: bool = False) -> dict:
    """Record the sample activity for ``year`` (default: last year, so every date is past).

    Ledger entries can never be removed, so the demo refuses a ledger that already holds
    real activity unless ``force`` is given."""
    y = year or date.today().year - 1
    if already_done(ex):
        return {"skipped": True, "year": y, "ledger_size": ex.ledger.head_size()}
    if ex.ledger.head_size() and not force:
        raise InvalidState(
            f"the exchange ledger already holds {ex.ledger.head_size()} entries; the demo's "
            "sample trades would stay in it for ever and count for rewards",
            hint="run the demo on a fresh deployment (another NSDX_HOME / NSDX_DATABASE_URL), "
            "or pass --force if this deployment is only a demonstration",
        )
    for org, name, div, o8, group, rep, addr, phone, nansha, auth in FIRMS:
        # a firm registered outside the mainland: the exchange operator records where,
        # having checked its registration documents (an admin cannot declare it)
        who = OPERATOR if org in REGIONS else Actor.for_org(org, name=f"demo:{org}")
        trade.register_enterprise(
            ex,
            who,
            org,
            credit_code_=_code(div, o8, auth),
            legal_name=name,
            corporate_group=group,
            legal_representative=rep,
            shareholders=[rep],
            controllers=[rep],
            registered_address=addr,
            phone=phone,
            bank_account=f"6222 0236 0200 {zlib.crc32(o8.encode()) % 10**7:07d}",
            in_nansha=nansha,
            create_org=True,
            region=REGIONS.get(org, "mainland"),
        )
    _ensure_dataset(
        ex, RIDE[0], "南沙网约车订单数据", "nansha-transport-bureau", RIDE[1],
        has_pi=True, sensitive_pi=True,
    )  # fmt: skip
    _ensure_dataset(ex, CORE[0], CORE[1], CORE[2], CORE[3], grade="core")
    _ensure_dataset(ex, DRONE[0], "南沙无人机飞行日志", "nansha-drone-operator", DRONE[1])
    for name, title, org, price_fen in PRODUCTS:
        _ensure_dataset(ex, name, title, org, price_fen)
    # no scenario, no registration; no registration, no trade: every product offered below
    # serves a scenario and is registered (applied, reviewed, noticed, issued) the year before
    offered = [(RIDE[0], "nansha-transport-bureau"), (DRONE[0], "nansha-drone-operator")]
    offered += [(name, org) for name, _, org, _ in PRODUCTS] + [(CORE[0], CORE[2])]
    for ds, org in offered:
        _register(ex, ds, org, date(y - 1, 11, 2))
    # The demo replays a past year: each step runs on an exchange whose clock says the
    # step's day (the trade rules accept only today's date, or a few days back).
    new_year = ex.on_day(date(y, 1, 1))

    def offer(ds: str, seller: str, cross_border: bool = False) -> str:  # at the list price
        r = trade.create_offer(
            new_year,
            Actor.for_org(seller, name=f"demo:{seller}"),
            ds,
            licence_terms="仅限买方内部研发使用，不得转售 (internal R&D use only, no resale)",
            term_start=date(y, 1, 1),
            term_end=date(y + 1, 12, 31),
            delivery_mode="presigned-url",
            cross_border=cross_border,
            access_days=365,
        )
        return r["id"]

    ride = offer(RIDE[0], "nansha-transport-bureau")
    drone = offer(DRONE[0], "nansha-drone-operator")
    products = {name: offer(name, org) for name, _, org, _ in PRODUCTS}
    n = [0]

    def buy(offer_id, buyer, seller, when, amount=None, refund_on=None, deliver=True):
        n[0] += 1
        b, s_ = (
            Actor.for_org(buyer, name=f"demo:{buyer}"),
            Actor.for_org(seller, name=f"demo:{seller}"),
        )
        day = ex.on_day(when)
        o = trade.place_order(
            day,
            b,
            offer_id,
            buyer=buyer,
            amount=amount,
            contract_no=f"{MARK}{y}-{n[0]:03d}",
        )
        # a negotiated contract value is confirmed with the amount stated
        trade.confirm_payment(day, s_, o["id"], amount=amount, reference=f"DEMO{y}{n[0]:04d}")
        trade.grant_access(ex, s_, o["id"])
        if deliver and ex.store is not None:
            try:
                trade.deliver(ex, b, o["id"])
            except ExchangeError:
                pass  # dataset not published in this deployment: no files to deliver
        if refund_on:
            trade.refund(ex.on_day(refund_on), s_, o["id"],
                         reason="数据质量不符合合同约定 (quality below contract)")  # fmt: skip
        return o["id"]

    T, D = "nansha-transport-bureau", "nansha-drone-operator"
    buy(ride, "nansha-zhixing-ai", T, date(y, 3, 12))  # eligible
    buy(ride, "nansha-zhixing-ai", T, date(y, 6, 3), amount="7000000")  # big: group cap
    buy(drone, "zhixing-robotics", D, date(y, 4, 20))  # same group: summed
    buy(drone, "lingang-insight", D, date(y, 9, 8))  # eligible
    buy(ride, "baiyun-vision", T, date(y, 5, 6))  # buyer not in Nansha
    buy(drone, "nansha-qiming-ai", D, date(y, 7, 14))  # related party
    buy(ride, "nansha-haiyun-data", T, date(y, 8, 1), refund_on=date(y, 8, 20))  # refunded
    # circular trade within a month at similar amounts
    buy(products["zhixing-congestion-forecast"], "nansha-haiyun-data", "nansha-zhixing-ai",
        date(y, 10, 9), deliver=False)  # fmt: skip
    buy(products["haiyun-port-logistics-index"], "lingang-insight", "nansha-haiyun-data",
        date(y, 10, 17), amount="480000", deliver=False)  # fmt: skip
    buy(products["lingang-demand-heatmap"], "nansha-zhixing-ai", "lingang-insight",
        date(y, 10, 28), amount="495000", deliver=False)  # fmt: skip
    xb = _cross_border(ex, y, offer, n)
    assert n[0] == DEMO_ORDERS  # already_done() recognises a completed demo by it
    return {
        "skipped": False,
        "year": y,
        "enterprises": len(FIRMS),
        "offers": 4 + len(PRODUCTS),
        "orders": n[0],
        "cross_border": xb,
        "ledger_size": ex.ledger.head_size(),
    }


def _cross_border(ex: Exchange, y: int, offer, n: list[int]) -> dict:
    """The cross-border rules at work: an overseas firm is refused core data (a
    ``crossborder.refused`` event, no order); a Hong Kong firm buys the ride-hailing orders
    (personal information, sensitive: passengers' trips) through the Greater Bay Area
    standard contract — its grant is blocked until the PI impact assessment is recorded,
    and the contract's filing follows."""
    T, H = "nansha-transport-bureau", "hk-harbour-analytics"
    seller = Actor.for_org(T, name=f"demo:{T}")
    xb_ride = offer(RIDE[0], T, cross_border=True)
    core = offer(CORE[0], CORE[2], cross_border=True)
    refused = None
    try:
        trade.place_order(
            ex.on_day(date(y, 11, 3)), Actor.for_org("paris-mobility-lab", name="demo:paris"),
            core, buyer="paris-mobility-lab",
        )  # fmt: skip
    except CrossBorderRefused as e:
        refused = {"rule": e.fields.get("rule"), "ledger_index": e.fields.get("ledger_index")}
    n[0] += 1
    day = ex.on_day(date(y, 11, 12))
    o = trade.place_order(
        day, Actor.for_org(H, name=f"demo:{H}"), xb_ride, buyer=H,
        contract_no=f"{MARK}{y}-{n[0]:03d}",
    )  # fmt: skip
    trade.confirm_payment(day, seller, o["id"], reference=f"DEMO{y}{n[0]:04d}")
    route = o["cross_border"]["route"]
    blocked = None
    try:
        trade.grant_access(ex, seller, o["id"])
    except CrossBorderBlocked as e:
        blocked = e.fields.get("ledger_index")
    refs = {"pia": f"PIA-{y}-NS-0001", "approval": f"SA-{y}-000001", "filing": f"SCC-{y}-000001"}
    for kind in o["cross_border"]["missing_evidence"][:1]:  # the seller's own PIA; an
        who = seller if kind == "pia" else OPERATOR  # authority's number: the operator
        trade.record_crossborder_evidence(day, who, o["id"], kind=kind, reference=refs[kind])
    try:
        trade.grant_access(ex, seller, o["id"])
        granted = True
    except InvalidState:  # a deployment that did not ingest the ride-hailing orders: no
        granted = False  # version was assessed, so none may go abroad under this order
    if granted and route == "gba_standard_contract":  # filed within 10 working days (the
        trade.record_crossborder_evidence(  # operator records the number it was given)
            ex.on_day(date(y, 11, 19)), OPERATOR, o["id"], kind="gba_filing",
            reference=f"GBA-SCC-{y}-000001",
        )  # fmt: skip
    return {
        "refused": refused,
        "hong_kong_route": route,
        "grant_blocked_at": blocked,
        "hong_kong_granted": granted,
    }
