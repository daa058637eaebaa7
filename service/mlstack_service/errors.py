"""One error hierarchy; each error carries its HTTP status and becomes {"error": "..."}."""

import uuid


class ServiceError(Exception):
    status = 500
    headers: tuple[tuple[bytes, bytes], ...] = ()


class BadRequestError(ServiceError):
    """The client's request is malformed: the message says what to fix."""

    status = 400


class UnauthorizedError(ServiceError):
    """No valid credential: the answer says which header to send, never anything about the keys."""

    status = 401
    headers = ((b"www-authenticate", b'Bearer realm="mlstack"'),)


class RateLimitedError(ServiceError):
    status = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = ((b"retry-after", str(retry_after).encode()),)


class RouteNotFoundError(ServiceError):
    status = 404


class ModelNotFoundError(ServiceError):
    status = 404


class MethodNotAllowedError(ServiceError):
    status = 405


class PayloadTooLargeError(ServiceError):
    status = 413


class ModelNotReadyError(ServiceError):
    status = 503


class InferenceError(ServiceError):
    """The model failed on a valid request: our fault, logged with an id the client can quote."""

    status = 500

    def __init__(self, message: str) -> None:
        self.error_id = uuid.uuid4().hex
        super().__init__(f"{message} (error id {self.error_id})")
