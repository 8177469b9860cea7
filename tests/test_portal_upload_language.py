"""An upload that fails is explained on its job page in the visitor's language (issue 12,
"Bad input"): the failure's message id and parameters are kept with the job
(catalogue.jobs), the page translates them; the Action API's job keeps the English text and
its shape (no extra key), and no server path reaches either."""

from __future__ import annotations

import re
from html import unescape

from tests.test_portal_declare import BASE, _wait_job, login, rows, site  # noqa: F401


def test_a_failed_upload_says_why_in_chinese_then_in_english(site):  # noqa: F811
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-typo-zh", **BASE,
              **rows([], [{"kind": "not_null", "column": "minutse"}])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    r = site.post(
        "/dataset/nansha-typo-zh/upload",
        data={"csrftoken": tok},
        files={"upload": ("t.csv", b"minutes\n5\n", "text/csv")},
        follow_redirects=False,
    )
    job_id = r.headers["location"].rsplit("/", 1)[1]
    assert _wait_job(site, job_id)["status"] == "failed"
    english = ("t.csv: dataset 'nansha-typo-zh': expectations[0] ('not_null'): column "
               "'minutse' is not in the data\n  hint: columns are: minutes")  # fmt: skip
    page = unescape(site.get(f"/my/jobs/{job_id}").text)
    status = re.search(r'id="job-status"[^>]*>(.*?)</p>', page, re.S).group(1).strip()
    assert " ".join(status.split()) == (
        "上传失败：t.csv：数据集 'nansha-typo-zh'：expectations[0]（'not_null'）：数据中没有列 "
        "'minutse' 提示：现有的列：minutes"
    )
    assert "is not in the data" not in page and "uploads/" not in page
    site.cookies.set("nsdx_lang", "en")
    page = unescape(site.get(f"/my/jobs/{job_id}").text)
    assert f"The upload failed: {english}" in page  # the same text as the API's
    r = site.get(f"/api/3/action/nsdx_job_show?id={job_id}",
                 headers={"accept": "application/json",
                          "authorization": site.alice_token})  # fmt: skip
    job = r.json()["result"]
    assert job["error"] == english and job["result"] == {}


def test_a_failed_validation_says_why_in_chinese(site):  # noqa: F811
    tok = login(site, "alice")
    r = site.post(
        "/my/datasets/new",
        data={"csrftoken": tok, "name": "nansha-calls-zh", **BASE,
              **rows([{"name": "minutes", "type": "integer"}],
                     [{"kind": "between", "column": "minutes", "min": "0", "max": "60"}])},
        follow_redirects=False,
    )  # fmt: skip
    assert r.status_code == 303
    r = site.post(
        "/dataset/nansha-calls-zh/upload",
        data={"csrftoken": tok},
        files={"upload": ("calls.csv", b"minutes\n5\n75\n", "text/csv")},
        follow_redirects=False,
    )
    job_id = r.headers["location"].rsplit("/", 1)[1]
    job = _wait_job(site, job_id)
    assert job["status"] == "failed"
    assert job["error"].startswith(
        "dataset 'nansha-calls-zh' failed validation: minutes between [0, 60] (1)\n  hint: the "
        "counts are failing rows; read the report "
    )  # the API's text, as before
    page = unescape(site.get(f"/my/jobs/{job_id}").text)
    status = " ".join(re.search(r'id="job-status"[^>]*>(.*?)</p>', page, re.S).group(1).split())
    assert status.startswith(
        "上传失败：数据集 'nansha-calls-zh' 未通过校验：minutes between [0, 60] (1) "
        "提示：括号中的数字是未通过的行数；请阅读报告 "
    )
    assert (
        "修正数据源、放宽校验规则，或在 datasets.yaml 中声明 `on_invalid: quarantine_rows`"
        in status
    )
    assert "failed validation" not in page and "the counts are failing rows" not in page
    # the report is named by its page on the portal, never by its file on the server
    page_url = "/dataset/nansha-calls-zh/quality"
    assert f"read the report {page_url} — fix" in job["error"], job["error"]
    assert f"请阅读报告 {page_url}" in status
    home = str(site.nx.home) if hasattr(site.nx, "home") else "/.nsdx"
    for text in (job["error"], page):
        assert ".html" not in text and "reports/" not in text and home not in text
