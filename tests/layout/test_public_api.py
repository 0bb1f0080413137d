"""The public API as a user meets it: ``dir(coaptcp)``, one error base, one naming rule."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from types import ModuleType

import coaptcp
from coaptcp import CoapTcpError


def all_modules() -> list[ModuleType]:
    found = [coaptcp]
    for info in pkgutil.walk_packages(coaptcp.__path__, "coaptcp."):
        if not info.name.endswith("__main__"):
            found.append(importlib.import_module(info.name))
    return found


def test_dir_lists_the_public_api() -> None:
    listed = set(dir(coaptcp))
    for name in ("Resource", "Site", "Client", "Limits", "connect_tcp", "connect_tls",
                 "connect_websocket", "ClientTLSSettings", "ServerTLSSettings", "CoapTcpError"):
        assert name in listed
        assert name in coaptcp.__all__
    for name in coaptcp.__all__:
        assert getattr(coaptcp, name) is not None


def test_every_exported_name_exists() -> None:
    for module in all_modules():
        for name in getattr(module, "__all__", ()):
            assert hasattr(module, name), f"{module.__name__}.__all__ names {name!r}"


def test_every_exception_derives_from_the_documented_base() -> None:
    strays = [
        f"{module.__name__}.{name}"
        for module in all_modules()
        for name, value in vars(module).items()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and not issubclass(value, Warning)
        and value.__module__ == module.__name__
        and not issubclass(value, CoapTcpError)
    ]
    assert not strays


#: camelCase names we define because Twisted, autobahn or twisted.web's resource API
#: call or mirror them (the naming rule's one exception).
FRAMEWORK_NAMES = re.compile(
    r"^(connectionMade|getHost|connectionLost|dataReceived|readConnectionLost|writeConnectionLost|"
    r"handshakeCompleted|makeConnection|buildProtocol|clientConnectionFailed|"
    r"clientConnectionForTLS|serverConnectionForTLS|startService|stopService|"
    r"privilegedStartService|pauseProducing|resumeProducing|stopProducing|doStart|doStop|"
    r"makeService|postOptions|parseOptions|opt_\w+|putChild|getChild|getChildWithDefault|"
    r"render|on[A-Z]\w*|failHandshake|sendMessage|sendCloseFrame|dropConnection|"
    r"processEnded|outReceived|errReceived|allContentReceived|requestDone|listenTCP|"
    r"listenUNIX|listenSSL|adoptStreamPort|callLater|seconds|getDelayedCalls|isLeaf|"
    r"optParameters|optFlags|closeConnection|startProtocol|stopProtocol|datagramReceived|"
    r"resolutionBegan|addressResolved|resolutionComplete|flushSendBIO|flushReceiveBIO|"
    r"writeSequence|loseConnection|abortConnection)$"  # ITransport (coaptcp.testing)
)


def test_one_naming_rule() -> None:
    camel = re.compile(r"^_?[a-z]+[A-Z]")
    wrong = []
    for module in all_modules():
        for name, value in vars(module).items():
            if getattr(value, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(value) and camel.match(name) and not FRAMEWORK_NAMES.match(name):
                wrong.append(f"{module.__name__}.{name}")
            if inspect.isclass(value):
                for attribute in vars(value):
                    if camel.match(attribute) and not FRAMEWORK_NAMES.match(attribute.lstrip("_")):
                        wrong.append(f"{module.__name__}.{name}.{attribute}")
    assert not wrong, wrong
