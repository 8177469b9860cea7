"""Urban-management sample datasets: 12345 hotline cases, street-light faults, sanitation runs."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ._common import (
    ROADS,
    STREETS,
    clip_bbox,
    csv_bytes,
    km_between,
    ndjson_bytes,
    plates,
    seq_ids,
    to_dt64,
    ts,
    ts_strings,
    xlsx_bytes,
)

EXPORT_AT = "2026-04-01"  # the extracts are "as of" this moment; later events are not known yet

# --------------------------------------------------------------------------- hotline cases

HOTLINE_CASES = 20_000
HOTLINE_START = "2026-01-01"
HOTLINE_DAYS = 90

SPOTS = [
    "公交站旁",
    "地铁站出口",
    "农贸市场周边",
    "小区正门",
    "学校周边",
    "商业街",
    "村委会附近",
    "十字路口",
    "人行天桥下",
    "河涌边",
    "工业园门口",
    "公园入口",
]

#: category: weight, department (None: the street's own law-enforcement team), texts.
CATEGORIES: dict[str, tuple[float, str | None, list[str]]] = {
    "占道经营": (
        0.2,
        None,
        [
            "有流动摊贩占用人行道摆卖水果，影响行人通行，请求处理。",
            "早餐摊档占道经营，桌椅摆到机动车道旁，存在安全隐患。",
            "夜间有大排档占道摆卖，影响通行和市容，请求规范。",
            "商铺将货物堆放在店外人行道上经营，行人只能走机动车道。",
        ],
    ),
    "噪音扰民": (
        0.17,
        "南沙区生态环境分局",
        [
            "夜间施工噪音较大，持续到凌晨，影响周边居民休息。",
            "广场舞音响音量过大，晚上十点后仍未停止，请求协调。",
            "商铺门口使用高音喇叭促销，噪音扰民，请求制止。",
            "周末早上七点前有装修噪音，影响休息，请求处理。",
        ],
    ),
    "垃圾堆放": (
        0.16,
        "南沙区城市管理和综合执法局",
        [
            "生活垃圾堆放多日未清运，气味较大，请求尽快清理。",
            "有建筑垃圾随意倾倒在路边，影响环境卫生。",
            "垃圾桶满溢未及时清运，周边蚊蝇较多，请求处理。",
            "绿化带内堆放大量废弃家具，请求清理。",
        ],
    ),
    "违法建设": (
        0.08,
        None,
        [
            "有住户在天台加建构筑物，疑似未经审批，请核查。",
            "空地上新搭建铁皮棚，疑似违法建设，请求核查处理。",
            "首层商铺向外扩建雨棚占用公共空间，请求核查。",
        ],
    ),
    "共享单车乱停放": (
        0.14,
        "南沙区城市管理和综合执法局",
        [
            "共享单车大量乱停放，堵塞盲道和人行道，请求清理。",
            "共享单车堆积在出入口，影响通行，请求企业及时调度。",
            "早晚高峰共享单车停放无序，占用机动车道，请求规范管理。",
        ],
    ),
    "油烟污染": (
        0.08,
        "南沙区生态环境分局",
        [
            "餐饮店油烟直排，未安装油烟净化设施，影响楼上住户。",
            "烧烤店油烟较大，晚上烟雾弥漫，请求核查处理。",
        ],
    ),
    "市政设施损坏": (
        0.09,
        "南沙区城市管理和综合执法局",
        [
            "人行道地砖松动破损，雨天容易溅水，请求维修。",
            "井盖缺失，存在安全隐患，请求尽快修复。",
            "路边护栏被撞坏，未设置警示标志，请求维修。",
        ],
    ),
    "违规张贴广告": (
        0.08,
        None,
        [
            "墙面及电线杆上张贴大量小广告，影响市容，请求清理。",
            "有人在公交站亭张贴非法广告，请求清除。",
        ],
    ),
}
HOTLINE_STATUSES = ("已受理", "处理中", "已办结")
CHANNELS = ("12345热线电话", "12345微信公众号", "穗好办APP", "城管巡查发现", "网格员上报")


def gen_hotline_cases(rng: np.random.Generator) -> tuple[bytes, int]:
    n = HOTLINE_CASES
    streets = list(STREETS)
    sw = np.array([3.0, 1.0, 0.8, 1.0, 1.2, 1.5, 1.8, 1.0, 0.8])
    street = rng.choice(len(streets), n, p=sw / sw.sum())
    cats = list(CATEGORIES)
    cw = np.array([CATEGORIES[c][0] for c in cats])
    cat = rng.choice(len(cats), n, p=cw / cw.sum())
    day = rng.integers(0, HOTLINE_DAYS, n)
    hour_w = np.array([1, 1, 1, 1, 1, 1, 2, 5, 9, 10, 9, 8, 6, 7, 8, 8, 8, 7, 6, 6, 6, 5, 4, 2.0])
    hour = rng.choice(24, n, p=hour_w / hour_w.sum())
    created = np.sort(ts(HOTLINE_START) + day * 86400 + hour * 3600 + rng.integers(0, 3600, n))
    handle_h = rng.lognormal(np.log(30), 0.9, n)
    closed = created + np.rint(handle_h * 3600).astype(np.int64)
    is_closed = closed < ts(EXPORT_AT)
    in_hand = ~is_closed & (ts(EXPORT_AT) - created > 6 * 3600)
    status = np.where(is_closed, 2, np.where(in_hand, 1, 0))

    roads_by_street: dict[str, list[str]] = {}
    for name, _, _, _, st in ROADS:
        roads_by_street.setdefault(st, []).append(name)
    spot = rng.integers(0, len(SPOTS), n)
    pick = rng.integers(0, 1000, (2, n))
    desc, dept = [], []
    for i in range(n):  # 20k rows of text: a comprehension-sized loop
        st, ct = streets[street[i]], cats[cat[i]]
        roads = roads_by_street.get(st)
        place = (roads[pick[0, i] % len(roads)] if roads else st) + SPOTS[spot[i]]
        texts = CATEGORIES[ct][2]
        desc.append(place + texts[pick[1, i] % len(texts)])
        dept.append(CATEGORIES[ct][1] or st + "综合行政执法队")
    day_no = created // 86400
    seq = np.arange(n) - np.searchsorted(day_no, day_no, side="left") + 1
    ymd = np.char.replace(np.datetime_as_string(to_dt64(created), unit="D"), "-", "")
    satisfaction = rng.choice(["满意", "基本满意", "不满意"], n, p=[0.72, 0.2, 0.08])
    # no follow-up call yet (open cases) or the caller could not be reached
    satisfaction[~is_closed | (rng.random(n) < 0.3)] = "未评价"
    table = pa.table(
        {
            "case_id": np.char.add(np.char.add("NS", ymd), np.char.zfill(seq.astype(str), 4)),
            "created_at": pa.array(to_dt64(created)),
            "closed_at": pa.array(to_dt64(closed), mask=~is_closed),
            "channel": rng.choice(CHANNELS, n, p=[0.45, 0.2, 0.15, 0.12, 0.08]),
            "category": np.array(cats)[cat],
            "street": np.array(streets)[street],
            "description": desc,
            "department": dept,
            "status": np.array(HOTLINE_STATUSES)[status],
            "satisfaction": satisfaction,
        }
    )
    return csv_bytes(table, "gb18030"), n


# --------------------------------------------------------------------------- street lights

STREETLIGHT_FAULTS = 3_000
FAULT_TYPES = ("不亮", "闪烁", "白天亮灯", "灯杆倾斜", "灯罩破损")
FAULT_SOURCES = ("市民报修", "巡查发现", "智慧路灯自检")


def gen_streetlight_faults(rng: np.random.Generator) -> tuple[bytes, int]:
    # every road's lights: both sides, one pole every ~35 m
    lx, ly, lid, lroad, lstreet = [], [], [], [], []
    for name, code, (x0, y0), (x1, y1), street in ROADS:
        n_poles = max(2, int(km_between(x0, y0, x1, y1) * 1000 / 35))
        t = np.linspace(0, 1, n_poles)
        side = np.where(np.arange(n_poles) % 2 == 0, 1, -1) * 0.00018
        nx, ny = -(y1 - y0), x1 - x0
        norm = np.hypot(nx, ny)
        lx.append(x0 + t * (x1 - x0) + side * nx / norm)
        ly.append(y0 + t * (y1 - y0) + side * ny / norm)
        lid += [f"SL-{code}-{k:04d}" for k in range(1, n_poles + 1)]
        lroad += [name] * n_poles
        lstreet += [street] * n_poles
    lx, ly = clip_bbox(np.concatenate(lx), np.concatenate(ly))
    n = STREETLIGHT_FAULTS
    light = rng.integers(0, lx.size, n)
    ftype = rng.choice(len(FAULT_TYPES), n, p=[0.55, 0.2, 0.13, 0.06, 0.06])
    source = rng.choice(len(FAULT_SOURCES), n, p=[0.4, 0.35, 0.25])
    reported = np.sort(
        ts("2026-01-01") + rng.integers(0, 90, n) * 86400 + rng.integers(0, 86400, n)
    )
    fix_h = rng.lognormal(np.log(20), 0.8, n) * np.where(ftype == 3, 2.5, 1.0)
    repaired = reported + np.rint(fix_h * 3600).astype(np.int64)
    done = repaired < ts(EXPORT_AT)
    data = xlsx_bytes(
        "路灯故障",
        [
            "fault_id",
            "light_id",
            "road",
            "street",
            "fault_type",
            "report_source",
            "reported_at",
            "repaired_at",
            "lon",
            "lat",
        ],
        [
            seq_ids("LF26", n, 5),
            np.array(lid)[light],
            np.array(lroad)[light],
            np.array(lstreet)[light],
            np.array(FAULT_TYPES)[ftype],
            np.array(FAULT_SOURCES)[source],
            to_dt64(reported),
            [v if ok else None for v, ok in zip(to_dt64(repaired).tolist(), done, strict=True)],
            np.round(lx[light], 6),
            np.round(ly[light], 6),
        ],
        widths=[11, 15, 12, 10, 9, 12, 20, 20, 11, 10],
        title="南沙区路灯故障报修记录",
    )
    return data, n


# --------------------------------------------------------------------------- sanitation

SANITATION_TRUCKS = 120
SANITATION_DAYS = 30  # 1 .. 30 March 2026
TRUCK_TYPES = {
    # type: waste type, destination, tonnage range per run
    "压缩式垃圾车": ("其他垃圾", "广州市第四资源热力电厂", (3.0, 8.5)),
    "勾臂式垃圾车": ("其他垃圾", "广州市第四资源热力电厂", (2.0, 6.0)),
    "餐厨垃圾收运车": ("厨余垃圾", "南沙餐厨垃圾处理厂", (1.0, 4.5)),
    "可回收物收运车": ("可回收物", "南沙再生资源分拣中心", (0.5, 3.0)),
}
WASTE_TYPES = ("其他垃圾", "厨余垃圾", "可回收物")


def gen_sanitation_runs(rng: np.random.Generator) -> tuple[bytes, int]:
    n_t = SANITATION_TRUCKS
    types = list(TRUCK_TYPES)
    t_type = rng.choice(len(types), n_t, p=[0.5, 0.2, 0.2, 0.1])
    t_street = rng.choice(len(STREETS), n_t)
    t_plate = np.array(plates(rng, n_t, "mixed_large"))
    td_truck = np.repeat(np.arange(n_t), SANITATION_DAYS)
    td_day = np.tile(np.arange(SANITATION_DAYS), n_t)
    runs = rng.integers(2, 5, td_truck.size)
    runs[rng.random(td_truck.size) < 0.08] = 0  # maintenance or rest days
    g = np.repeat(np.arange(td_truck.size), runs)
    n = g.size
    dur = np.rint(rng.uniform(1.2, 2.8, n) * 3600).astype(np.int64)
    gap = np.rint(rng.uniform(0.2, 0.9, n) * 3600).astype(np.int64)
    step = dur + gap
    cum = np.cumsum(step)
    g_start = np.concatenate([[0], np.cumsum(runs)[:-1]])[g]
    offset = cum - step - (cum[g_start] - step[g_start])  # time since the truck's first run
    day0 = ts("2026-03-01") + td_day[g] * 86400 + rng.integers(4 * 3600, 6 * 3600, td_truck.size)[g]
    start = day0 + offset
    end = start + dur
    truck = td_truck[g]
    ttype = t_type[truck]
    lo = np.array([TRUCK_TYPES[t][2][0] for t in types])[ttype]
    hi = np.array([TRUCK_TYPES[t][2][1] for t in types])[ttype]
    order = np.argsort(start, kind="stable")
    street_names = np.array(list(STREETS))
    route_km = np.round(rng.uniform(8, 45, n) + (t_street[truck] >= 3) * 10, 1)
    data = ndjson_bytes(
        {
            "run_id": seq_ids("NSHW26", n, 6),
            "truck_plate": t_plate[truck][order],
            "truck_type": np.array(types)[ttype][order],
            "street": street_names[t_street[truck]][order],
            "waste_type": np.array([TRUCK_TYPES[t][0] for t in types])[ttype][order],
            "destination": np.array([TRUCK_TYPES[t][1] for t in types])[ttype][order],
            "start_time": ts_strings(start[order]),
            "end_time": ts_strings(end[order]),
            "tonnage_t": np.round(rng.uniform(lo, hi), 2)[order],
            "route_km": route_km[order],
        }
    )
    return data, n
