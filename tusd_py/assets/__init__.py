"""The asset lifecycle: Create-an-asset API, media detection, duration, per-minute billing."""

from .errors import ApiError
from .platform import PlatformApp, create_platform_app
from .service import AssetService

__all__ = ["ApiError", "AssetService", "PlatformApp", "create_platform_app"]
