"""How visitor-sync reads the 1EdTech OneRoster specification, rule by rule, with
where the specification says it.

``docs/formats.md`` renders this list (``visitor_sync.formatdoc``), so the
documented rules and their sources are kept beside the code that applies
them: ``manifest`` (the manifest), ``roles`` (roles and their dates),
``orgs`` (walking up to a school) and ``container`` (everything else).
"""

from __future__ import annotations

from dataclasses import dataclass

OR_1_0_CSV = ("[OneRoster 1.0 CSV Tables]"
              "(https://www.imsglobal.org/lis/imsOneRosterv1p0/imsOneRosterCSV-v1p0.html)")
OR_1_1_CSV = ("[OneRoster 1.1 CSV Tables]"
              "(https://www.imsglobal.org/oneroster-v11-final-csv-tables)")
OR_1_2_CSV = ("[OneRoster 1.2 CSV Binding]"
              "(https://www.imsglobal.org/spec/oneroster/v1p2/bind/csv)")
OR_1_2_MODEL = ("[OneRoster 1.2 Rostering information model]"
                "(https://www.imsglobal.org/sites/default/files/spec/oneroster/v1p2/"
                "rostering-informationmodel/OneRosterv1p2RosteringService_InfoModelv1p0.html)")


@dataclass(frozen=True)
class Rule:
    topic: str
    rule: str
    source: str


RULES = (
    Rule("Versions",
         "OneRoster 1.1 and 1.2 are read. A zip without `manifest.csv` is refused "
         "(`missing_manifest`) with a message saying that OneRoster 1.0 zips have no manifest "
         "and 1.0 is not supported; a manifest declaring `oneroster.version` 1.0 is refused "
         "too (`unsupported_version`). 1.0 names columns differently (`agents`, "
         "demographics' `userSourcedId`), so reading it as 1.1 would silently drop guardian "
         "links. The Ed-Fi LMS Toolkit's published 1.0 sample is tested to be refused so.",
         f"{OR_1_0_CSV} (no manifest); {OR_1_1_CSV}, manifest.csv"),
    Rule("Manifest",
         "Only the tables visitor-sync reads (`orgs`, `users`, `roles`, `demographics`) must "
         "be declared exactly: a blank or unexpected `file.X` value, or a declared file the "
         "zip lacks, for any other table is a warning (`manifest_value_ignored`), not a "
         "rejection of the zip. A table we read that is declared `absent` is not read even "
         "if the zip holds it, and that is reported (`absent_member_ignored`).",
         f"{OR_1_1_CSV} and {OR_1_2_CSV}, manifest.csv (`bulk`, `delta`, `absent`)"),
    Rule("enabledUser",
         "`enabledUser=false` never deactivates anyone: the specification defines it as "
         "\"an active record but system access is curtailed according to the local "
         "administration rules\", and visitor-sync grants no system access from OneRoster.",
         f"{OR_1_1_CSV} and {OR_1_2_MODEL}, User `enabledUser`"),
    Rule("status",
         "`tobedeleted` deactivates the record; `inactive` (OneRoster 1.0) is read as "
         "`tobedeleted`: \"In v1.1 the enumeration value of 'inactive' was removed and so for "
         "backwards compatibility all such marked objects should be interpreted as "
         "'tobedeleted'\".",
         f"{OR_1_1_CSV} and {OR_1_2_MODEL}, `status`"),
    Rule("grades",
         "Optional: a student without `grades` is imported with no grade (unknown). Grades "
         "are the CEDS codes (`IT PR PK TK KG 01`..`13 PS UG Other`), mapped through the "
         "canonical grade vocabulary (see Value formats); with several grades the first is "
         "stored; an unmappable grade is an error on that row only (`invalid_grade`).",
         f"{OR_1_2_MODEL}, User `grades` (0..*)"),
    Rule("Roles (1.2)",
         "Every role in `roles.csv` that is in effect counts, primary or secondary: a teacher "
         "who is also a parent gets the account and the visitor links. A role is in effect "
         "from its `beginDate` (inclusive) until its `endDate` (exclusive) and while it is "
         "not `tobedeleted`; a record whose roles have all lapsed is sent inactive, and a "
         "link to a student whose student role lapsed is dropped. Administrator rights "
         "(`administrator`, `siteAdministrator`, `principal`, `districtAdministrator`, "
         "`systemAdministrator`) come only from a primary role: a secondary one grants no "
         "account and no higher role (`secondary_admin_role`). An account's role is that of "
         "its first counting staff role (primary first); its schools, those of all its "
         "counting staff roles.",
         f"{OR_1_2_CSV}, roles.csv; {OR_1_2_MODEL}, Role (\"There MUST be one, and only "
         "one, primary role for each org\"; `endDate`: \"becomes inactive (exclusive)\")"),
    Rule("Orgs",
         "A user placed at an org that is not a school is walked up `parentSourcedId` to the "
         "school above it (a `department` to its school). An org with no school above it "
         "(`district`, `local`, `state`, `national`) gives no school: an `unknown_school` "
         "error for a student, and for a staff account left with no school at all (only an "
         "`administrator` account may have none); an org neither the zip nor an earlier "
         "import has, or a school the same orgs.csv marks `tobedeleted`, is an "
         "`unknown_school` error for both. The error is on the "
         "line and column that name the org (users.csv `orgSourcedIds`, 1.2 roles.csv "
         "`orgSourcedId`) and quotes the file's own sourcedId, e.g. `org-sch-222-456`.",
         f"{OR_1_2_MODEL}, Org `type` and `parent`; {OR_1_1_CSV}, orgs.csv"),
    Rule("Errors in other tables",
         "A role that cannot be read (`roleType` other than primary/secondary, a date that "
         "is not one) and a `birthDate` that is not a date of birth are errors on their own "
         "roles.csv / demographics.csv line and column; every record of that user is "
         "rejected (and so kept, not deactivated, by a bulk).",
         f"{OR_1_2_CSV}, roles.csv and demographics.csv"),
)
