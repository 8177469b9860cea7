"""Where an enterprise is registered, as the cross-border rules need it.

``region`` is one of ``mainland``, ``hong-kong``, ``macao``, ``abroad``. A mainland
enterprise is placed by its administrative division (GB/T 2260, six digits: the first two
name the province, the first four the city); by default the division of its unified social
credit code (GB 32100-2015, characters 3-8), so the registration itself says where it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from validation.messages import Msg, Term

from ..errors import InvalidRequest

REGIONS = ("mainland", "hong-kong", "macao", "abroad")

#: GB/T 2260 province-level divisions (code -> Chinese, English).
PROVINCES: dict[str, tuple[str, str]] = {
    "11": ("北京市", "Beijing"), "12": ("天津市", "Tianjin"), "13": ("河北省", "Hebei"),
    "14": ("山西省", "Shanxi"), "15": ("内蒙古自治区", "Inner Mongolia"),
    "21": ("辽宁省", "Liaoning"), "22": ("吉林省", "Jilin"), "23": ("黑龙江省", "Heilongjiang"),
    "31": ("上海市", "Shanghai"), "32": ("江苏省", "Jiangsu"), "33": ("浙江省", "Zhejiang"),
    "34": ("安徽省", "Anhui"), "35": ("福建省", "Fujian"), "36": ("江西省", "Jiangxi"),
    "37": ("山东省", "Shandong"), "41": ("河南省", "Henan"), "42": ("湖北省", "Hubei"),
    "43": ("湖南省", "Hunan"), "44": ("广东省", "Guangdong"),
    "45": ("广西壮族自治区", "Guangxi"), "46": ("海南省", "Hainan"), "50": ("重庆市", "Chongqing"),
    "51": ("四川省", "Sichuan"), "52": ("贵州省", "Guizhou"), "53": ("云南省", "Yunnan"),
    "54": ("西藏自治区", "Tibet"), "61": ("陕西省", "Shaanxi"), "62": ("甘肃省", "Gansu"),
    "63": ("青海省", "Qinghai"), "64": ("宁夏回族自治区", "Ningxia"),
    "65": ("新疆维吾尔自治区", "Xinjiang"),
}  # fmt: skip

#: Prefecture-level cities of Guangdong (GB/T 2260), the nine of the Greater Bay Area
#: among them.
GUANGDONG_CITIES: dict[str, tuple[str, str]] = {
    "4401": ("广州市", "Guangzhou"), "4402": ("韶关市", "Shaoguan"), "4403": ("深圳市", "Shenzhen"),
    "4404": ("珠海市", "Zhuhai"), "4405": ("汕头市", "Shantou"), "4406": ("佛山市", "Foshan"),
    "4407": ("江门市", "Jiangmen"), "4408": ("湛江市", "Zhanjiang"), "4409": ("茂名市", "Maoming"),
    "4412": ("肇庆市", "Zhaoqing"), "4413": ("惠州市", "Huizhou"), "4414": ("梅州市", "Meizhou"),
    "4415": ("汕尾市", "Shanwei"), "4416": ("河源市", "Heyuan"), "4417": ("阳江市", "Yangjiang"),
    "4418": ("清远市", "Qingyuan"), "4419": ("东莞市", "Dongguan"), "4420": ("中山市", "Zhongshan"),
    "4451": ("潮州市", "Chaozhou"), "4452": ("揭阳市", "Jieyang"), "4453": ("云浮市", "Yunfu"),
}  # fmt: skip


@dataclass(frozen=True)
class Region:
    """Where one party is registered: ``region`` and, on the mainland, its division."""

    region: str
    division: str | None = None  # six digits, mainland only

    @property
    def mainland(self) -> bool:
        return self.region == "mainland"

    @property
    def province(self) -> str | None:
        return self.division[:2] if self.division else None

    @property
    def city(self) -> str | None:
        return self.division[:4] if self.division else None

    def label(self) -> str:
        """'hong-kong', 'mainland 广东省广州市 (440115)': in the reader's language on the
        portal (a region word or a message of the catalogue)."""
        if self.region != "mainland":
            return Term(self.region)
        prov = PROVINCES.get(self.province or "", ("?", "?"))[0]
        city = GUANGDONG_CITIES.get(self.city or "", (self.city or "", ""))[0]
        return Msg(
            "mainland %(place)s (%(division)s)", place=f"{prov}{city}", division=self.division
        )

    def to_dict(self) -> dict:
        d: dict = {"region": self.region}
        if self.division:
            d["division"] = self.division
            d["province"] = PROVINCES.get(self.province or "", (None, None))[0]
            d["city"] = GUANGDONG_CITIES.get(self.city or "", (self.city, None))[0]
        return d


def parse_region(region: str | None, division: str | None, *, credit_division: str) -> Region:
    """The registration region of an enterprise from what its admin declared; an unknown
    region or a division that is not a GB/T 2260 mainland code is refused naming the field.
    A mainland enterprise without ``division`` is placed by its credit code."""
    r = (region or "mainland").strip().lower() if isinstance(region, str) or region is None else ""
    if r not in REGIONS:
        raise InvalidRequest(
            f"region: {str(region)[:40]!r} is not one of {', '.join(REGIONS)}",
            hint="say where the enterprise is registered: mainland (with its division), "
            "hong-kong, macao or abroad",
            field="region",
        )
    if r != "mainland":
        if division:
            raise InvalidRequest(
                f"division: {division[:20]!r} is a mainland division code, but the region is {r}",
                hint="give --division only for a mainland enterprise",
                field="division",
            )
        return Region(r)
    d = (division or credit_division or "").strip()
    if not re.fullmatch(r"[0-9]{6}", d) or d[:2] not in PROVINCES:
        raise InvalidRequest(
            f"division: {d[:20]!r} is not a mainland administrative division code (GB/T 2260)",
            hint="six digits whose first two name a province, e.g. 440115 (Nansha, Guangzhou)",
            field="division",
        )
    return Region("mainland", d)
