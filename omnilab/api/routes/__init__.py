"""The API's routers, one module per resource; :mod:`omnilab.api.app` includes them."""
