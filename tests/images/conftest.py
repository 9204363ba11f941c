"""The image tier: both images built by scripts/images, then run as the pods run them."""

from __future__ import annotations

import pytest

from tests.support import images


@pytest.fixture(scope="session")
def built_images() -> tuple[str, str]:
    reason = images.unavailable()
    if reason:
        pytest.skip(reason)
    images.build()
    return images.APP_IMAGE, images.SFTP_IMAGE
