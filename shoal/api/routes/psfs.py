"""PSF registration, listing and deregistration."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response

from ...errors import PSFNotFound
from ...engine import Store
from .. import deps
from ..schemas import PSFDeregisteredOut, PSFIn, PSFList, PSFOut, errors_doc, psf_out

router = APIRouter(tags=["psfs"])
StoreDep = Annotated[Store, Depends(deps.store)]


@router.post("/psfs", status_code=201, response_model=PSFOut, summary="Register a PSF",
             responses={200: {"model": PSFOut, "description": "`exist_ok` (or `replace`) and the PSF was already "
                                                             "active with this `expr`: it, unchanged"},
                        201: {"description": "registered"}, **errors_doc(400, 409, 422, 503)},
             description="Every record ingested from now on is indexed by it; queries over older records scan "
                         "them, so answers are complete either way. 409 `psf_exists` if a PSF by that name is "
                         "active (with its `definition`), unless `exist_ok` and the same `expr` (200), or "
                         "`replace` (201: the old one deregistered, this one registered, at one address); 422 "
                         "with `position` if the expression does not parse.")
def register(body: PSFIn, store: StoreDep, response: Response) -> dict:
    try:
        before = store.psf(body.name)
        before_range = before.ranges[-1] if before.active else None
    except PSFNotFound:
        before = before_range = None
    p = store.register_psf(body.name, body.expr, exist_ok=body.exist_ok, replace=body.replace,
                           bucket=body.bucket, time=body.time)
    if p is before and p.active and p.ranges[-1] == before_range:
        response.status_code = 200  # it was active already, and is answered as it is
    return psf_out(p)


@router.get("/psfs", response_model=PSFList, summary="All PSFs, active or not",
            responses=errors_doc(503))
def list_psfs(store: StoreDep) -> dict:
    return {"psfs": [psf_out(p) for p in store.psfs()]}


@router.get("/psfs/{name:rest}", response_model=PSFOut, summary="One PSF with its active ranges",
            responses=errors_doc(404, 422, 503))
def get_psf(name: str, store: StoreDep) -> dict:
    return psf_out(store.psf(name))


@router.delete("/psfs/{name:rest}", response_model=PSFDeregisteredOut, summary="Deregister a PSF",
               responses=errors_doc(404, 422, 503),
               description="Stops indexing by it; answers with the range [from, to) in which it was active. "
                           "Registering the same expression again later resumes it.")
def deregister(name: str, store: StoreDep) -> dict:
    before = store.psf(name)
    start = before.ranges[-1][0] if before.active else None
    p = store.deregister_psf(name)  # PSFNotFound (404) when not active
    # A range in which no record arrived is dropped from `ranges`: report it empty.
    last = p.ranges[-1] if p.ranges else None
    return dict(psf_out(p), range=list(last) if last is not None and last[0] == start else [start, start])
