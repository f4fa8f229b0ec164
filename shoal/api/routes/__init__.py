"""The API's routers, one per resource; each route is a thin call into Store.

`{name:rest}` takes the rest of the path, any characters: Starlette's `path`
convertor is `.*`, which stops at a line break, and its pattern's `$`
matches before a final one, so `/psfs/t%0A` reached the PSF "t" (and
DELETE deregistered it) and `/keys/a%0A` the key "a". PSF names and keys
in paths use `rest`."""
from starlette.convertors import PathConvertor, register_url_convertor


class _RestConvertor(PathConvertor):
    regex = "(?s:.*)"


register_url_convertor("rest", _RestConvertor())
