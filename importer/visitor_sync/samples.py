"""Deterministic, realistic sample files for a district (the demo and the benchmarks)."""

from __future__ import annotations

import csv
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

FIRST_NAMES = ("Ava", "Liam", "Sofia", "Noah", "Isabella", "Mateo", "Mia", "Elijah", "Amara",
               "Lucas", "Chloé", "Jayden", "Zoë", "Ethan", "Nia", "Aarav", "Emma", "Diego",
               "Harper", "Kai", "Renée", "Omar", "Lily", "José", "Grace", "Yusuf")
LAST_NAMES = ("Garcia", "Smith", "Nguyen", "Johnson", "Martínez", "Williams", "O'Brien",
              "Brown", "Patel", "Jones", "Kim", "Davis", "Hernández", "Miller", "Wilson",
              "Moore", "Taylor", "Anderson", "Thomas", "Jackson", "White", "López")
SCHOOLS = (("0101", "Lincoln Elementary"), ("0202", "Roosevelt Middle School"),
           ("0303", "Jefferson High School"))
GRADES_BY_SCHOOL = {"0101": ("K", "1", "2", "3", "4", "5"), "0202": ("6", "7", "8"),
                    "0303": ("9", "10", "11", "12")}
STUDENT_HEADER = ("Student ID", "First Name", "Last Name", "Middle Name", "Preferred Name",
                  "Date of Birth", "Grade", "School ID", "School Name", "Gender", "Homeroom",
                  "Email", "Active")


def student_rows(count: int, seed: int = 2026, start: int = 1) -> Iterator[list[str]]:
    """``count`` students with IDs ``S0000001``...; the same seed gives the same rows."""
    rng = random.Random(seed)
    for number in range(start, start + count):
        school_id, school_name = SCHOOLS[number % len(SCHOOLS)]
        grade = rng.choice(GRADES_BY_SCHOOL[school_id])
        age = 5 + (0 if grade == "K" else int(grade))
        born = date(2026 - age, 1, 1) + timedelta(days=rng.randrange(365))
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        yield [f"S{number:07d}", first, last, rng.choice(("", "A", "J", "Marie")),
               "", born.strftime("%m/%d/%Y"), grade, school_id, school_name,
               rng.choice(("F", "M", "X")), f"Room {100 + number % 40}",
               f"{first.lower()}.{number}@students.example.org", "1"]


def write_csv(path: Path, header: tuple[str, ...] | list[str], rows: Iterator[list[str]] | list[
        list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_district(inbox: Path, students: int = 300, seed: int = 2026) -> list[Path]:
    """One of every canonical file for a sample district, with a few realistic mistakes."""
    inbox.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    roster = list(student_rows(students, seed))
    roster[41][5] = "13/45/2015"             # a date that does not exist
    roster[97][6] = "Grade Z"                # not a grade
    written = [write_csv(inbox / "students.csv", STUDENT_HEADER, roster)]

    visitors = []
    for index, student in enumerate(roster):
        family = index // 2 + 1  # siblings share a guardian
        guardian = f"V{family:06d}"
        family_name = roster[index & ~1][2]
        visitors.append([guardian, FIRST_NAMES[family % len(FIRST_NAMES)], family_name, "",
                         f"555-01{family % 100:02d}", f"{guardian.lower()}@family.example.org",
                         student[0], rng.choice(("Mother", "Father", "Guardian")), "1", "1"])
    visitors.append(["V999999", "Pat", "Nobody", "", "555-0199", "pat@family.example.org",
                     "S9999999", "Aunt", "1", "0"])  # names a student the district lacks
    written.append(write_csv(inbox / "visitors.csv", (
        "Visitor ID", "First Name", "Last Name", "Middle Name", "Phone", "Email", "Student ID",
        "Relationship", "Can Pickup", "Emergency Contact"), visitors))

    written.append(write_csv(inbox / "employees.csv", (
        "Employee ID", "First Name", "Last Name", "Email", "School IDs", "Title"),
        [[f"E{n:04d}", rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES),
          f"staff{n}@district.example.org", SCHOOLS[n % 3][0], "Teacher"] for n in range(1, 41)]))
    written.append(write_csv(inbox / "users.csv", ("Email", "Name", "Role", "School IDs"), [
        ["superintendent@district.example.org", "Dana Reyes", "administrator", ""],
        ["office.lincoln@district.example.org", "Sam Ortiz", "operator", "0101"],
        ["principal.roosevelt@district.example.org", "Lee Park", "site_administrator", "0202"],
        ["teacher.jefferson@district.example.org", "Ari Cohen", "teacher", "0303"],
    ]))
    written.append(write_csv(inbox / "volunteers.csv", (
        "Email", "First Name", "Last Name", "School IDs", "Approved Until"),
        [[f"helper{n}@family.example.org", rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES),
          SCHOOLS[n % 3][0], "2027-06-30"] for n in range(1, 11)]))
    written.append(write_csv(inbox / "court_orders.csv", (
        "Case ID", "Student ID", "Restricted First Name", "Restricted Last Name", "Order Type",
        "Issued Date", "Expiry Date"), [
        ["CV-2025-0113", roster[3][0], "John", "Doe", "no_contact", "2025-09-01", "2030-09-01"],
        ["CV-2019-0042", roster[8][0], "Jane", "Roe", "restraining", "2019-01-15", "2020-01-15"],
    ]))
    written.append(write_csv(inbox / "bus_schedule.csv", (
        "Student ID", "School ID", "Route", "Direction", "Bus Number", "Stop Name", "Stop Time"),
        [[student[0], student[7], f"R{int(student[0][1:]) % 12 + 1}", direction, "",
          "Maple & 3rd", time] for student in roster[:120]
         for direction, time in (("AM", "7:05 AM"), ("PM", "15:40"))]))
    return written
