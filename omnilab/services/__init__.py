"""Services: one folder per service (``services/redis/``...), each with everything
particular to it (spec, readiness, client, promotion, scripts).

Which services exist is the plug-in registry's business (:mod:`omnilab.plugins`): use
:func:`service_class` and :func:`service_names`, never a list written here, so that a
third party's service is found the same way as omnilab's own. This package imports no
service folder: the classes are ``omnilab.Redis`` (``omnilab.services.redis.Redis``)...
"""

from __future__ import annotations

from omnilab import plugins
from omnilab.errors import OmnilabError
from omnilab.services.base import (
    ContainerPlan,
    Credentials,
    Endpoint,
    LaunchInfo,
    LocalRecipe,
    ProcessPlan,
    Service,
)


def service_names() -> list[str]:
    """Every service's name (omnilab's and plug-ins'), imports nothing."""
    return plugins.names("service")


def service_class(name: str) -> type[Service]:
    """The class of the service called ``name``: a usage error naming the choices when
    there is none, an error naming the missing library when it cannot be imported."""
    cls = plugins.load("service", name)
    if not (isinstance(cls, type) and issubclass(cls, Service)):
        raise OmnilabError(f"the service plug-in {name!r} is not a Service subclass: {cls!r}")
    return cls


def service_classes() -> dict[str, type[Service]]:
    """Every service that can be imported here, by name."""
    return {
        name: cls
        for name, cls in plugins.available("service").items()
        if isinstance(cls, type) and issubclass(cls, Service)
    }


__all__ = [
    "ContainerPlan",
    "Credentials",
    "Endpoint",
    "LaunchInfo",
    "LocalRecipe",
    "ProcessPlan",
    "Service",
    "service_class",
    "service_classes",
    "service_names",
]
