"""Call recording mode (SPEC I, manual §7.5): chosen by the user, among the modes the administrator allows."""

from __future__ import annotations

from typing import Literal, Self, get_args

from pydantic import Field, computed_field, model_validator

from hipper.domain.errors import InvalidSetting
from hipper.domain.services.base import ServiceSettings

RecordingMode = Literal["always", "always_pause_resume", "on_demand", "on_demand_user_start", "never"]
ALL_MODES: tuple[RecordingMode, ...] = get_args(RecordingMode)

# Modes in which the user may pause and resume a running recording during a call (D7).
PAUSE_RESUME_MODES = frozenset({"always_pause_resume", "on_demand", "on_demand_user_start"})


class CallRecording(ServiceSettings):
    """When calls are recorded. Once the administrator assigned call recording the user chooses the mode ("kunt u
    hier instellen", §7.5); the administrator may narrow the choice (`allowed_modes`, e.g. only "always" where
    every call must be kept). `pause_resume_allowed` follows from the mode."""

    service = "call-recording"
    read_only_fields = frozenset({"allowed_modes"})
    mode: RecordingMode = "never"
    allowed_modes: list[RecordingMode] = Field(default_factory=lambda: list(ALL_MODES), min_length=1)

    @model_validator(mode="after")
    def _mode_allowed(self) -> Self:
        if self.mode not in self.allowed_modes:
            raise InvalidSetting("mode", "your administrator does not allow this recording mode", "not_allowed")
        return self

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pause_resume_allowed(self) -> bool:
        return self.mode in PAUSE_RESUME_MODES
