"""The failures a user can act on, each with its own exit status and a one-line message.

Everything that stops a run is raised as one of these, so the CLI can print one line that names
the cause instead of a traceback.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of every failure that stops a command; `str()` is the one line shown to the user."""

    exit_code = 1
    cause = "failed"


class SettingsError(SyncError):
    exit_code = 2
    cause = "bad setting"


class ReadContradicted(SettingsError):
    """Kapture's answers contradict the date settings (zone, end rule, format): the run stops and
    leaves the ledger as it found it, so no window is vouched for on the strength of a wrong read."""


class CredentialsRejected(SyncError):
    exit_code = 3
    cause = "credentials rejected"


class KaptureRejected(SyncError):
    """Kapture answered, but refused the request (a failed body, a 4xx)."""

    exit_code = 4
    cause = "Kapture refused the request"


class KaptureUnavailable(SyncError):
    """Transient failures outlasted the retry budget."""

    exit_code = 5
    cause = "Kapture unreachable after retries"


class DatabaseUnavailable(SyncError):
    """The database could not be reached, or refused a statement; the message says which."""

    exit_code = 6
    cause = "database failed"


class PagingError(SyncError):
    """The API's paging misbehaved in a way that would loop forever or lose rows."""

    exit_code = 7
    cause = "paging failed"


class LeaseHeld(SyncError):
    """Another live process is syncing the same account."""

    exit_code = 8
    cause = "account busy"


class TransientError(Exception):
    """A failure worth retrying (5xx, 429, timeouts, truncated bodies, a failed body that says "try
    again later", a page of unrecognisable shape); never reaches the user as such.

    `final` is what it becomes when the retries run out: `KaptureUnavailable` (exit 5) when Kapture
    could not be heard, `KaptureRejected` (exit 4) when it answered, but only with failures.
    """

    def __init__(
        self, message: str, retry_after: float | None = None, final: type[SyncError] = KaptureUnavailable
    ) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.final = final
