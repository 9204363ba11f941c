"""users.csv: accounts that log in. A new active user is an *account created*
event: the account starts ``invited`` and an invitation e-mail is queued."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError
from sqlalchemy import insert, literal, select

from visitor_sync.db.schema import Invitation, User
from visitor_sync.filetypes.base import FileType, RowModel, Target
from visitor_sync.values import Email, IdList, Phone, one_of

if TYPE_CHECKING:
    from visitor_sync.reconcile import NewRecords

ROLES = {
    "administrator": "administrator", "admin": "administrator",
    "districtadministrator": "administrator",
    "siteadministrator": "site_administrator", "siteadmin": "site_administrator",
    "operator": "operator", "frontdesk": "operator",
    "teacher": "teacher",
}

Role = one_of("invalid_role", ROLES)


class UserRow(RowModel):
    email: Email
    name: str
    role: Role
    phone: Phone | None = None
    school_ids: IdList | None = Field(None, validate_default=True)

    @field_validator("school_ids")
    @classmethod
    def _schools_unless_administrator(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value and info.data.get("role") not in (None, "administrator"):
            raise PydanticCustomError(
                "missing_value", "is empty; every role but administrator needs School IDs")
        return value


def queue_invitations(new: NewRecords) -> None:
    """Owe one invitation e-mail to every account this file creates active."""
    source = new.rows
    new.connection.execute(insert(Invitation).from_select(
        ["district_id", "email", "name", "run_id", "queued_at"],
        select(literal(new.district_id), source.c.email, source.c.name,
               literal(new.run_id), literal(new.now, Invitation.queued_at.type))
        .where(source.c.active)))


USERS = FileType(
    name="users",
    file_names=("users.csv",),
    description="Accounts that log in; keyed by Email (compared without case).",
    row_model=UserRow,
    headers={
        "Email": ("E-mail", "Email Address", "Login", "Username"),
        "Name": ("Full Name", "Display Name"),
        "Role": ("User Role", "Access Level"),
        "Phone": ("Phone Number",),
        "School IDs": ("School ID", "Schools", "Campus IDs"),
        "Active": ("Is Active", "Enabled"),
    },
    key=("email",),
    targets=(Target(User, on_create=queue_invitations),),
)
