"""The errors the emulator answers, one class each, carrying the API's code and HTTP status.

Actions raise them; the HTTP layer maps them to the wire once. They are the emulator's own
family (:class:`EciError`), named apart from the backends' errors they translate. Messages name
parameters, never their values (a password can sit in any parameter a client mistypes).
"""

from __future__ import annotations


class EciError(Exception):
    status = 400
    code = "InvalidParameter"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code


class MissingParameter(EciError):
    def __init__(self, name: str) -> None:
        super().__init__(f"the required parameter {name} is missing", f"MissingParameter.{name}")


class InvalidParameter(EciError):
    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}", f"InvalidParameter.{_code_name(name)}")


class InvalidAction(EciError):
    status = 404
    code = "InvalidAction.NotFound"

    def __init__(self) -> None:
        super().__init__("the action is not supported by this endpoint")


class InvalidVersion(EciError):
    code = "InvalidVersion"


class NotFoundError(EciError):
    status = 404


class ImageCacheNotFound(NotFoundError):
    code = "InvalidImageCacheId.NotFound"


class ContainerGroupNotFound(NotFoundError):
    code = "InvalidContainerGroupId.NotFound"


class IncorrectStatus(EciError):
    """UpdateImageCache on a cache that is not Ready or UpdateFailed (the reference)."""

    status = 403
    code = "IncorrectStatus.ImageCache"


class ImageCacheQuotaExceeded(EciError):
    """The backend's ``QuotaExceeded``, as the API answers it."""

    status = 403
    code = "QuotaExceeded.ImageCache"


class OperationFailed(EciError):
    code = "OperationFailed"


class SignatureNonceUsed(EciError):
    code = "SignatureNonceUsed"

    def __init__(self) -> None:
        super().__init__("the signature nonce was used already")


class Throttled(EciError):
    """Flow control, as the gateway answers it: 400 ``Throttling.User`` with the time to wait
    (``x-acs-retry-after``, milliseconds), which the Python SDK turns into a retryable
    ``ThrottlingException`` and the project's backend retries by its code."""

    code = "Throttling.User"

    def __init__(self, retry_after_ms: int = 200) -> None:
        super().__init__("the request was denied due to user flow control; retry later")
        self.retry_after_ms = retry_after_ms


class UnsupportedFormat(EciError):
    code = "InvalidParameter.Format"

    def __init__(self) -> None:
        super().__init__("Format must be JSON or XML")


class UnsupportedHTTPMethod(EciError):
    code = "UnsupportedHTTPMethod"

    def __init__(self) -> None:
        super().__init__("only GET and POST are served")


class BodyTooLarge(EciError):
    status = 413
    code = "InvalidParameter.ContentLength"


class InternalError(EciError):
    status = 500
    code = "InternalError"


def _code_name(name: str) -> str:
    """``Container.2.Port.1.Port`` -> ``Container.Port.Port``: codes name fields, not items."""
    return ".".join(part for part in name.split(".") if not part.isdigit())
