"""The API's routers, one per resource; each route is a thin call into Store."""
