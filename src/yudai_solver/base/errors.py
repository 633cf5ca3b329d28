"""One error base for the domain; HTTP mapping happens in `api.app`, in one place."""


class YudaiError(Exception):
    """Something went wrong."""

    status_code = 500

    def __init__(self, message: str | None = None, *, field: str | None = None):
        self.message = message or (self.__doc__ or "").strip()
        self.field = field
        super().__init__(self.message)


class InvalidInput(YudaiError):
    """The request is not valid."""

    status_code = 422


class NotFound(YudaiError):
    """Not found."""

    status_code = 404


class Forbidden(YudaiError):
    """Only an admin may do this."""

    status_code = 403


class Unauthorized(YudaiError):
    """A valid `Authorization: Bearer TOKEN` header is required."""

    status_code = 401


class Conflict(YudaiError):
    """The resource is not in a state that allows this."""

    status_code = 409


class InvalidTransition(Conflict):
    """This status change is not allowed."""
