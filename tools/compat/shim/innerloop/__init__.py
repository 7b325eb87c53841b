"""Stand-in for the original service's `innerloop` package: its Python client imports one name
from `innerloop.api.sse`. Only that name is provided here."""
