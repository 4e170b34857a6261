"""The broker a sink URL names."""

from __future__ import annotations

from urllib.parse import urlsplit

from proxy_core.config.addresses import sink_problem
from proxy_core.sinks.nats import NatsBroker
from proxy_core.sinks.redis import RedisBroker
from proxy_core.sinks.runner import Broker

SCHEMES = {"nats": NatsBroker, "redis": RedisBroker}


def broker_for(url: str) -> Broker:
    if problem := sink_problem(url):
        raise ValueError(problem)
    return SCHEMES[urlsplit(url).scheme](url)
