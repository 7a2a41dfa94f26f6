"""How closely Python user-agent parsers agree with Segment's (@amplitude/ua-parser-js), field by field.

``python -m benchmarks.ua_parsers`` reads every distinct ``context.userAgent`` (with its ``userAgentData``)
of the parity corpus (tests/fixtures/segment_corpus.json), derives Segment's five fields with the parser
Segment's Amplitude destination uses (from tests/js/segment-actions, installed by ``npm ci``), and the same
five fields with each Python candidate that is installed, by Segment's rule (os_name = os or browser name,
os_version = userAgentData.platformVersion or browser major, device_model = userAgentData.model or device
model or os name). Candidates with other naming schemes get a small name map. This is how the ``useragent``
extra was chosen; only ``ua-parser-py`` is a dependency (the others: ``pip install ua-parser
ua-parser-builtins user-agents-ng device-detector`` into a scratch environment).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "tests" / "fixtures" / "segment_corpus.json"
NODE_MODULES = ROOT / "tests" / "js" / "segment-actions" / "node_modules"
FIELDS = ("os_name", "os_version", "device_manufacturer", "device_model", "device_type")
Hints = dict[str, str]
Fields = dict[str, Any]

SEGMENT = """
const UAParser = require(process.argv[1] + '/@amplitude/ua-parser-js')
const cases = JSON.parse(require('fs').readFileSync(0, 'utf8'))
console.log(JSON.stringify(cases.map(([ua, hints]) => {
  const p = new UAParser(ua)
  const device = p.getDevice(), os = p.getOS(), browser = p.getBrowser()
  return {os_name: os.name ?? browser.name, os_version: hints.platformVersion ?? browser.major,
          device_manufacturer: device.vendor, device_model: hints.model ?? device.model ?? os.name,
          device_type: device.type}
})))
"""

OS_NAMES = {"Mac OS X": "Mac OS", "macOS": "Mac OS", "Chrome OS": "Chromium OS", "GNU/Linux": "Linux"}
BROWSERS = {
    "Chrome Mobile": "Chrome",
    "Chrome Mobile iOS": "Chrome",
    "Chrome Mobile WebView": "Chrome WebView",
    "Chrome Webview": "Chrome WebView",
    "Firefox Mobile": "Firefox",
    "Firefox iOS": "Firefox",
    "Edge Mobile": "Edge",
    "Microsoft Edge": "Edge",
    "Samsung Internet": "Samsung Browser",
    "Opera Mobile": "Opera",
    "Yandex Browser": "Yandex",
    "UC Browser": "UCBrowser",
    "MiuiBrowser": "MIUI Browser",
    "HeadlessChrome": "Chrome Headless",
    "Internet Explorer": "IE",
}
DEVICE_TYPES = {"smartphone": "mobile", "phablet": "mobile", "tv": "smarttv", "desktop": None}


def segment_rule(
    browser: Any, major: Any, os_name: Any, vendor: Any, model: Any, kind: Any, hints: Hints
) -> Fields:
    return {
        "os_name": os_name or browser or None,
        "os_version": hints.get("platformVersion", major or None),
        "device_manufacturer": vendor or None,
        "device_model": hints.get("model", model or os_name or None),
        "device_type": kind or None,
    }


def _generic(value: Any) -> Any:
    return None if not value or str(value).startswith("Generic") or value == "Other" else value


def ua_parser_py(ua: str, hints: Hints) -> Fields:
    from uaparser import UAParser

    p = UAParser(ua)
    b, o, d = p.browser, p.os, p.device
    return segment_rule(b["name"], b["major"], o["name"], d["vendor"], d["model"], d["type"], hints)


def uap_python(ua: str, hints: Hints) -> Fields:
    import ua_parser

    r = ua_parser.parse(ua)
    browser = _generic(r.user_agent.family if r.user_agent else None)
    os_name = _generic(r.os.family if r.os else None)
    return segment_rule(
        BROWSERS.get(browser, browser),
        r.user_agent.major if r.user_agent else None,
        OS_NAMES.get(os_name, os_name),
        _generic(r.device.brand if r.device else None),
        _generic(r.device.model if r.device else None),
        None,  # uap has no device type
        hints,
    )


def user_agents_ng(ua: str, hints: Hints) -> Fields:
    from user_agents import parse

    u = parse(ua)
    browser, os_name = _generic(u.browser.family), _generic(u.os.family)
    kind = "tablet" if u.is_tablet else "mobile" if u.is_mobile else None
    major = str(u.browser.version[0]) if u.browser.version else None
    return segment_rule(
        BROWSERS.get(browser, browser),
        major,
        OS_NAMES.get(os_name, os_name),
        _generic(u.device.brand),
        _generic(u.device.model),
        kind,
        hints,
    )


def device_detector(ua: str, hints: Hints) -> Fields:
    from device_detector import DeviceDetector

    d = DeviceDetector(ua).parse()
    browser, os_name = d.client_name() or None, d.os_name() or None
    kind = d.device_type() or None
    return segment_rule(
        BROWSERS.get(browser, browser),
        (d.client_version() or "").split(".")[0] or None,
        OS_NAMES.get(os_name, os_name),
        d.device_brand() or None,
        d.device_model() or None,
        DEVICE_TYPES.get(kind, kind),
        hints,
    )


CANDIDATES: dict[str, Callable[[str, Hints], Fields]] = {
    "ua-parser-py (the useragent extra)": ua_parser_py,
    "ua-parser (uap-python), names mapped": uap_python,
    "user-agents-ng, names mapped": user_agents_ng,
    "device-detector, names mapped": device_detector,
}


def corpus_cases() -> list[tuple[str, Hints]]:
    cases: dict[str, tuple[str, Hints]] = {}
    for case in json.loads(CORPUS.read_text(encoding="utf-8")):
        context = case["event"].get("context") if isinstance(case.get("event"), dict) else None
        if not isinstance(context, dict) or not isinstance(context.get("userAgent"), str):
            continue
        data = context.get("userAgentData")
        hints = {k: data[k] for k in ("model", "platformVersion") if isinstance(data, dict) and data.get(k)}
        cases[json.dumps([context["userAgent"], hints])] = (context["userAgent"], hints)
    return list(cases.values())


def main() -> int:
    cases = corpus_cases()
    done = subprocess.run(
        ["node", "-e", SEGMENT, str(NODE_MODULES)],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    segment = [{k: v for k, v in fields.items() if v is not None} for fields in json.loads(done.stdout)]
    print(f"{len(cases)} user agents (with their userAgentData) from {CORPUS.relative_to(ROOT)}")
    for name, parse in CANDIDATES.items():
        agree = dict.fromkeys(FIELDS, 0)
        started = time.perf_counter()
        try:
            for (ua, hints), expected in zip(cases, segment, strict=True):
                try:
                    got = parse(ua, hints)
                except ImportError:
                    raise
                except Exception:  # e.g. uap's native matcher on a lone surrogate
                    got = {}
                for field in FIELDS:
                    agree[field] += got.get(field) == expected.get(field)
        except ImportError:
            print(f"{name}: not installed")
            continue
        per_ua = (time.perf_counter() - started) / len(cases) * 1e6
        cells = ", ".join(f"{f} {agree[f] / len(cases):.0%}" for f in FIELDS)
        total = sum(agree.values()) / (len(cases) * len(FIELDS))
        print(f"{name}: {cells}; all fields {total:.1%} ({per_ua:,.0f} µs per user agent, uncached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
