"""bus_schedule.csv: which bus a student rides, to and from school."""

from __future__ import annotations

from visitor_sync.db.schema import BusAssignment, School, Student
from visitor_sync.filetypes.base import FileType, Reference, RowModel, Target
from visitor_sync.values import Time, one_of

DIRECTIONS = {
    "toschool": "to_school", "am": "to_school", "morning": "to_school", "to": "to_school",
    "fromschool": "from_school", "pm": "from_school", "afternoon": "from_school",
    "from": "from_school",
}

Direction = one_of("invalid_direction", DIRECTIONS)


class BusAssignmentRow(RowModel):
    student_id: str
    school_id: str
    route: str
    direction: Direction
    bus_number: str | None = None
    stop_name: str | None = None
    stop_time: Time | None = None


BUS_SCHEDULE = FileType(
    name="bus_schedule",
    file_names=("bus_schedule.csv",),
    description="Bus assignments; keyed by Student ID + Route + Direction.",
    row_model=BusAssignmentRow,
    headers={
        "Student ID": ("Student Number", "Stu ID"),
        "School ID": ("School Number", "Campus ID"),
        "Route": ("Route ID", "Route Number", "Route Name"),
        "Direction": ("AM/PM", "AMPM", "Run"),
        "Bus Number": ("Bus", "Bus ID", "Vehicle"),
        "Stop Name": ("Stop", "Stop Location", "Stop Description"),
        "Stop Time": ("Time", "Pickup Time", "Scheduled Time"),
        "Active": ("Is Active",),
    },
    key=("student_id", "route", "direction"),
    targets=(Target(BusAssignment),),
    references=(
        Reference("student_id", Student, "unknown_student", "student"),
        Reference("school_id", School, "unknown_school", "school"),
    ),
    after=("students",),
)
