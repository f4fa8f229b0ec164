"""Keyed stores: GET /keys/{key} (the live version) and DELETE /keys/{key}.

The key in the path is read like a query value: a JSON literal (`42`,
`"42"`) or else the text itself as a string (`user-1`), so /keys/42 is the
number 42 and /keys/%2242%22 the string "42". Percent-encoded, as a PSF name
is: a key may hold `/` (the route takes the rest of the path), and it is
never part of a file path."""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ...psf import parse_query_value
from ...engine import Store
from .. import deps
from ..errors import ApiError
from ..schemas import RECORD_SCHEMA, errors_doc

router = APIRouter(tags=["keys"])

KeyPath = Annotated[str, Path(description="the key: a JSON literal (42, \"42\") or a bare string (user-1)")]


class DeletedOut(BaseModel):
    key: Any
    deleted: bool
    durable: bool


@router.get("/keys/{key:rest}", summary="The live version of a key (keyed stores)", response_class=Response,
            responses={200: {"description": "the record, byte for byte as ingested; its address is in the "
                                            "X-Shoal-Address header",
                             "content": {"application/json": {"schema": RECORD_SCHEMA}}},
                       **errors_doc(400, 404, 422, 503)})
def get_key(key: KeyPath, store: Annotated[Store, Depends(deps.store)]) -> Response:
    k = parse_query_value(key)
    rec = store.get_key(k)
    if rec is None:
        raise ApiError(404, "key_not_found", f"no live record has key {k!r}", key=k)
    return Response(rec.raw, media_type="application/json", headers={"X-Shoal-Address": str(rec.address)})


@router.delete("/keys/{key:rest}", response_model=DeletedOut, summary="Delete a key (keyed stores)",
               responses=errors_doc(400, 404, 422, 503),
               description="Appends a tombstone: the key reads as absent and PSF queries stop returning its "
                           "versions. 404 when the key has no live version (nothing is written).")
async def delete_key(key: KeyPath, store: Annotated[Store, Depends(deps.store)],
                     durable: Annotated[bool, Query(description="answer once the tombstone is on disk")] = False
                     ) -> dict:
    k = parse_query_value(key)
    deleted = await run_in_threadpool(store.delete_key, k, durable=durable)
    if not deleted:
        raise ApiError(404, "key_not_found", f"no live record has key {k!r}", key=k)
    return {"key": k, "deleted": True, "durable": durable}
