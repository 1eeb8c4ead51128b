"""Plain-Python Instasent client (no Airflow imports)."""

from .client import InstasentClient
from .errors import (
    AuthenticationError,
    BadRequestError,
    InstasentConfigError,
    InstasentConnectionError,
    InstasentError,
    InstasentHTTPError,
    LongWaitError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    ValidationError,
)
from .models import ApiResponse, ItemError, PushResult, RawScrollPage, ScrollPage
from .ratelimit import RateLimiter
from .retry import RetryPolicy
from .transport import ClientStats

__all__ = [
    "ApiResponse",
    "AuthenticationError",
    "BadRequestError",
    "ClientStats",
    "InstasentClient",
    "InstasentConfigError",
    "InstasentConnectionError",
    "InstasentError",
    "InstasentHTTPError",
    "ItemError",
    "LongWaitError",
    "NotFoundError",
    "PermissionDeniedError",
    "PushResult",
    "RateLimitError",
    "RateLimiter",
    "RawScrollPage",
    "RetryPolicy",
    "ScrollPage",
    "ServerError",
    "ValidationError",
]
