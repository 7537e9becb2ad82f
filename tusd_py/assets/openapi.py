"""The OpenAPI 3.1 description of /v1, served at /v1/openapi.json."""

from __future__ import annotations

from typing import Any

_NULLABLE_STRING = {"type": ["string", "null"]}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _error_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_ERRORS = {
    "400": _error_response("Malformed request (invalid JSON, cursor)"),
    "401": _error_response("Missing, malformed, unknown or revoked API key"),
    "404": _error_response("Not found, or not this account's"),
    "413": _error_response("Too large"),
    "422": _error_response("Invalid fields"),
}

_ASSET = {
    "type": "object",
    "additionalProperties": False,
    "required": [
        "id",
        "project_id",
        "kind",
        "state",
        "extension",
        "size",
        "mime_type",
        "duration",
        "language",
        "created_at",
        "error_code",
        "error_message",
        "upload_url",
    ],
    "properties": {
        "id": {"type": "string", "description": "Stable unique identifier for the asset."},
        "project_id": {"type": "string", "description": "Identifier of the project that owns this asset."},
        "kind": {
            "type": ["string", "null"],
            "enum": ["audio", "video", None],
            "description": "audio or video, derived from the uploaded bytes once the first chunk is received.",
        },
        "state": {
            "type": "string",
            "enum": ["pending_upload", "processing", "pending_payment", "ready", "failed"],
        },
        "extension": {**_NULLABLE_STRING, "description": "File extension without the dot, from the bytes."},
        "size": {"type": ["integer", "null"], "minimum": 0, "description": "Stored size; null in pending_upload."},
        "mime_type": {**_NULLABLE_STRING, "description": "MIME type of the stored bytes, from the bytes."},
        "duration": {
            "type": ["string", "null"],
            "pattern": r"^(?!^[-+.]*$)[+-]?0*\d*\.?\d*$",
            "description": "Seconds, as a decimal string; present once ready or pending_payment.",
        },
        "language": {**_NULLABLE_STRING, "description": "ISO 639-1 code; null means auto-detect."},
        "created_at": {"type": "string", "format": "date-time"},
        "error_code": {**_NULLABLE_STRING, "description": "Machine-readable failure reason when failed."},
        "error_message": {**_NULLABLE_STRING, "description": "Human-readable failure detail when failed."},
        "upload_url": {
            "type": ["string", "null"],
            "description": "tus transfer URL while pending_upload; null afterwards.",
        },
    },
}

_SECURITY: list[dict[str, list[str]]] = [{"apiKey": []}]


def openapi_document() -> dict[str, Any]:
    asset_ref = {"$ref": "#/components/schemas/Asset"}
    asset_id = {"name": "asset_id", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "tusd-py assets", "version": "1.0.0"},
        "paths": {
            "/v1/assets": {
                "post": {
                    "summary": "Create an asset and open its tus upload",
                    "security": _SECURITY,
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/CreateAsset"}}},
                    },
                    "responses": {
                        "201": {
                            "description": "Asset created; the tus transfer URL is in Location.",
                            "headers": {"Location": {"schema": {"type": "string"}}},
                            "content": {"application/json": {"schema": asset_ref}},
                        },
                        **_ERRORS,
                    },
                },
                "get": {
                    "summary": "List a project's assets, newest first",
                    "security": _SECURITY,
                    "parameters": [
                        {"name": "project_id", "in": "query", "required": True, "schema": {"type": "string"}},
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {
                                "type": "string",
                                "enum": ["pending_upload", "processing", "pending_payment", "ready", "failed"],
                            },
                        },
                        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    ],
                    "responses": {
                        "200": {
                            "description": "A page of assets",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["data", "next_cursor"],
                                        "properties": {
                                            "data": {"type": "array", "items": asset_ref},
                                            "next_cursor": _NULLABLE_STRING,
                                        },
                                    }
                                }
                            },
                        },
                        **_ERRORS,
                    },
                },
            },
            "/v1/assets/{asset_id}": {
                "get": {
                    "summary": "Read an asset",
                    "security": _SECURITY,
                    "parameters": [asset_id],
                    "responses": {
                        "200": {"description": "The asset", "content": {"application/json": {"schema": asset_ref}}},
                        **_ERRORS,
                    },
                },
                "delete": {
                    "summary": "Delete an asset: ends an open upload and removes the bytes",
                    "security": _SECURITY,
                    "parameters": [asset_id],
                    "responses": {"204": {"description": "Deleted"}, **_ERRORS},
                },
            },
            "/v1/accounts/{account_id}/top-ups": {
                "post": {
                    "summary": "Top up an account (admin token); activates pending assets oldest first",
                    "security": [{"adminToken": []}],
                    "parameters": [
                        {"name": "account_id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "additionalProperties": False,
                                    "required": ["amount"],
                                    "properties": {"amount": {"type": "integer", "minimum": 1}},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "The new balance",
                            "content": {
                                "application/json": {
                                    "schema": {
                                        "type": "object",
                                        "required": ["account_id", "balance"],
                                        "properties": {
                                            "account_id": {"type": "string"},
                                            "balance": {"type": "integer"},
                                        },
                                    }
                                }
                            },
                        },
                        **_ERRORS,
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {
                "apiKey": {"type": "http", "scheme": "bearer", "description": "An API key: sk_..."},
                "adminToken": {"type": "http", "scheme": "bearer", "description": "The server's --admin-token"},
            },
            "schemas": {
                "Asset": _ASSET,
                "CreateAsset": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["project_id", "size"],
                    "properties": {
                        "project_id": {"type": "string", "minLength": 1},
                        "size": {"type": "integer", "minimum": 0},
                        "language": {"type": ["string", "null"], "pattern": "^[A-Za-z]{2}$"},
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {
                        "error": {
                            "type": "object",
                            "required": ["code", "message"],
                            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
                        }
                    },
                },
            },
        },
    }
