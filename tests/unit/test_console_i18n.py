"""The console names every alarm cause the API can list, in both of its languages."""

from __future__ import annotations

import re
from pathlib import Path

from boxwatch.alarm_life import OFFLINE_CAUSE, OUTAGE_CAUSE
from boxwatch.contract import Cause

I18N = Path(__file__).parents[2] / "console" / "i18n.js"


def test_every_cause_has_a_label_in_english_and_chinese() -> None:
    # Given the console's dictionaries, split at the zh-CN one
    text = I18N.read_text()
    en, zh = text.split('"zh-CN"', 1)
    # Then each cause a box raises, and the third and fourth alarms' causes, has a label in both
    for cause in [*(c.value for c in Cause), OFFLINE_CAUSE, OUTAGE_CAUSE]:
        for name, part in (("en", en), ("zh-CN", zh)):
            assert re.search(rf"\bcause_{cause}:", part), f"{name}: no label for cause {cause!r}"
