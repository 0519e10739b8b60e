from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request, Response, status

from app.attachments.store import AttachmentInfo
from app.deps import AttachmentsDep, CurrentUser
from app.export import file_disposition
from app.schemas import AttachmentList, AttachmentOut, ErrorBody
from app.settings import Settings

router = APIRouter(prefix="/api/conversations/{conversation_id}/attachments", tags=["attachments"])
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such conversation"}
}
UPLOAD_PATH_PATTERN = re.compile(r"/api/conversations/[^/]+/attachments/?")
"""Where uploads go: the app's body limit is `upload_body_limit` there (and only there)."""
MULTIPART_OVERHEAD = 64 * 1024
"""Room for a multipart body's boundaries and part headers around a file of the largest size."""


def upload_body_limit(settings: Settings) -> int:
    return max(settings.attachment_max_upload_bytes, settings.attachment_max_bytes + MULTIPART_OVERHEAD)


# The body is read by the route itself (see app.attachments.uploads), so OpenAPI is told its shape here.
_MULTIPART: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["file"],
                }
            }
        },
    }
}
# What a download may never be: rendered by a browser as a page of ours.
SAFE_DOWNLOAD_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, no-store",
}


def _out(info: AttachmentInfo) -> AttachmentOut:
    return AttachmentOut(
        id=info.id,
        name=info.name,
        media_type=info.media_type,
        bytes=info.bytes,
        tokens=info.tokens,
        pages=info.pages,
        created_at=info.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    openapi_extra=_MULTIPART,
    responses={
        **NOT_FOUND,
        409: {"model": ErrorBody, "description": "The conversation holds as many files as it may"},
        413: {"model": ErrorBody, "description": "A file (or the upload) is over the size limit"},
        415: {"model": ErrorBody, "description": "A file is neither UTF-8 text nor a PDF"},
        422: {"model": ErrorBody, "description": "A PDF cannot be read, or is over the page or text limits"},
        503: {"model": ErrorBody, "description": "Too many files are being read; retry"},
    },
)
async def upload_attachments(
    conversation_id: str, request: Request, user: CurrentUser, attachments: AttachmentsDep
) -> AttachmentList:
    """Attach files (`multipart/form-data`, one or more): text, Markdown, code, CSV, JSON or PDF, typed
    by their content. All are stored, or none (the error names the file refused)."""
    stored = await attachments.upload(
        conversation_id, user.id, request.headers.get("content-type"), request.stream()
    )
    return AttachmentList(items=[_out(i) for i in stored])


@router.get("", responses=NOT_FOUND)
async def list_attachments(
    conversation_id: str, user: CurrentUser, attachments: AttachmentsDep
) -> AttachmentList:
    return AttachmentList(items=[_out(i) for i in await attachments.listed(conversation_id, user.id)])


@router.get(
    "/{attachment_id}",
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The file as uploaded"},
        **NOT_FOUND,
    },
    response_class=Response,
)
async def download_attachment(
    conversation_id: str, attachment_id: str, user: CurrentUser, attachments: AttachmentsDep
) -> Response:
    name, media_type, content = await attachments.download(conversation_id, user.id, attachment_id)
    headers = {**SAFE_DOWNLOAD_HEADERS, "Content-Disposition": file_disposition(name)}
    return Response(content, media_type=media_type, headers=headers)


@router.delete("/{attachment_id}", status_code=status.HTTP_204_NO_CONTENT, responses=NOT_FOUND)
async def delete_attachment(
    conversation_id: str, attachment_id: str, user: CurrentUser, attachments: AttachmentsDep
) -> Response:
    """Delete the file and its passages; messages that referenced it stay (without it)."""
    await attachments.delete(conversation_id, user.id, attachment_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
