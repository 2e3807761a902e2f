"""POST /resolution: contract, settings, validation, backends and the ASGI app the hosts wrap."""
