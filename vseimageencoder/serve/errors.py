"""The faults a request can have, each with the HTTP status it is answered with."""


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status (4xx). The web layer
    answers it as JSON ``{"error": message}``; the message names the fault and the value at
    fault, never a path on the server."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class BadRequest(RequestError):
    status = 400


class NotFound(RequestError):
    status = 404


class TooLarge(RequestError):
    status = 413


class Unavailable(RequestError):
    """The server is shutting down or its queue is full; the client may retry."""

    status = 503
