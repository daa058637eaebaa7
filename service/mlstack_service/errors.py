"""One error hierarchy; each error carries its HTTP status and becomes {"error": "..."}."""

import uuid


class ServiceError(Exception):
    status = 500


class BadRequestError(ServiceError):
    """The client's request is malformed: the message says what to fix."""

    status = 400


class RouteNotFoundError(ServiceError):
    status = 404


class ModelNotFoundError(ServiceError):
    status = 404


class MethodNotAllowedError(ServiceError):
    status = 405


class ConflictError(ServiceError):
    """The request clashes with the server's state (an id already in use): the message says how to avoid it."""

    status = 409


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
