"""Why an attachment was refused, as chatstack errors (mapped to HTTP by `app.errors`).

ChatstackError
  AttachmentTooLarge (413)      a file over CHATSTACK_ATTACHMENT_MAX_BYTES, or too many files
  UnsupportedAttachment (415)   not UTF-8 text and not a PDF (binary, whatever its name says)
  UnreadableAttachment (422)    a PDF that cannot be read, is encrypted, too many pages, too
                                much text, or too costly to parse (a bomb)
  AttachmentLimit (409)         the conversation already holds CHATSTACK_ATTACHMENT_MAX_FILES
  ExtractionBusy (503)          every PDF worker is busy; try again
"""

from __future__ import annotations

from app.errors import ChatstackError


class AttachmentTooLarge(ChatstackError):
    status_code = 413
    code = "attachment_too_large"


class UnsupportedAttachment(ChatstackError):
    status_code = 415
    code = "unsupported_attachment"


class UnreadableAttachment(ChatstackError):
    status_code = 422
    code = "unreadable_attachment"


class AttachmentLimit(ChatstackError):
    status_code = 409
    code = "too_many_attachments"


class ExtractionBusy(ChatstackError):
    status_code = 503
    code = "attachments_busy"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Retry-After": "2"})
