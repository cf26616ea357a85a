"""A zone's UTC offsets as rows, so SQL without a zone database (SQLite) can turn UTC into local time.

PostgreSQL converts with `AT TIME ZONE` and its own tz database; SQLite's views look up the offset
in force at an instant in `sync_zone_offsets`, written from Python's `zoneinfo` for every zone an
account uses. Both follow daylight-saving changes, since each change is a row.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

FIRST_YEAR, LAST_YEAR = 1970, 2100  # Kapture timestamps before 1990 are rejected; 2100 is far enough


def _offset(moment: datetime, zone: ZoneInfo) -> tuple[int, str]:
    local = moment.astimezone(zone)
    delta = local.utcoffset()
    return int(delta.total_seconds()) if delta is not None else 0, local.tzname() or ""


@cache
def offset_rules(zone_name: str) -> tuple[tuple[datetime, int, str], ...]:
    """`(starts_at UTC, offset seconds, abbreviation)` for each change of offset from 1970 to 2100.

    Probes day by day and bisects to the second where the offset changes: zoneinfo does not
    expose its transitions, and no zone changes its offset twice within a day.
    """
    zone = ZoneInfo(zone_name)
    moment = datetime(FIRST_YEAR, 1, 1, tzinfo=UTC)
    stop = datetime(LAST_YEAR, 1, 1, tzinfo=UTC)
    current = _offset(moment, zone)
    rules = [(moment, *current)]
    day = timedelta(days=1)
    while moment < stop:
        following = moment + day
        probe = _offset(following, zone)
        if probe[0] != current[0]:
            low, high = 0, 86_400  # the offset at moment+low is the old one, at moment+high the new
            while high - low > 1:
                middle = (low + high) // 2
                if _offset(moment + timedelta(seconds=middle), zone)[0] == current[0]:
                    low = middle
                else:
                    high = middle
            start = moment + timedelta(seconds=high)
            rules.append((start, *_offset(start, zone)))
            current = probe
        moment = following
    return tuple(rules)
