"""Call recording mode (I): set by the administrator; the user sees it and what it allows."""

from __future__ import annotations

from typing import Literal

from pydantic import computed_field

from hipper.domain.services.base import ServiceSettings

RecordingMode = Literal["always", "always_pause_resume", "on_demand", "on_demand_user_start", "never"]

# Modes in which the user may pause and resume a running recording during a call (D7).
PAUSE_RESUME_MODES = frozenset({"always_pause_resume", "on_demand", "on_demand_user_start"})


class CallRecording(ServiceSettings):
    """When calls are recorded. The mode is the administrator's; `pause_resume_allowed` follows from it."""

    service = "call-recording"
    read_only_fields = frozenset({"mode"})
    mode: RecordingMode = "never"

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pause_resume_allowed(self) -> bool:
        return self.mode in PAUSE_RESUME_MODES
