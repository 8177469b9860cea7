"""Transport sample datasets: bus GPS, metro station flow, road detectors, ride-hailing, drones.

Each ``gen_*`` function takes a numpy Generator (and a size where it has one) and returns
``(file bytes, row count)``. Big tables are built column-wise with numpy, never row by row.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ._common import (
    KM_PER_DEG_LAT,
    KM_PER_DEG_LON,
    PLACES,
    ROADS,
    clip_bbox,
    csv_bytes,
    km_between,
    ndjson_bytes,
    phones,
    plates,
    seq_ids,
    to_dt64,
    ts,
    ts_strings,
    xlsx_bytes,
)

# --------------------------------------------------------------------------- bus GPS

#: 30 routes: id and the landmarks they pass, terminus to terminus.
BUS_ROUTES: list[tuple[str, list[str]]] = [
    ("南沙1路", ["蕉门", "金洲", "南横", "南沙客运港"]),
    ("南沙2路", ["黄阁", "蕉门", "明珠湾", "南沙湾"]),
    ("南沙3路", ["东涌", "庆盛", "黄阁汽车城", "黄阁"]),
    ("南沙4路", ["横沥", "珠江街", "万顷沙"]),
    ("南沙5路", ["金洲", "大涌", "南横", "龙穴岛"]),
    ("南沙6路", ["大岗", "榄核", "庆盛"]),
    ("南沙7路", ["蕉门", "南沙体育馆", "明珠湾", "滨海公园"]),
    ("南沙8路", ["黄阁汽车城", "黄阁", "金洲", "南沙湾"]),
    ("南沙9路", ["万顷沙", "珠江街", "龙穴岛", "南沙港"]),
    ("南沙10路", ["横沥", "蕉门", "黄阁"]),
    ("南沙11路", ["东涌", "榄核", "大岗"]),
    ("南沙12路", ["金洲", "明珠湾", "大涌", "南沙客运港"]),
    ("南沙13路", ["庆盛", "黄阁", "蕉门", "金洲"]),
    ("南沙14路", ["南沙客运港", "滨海公园", "南横", "龙穴岛"]),
    ("南沙15路", ["大岗", "横沥", "珠江街"]),
    ("南沙16路", ["东涌", "庆盛", "黄阁", "南沙体育馆"]),
    ("南沙17路", ["蕉门", "横沥", "万顷沙"]),
    ("南沙18路", ["黄阁", "南沙体育馆", "大涌", "南沙湾"]),
    ("南沙19路", ["榄核", "黄阁汽车城", "蕉门"]),
    ("南沙20路", ["金洲", "南横", "南沙港"]),
    ("南沙21路", ["明珠湾", "横沥", "大岗"]),
    ("南沙22路", ["南沙湾", "南沙客运港", "龙穴岛"]),
    ("南沙23路", ["东涌", "黄阁汽车城", "金洲"]),
    ("南沙24路", ["万顷沙", "南沙港"]),
    ("南沙快线1", ["东涌", "庆盛", "蕉门", "南沙客运港"]),
    ("南沙快线2", ["大岗", "横沥", "明珠湾", "南沙湾"]),
    ("南沙快线3", ["庆盛", "金洲", "龙穴岛"]),
    ("南沙专线2", ["蕉门", "南沙港"]),
    ("南沙微1", ["蕉门", "金洲"]),
    ("南沙微2", ["黄阁", "黄阁汽车城"]),
]
BUS_ROUTE_IDS = [r for r, _ in BUS_ROUTES]
BUS_DAYS = 5  # Monday 2 March .. Friday 6 March 2026
BUS_FIRST_DAY = "2026-03-02"
BUS_PING_S = 30


def _route_polyline(rng: np.random.Generator, stops: list[str]):
    """Waypoints every ~600 m between the landmarks, wiggled sideways like a street grid."""
    xs, ys = [], []
    for a, b in zip(stops, stops[1:], strict=False):
        (x0, y0), (x1, y1) = PLACES[a], PLACES[b]
        n = max(2, int(km_between(x0, y0, x1, y1) / 0.6))
        t = np.linspace(0.0, 1.0, n, endpoint=False)
        jitter = rng.normal(0, 0.0012, size=(2, n))
        jitter[:, 0] = 0.0
        xs.append(x0 + t * (x1 - x0) + jitter[0])
        ys.append(y0 + t * (y1 - y0) + jitter[1])
    last = PLACES[stops[-1]]
    x = np.concatenate([*xs, [last[0]]])
    y = np.concatenate([*ys, [last[1]]])
    x, y = clip_bbox(x, y, margin=0.01)
    seg = km_between(x[:-1], y[:-1], x[1:], y[1:])
    return x, y, np.concatenate([[0.0], np.cumsum(seg)])


def gen_bus_gps(rng: np.random.Generator, rows: int) -> tuple[bytes, int]:
    rows = max(1, int(rows))
    n_routes = len(BUS_ROUTES)
    # ---- network: all routes' polylines concatenated, each offset by 1000 km so one
    # searchsorted finds the segment of every (route, distance) pair at once.
    off = 1000.0
    x_parts: list[np.ndarray] = []
    y_parts: list[np.ndarray] = []
    cum_parts: list[np.ndarray] = []
    first_at: list[int] = []
    last_at: list[int] = []
    lengths = np.zeros(n_routes)
    pos = 0
    for r, (_, stops) in enumerate(BUS_ROUTES):
        x, y, cum = _route_polyline(rng, stops)
        x_parts.append(x)
        y_parts.append(y)
        cum_parts.append(cum + r * off)
        first_at.append(pos)
        last_at.append(pos + len(x) - 2)  # index of the last segment's start
        lengths[r] = cum[-1]
        pos += len(x)
    gx, gy, gcum = np.concatenate(x_parts), np.concatenate(y_parts), np.concatenate(cum_parts)
    first, last = np.array(first_at), np.array(last_at)

    # ---- fleet and its vehicle-days (one route per vehicle per day)
    days = min(BUS_DAYS, rows)
    n_veh = max(1, min(max(1, rows // (days * 50)), max(20, round(rows / (days * 1300)))))
    veh_ids = np.char.add("NSB", np.char.zfill((10000 + rng.permutation(n_veh)).astype(str), 5))
    veh_plates = np.array(plates(rng, n_veh, "mixed_large"))
    home = rng.permutation(np.resize(np.arange(n_routes), n_veh))
    vd_veh = np.repeat(np.arange(n_veh), days)
    vd_day = np.tile(np.arange(days), n_veh)
    swap = rng.random(vd_veh.size) < 0.1  # sent to cover another route that day
    vd_route = np.where(swap, rng.integers(0, n_routes, vd_veh.size), home[vd_veh])
    n_vd = vd_veh.size
    w = rng.uniform(0.8, 1.2, n_vd)
    counts = np.floor(w / w.sum() * rows).astype(np.int64)
    counts[: rows - counts.sum()] += 1
    start_s = ts(BUS_FIRST_DAY) + vd_day * 86400 + rng.integers(5 * 3600 + 1800, 7 * 3600, n_vd)
    start_km = rng.uniform(0, 2 * lengths[vd_route])

    # ---- per ping
    g = np.repeat(np.arange(n_vd), counts)
    g_start = np.minimum(np.concatenate([[0], np.cumsum(counts)[:-1]]), rows - 1)
    i = np.arange(rows) - g_start[g]
    t = start_s[g] + i * BUS_PING_S + rng.integers(0, 3, rows)
    route = vd_route[g]
    moving = rng.random(rows) > 0.18  # ~18 % at stops or red lights
    speed = np.where(moving, np.clip(rng.normal(30, 11, rows), 3, 88), 0.0)
    speed = np.round(speed, 1)
    step = speed * BUS_PING_S / 3600.0
    cum = np.cumsum(step)
    travelled = cum - (cum[g_start] - step[g_start])[g] + start_km[g]
    L = lengths[route]
    s = np.mod(travelled, 2 * L)
    back = s > L
    s = np.where(back, 2 * L - s, s)
    seg = np.searchsorted(gcum, route * off + s, side="right") - 1
    seg = np.clip(seg, first[route], last[route])
    frac = np.clip((route * off + s - gcum[seg]) / (gcum[seg + 1] - gcum[seg]), 0, 1)
    dx, dy = gx[seg + 1] - gx[seg], gy[seg + 1] - gy[seg]
    lon = gx[seg] + frac * dx + rng.normal(0, 0.00004, rows)
    lat = gy[seg] + frac * dy + rng.normal(0, 0.00004, rows)
    lon, lat = clip_bbox(lon, lat)
    bearing = np.degrees(np.arctan2(dx * KM_PER_DEG_LON, dy * KM_PER_DEG_LAT))
    heading = np.mod(np.rint(bearing + np.where(back, 180, 0) + rng.normal(0, 4, rows)), 360)
    hour = np.mod(t, 86400) / 3600.0
    peak = np.exp(-((hour - 8.0) ** 2) / 1.2) + 0.8 * np.exp(-((hour - 18.0) ** 2) / 1.8)
    occupancy = np.clip(rng.poisson(6 + 38 * peak), 0, 90)

    order = np.lexsort((vd_veh[g], t))
    table = pa.table(
        {
            "ts": pa.array(to_dt64(t[order])),
            "vehicle_id": pa.array(veh_ids).take(pa.array(vd_veh[g][order])),
            "plate": pa.array(veh_plates).take(pa.array(vd_veh[g][order])),
            "route_id": pa.array(BUS_ROUTE_IDS).take(pa.array(route[order])),
            "lon": np.round(lon[order], 6),
            "lat": np.round(lat[order], 6),
            "speed_kmh": speed[order],
            "heading": heading[order].astype(np.int16),
            "occupancy": occupancy[order].astype(np.int16),
        }
    )
    return csv_bytes(table), rows


# --------------------------------------------------------------------------- metro flow

#: Guangzhou Metro stations in and next to Nansha: line, Chinese, English, entries per
#: weekday (order of magnitude) and how residential the catchment is (0 office .. 1 homes).
METRO_STATIONS: list[tuple[str, str, str, int, float]] = [
    ("4号线", "海傍", "Haibang", 6000, 0.8),
    ("4号线", "低涌", "Dichong", 4000, 0.8),
    ("4号线", "东涌", "Dongchong", 15000, 0.75),
    ("4号线", "庆盛", "Qingsheng", 12000, 0.4),
    ("4号线", "黄阁汽车城", "Huangge Auto Town", 8000, 0.3),
    ("4号线", "黄阁", "Huangge", 14000, 0.6),
    ("4号线", "蕉门", "Jiaomen", 25000, 0.55),
    ("4号线", "金洲", "Jinzhou", 30000, 0.6),
    ("4号线", "飞沙角", "Feishajiao", 6000, 0.5),
    ("4号线", "广隆", "Guanglong", 7000, 0.6),
    ("4号线", "大涌", "Dachong", 9000, 0.6),
    ("4号线", "塘坑", "Tangkeng", 8000, 0.65),
    ("4号线", "南横", "Nanheng", 10000, 0.6),
    ("4号线", "南沙客运港", "Nansha Passenger Port", 9000, 0.2),
    ("18号线", "番禺广场", "Panyu Square", 40000, 0.5),
    ("18号线", "横沥", "Hengli", 12000, 0.35),
    ("18号线", "万顷沙", "Wanqingsha", 8000, 0.45),
]
METRO_DAYS = 7  # Monday 2 .. Sunday 8 March 2026
METRO_FIRST_SLOT_H, METRO_LAST_SLOT_H = 6.0, 23.25  # 06:00 .. 23:15 (start of the slot)


def gen_metro_flow(rng: np.random.Generator) -> tuple[bytes, int]:
    slots_h = np.arange(METRO_FIRST_SLOT_H, METRO_LAST_SLOT_H + 0.01, 0.25)
    c = slots_h + 0.125  # middle of the slot

    def bump(mu, sd):
        return np.exp(-((c - mu) ** 2) / (2 * sd**2))

    n_st, n_sl = len(METRO_STATIONS), slots_h.size
    daily = np.array([s[3] for s in METRO_STATIONS], dtype=float)[None, :, None]
    home = np.array([s[4] for s in METRO_STATIONS])[None, :, None]
    weekend = ((np.arange(METRO_DAYS) % 7) >= 5)[:, None, None]  # day 0 is a Monday
    base, am, pm = 0.25 + 0.4 * bump(13, 3), bump(8.0, 0.7), bump(18.2, 1.0)
    we = 0.3 + bump(11.5, 2.5) + 0.8 * bump(17.5, 1.8)
    prof_in = np.where(weekend, we, base + 3 * am * home + 3 * pm * (1 - home))
    prof_out = np.where(weekend, we, base + 3 * am * (1 - home) + 3 * pm * home)
    volume = daily * np.where(weekend, 0.7, 1.0) * rng.lognormal(0, 0.08, (METRO_DAYS, n_st, 1))
    entries = rng.poisson(volume * prof_in / prof_in.sum(axis=2, keepdims=True)).ravel()
    exits = rng.poisson(volume * prof_out / prof_out.sum(axis=2, keepdims=True)).ravel()
    day, st, sl = (a.ravel() for a in np.indices((METRO_DAYS, n_st, n_sl)))
    order = np.lexsort((st, day * n_sl + sl))  # by time slot, then station
    slot_s = ts("2026-03-02") + day * 86400 + np.rint(slots_h[sl] * 3600).astype(np.int64)
    lines = np.array([s[0] for s in METRO_STATIONS])[st]
    header = ["time_slot", "line", "line_en", "station_name_zh", "station_name_en"]
    data = xlsx_bytes(
        "station_flow",
        [*header, "entries", "exits"],
        [
            to_dt64(slot_s)[order],
            lines[order],
            np.where(lines == "4号线", "Line 4", "Line 18")[order],
            np.array([s[1] for s in METRO_STATIONS])[st][order],
            np.array([s[2] for s in METRO_STATIONS])[st][order],
            entries[order],
            exits[order],
        ],
        widths=[20, 8, 9, 14, 24, 9, 9],
        title="广州地铁南沙段车站进出站客流（15分钟）",
    )
    return data, int(day.size)


# --------------------------------------------------------------------------- road detectors

DETECTOR_DAYS = 7  # 2 .. 8 March 2026, 15-minute intervals
DIRECTIONS = ("东向", "西向", "南向", "北向")


def _profile(hours: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    def bump(mu, sd):
        return np.exp(-((hours - mu) ** 2) / (2 * sd**2))

    night = 0.05 + 0.25 * bump(13, 4.5)
    weekday = night + 0.75 * bump(8.0, 1.0) + 0.7 * bump(18.0, 1.3)
    return np.where(weekend, night + 0.35 * bump(15, 3), weekday)


def gen_detector_counts(rng: np.random.Generator) -> tuple[bytes, int]:
    """Loop-detector counts per 15 minutes on Nansha's main roads; GB18030 CSV."""
    det_id, det_road, det_dir, det_lanes, det_ff = [], [], [], [], []
    roads = [*ROADS, ("南沙港快速路", "NSGK", (113.47, 22.90), (113.60, 22.72), "")]
    for name, code, (x0, y0), (x1, y1), _ in roads:
        expressway = code == "NSGK"
        ew = abs(x1 - x0) * KM_PER_DEG_LON > abs(y1 - y0) * KM_PER_DEG_LAT
        dirs = ("东向", "西向") if ew else ("南向", "北向")
        for k in range(1, (3 if expressway else 2) + 1):
            for d in dirs:
                det_id.append(f"NS-{code}-{k:02d}{'EWSN'[DIRECTIONS.index(d)]}")
                det_road.append(name)
                det_dir.append(d)
                det_lanes.append(4 if expressway else int(rng.integers(2, 5)))
                det_ff.append(100.0 if expressway else float(rng.uniform(50, 65)))
    n_det, n_iv = len(det_id), DETECTOR_DAYS * 96
    det = np.repeat(np.arange(n_det), n_iv)
    iv = np.tile(np.arange(n_iv), n_det)
    hours = (iv % 96) / 4 + 0.125
    weekend = (iv // 96) % 7 >= 5
    lanes = np.array(det_lanes)[det]
    cap = lanes * 450.0  # vehicles per 15 minutes at capacity
    busy = rng.uniform(0.35, 0.75, n_det)[det]
    flow = rng.poisson(cap * busy * _profile(hours, weekend))
    vc = np.minimum(flow, cap * 0.98)
    ratio = vc / cap
    ff = np.array(det_ff)[det]
    speed = np.round(np.clip(ff * (1 - 0.7 * ratio**2) + rng.normal(0, 3, det.size), 5, 120), 1)
    occ = np.round(np.clip(ratio * 38 + rng.normal(0, 1.5, det.size), 0, 100), 1)
    heavy = rng.binomial(
        vc.astype(np.int64), np.where(np.array(det_road)[det] == "龙穴大道", 0.4, 0.1)
    )
    # detector outages: whole hours with nothing recorded
    down = np.zeros(det.size, dtype=bool)
    for _ in range(12):
        j = int(rng.integers(0, det.size - 16))
        down[j : j + int(rng.integers(4, 16))] = True
    vcount = pa.array(vc.astype(np.int32), mask=down)
    table = pa.table(
        {
            "detector_id": pa.array(det_id).take(pa.array(det)),
            "road": pa.array(det_road).take(pa.array(det)),
            "direction": pa.array(det_dir).take(pa.array(det)),
            "lane_count": lanes.astype(np.int8),
            "interval_start": pa.array(to_dt64(ts("2026-03-02") + iv.astype(np.int64) * 900)),
            "vehicle_count": vcount,
            "heavy_vehicle_count": pa.array(heavy.astype(np.int32), mask=down),
            "avg_speed_kmh": pa.array(speed, mask=down | (vc == 0)),
            "occupancy_pct": pa.array(occ, mask=down),
        }
    )
    return csv_bytes(table, "gb18030"), table.num_rows


# --------------------------------------------------------------------------- ride hailing

RIDE_ORDERS = 30_000
RIDE_DAYS = 14
SERVICE_TYPES = ("快车", "专车", "拼车", "出租车")


def _hotspot_points(rng, n, spread=0.008):
    names = list(PLACES)
    w = rng.uniform(0.5, 2.0, len(names))
    k = rng.choice(len(names), n, p=w / w.sum())
    x = np.array([PLACES[m][0] for m in names])[k] + rng.normal(0, spread, n)
    y = np.array([PLACES[m][1] for m in names])[k] + rng.normal(0, spread, n)
    return clip_bbox(x, y, margin=0.003)


def gen_ride_hailing(rng: np.random.Generator) -> tuple[bytes, int]:
    n = RIDE_ORDERS
    day = rng.integers(0, RIDE_DAYS, n)
    hour_w = np.array([3, 2, 1, 1, 1, 2, 4, 8, 10, 7, 5, 5, 6, 5, 5, 5, 6, 8, 10, 9, 8, 7, 6, 4.0])
    hour = rng.choice(24, n, p=hour_w / hour_w.sum())
    pick_s = ts("2026-03-02") + day * 86400 + hour * 3600 + rng.integers(0, 3600, n)
    order = np.argsort(pick_s, kind="stable")
    pick_s = pick_s[order]
    px, py = _hotspot_points(rng, n)
    dx, dy = _hotspot_points(rng, n)
    dist = np.round(km_between(px, py, dx, dy) * rng.uniform(1.15, 1.45, n) + 0.3, 2)
    minutes = dist / rng.uniform(20, 38, n) * 60 + rng.uniform(1, 5, n)
    drop_s = pick_s + np.rint(minutes * 60).astype(np.int64)
    svc = rng.choice(len(SERVICE_TYPES), n, p=[0.62, 0.08, 0.12, 0.18])
    fare = 8 + 2.0 * dist + 0.35 * minutes
    fare = np.where(svc == 1, fare * 1.6, fare)
    fare = np.where(svc == 2, fare * 0.75, fare)
    fare = np.where(svc == 3, 12 + 2.6 * np.maximum(dist - 3, 0) + 0.5 * minutes / 5, fare)
    fare = np.round(fare, 2)
    riders = phones(rng, 9000)
    loyalty = rng.lognormal(0, 1.0, riders.size)  # some passengers ride far more often
    rider = rng.choice(riders, n, p=loyalty / loyalty.sum())
    drivers = np.array(plates(rng, 1600, "ev_small"))
    taxis = np.array(plates(rng, 300, "ev_large"))
    plate = np.where(
        svc == 3, taxis[rng.integers(0, taxis.size, n)], drivers[rng.integers(0, drivers.size, n)]
    )
    rating = rng.choice([5, 5, 5, 4, 4, 3, 2, 1], n).astype(object)
    rating[rng.random(n) < 0.45] = None  # most passengers never rate
    data = ndjson_bytes(
        {
            "order_id": seq_ids("RH2603", n, 7),
            "service_type": np.array(SERVICE_TYPES)[svc],
            "pickup_time": ts_strings(pick_s),
            "dropoff_time": ts_strings(drop_s),
            "pickup_lon": np.round(px, 6),
            "pickup_lat": np.round(py, 6),
            "dropoff_lon": np.round(dx, 6),
            "dropoff_lat": np.round(dy, 6),
            "distance_km": dist,
            "duration_min": np.round(minutes, 1),
            "fare_cny": fare,
            "payment_method": rng.choice(
                ["微信支付", "支付宝", "云闪付", "现金"], n, p=[0.55, 0.35, 0.07, 0.03]
            ),
            "passenger_phone": rider,
            "driver_plate": plate,
            "rating": rating,
        }
    )
    return data, n


# --------------------------------------------------------------------------- drones

DRONE_FLIGHTS = 6_000
DRONE_OPERATORS = [
    # operator, purpose, models, bases, share
    (
        "南沙低空物流有限公司",
        "物流配送",
        ["DJI FlyCart 30", "丰翼 方舟40"],
        ["南沙客运港", "龙穴岛", "金洲", "万顷沙"],
        0.4,
    ),
    (
        "南沙电力巡检服务有限公司",
        "电力巡检",
        ["DJI Matrice 350 RTK", "DJI Matrice 30T"],
        ["黄阁", "横沥", "大岗", "东涌"],
        0.25,
    ),
    (
        "南沙区城市管理无人机巡查队",
        "城市巡查",
        ["DJI Matrice 30T", "DJI Mavic 3E"],
        ["蕉门", "明珠湾", "南沙湾", "庆盛"],
        0.2,
    ),
    (
        "湾区航拍影像工作室",
        "航拍",
        ["DJI Mavic 3 Pro", "DJI Air 3", "DJI Inspire 3"],
        ["滨海公园", "南沙湾", "明珠湾", "榄核"],
        0.15,
    ),
]
DRONE_PURPOSES = ("物流配送", "电力巡检", "城市巡查", "航拍")


def gen_drone_flights(rng: np.random.Generator) -> tuple[bytes, int]:
    n = DRONE_FLIGHTS
    ops = rng.choice(len(DRONE_OPERATORS), n, p=[o[4] for o in DRONE_OPERATORS])
    purpose = np.array([o[1] for o in DRONE_OPERATORS])[ops]
    model = np.empty(n, dtype=object)
    sx, sy = np.empty(n), np.empty(n)
    for k, (_, _, models, bases, _) in enumerate(DRONE_OPERATORS):
        m = ops == k
        model[m] = rng.choice(models, m.sum())
        b = rng.choice(bases, m.sum())
        sx[m] = [PLACES[x][0] for x in b]
        sy[m] = [PLACES[x][1] for x in b]
    sx, sy = clip_bbox(sx + rng.normal(0, 0.002, n), sy + rng.normal(0, 0.002, n))
    logistics = purpose == "物流配送"
    # deliveries fly to another landmark; the others return to where they took off
    tx, ty = _hotspot_points(rng, n, spread=0.004)
    ex = np.where(logistics, tx, sx + rng.normal(0, 0.0004, n))
    ey = np.where(logistics, ty, sy + rng.normal(0, 0.0004, n))
    ex, ey = clip_bbox(ex, ey)
    loop_km = np.select(
        [purpose == "电力巡检", purpose == "城市巡查"],
        [rng.uniform(2, 12, n), rng.uniform(3, 15, n)],
        rng.uniform(0.5, 5, n),
    )
    dist = np.round(np.where(logistics, km_between(sx, sy, ex, ey) * 1.05 + 0.2, loop_km), 2)
    cruise = np.where(logistics, rng.uniform(40, 60, n), rng.uniform(15, 35, n))
    minutes = dist / cruise * 60 + rng.uniform(2, 6, n)
    usual_alt = np.select(
        [logistics, purpose == "电力巡检", purpose == "城市巡查"],
        [rng.uniform(80, 120, n), rng.uniform(30, 90, n), rng.uniform(60, 120, n)],
        rng.uniform(40, 120, n),
    )
    approved = (purpose == "航拍") & (rng.random(n) < 0.03)  # flights with airspace approval
    alt = np.round(np.where(approved, rng.uniform(120, 150, n), usual_alt), 1)
    day = rng.integers(0, 30, n)
    hour = rng.choice(np.arange(7, 20), n)
    take = ts("2026-03-01") + day * 86400 + hour * 3600 + rng.integers(0, 3600, n)
    order = np.argsort(take, kind="stable")
    land = take + np.rint(minutes * 60).astype(np.int64)
    payload = pa.array(np.round(rng.uniform(1, 30, n), 1), mask=~logistics)
    table = pa.table(
        {
            "flight_id": seq_ids("NSUAV26", n, 6),
            "operator": np.array([o[0] for o in DRONE_OPERATORS])[ops][order],
            "drone_model": model.astype(str)[order],
            "purpose": purpose[order],
            "takeoff_time": pa.array(to_dt64(take[order])),
            "landing_time": pa.array(to_dt64(land[order])),
            "start_lon": np.round(sx, 6)[order],
            "start_lat": np.round(sy, 6)[order],
            "end_lon": np.round(ex, 6)[order],
            "end_lat": np.round(ey, 6)[order],
            "max_altitude_m": alt[order],
            "distance_km": dist[order],
            "payload_kg": payload.take(pa.array(order)),
        }
    )
    return csv_bytes(table), n
