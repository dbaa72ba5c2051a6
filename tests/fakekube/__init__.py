"""A protocol-faithful fake Kubernetes API server for tests: the official client and kubectl talk to
it over HTTP on 127.0.0.1, so nothing in the client needs patching."""

from tests.fakekube.requestlog import RequestRecord
from tests.fakekube.server import FakeKube

__all__ = ["FakeKube", "RequestRecord"]
