"""The pieces of `tusd-py upload`: a resumable tus 1.0 client, its resume state, the asset API."""

from .assets import AssetApi
from .state import UploadState, default_state_path, fingerprint
from .tus import ClientError, Refused, RetryPolicy, TusClient, Uploader

__all__ = [
    "AssetApi",
    "ClientError",
    "Refused",
    "RetryPolicy",
    "TusClient",
    "UploadState",
    "Uploader",
    "default_state_path",
    "fingerprint",
]
