"""The REST API (FastAPI): ``create_app(ApiServices(...))``; docs/API.md describes it."""

from tsunagu.api.app import create_app
from tsunagu.api.services import ApiServices, RateLimit, ReportDefaults
from tsunagu.api.serving import ApiServer
from tsunagu.api.users import Role, hash_user_secrets, seed_api_key, validate_auth_document

__all__ = [
    "ApiServer",
    "ApiServices",
    "RateLimit",
    "ReportDefaults",
    "Role",
    "create_app",
    "hash_user_secrets",
    "seed_api_key",
    "validate_auth_document",
]
