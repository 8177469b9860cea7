"""CKAN's response envelope: ``{"help", "success", "result"}`` or ``{"help", "success":
false, "error": {"__type", "message", ...}}``."""

from __future__ import annotations

from typing import Any


def help_url(site_url: str, name: str) -> str:
    return f"{site_url.rstrip('/')}/api/3/action/help_show?name={name}"


def success(site_url: str, name: str, result: Any) -> dict:
    return {"help": help_url(site_url, name), "success": True, "result": result}


def failure(site_url: str, name: str, error: dict) -> dict:
    return {"help": help_url(site_url, name), "success": False, "error": error}
