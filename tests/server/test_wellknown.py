"""/.well-known/core served through the whole stack (RFC 6690)."""

from __future__ import annotations

from coaptcp.core.codes import Code
from coaptcp.core.message import Message
from coaptcp.core.options import Options
from coaptcp.server.request import Request, Response
from coaptcp.server.resource import Resource, Site
from coaptcp.tap.demo import make_demo_site
from coaptcp.testing import Harness, get


class Sensor(Resource):
    link_attributes = {"rt": "temperature-c sensor", "if": "core.s", "obs": None, "ct": 0}

    def render_GET(self, request: Request) -> Response:
        return Response.text("21.5")


class Thermo(Resource):
    link_attributes = {"rt": "demo.thermo", "ct": 0, "sz": 1234, "title": "Room temperature"}

    def render_GET(self, request: Request) -> Response:
        return Response.text("20")


class Hidden(Resource):
    listed = False

    def render_GET(self, request: Request) -> Response:
        return Response.text("secret")


class Container(Resource):
    """Renders nothing itself; only its children do."""

    link_attributes = {"rt": "container"}


class Quoted(Resource):
    link_attributes = {"title": 'say "hi"'}

    def render_POST(self, request: Request) -> Response:
        return Response(Code.CHANGED)


def site() -> Site:
    root = make_demo_site()
    root.putChild("sensor", Sensor())
    root.putChild("thermo", Thermo())
    root.putChild("hidden", Hidden())
    container = Container()
    container.putChild("child", Sensor())
    root.putChild("box", container)
    root.putChild("quoted", Quoted())
    return Site(root)


def well_known(*query: str) -> Message:
    h = Harness(site())
    h.open()
    h.feed(get(b"wk", ".well-known", "core", query=query))
    (response,) = h.sent()
    assert response.token == b"wk"
    return response


def links_of(response: Message) -> list[str]:
    text = response.payload.decode()
    return [] if not text else text.split(",<")


def hrefs(response: Message) -> list[str]:
    return [part.lstrip("<").split(">", 1)[0] for part in links_of(response)]


def test_link_format_with_attributes_and_content_format_40():
    response = well_known()
    assert response.code == Code.CONTENT
    assert response.options.content_format == 40
    text = response.payload.decode()
    assert '</hello>;rt="demo.hello";ct=0;title="Greeting"' in text
    assert '</large>;rt="demo.large";ct=0;sz=4000;title="A larger body"' in text
    assert '</sensor>;rt="temperature-c sensor";if="core.s";obs;ct=0' in text
    assert '</quoted>;title="say \\"hi\\""' in text


def test_listing_contents():
    paths = hrefs(well_known())
    assert set(paths) == {
        "/hello",
        "/info",
        "/large",
        "/store",
        "/time",
        "/big",
        "/sensor",
        "/thermo",
        "/box/child",
        "/quoted",
    }


def test_unlisted_and_renderless_resources_are_hidden():
    paths = hrefs(well_known())
    assert "/hidden" not in paths
    assert "/box" not in paths  # renders no method
    assert "/.well-known/core" not in paths


def test_hidden_resource_is_still_served():
    h = Harness(site())
    h.open()
    h.feed(get(b"h", "hidden"))
    (response,) = h.sent()
    assert response.payload == b"secret"


def test_filter_rt_exact():
    assert hrefs(well_known("rt=demo.hello")) == ["/hello"]


def test_filter_rt_prefix():
    assert set(hrefs(well_known("rt=demo.*"))) == {
        "/hello",
        "/info",
        "/large",
        "/store",
        "/time",
        "/big",
        "/thermo",
    }


def test_filter_rt_matches_one_of_space_separated_values():
    assert set(hrefs(well_known("rt=sensor"))) == {"/sensor", "/box/child"}


def test_filter_href_exact_and_prefix():
    assert hrefs(well_known("href=/large")) == ["/large"]
    assert set(hrefs(well_known("href=/box*"))) == {"/box/child"}


def test_filter_ct_and_flag_attribute():
    assert set(hrefs(well_known("ct=50"))) == {"/info"}
    # /time is an ObservableResource: ``obs`` comes from the class, not the attributes.
    assert set(hrefs(well_known("obs"))) == {"/sensor", "/box/child", "/time"}


def test_filter_without_match_gives_empty_document():
    response = well_known("rt=nothing-has-this")
    assert response.code == Code.CONTENT
    assert response.payload == b""
    assert response.options.content_format == 40


def test_filter_on_missing_attribute_excludes_link():
    # /store has no ct attribute, so "ct=*" (any value) must not list it.
    paths = hrefs(well_known("ct=*"))
    assert "/store" not in paths
    assert "/hello" in paths


def test_well_known_core_only_answers_get():
    h = Harness(site())
    h.open()
    h.feed(Message(Code.POST, b"p", Options.build(uri_path=[".well-known", "core"])))
    (response,) = h.sent()
    assert response.code == Code.METHOD_NOT_ALLOWED


def test_site_without_well_known_core():
    h = Harness(Site(make_demo_site(), well_known_core=False))
    h.open()
    h.feed(get(b"n", ".well-known", "core"))
    (response,) = h.sent()
    assert response.code == Code.NOT_FOUND


def test_tree_with_its_own_well_known_core_wins():
    class Mine(Resource):
        def render_GET(self, request: Request) -> Response:
            return Response.text("mine")

    root = make_demo_site()
    dot = Resource()
    dot.putChild("core", Mine())
    root.putChild(".well-known", dot)
    h = Harness(Site(root))
    h.open()
    h.feed(get(b"m", ".well-known", "core"))
    (response,) = h.sent()
    assert response.payload == b"mine"
