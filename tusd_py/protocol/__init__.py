"""The sans-I/O tus core: header parsing, metadata, checksums, ids, ranges, URLs."""

from .checksum import ALGORITHMS, Checksum, parse_checksum
from .errors import CHECKSUM_MISMATCH, TusError
from .headers import (
    OFFSET_CONTENT_TYPE,
    TUS_VERSION,
    Concat,
    CreationLength,
    check_patch_content_type,
    check_tus_resumable,
    parse_content_length,
    parse_creation_length,
    parse_upload_concat,
    parse_upload_length,
    parse_upload_offset,
    upload_id_from_url,
)
from .ids import check_upload_id, is_valid_upload_id, new_upload_id
from .metadata import decode_metadata, encode_metadata
from .ranges import parse_range
from .urls import Origin, public_origin

__all__ = [
    "ALGORITHMS",
    "CHECKSUM_MISMATCH",
    "OFFSET_CONTENT_TYPE",
    "TUS_VERSION",
    "Checksum",
    "Concat",
    "CreationLength",
    "Origin",
    "TusError",
    "check_patch_content_type",
    "check_tus_resumable",
    "check_upload_id",
    "decode_metadata",
    "encode_metadata",
    "is_valid_upload_id",
    "new_upload_id",
    "parse_checksum",
    "parse_content_length",
    "parse_creation_length",
    "parse_range",
    "parse_upload_concat",
    "parse_upload_length",
    "parse_upload_offset",
    "public_origin",
    "upload_id_from_url",
]
