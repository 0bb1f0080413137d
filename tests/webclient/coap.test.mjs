// Unit tests of the browser client's CoAP code (coaptcp/tap/web/coap.js), for node's built-in
// test runner:  node --test tests/webclient/
// Byte vectors were produced by the Python core (coaptcp.core.framing.encode_ws_frame), so
// the two implementations are checked against each other.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  COAP_SCHEMES,
  Code,
  CoapConnectionError,
  CoapFormatError,
  CoapUriError,
  CoapWebSocketClient,
  Option,
  PROXY_URI_MAX_LENGTH,
  codeDotted,
  codeText,
  decodeMessage,
  describeOptions,
  encodeMessage,
  encodeUint,
  formatPayload,
  getOption,
  getUintOption,
  parseLinkFormat,
  proxyUriValue,
  targetOptions,
  uriOptions,
} from "../../coaptcp/tap/web/coap.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const fromHex = (text) => Uint8Array.from(Buffer.from(text, "hex"));
const utf8 = (text) => new TextEncoder().encode(text);
const text = (bytes) => new TextDecoder().decode(bytes);

describe("encodeMessage matches the Python core", () => {
  test("CSM with Max-Message-Size", () => {
    assert.equal(hex(encodeMessage({ code: Code.CSM, options: [[2, 66048]] })), "00e123010200");
  });
  test("Abort with a diagnostic payload", () => {
    assert.equal(hex(encodeMessage({ code: Code.ABORT, payload: "bad" })), "00e5ff626164");
  });
  test("GET with Observe = 0, Uri-Path and Uri-Query, options given out of order", () => {
    const message = encodeMessage({
      code: Code.GET,
      token: Uint8Array.of(0, 0, 0, 1),
      options: [...uriOptions("/sensors/temp?u=Cel"), [Option.OBSERVE, 0]],
    });
    assert.equal(hex(message), "040100000001605773656e736f72730474656d7045753d43656c");
  });
  test("option delta needing one extended byte (No-Response 258)", () => {
    const message = encodeMessage({ code: Code.POST, options: [[258, 26]], payload: "x" });
    assert.equal(hex(message), "0002d1f51aff78");
  });
  test("option value needing two extended length bytes", () => {
    const message = encodeMessage({
      code: Code.PUT, token: Uint8Array.of(0xab), options: [[11, "a".repeat(300)]],
    });
    assert.equal(message.length, 306);
    assert.equal(hex(message.slice(0, 6)), "0103abbe001f");
  });
  test("response with Content-Format and payload", () => {
    const message = encodeMessage({
      code: Code.CONTENT, token: Uint8Array.of(7), options: [[12, 50]], payload: '{"a":1}',
    });
    assert.equal(hex(message), "014507c132ff7b2261223a317d");
  });
  test("Len is always 0 and tokens longer than 8 bytes are refused", () => {
    assert.equal(encodeMessage({ code: Code.GET, token: new Uint8Array(8) })[0], 0x08);
    assert.throws(() => encodeMessage({ code: Code.GET, token: new Uint8Array(9) }), RangeError);
  });
  test("repeated options keep their order", () => {
    const message = decodeMessage(encodeMessage({
      code: Code.GET, options: [[11, "b"], [15, "q"], [11, "c"]],
    }));
    assert.deepEqual(message.options.map(([n, v]) => [n, text(v)]),
      [[11, "b"], [11, "c"], [15, "q"]]);
  });
  test("uint encoding is minimal", () => {
    assert.deepEqual([...encodeUint(0)], []);
    assert.deepEqual([...encodeUint(255)], [255]);
    assert.deepEqual([...encodeUint(256)], [1, 0]);
    assert.deepEqual([...encodeUint(0xffffffff)], [255, 255, 255, 255]);
    assert.throws(() => encodeUint(-1), RangeError);
  });
});

describe("decodeMessage", () => {
  test("round trip of every vector", () => {
    for (const vector of ["00e123010200", "00e5ff626164", "0002d1f51aff78",
      "040100000001605773656e736f72730474656d7045753d43656c", "014507c132ff7b2261223a317d"]) {
      assert.equal(hex(encodeMessage(decodeMessage(fromHex(vector)))), vector);
    }
  });
  test("fields of a response", () => {
    const message = decodeMessage(fromHex("014507c132ff7b2261223a317d"));
    assert.equal(message.code, Code.CONTENT);
    assert.deepEqual([...message.token], [7]);
    assert.equal(getUintOption(message, Option.CONTENT_FORMAT), 50);
    assert.equal(text(message.payload), '{"a":1}');
  });
  const errors = [
    ["a lone byte", "00", /shorter than a CoAP header/],
    ["non-zero Len (TCP framing)", "3101aab1", /Len is 3/],
    ["TKL 9", "0901" + "00".repeat(9), /token length 9/],
    ["token cut short", "0401aabb", /inside the token/],
    ["reserved code class 1", "0020", /reserved class/],
    ["reserved code class 6", "00c0", /reserved class/],
    ["option delta nibble 15", "0001f1", /nibble 15/],
    ["payload marker without payload", "0001ff", /payload marker without a payload/],
    ["option past the end", "0001b5616263", /runs past the end/],
    ["extended delta cut short", "0001d1", /ends inside an option/],
  ];
  for (const [name, vector, pattern] of errors) {
    test(`rejects ${name}`, () => {
      assert.throws(() => decodeMessage(fromHex(vector)),
        (error) => error instanceof CoapFormatError && pattern.test(error.message));
    });
  }
});

describe("helpers", () => {
  test("codes", () => {
    assert.equal(codeDotted(0x45), "2.05");
    assert.equal(codeText(0x84), "4.04 Not Found");
    assert.equal(codeText(0xe5), "7.05 Abort");
    assert.equal(codeText(0x5e), "2.30");
  });
  test("uriOptions splits path and query and percent-decodes", () => {
    const options = uriOptions("/a%20b/c?x=1&y%3D2");
    assert.deepEqual(options.map(([n, v]) => [n, v]),
      [[11, "a b"], [11, "c"], [15, "x=1"], [15, "y=2"]]);
    assert.deepEqual(uriOptions("/"), []);
    assert.deepEqual(uriOptions(""), []);
    assert.deepEqual(uriOptions("hello"), [[11, "hello"]]);
  });
  test("describeOptions names request and signaling options", () => {
    const response = decodeMessage(fromHex("014507c132ff7b2261223a317d"));
    assert.deepEqual(describeOptions(response),
      [{ number: 12, name: "Content-Format", value: "50 (application/json)" }]);
    const csm = decodeMessage(fromHex("00e123010200"));
    assert.deepEqual(describeOptions(csm),
      [{ number: 2, name: "Max-Message-Size", value: "66048" }]);
    const get = decodeMessage(encodeMessage({ code: Code.GET, options: [[11, "x"], [6, 0], [99, Uint8Array.of(1)]] }));
    assert.deepEqual(describeOptions(get).map((o) => `${o.name}=${o.value}`),
      ["Observe=0", "Uri-Path=x", "Option 99=0x01"]);
  });
  test("formatPayload pretty-prints JSON and shows text or hex", () => {
    assert.deepEqual(formatPayload(utf8('{"a":[1,2]}'), 50),
      { kind: "json", text: '{\n  "a": [\n    1,\n    2\n  ]\n}' });
    assert.deepEqual(formatPayload(utf8("not json"), 50), { kind: "text", text: "not json" });
    assert.deepEqual(formatPayload(utf8("hi"), 0), { kind: "text", text: "hi" });
    assert.deepEqual(formatPayload(utf8("hi"), undefined), { kind: "text", text: "hi" });
    assert.deepEqual(formatPayload(Uint8Array.of(0xff, 0), 42), { kind: "binary", text: "ff00" });
    assert.deepEqual(formatPayload(new Uint8Array(0), 0), { kind: "empty", text: "" });
  });
  test("parseLinkFormat reads the demo server's /.well-known/core", () => {
    const links = parseLinkFormat(
      '</hello>;rt="demo.hello";ct=0;title="Greeting",</info>;rt="demo.info";ct=50;' +
      'title="Server information",</large>;rt="demo.large";ct=0;sz=4000;' +
      'title="A larger body",</store>;rt="demo.store";title="Read and write me"');
    assert.deepEqual(links.map((l) => l.href), ["/hello", "/info", "/large", "/store"]);
    assert.deepEqual(links[1].attributes, { rt: "demo.info", ct: "50", title: "Server information" });
  });
  test("parseLinkFormat handles quoted separators, flags and spaces", () => {
    const links = parseLinkFormat('</a>;title="x, y; z";obs, </b> ; if="s\\"q"');
    assert.deepEqual(links, [
      { href: "/a", attributes: { title: "x, y; z", obs: true } },
      { href: "/b", attributes: { if: 's"q' } },
    ]);
    assert.throws(() => parseLinkFormat("/a"), SyntaxError);
  });
});

// -- Proxy-Uri (RFC 7252 sections 3.1 and 5.10.2) ----------------------------------------

// An absolute URI of exactly `length` bytes, for the boundaries of the option length.
const longUri = (length) => {
  const base = "coap://127.0.0.1:5683/";
  return base + "a".repeat(length - base.length);
};

describe("Proxy-Uri encoding matches the Python core", () => {
  test("GET with Observe = 0 and a short Proxy-Uri", () => {
    const message = encodeMessage({
      code: Code.GET, token: Uint8Array.of(1, 2, 3, 4),
      options: targetOptions({ proxyUri: "coap://127.0.0.1:5683/time" }).concat([[Option.OBSERVE, 0]]),
    });
    // Observe: delta 6, length 0; Proxy-Uri: delta 29 = 13 + 0x10, length 26 = 13 + 0x0d.
    assert.equal(hex(message),
      "04010102030460dd100d" + hex(utf8("coap://127.0.0.1:5683/time")));
  });
  // [URI length, the bytes between the token and the URI]: delta 35 = 13 + 0x16 always;
  // the length nibble is 13 (one extended byte) up to 268, 14 (two bytes) from 269.
  const lengths = [
    [22, "dd1609"], [23, "dd160a"], [268, "dd16ff"], [269, "de160000"], [300, "de16001f"],
    [PROXY_URI_MAX_LENGTH, "de1602fd"],
  ];
  for (const [length, head] of lengths) {
    test(`a Proxy-Uri of ${length} bytes`, () => {
      const uri = longUri(length);
      const message = encodeMessage({ code: Code.GET, token: Uint8Array.of(7),
        options: targetOptions({ proxyUri: uri }) });
      assert.equal(hex(message), `010107${head}${hex(utf8(uri))}`);
      const [[number, value]] = decodeMessage(message).options;
      assert.deepEqual([number, text(value)], [Option.PROXY_URI, uri]);
    });
  }
  test("a long Proxy-Uri after Observe: an extended delta and a two-byte length", () => {
    const uri = longUri(300);
    const message = encodeMessage({ code: Code.GET, token: Uint8Array.of(7),
      options: [...targetOptions({ proxyUri: uri }), [Option.OBSERVE, 0]] });
    assert.equal(hex(message.slice(0, 8)), "01010760de10001f");
    assert.equal(message.length, 308);
  });
  test("PUT with Content-Format, a long Proxy-Uri and a payload", () => {
    const uri = longUri(300);
    const message = encodeMessage({ code: Code.PUT, token: Uint8Array.of(0xab),
      options: [...targetOptions({ proxyUri: uri }), [Option.CONTENT_FORMAT, 50]],
      payload: '{"a":1}' });
    // Content-Format: delta 12, length 1 (50); Proxy-Uri: delta 23 = 13 + 0x0a, 300 bytes.
    assert.equal(hex(message), `0103abc132de0a001f${hex(utf8(uri))}ff7b2261223a317d`);
  });
  test("options in number order: Observe 6, Hop-Limit 16, Block2 23, Proxy-Uri 35", () => {
    const uri = longUri(30);
    const proxied = targetOptions({ proxyUri: uri });
    const message = encodeMessage({ code: Code.GET, token: Uint8Array.of(7),
      options: [...proxied, [Option.BLOCK2, 2], [16, 16], [Option.OBSERVE, 0]] });
    assert.equal(hex(message), `01010760a1107102cd11${hex(utf8(uri))}`);
    // The page itself never adds a Hop-Limit: the proxy starts it (RFC 8768 section 3).
    const withoutHop = encodeMessage({ code: Code.GET, token: Uint8Array.of(7),
      options: [...proxied, [Option.BLOCK2, 2], [Option.OBSERVE, 0]] });
    assert.equal(hex(withoutHop), `01010760d10402cd11${hex(utf8(uri))}`);
    assert.deepEqual(decodeMessage(withoutHop).options.map(([n]) => n), [6, 23, 35]);
  });
  test("describeOptions shows Proxy-Uri as text", () => {
    const message = decodeMessage(encodeMessage({ code: Code.GET,
      options: targetOptions({ proxyUri: "coap+tcp://[::1]/a?b=c" }) }));
    assert.deepEqual(describeOptions(message),
      [{ number: 35, name: "Proxy-Uri", value: "coap+tcp://[::1]/a?b=c" }]);
  });
});

describe("proxyUriValue and targetOptions", () => {
  test("every CoAP scheme is accepted, its case folded", () => {
    for (const scheme of COAP_SCHEMES) {
      assert.equal(proxyUriValue(`${scheme.toUpperCase()}://h:1/x`), `${scheme}://h:1/x`);
    }
    assert.equal(proxyUriValue("  coap://127.0.0.1:5683/  "), "coap://127.0.0.1:5683/");
    assert.equal(proxyUriValue("coap://[fd00::17]"), "coap://[fd00::17]");
    assert.equal(proxyUriValue("coap://Host/%41?q=%7e"), "coap://Host/%41?q=%7e");
  });
  test("what may not appear in a URI is percent-encoded as UTF-8", () => {
    assert.equal(proxyUriValue("coap://h/a b/\u00fc?x=50%"), "coap://h/a%20b/%C3%BC?x=50%25");
  });
  const refused = [
    ["a path", "/time", /not an absolute URI/],
    ["no scheme", "127.0.0.1:5683/time", /scheme "127.0.0.1"|not an absolute URI/],
    ["another scheme", "http://h/", /scheme "http" is not one of coap, coaps/],
    ["no host", "coap:///time", /names no host/],
    ["only a port", "coap://:5683/x", /names no host/],
    ["no authority", "coap:time", /names no host/],
    ["a fragment", "coap://h/x#top", /no fragment/],
  ];
  for (const [name, uri, pattern] of refused) {
    test(`refuses ${name}`, () => {
      assert.throws(() => proxyUriValue(uri),
        (error) => error instanceof CoapUriError && pattern.test(error.message));
    });
  }
  test(`refuses more than ${PROXY_URI_MAX_LENGTH} bytes, counted after encoding`, () => {
    assert.equal(proxyUriValue(longUri(PROXY_URI_MAX_LENGTH)).length, PROXY_URI_MAX_LENGTH);
    assert.throws(() => proxyUriValue(longUri(PROXY_URI_MAX_LENGTH + 1)), /1035 bytes long/);
    const umlaut = "\u00fc"; // one character, six bytes as %C3%BC
    assert.equal(proxyUriValue(`${longUri(1028)}${umlaut}`).length, 1034);
    assert.throws(() => proxyUriValue(`${longUri(1029)}${umlaut}`), /1035 bytes long/);
  });
  test("Proxy-Uri replaces Uri-Path and Uri-Query; no Proxy-Uri keeps them", () => {
    assert.deepEqual(targetOptions({ path: "/a?x=1", proxyUri: "coap://h/b" }),
      [[Option.PROXY_URI, "coap://h/b"]]);
    for (const proxyUri of [undefined, null, "", "   "]) {
      assert.deepEqual(targetOptions({ path: "/a?x=1", proxyUri }), [[11, "a"], [15, "x=1"]]);
    }
  });
});

// -- the client, against a fake WebSocket -----------------------------------------------

class FakeWebSocket {
  static last = null;
  constructor(url, protocol) {
    this.url = url;
    this.requested = protocol;
    this.protocol = "";
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.last = this;
  }
  send(bytes) {
    this.sent.push(decodeMessage(bytes));
  }
  close(code, reason) {
    this.closedWith = { code, reason };
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? "" }));
  }
  // The test plays the server:
  accept(protocol = "coap") {
    this.protocol = protocol;
    this.onopen();
  }
  deliver(message) {
    const bytes = encodeMessage(message);
    this.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) });
  }
  take() {
    const sent = this.sent;
    this.sent = [];
    return sent;
  }
}

async function connected({ serverMms = 1152 } = {}) {
  const client = new CoapWebSocketClient("ws://test/.well-known/coap", { WebSocket: FakeWebSocket });
  const opening = client.connect();
  const ws = FakeWebSocket.last;
  ws.accept();
  await opening;
  ws.deliver({ code: Code.CSM, options: [[2, serverMms]] });
  return { client, ws };
}

describe("CoapWebSocketClient", () => {
  test("offers coap and sends its CSM first", async () => {
    const { client, ws } = await connected({ serverMms: 4096 });
    assert.equal(ws.requested, "coap");
    const [csm] = ws.take();
    assert.equal(csm.code, Code.CSM);
    assert.equal(getUintOption(csm, 2), 64 * 1024 + 512);
    assert.equal(client.peerMaxMessageSize, 4096);
  });

  test("refuses a server that does not select coap", async () => {
    const client = new CoapWebSocketClient("ws://x", { WebSocket: FakeWebSocket });
    const opening = client.connect();
    FakeWebSocket.last.accept("");
    await assert.rejects(opening, /did not select the WebSocket subprotocol "coap"/);
    assert.deepEqual(FakeWebSocket.last.sent, []);
  });

  test("request and response are matched by token", async () => {
    const { client, ws } = await connected();
    ws.take();
    const first = client.request({ method: "GET", path: "/hello" });
    const second = client.request({ method: "PUT", path: "/store", payload: '{"a":1}', contentFormat: 50 });
    const [get, put] = ws.take();
    assert.equal(get.code, Code.GET);
    assert.deepEqual(get.options.map(([n, v]) => [n, text(v)]), [[11, "hello"]]);
    assert.equal(put.code, Code.PUT);
    assert.equal(getUintOption(put, Option.CONTENT_FORMAT), 50);
    assert.equal(text(put.payload), '{"a":1}');
    assert.notEqual(hex(get.token), hex(put.token));
    ws.deliver({ code: 0x44, token: put.token });
    ws.deliver({ code: Code.CONTENT, token: get.token, payload: "Hello" });
    assert.equal(text((await first).payload), "Hello");
    assert.equal((await second).code, 0x44);
  });

  test("answers Ping with Pong of the same token and times its own pings", async () => {
    const { client, ws } = await connected();
    ws.take();
    ws.deliver({ code: Code.PING, token: Uint8Array.of(9, 9) });
    const [pong] = ws.take();
    assert.equal(pong.code, Code.PONG);
    assert.deepEqual([...pong.token], [9, 9]);
    const rtt = client.ping();
    assert.equal(ws.take()[0].code, Code.PING);
    ws.deliver({ code: Code.PONG });
    assert.ok((await rtt) >= 0);
  });

  test("aborts when the server's first message is not a CSM", async () => {
    const client = new CoapWebSocketClient("ws://x", { WebSocket: FakeWebSocket });
    const opening = client.connect();
    const ws = FakeWebSocket.last;
    ws.accept();
    await opening;
    const pending = client.request({ path: "/hello" });
    ws.take();
    ws.deliver({ code: Code.CONTENT, token: Uint8Array.of(1) });
    const [abort] = ws.take();
    assert.equal(abort.code, Code.ABORT);
    assert.match(text(abort.payload), /expected a CSM as the first message, got 2.05/);
    assert.equal(ws.closedWith.code, 1000);
    await assert.rejects(pending, CoapConnectionError);
  });

  test("aborts on a text message and on a malformed message", async () => {
    for (const data of ["hello", Uint8Array.of(0x31, 0x01, 0xaa, 0xb1, 0x61).buffer]) {
      const { ws } = await connected();
      ws.take();
      ws.onmessage({ data });
      const [abort] = ws.take();
      assert.equal(abort.code, Code.ABORT);
      assert.match(text(abort.payload), typeof data === "string" ? /text WebSocket message/ : /Len is 3/);
    }
  });

  test("answers requests from the server with 5.01", async () => {
    const { ws } = await connected();
    ws.take();
    ws.deliver({ code: Code.GET, token: Uint8Array.of(5), options: [[11, "x"]] });
    const [answer] = ws.take();
    assert.equal(answer.code, Code.NOT_IMPLEMENTED);
    assert.deepEqual([...answer.token], [5]);
  });

  test("Release from the server closes and fails what is pending", async () => {
    const { client, ws } = await connected();
    const closed = new Promise((resolve) => { client.onclose = resolve; });
    const pending = client.request({ path: "/slow" });
    ws.deliver({ code: Code.RELEASE, payload: "maintenance" });
    await assert.rejects(pending, /released the connection: maintenance/);
    assert.match((await closed).diagnostic, /maintenance/);
  });

  test("release sends Release and waits for the server to close", async () => {
    const { client, ws } = await connected();
    ws.take();
    const closed = new Promise((resolve) => { client.onclose = resolve; });
    client.release("bye", { timeoutMs: 60000 });
    const [release] = ws.take();
    assert.equal(release.code, Code.RELEASE);
    assert.equal(text(release.payload), "bye");
    assert.equal(ws.closedWith, null); // the server closes (RFC 8323 section 5.5)
    ws.onclose({ code: 1000, reason: "" });
    assert.equal((await closed).diagnostic, "we released the connection");
  });

  test("release closes by itself when the server never does", async () => {
    const { client, ws } = await connected();
    const closed = new Promise((resolve) => { client.onclose = resolve; });
    client.release("", { timeoutMs: 1 });
    assert.equal((await closed).diagnostic,
      "we released the connection; the server did not close it");
    assert.equal(ws.closedWith.code, 1000);
  });

  test("refuses a request larger than the server's Max-Message-Size", async () => {
    const { client } = await connected({ serverMms: 100 });
    await assert.rejects(client.request({ method: "POST", path: "/x", payload: "y".repeat(200) }),
      /exceeds the server's Max-Message-Size of 100 bytes/);
  });

  test("observe delivers each notification and cancels with Observe = 1", async () => {
    const { client, ws } = await connected();
    ws.take();
    const seen = [];
    const handle = await client.observe("/temp", (message, info) => seen.push([text(message.payload), info]));
    const [register] = ws.take();
    assert.equal(getUintOption(register, Option.OBSERVE), 0);
    for (const [sequence, value] of [[1, "20"], [2, "21"], [3, "22"]]) {
      ws.deliver({ code: Code.CONTENT, token: register.token, options: [[6, sequence]], payload: value });
    }
    assert.deepEqual(seen.map(([payload, info]) => [payload, info.index, info.final]),
      [["20", 1, false], ["21", 2, false], ["22", 3, false]]);
    const cancelled = handle.cancel();
    const [deregister] = ws.take();
    assert.equal(getUintOption(deregister, Option.OBSERVE), 1);
    assert.equal(hex(deregister.token), hex(register.token));
    assert.deepEqual(deregister.options.filter(([n]) => n === 11).map(([, v]) => text(v)), ["temp"]);
    ws.deliver({ code: Code.CONTENT, token: register.token, payload: "23" });
    assert.equal(text((await cancelled).payload), "23");
    assert.equal(seen.at(-1)[1].final, true);
  });

  test("observe of a resource that is not observable gets one final response", async () => {
    const { client, ws } = await connected();
    ws.take();
    const seen = [];
    await client.observe("/hello", (message, info) => seen.push(info));
    const [register] = ws.take();
    ws.deliver({ code: Code.CONTENT, token: register.token, payload: "Hello" });
    assert.deepEqual(seen, [{ index: 1, final: true, registered: false, deregistered: false }]);
    ws.deliver({ code: Code.CONTENT, token: register.token, payload: "late" });
    assert.equal(seen.length, 1);
  });

  test("closing fails pending requests and pings", async () => {
    const { client, ws } = await connected();
    const pending = client.request({ path: "/x" });
    const ping = client.ping();
    ws.onclose({ code: 1006, reason: "" });
    await assert.rejects(pending, /connection closed \(1006\)/);
    await assert.rejects(ping, CoapConnectionError);
    await assert.rejects(client.request({ path: "/y" }), /not connected/);
  });
});

describe("CoapWebSocketClient through the server's forward proxy", () => {
  const target = "coap://127.0.0.1:5683/example_data";

  test("requests carry Proxy-Uri and no Uri-Path or Uri-Query", async () => {
    const { client, ws } = await connected({ serverMms: 66048 });
    ws.take();
    const got = client.request({ method: "GET", path: "/ignored?q=1", proxyUri: target });
    const put = client.request({ method: "PUT", proxyUri: target, payload: "42", contentFormat: 0 });
    const gone = client.request({ method: "DELETE", proxyUri: target });
    const post = client.request({ method: "POST", proxyUri: longUri(1000), payload: "x" });
    const sent = ws.take();
    assert.deepEqual(sent.map((m) => m.code), [Code.GET, Code.PUT, Code.DELETE, Code.POST]);
    assert.deepEqual(sent[0].options.map(([n, v]) => [n, text(v)]), [[35, target]]);
    assert.deepEqual(sent[1].options.map(([n, v]) => [n, text(v)]), [[12, ""], [35, target]]);
    assert.equal(text(sent[1].payload), "42");
    assert.deepEqual(sent[2].options.map(([n]) => n), [35]);
    assert.equal(text(getOption(sent[3], 35)), longUri(1000));
    for (const [message, code] of [[sent[0], Code.CONTENT], [sent[1], 0x44], [sent[2], 0x42],
      [sent[3], 0x44]]) {
      ws.deliver({ code, token: message.token, payload: code === Code.CONTENT ? "data" : "" });
    }
    assert.equal(text((await got).payload), "data");
    assert.deepEqual([(await put).code, (await gone).code, (await post).code], [0x44, 0x42, 0x44]);
  });

  test("a URI that cannot be a Proxy-Uri rejects and sends nothing", async () => {
    const { client, ws } = await connected();
    ws.take();
    await assert.rejects(client.request({ proxyUri: "http://example.com/" }), CoapUriError);
    await assert.rejects(client.observe("/", () => {}, { proxyUri: "coap:///x" }), CoapUriError);
    assert.deepEqual(ws.take(), []);
  });

  test("a long Proxy-Uri counts against the server's Max-Message-Size", async () => {
    const { client, ws } = await connected({ serverMms: 1152 });
    ws.take();
    await assert.rejects(
      client.request({ method: "PUT", proxyUri: longUri(1034), payload: "y".repeat(200) }),
      /exceeds the server's Max-Message-Size of 1152 bytes/);
    assert.deepEqual(ws.take(), []);
  });

  test("observe registers and deregisters with the same Proxy-Uri and token", async () => {
    const { client, ws } = await connected();
    ws.take();
    const seen = [];
    const uri = "coap://127.0.0.1:5683/time";
    const infos = [];
    const handle = await client.observe("/ignored", (message, info) => {
      seen.push([text(message.payload), info.index, info.final]);
      infos.push(info);
    }, { proxyUri: uri });
    const [register] = ws.take();
    assert.deepEqual(register.options.map(([n, v]) => [n, n === 35 ? text(v) : [...v]]),
      [[6, []], [35, uri]]);
    ws.deliver({ code: Code.CONTENT, token: register.token, options: [[6, 2]], payload: "17:29:11" });
    ws.deliver({ code: Code.CONTENT, token: register.token, options: [[6, 3]], payload: "17:29:12" });
    const cancelled = handle.cancel();
    const [deregister] = ws.take();
    assert.equal(hex(deregister.token), hex(register.token));
    assert.deepEqual(deregister.options.map(([n, v]) => [n, n === 35 ? text(v) : [...v]]),
      [[6, [1]], [35, uri]]);
    ws.deliver({ code: Code.CONTENT, token: register.token, payload: "17:29:13" });
    await cancelled;
    assert.deepEqual(seen, [["17:29:11", 1, false], ["17:29:12", 2, false], ["17:29:13", 3, true]]);
    assert.deepEqual(infos.map((info) => info.deregistered), [false, false, true]);
  });
});
