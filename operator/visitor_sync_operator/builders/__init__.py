"""Pure builders of everything the operator owns for a district (no I/O).

:func:`children` is the whole desired state of one district, in the order it is
applied: what a pod mounts exists before the pod.
"""

from __future__ import annotations

from typing import Any

from visitor_sync_operator.builders import importer, secrets, sftp
from visitor_sync_operator.builders.secrets import Material
from visitor_sync_operator.district import District
from visitor_sync_operator.schedule import Schedule
from visitor_sync_operator.settings import OperatorSettings


def children(district: District, settings: OperatorSettings, material: Material,
             schedule: Schedule, approve_held_run: str | None) -> list[dict[str, Any]]:
    return [
        secrets.credentials_secret(district, material),
        secrets.host_keys_secret(district, material),
        secrets.importer_key_secret(district, material),
        sftp.config_map(district),
        sftp.volume_claim(district),
        sftp.deployment(district, settings, material),
        sftp.service(district),
        sftp.network_policy(district),
        importer.config_map(district, material, approve_held_run),
        importer.cron_job(district, settings, schedule.cron, schedule.suspended),
    ]
