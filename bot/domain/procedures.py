"""The source playbook's two rollback procedures, with their time windows."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ProcedureKind(StrEnum):
    EMERGENCY = "emergency"
    STANDARD = "standard"


@dataclass(frozen=True)
class Phase:
    name: str
    start_minute: int
    end_minute: int
    tasks: tuple[str, ...]

    @property
    def window(self) -> str:
        return f"{self.start_minute}–{self.end_minute} min"


@dataclass(frozen=True)
class Procedure:
    kind: ProcedureKind
    title: str
    phases: tuple[Phase, ...]


PROCEDURES: dict[ProcedureKind, Procedure] = {
    ProcedureKind.EMERGENCY: Procedure(
        ProcedureKind.EMERGENCY,
        "Emergency rollback (critical issues)",
        (
            Phase(
                "Immediate response",
                0,
                5,
                (
                    "Identify the issue and affected systems",
                    "Execute immediate rollback commands",
                    "Notify stakeholders",
                ),
            ),
            Phase(
                "Assessment",
                5,
                15,
                (
                    "Assess the scope of the issue",
                    "Determine if additional rollback steps are needed",
                    "Document the incident",
                ),
            ),
            Phase(
                "Recovery",
                15,
                60,
                (
                    "Restore system to stable state",
                    "Verify all services are operational",
                    "Monitor for any residual issues",
                ),
            ),
        ),
    ),
    ProcedureKind.STANDARD: Procedure(
        ProcedureKind.STANDARD,
        "Standard rollback (non-critical issues)",
        (
            Phase(
                "Preparation",
                0,
                5,
                ("Review rollback plan", "Notify team members", "Prepare rollback commands"),
            ),
            Phase(
                "Execution",
                5,
                30,
                (
                    "Execute rollback commands",
                    "Verify system state",
                    "Test critical functionality",
                ),
            ),
            Phase(
                "Verification",
                30,
                60,
                (
                    "Monitor system health",
                    "Verify all services are working",
                    "Document lessons learned",
                ),
            ),
        ),
    ),
}
