// Unit tests of the browser as a CoAP server (coaptcp/tap/web/server.js through coap.js):
// requests from the server over the page's WebSocket (RFC 8323 section 3.3), Observe,
// Block2, the bounds, and the client's Block2 reassembly.  node --test tests/webclient/
// Byte vectors were produced by the Python core (coaptcp.core.framing.encode_ws_frame).

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import {
  Code,
  CoapWebSocketClient,
  Option,
  decodeBlock,
  encodeBlock,
  encodeMessage,
  getOption,
  getUintOption,
} from "../../coaptcp/tap/web/coap.js";
import { ResourceTable, ResponseCode, etagOf } from "../../coaptcp/tap/web/server.js";
import { FakeClock, FakeWebSocket, settle } from "./fakes.mjs";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const text = (bytes) => new TextDecoder().decode(bytes);
const path = (...segments) => segments.map((s) => [Option.URI_PATH, s]);

function clicksTable(limits) {
  const table = new ResourceTable({ limits });
  const state = { clicks: 0 };
  table.add("/clicks", {
    GET: () => ({ payload: String(state.clicks) }),
    POST: () => {
      state.clicks += 1;
      table.changed("/clicks");
      return { code: ResponseCode.CHANGED };
    },
    observable: true,
    attributes: { rt: "demo.clicks", ct: 0, title: "Clicks" },
  });
  return { table, state };
}

async function serving(table, { serverMms = 1152, clock = new FakeClock() } = {}) {
  const client = new CoapWebSocketClient("ws://test/.well-known/coap",
    { WebSocket: FakeWebSocket, resources: table, timers: clock });
  const warnings = [];
  client.onwarning = (warning) => warnings.push(warning);
  const opening = client.connect();
  const ws = FakeWebSocket.last;
  ws.accept();
  await opening;
  ws.csm(serverMms);
  ws.take(); // our CSM
  return { client, ws, clock, warnings };
}

async function ask(ws, message) {
  ws.deliver(message);
  await settle();
  return ws.take();
}

describe("server-side encoding matches the Python core", () => {
  test("a notification: 2.05, Observe 5, Content-Format 0, payload", () => {
    assert.equal(hex(encodeMessage({ code: Code.CONTENT, token: Uint8Array.of(7),
      options: [[Option.CONTENT_FORMAT, 0], [Option.OBSERVE, 5]], payload: "3" })),
    "014507610560ff33");
  });
  test("a first block: Observe, ETag, Block2 0/M/1024, Size2 3000", () => {
    const options = [[Option.SIZE2, 3000], [Option.BLOCK2, encodeBlock({ num: 0, more: true, szx: 6 })],
      [Option.CONTENT_FORMAT, 0], [Option.ETAG, Uint8Array.of(1, 2, 3, 4)], [Option.OBSERVE, 2]];
    assert.equal(hex(encodeMessage({ code: Code.CONTENT, token: Uint8Array.of(0xab, 0xcd), options,
      payload: "xxxx" })), "0245abcd4401020304210260b10e520bb8ff78787878");
  });
  test("block values", () => {
    assert.deepEqual(decodeBlock(0x0e), { num: 0, more: true, szx: 6 });
    assert.deepEqual(decodeBlock(0x36), { num: 3, more: false, szx: 6 });
    assert.equal(encodeBlock({ num: 300, more: true, szx: 2 }), 300 * 16 + 8 + 2);
  });
});

describe("answering requests from the server", () => {
  test("GET of a served resource: 2.05 with its Content-Format and the token echoed", async () => {
    const { table } = clicksTable();
    const { ws } = await serving(table);
    ws.deliverBytes(Uint8Array.from(Buffer.from("0101096056636c69636b73", "hex"))); // GET /clicks Observe 0
    await settle();
    const [answer] = ws.take();
    assert.equal(answer.code, Code.CONTENT);
    assert.deepEqual([...answer.token], [9]);
    assert.equal(getUintOption(answer, Option.CONTENT_FORMAT), 0);
    assert.equal(getUintOption(answer, Option.OBSERVE), 2);
    assert.equal(text(answer.payload), "0");
  });

  test("unknown paths get 4.04 and methods not handled 4.05, with diagnostics", async () => {
    const { table } = clicksTable();
    const { ws } = await serving(table);
    const [missing] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path("nope") });
    assert.equal(missing.code, ResponseCode.NOT_FOUND);
    assert.equal(text(missing.payload), "no resource at /nope");
    const [put] = await ask(ws, { code: Code.PUT, token: Uint8Array.of(2), options: path("clicks"), payload: "9" });
    assert.equal(put.code, ResponseCode.METHOD_NOT_ALLOWED);
    assert.equal(text(put.payload), "PUT is not allowed on /clicks");
  });

  test("a handler may answer with just a payload, or nothing", async () => {
    const table = new ResourceTable();
    table.add("/s", { GET: () => "plain", DELETE: () => undefined });
    const { ws } = await serving(table);
    const [got] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path("s") });
    assert.deepEqual([got.code, text(got.payload), getUintOption(got, Option.CONTENT_FORMAT)], [Code.CONTENT, "plain", 0]);
    const [deleted] = await ask(ws, { code: Code.DELETE, token: Uint8Array.of(2), options: path("s") });
    assert.deepEqual([deleted.code, deleted.payload.length], [ResponseCode.DELETED, 0]);
  });

  test("POST runs its handler; default code 2.04 Changed", async () => {
    const { table, state } = clicksTable();
    const { ws } = await serving(table);
    const [changed] = await ask(ws, { code: Code.POST, token: Uint8Array.of(3), options: path("clicks") });
    assert.equal(changed.code, ResponseCode.CHANGED);
    assert.equal(state.clicks, 1);
  });

  test("unsupported critical options get 4.02, Proxy-Uri 5.05, a wrong Accept 4.06", async () => {
    const { table } = clicksTable();
    const { ws } = await serving(table);
    for (const number of [Option.BLOCK1, Option.IF_MATCH, 9]) {
      const [bad] = await ask(ws, { code: Code.GET, token: Uint8Array.of(4),
        options: [...path("clicks"), [number, 0]] });
      assert.equal(bad.code, ResponseCode.BAD_OPTION, `option ${number}`);
    }
    const [proxy] = await ask(ws, { code: Code.GET, token: Uint8Array.of(5),
      options: [[Option.PROXY_URI, "coap://h/x"]] });
    assert.equal(proxy.code, ResponseCode.PROXYING_NOT_SUPPORTED);
    const [accept] = await ask(ws, { code: Code.GET, token: Uint8Array.of(6),
      options: [...path("clicks"), [Option.ACCEPT, 50]] });
    assert.equal(accept.code, ResponseCode.NOT_ACCEPTABLE);
  });

  test("/.well-known/core lists the resources, with obs, and filters", async () => {
    const { table } = clicksTable();
    table.add("/hello", { GET: () => ({ payload: "hi" }), attributes: { rt: "demo.hello" } });
    const { ws } = await serving(table);
    const [all] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path(".well-known", "core") });
    assert.equal(getUintOption(all, Option.CONTENT_FORMAT), 40);
    assert.equal(text(all.payload),
      '</clicks>;rt="demo.clicks";ct=0;title="Clicks";obs,</hello>;rt="demo.hello"');
    const [some] = await ask(ws, { code: Code.GET, token: Uint8Array.of(2),
      options: [...path(".well-known", "core"), [Option.URI_QUERY, "rt=demo.h*"]] });
    assert.equal(text(some.payload), '</hello>;rt="demo.hello"');
    assert.equal(table.linkFormat(), '</clicks>;rt="demo.clicks";ct=0;title="Clicks";obs,</hello>;rt="demo.hello"');
  });

  test("a handler that throws or rejects gets 5.00 and a warning", async () => {
    const table = new ResourceTable();
    table.add("/boom", { GET: () => { throw new Error("kaput"); }, PUT: async () => { throw new Error("later"); } });
    const { ws, warnings } = await serving(table);
    const [thrown] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path("boom") });
    assert.equal(thrown.code, ResponseCode.INTERNAL_SERVER_ERROR);
    const [rejected] = await ask(ws, { code: Code.PUT, token: Uint8Array.of(2), options: path("boom") });
    assert.equal(rejected.code, ResponseCode.INTERNAL_SERVER_ERROR);
    assert.deepEqual(warnings, ["handler for GET /boom failed: kaput", "handler for PUT /boom failed: later"]);
  });

  test("a handler that never answers gets 5.00 after the handler timeout", async () => {
    const table = new ResourceTable({ limits: { handlerTimeoutMs: 5000 } });
    table.add("/hang", { GET: () => new Promise(() => {}) });
    const { ws, clock } = await serving(table);
    assert.deepEqual(await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path("hang") }), []);
    clock.advance(4999);
    await settle();
    assert.deepEqual(ws.take(), []);
    clock.advance(1);
    await settle();
    const [late] = ws.take();
    assert.equal(late.code, ResponseCode.INTERNAL_SERVER_ERROR);
    assert.match(text(late.payload), /did not answer within 5000 ms/);
  });

  test("without a table, requests from the server still get 5.01", async () => {
    const client = new CoapWebSocketClient("ws://x", { WebSocket: FakeWebSocket });
    const opening = client.connect();
    FakeWebSocket.last.accept();
    await opening;
    const ws = FakeWebSocket.last;
    ws.csm();
    ws.take();
    const [answer] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path("x") });
    assert.equal(answer.code, Code.NOT_IMPLEMENTED);
  });
});

describe("bounds", () => {
  test("requests beyond maxInFlight get 5.03 with Max-Age, logged once; then served again", async () => {
    const table = new ResourceTable({ limits: { maxInFlight: 3, busyMaxAge: 2 } });
    const waiting = [];
    table.add("/slow", { GET: () => new Promise((resolve) => waiting.push(resolve)) });
    const { ws, warnings } = await serving(table);
    for (let i = 0; i < 3; i += 1) ws.deliver({ code: Code.GET, token: Uint8Array.of(i), options: path("slow") });
    await settle();
    assert.deepEqual(ws.take(), []);
    for (let i = 3; i < 50; i += 1) ws.deliver({ code: Code.GET, token: Uint8Array.of(i), options: path("slow") });
    await settle();
    const busy = ws.take();
    assert.equal(busy.length, 47);
    assert.ok(busy.every((m) => m.code === ResponseCode.SERVICE_UNAVAILABLE && getUintOption(m, Option.MAX_AGE) === 2));
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /more than 3 requests in flight/);
    for (const resolve of waiting.splice(0)) resolve({ payload: "done" });
    await settle();
    assert.deepEqual(ws.take().map((m) => [m.token[0], text(m.payload)]), [[0, "done"], [1, "done"], [2, "done"]]);
    ws.deliver({ code: Code.GET, token: Uint8Array.of(99), options: path("slow") });
    await settle();
    assert.equal(waiting.length, 1); // a slot was free again
  });

  test("a request payload over maxRequestPayload gets 4.13 with Size1", async () => {
    const table = new ResourceTable({ limits: { maxRequestPayload: 100 } });
    let called = false;
    table.add("/in", { PUT: () => { called = true; } });
    const { ws } = await serving(table);
    const [answer] = await ask(ws, { code: Code.PUT, token: Uint8Array.of(1), options: path("in"), payload: "x".repeat(101) });
    assert.equal(answer.code, ResponseCode.REQUEST_ENTITY_TOO_LARGE);
    assert.equal(getUintOption(answer, Option.SIZE1), 100);
    assert.equal(called, false);
  });

  test("a message over our Max-Message-Size aborts the connection", async () => {
    const client = new CoapWebSocketClient("ws://x", { WebSocket: FakeWebSocket, maxMessageSize: 2000,
      resources: new ResourceTable() });
    const opening = client.connect();
    const ws = FakeWebSocket.last;
    ws.accept();
    await opening;
    ws.csm();
    ws.take();
    ws.deliver({ code: Code.PUT, token: Uint8Array.of(1), options: path("x"), payload: "y".repeat(2000) });
    const [abort] = ws.take();
    assert.equal(abort.code, Code.ABORT);
    assert.match(text(abort.payload), /a message of 2006 bytes exceeds our Max-Message-Size of 2000 bytes/);
    assert.equal(ws.closedWith.code, 1000);
  });

  test("observers beyond maxObservers are answered without Observe", async () => {
    const { table } = clicksTable({ maxObservers: 2 });
    const { ws, warnings } = await serving(table);
    const answers = [];
    for (let i = 1; i <= 4; i += 1) {
      answers.push(...await ask(ws, { code: Code.GET, token: Uint8Array.of(i),
        options: [...path("clicks"), [Option.OBSERVE, 0]] }));
    }
    assert.deepEqual(answers.map((m) => getOption(m, Option.OBSERVE) !== undefined), [true, true, false, false]);
    assert.equal(table.observerCount("/clicks"), 2);
    assert.equal(warnings.length, 1);
    table.changed("/clicks");
    await settle();
    assert.deepEqual(ws.take().map((m) => m.token[0]), [1, 2]);
  });
});

describe("Observe on served resources", () => {
  test("notifications carry increasing Observe numbers; Observe = 1 deregisters", async () => {
    const { table, state } = clicksTable();
    const { ws } = await serving(table);
    const token = Uint8Array.of(0xaa, 1);
    const [first] = await ask(ws, { code: Code.GET, token, options: [...path("clicks"), [Option.OBSERVE, 0]] });
    const numbers = [getUintOption(first, Option.OBSERVE)];
    for (let i = 0; i < 3; i += 1) {
      state.clicks += 1;
      table.changed("/clicks");
      await settle();
      const [note] = ws.take();
      assert.equal(hex(note.token), "aa01");
      assert.equal(text(note.payload), String(state.clicks));
      numbers.push(getUintOption(note, Option.OBSERVE));
    }
    assert.deepEqual(numbers, [2, 3, 4, 5]);
    const [last] = await ask(ws, { code: Code.GET, token, options: [...path("clicks"), [Option.OBSERVE, 1]] });
    assert.equal(last.code, Code.CONTENT);
    assert.equal(getOption(last, Option.OBSERVE), undefined);
    table.changed("/clicks");
    await settle();
    assert.deepEqual(ws.take(), []);
    assert.equal(table.observerCount("/clicks"), 0);
  });

  test("changes while a notification is computed fold into one more", async () => {
    const table = new ResourceTable();
    const waiting = [];
    table.add("/v", { GET: () => new Promise((resolve) => waiting.push(resolve)), observable: true });
    const { ws } = await serving(table);
    ws.deliver({ code: Code.GET, token: Uint8Array.of(1), options: [...path("v"), [Option.OBSERVE, 0]] });
    await settle();
    waiting.shift()({ payload: "0" });
    await settle();
    ws.take();
    for (let i = 0; i < 5; i += 1) table.changed("/v");
    assert.equal(waiting.length, 1);
    waiting.shift()({ payload: "1" });
    await settle();
    assert.equal(waiting.length, 1); // the folded change
    waiting.shift()({ payload: "5" });
    await settle();
    assert.deepEqual(ws.take().map((m) => text(m.payload)), ["1", "5"]);
  });

  test("a GET that is not observable, or not GET, registers nothing", async () => {
    const table = new ResourceTable();
    table.add("/plain", { GET: () => ({ payload: "p" }), POST: () => ({}) });
    const { ws } = await serving(table);
    const [plain] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: [...path("plain"), [Option.OBSERVE, 0]] });
    assert.equal(getOption(plain, Option.OBSERVE), undefined);
    assert.equal(table.observerCount("/plain"), 0);
  });

  test("an error notification ends the observation; removing the resource sends 4.04", async () => {
    const table = new ResourceTable();
    let fail = false;
    table.add("/a", { GET: () => (fail ? { code: 0xa3, payload: "down" } : { payload: "ok" }), observable: true });
    table.add("/b", { GET: () => ({ payload: "b" }), observable: true });
    const { ws } = await serving(table);
    await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: [...path("a"), [Option.OBSERVE, 0]] });
    await ask(ws, { code: Code.GET, token: Uint8Array.of(2), options: [...path("b"), [Option.OBSERVE, 0]] });
    fail = true;
    table.changed("/a");
    await settle();
    const [ended] = ws.take();
    assert.equal(ended.code, 0xa3);
    assert.equal(getOption(ended, Option.OBSERVE), undefined);
    assert.equal(table.observerCount("/a"), 0);
    table.remove("/b");
    const [gone] = ws.take();
    assert.equal(gone.code, ResponseCode.NOT_FOUND);
    assert.equal(table.observerCount("/b"), 0);
  });

  test("observations end with the connection (RFC 8323 section 3.4)", async () => {
    const { table } = clicksTable();
    const { ws } = await serving(table);
    await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: [...path("clicks"), [Option.OBSERVE, 0]] });
    assert.equal(table.observerCount("/clicks"), 1);
    ws.drop();
    assert.equal(table.observerCount("/clicks"), 0);
    table.changed("/clicks");
    await settle();
    assert.deepEqual(ws.take(), []);
  });
});

describe("Block2 for large representations", () => {
  const body = Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) % 251);
  const bigTable = () => {
    const table = new ResourceTable();
    table.add("/big", { GET: () => ({ payload: body, contentFormat: 42 }), observable: true });
    return table;
  };

  test("a response over the peer's Max-Message-Size is sent as block 0 with Size2 and an ETag", async () => {
    const { ws } = await serving(bigTable(), { serverMms: 1152 });
    const [first] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: path("big") });
    assert.deepEqual(decodeBlock(getUintOption(first, Option.BLOCK2)), { num: 0, more: true, szx: 6 });
    assert.equal(getUintOption(first, Option.SIZE2), 3000);
    assert.equal(hex(getOption(first, Option.ETAG)), hex(etagOf(body)));
    assert.deepEqual([...first.payload], [...body.subarray(0, 1024)]);
    const [second] = await ask(ws, { code: Code.GET, token: Uint8Array.of(2),
      options: [...path("big"), [Option.BLOCK2, encodeBlock({ num: 2, szx: 6 })]] });
    assert.deepEqual(decodeBlock(getUintOption(second, Option.BLOCK2)), { num: 2, more: false, szx: 6 });
    assert.deepEqual([...second.payload], [...body.subarray(2048)]);
    assert.equal(getOption(second, Option.SIZE2), undefined);
  });

  test("the block size asked for, a smaller one when the peer needs it, and BERT as 1024", async () => {
    const { ws } = await serving(bigTable(), { serverMms: 300 });
    const [small] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1),
      options: [...path("big"), [Option.BLOCK2, encodeBlock({ num: 5, szx: 2 })]] });
    assert.deepEqual(decodeBlock(getUintOption(small, Option.BLOCK2)), { num: 5, more: true, szx: 2 });
    assert.deepEqual([...small.payload], [...body.subarray(320, 384)]);
    const [reduced] = await ask(ws, { code: Code.GET, token: Uint8Array.of(2), options: path("big") });
    assert.deepEqual(decodeBlock(getUintOption(reduced, Option.BLOCK2)), { num: 0, more: true, szx: 4 });
    assert.ok(encodeMessage(reduced).length <= 300);
    const [scaled] = await ask(ws, { code: Code.GET, token: Uint8Array.of(3),
      options: [...path("big"), [Option.BLOCK2, encodeBlock({ num: 1, szx: 7 })]] });
    assert.deepEqual(decodeBlock(getUintOption(scaled, Option.BLOCK2)), { num: 4, more: true, szx: 4 });
    assert.deepEqual([...scaled.payload], [...body.subarray(1024, 1280)]);
  });

  test("a block past the end gets 4.02", async () => {
    const { ws } = await serving(bigTable());
    const [past] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1),
      options: [...path("big"), [Option.BLOCK2, encodeBlock({ num: 3, szx: 6 })]] });
    assert.equal(past.code, ResponseCode.BAD_OPTION);
    assert.match(text(past.payload), /past the end of the 3000-byte representation/);
  });

  test("a large notification sends its first block, with Observe (RFC 7959 section 2.6)", async () => {
    const table = bigTable();
    const { ws } = await serving(table);
    const [first] = await ask(ws, { code: Code.GET, token: Uint8Array.of(1), options: [...path("big"), [Option.OBSERVE, 0]] });
    assert.equal(getUintOption(first, Option.OBSERVE), 2);
    table.changed("/big");
    await settle();
    const [note] = ws.take();
    assert.equal(getUintOption(note, Option.OBSERVE), 3);
    assert.deepEqual(decodeBlock(getUintOption(note, Option.BLOCK2)), { num: 0, more: true, szx: 6 });
  });

  test("a large response to POST, which is not block-wise here, is a 5.00 with a reason", async () => {
    const table = new ResourceTable();
    table.add("/p", { POST: () => ({ payload: "z".repeat(2000) }) });
    const { ws } = await serving(table);
    const [answer] = await ask(ws, { code: Code.POST, token: Uint8Array.of(1), options: path("p") });
    assert.equal(answer.code, ResponseCode.INTERNAL_SERVER_ERROR);
    assert.match(text(answer.payload), /does not fit the peer's Max-Message-Size of 1152 bytes/);
  });
});

describe("the client reassembles Block2 responses", () => {
  async function plainClient(options = {}) {
    const client = new CoapWebSocketClient("ws://x", { WebSocket: FakeWebSocket, ...options });
    const opening = client.connect();
    const ws = FakeWebSocket.last;
    ws.accept();
    await opening;
    ws.csm(66048);
    ws.take();
    return { client, ws };
  }
  const body = Uint8Array.from({ length: 2500 }, (_, i) => i % 256);
  const block = (token, num, { etag = Uint8Array.of(9), observe } = {}) => ({
    code: Code.CONTENT, token,
    options: [[Option.BLOCK2, encodeBlock({ num, more: (num + 1) * 1024 < body.length, szx: 6 })],
      [Option.ETAG, etag], ...(observe === undefined ? [] : [[Option.OBSERVE, observe]])],
    payload: body.subarray(num * 1024, (num + 1) * 1024),
  });

  test("GET fetches every next block with the same options and resolves with the whole body", async () => {
    const { client, ws } = await plainClient();
    const reply = client.request({ path: "/big?x=1" });
    const [get0] = ws.take();
    ws.deliver(block(get0.token, 0));
    const [get1] = ws.take();
    assert.deepEqual(get1.options.filter(([n]) => n === 11 || n === 15).map(([n, v]) => [n, text(v)]),
      [[11, "big"], [15, "x=1"]]);
    assert.deepEqual(decodeBlock(getUintOption(get1, Option.BLOCK2)), { num: 1, more: false, szx: 6 });
    ws.deliver(block(get1.token, 1));
    const [get2] = ws.take();
    ws.deliver(block(get2.token, 2));
    const whole = await reply;
    assert.deepEqual([...whole.payload], [...body]);
    assert.equal(getOption(whole, Option.BLOCK2), undefined);
  });

  test("a new ETag midway fails the request", async () => {
    const { client, ws } = await plainClient();
    const reply = client.request({ path: "/big" });
    ws.deliver(block(ws.take()[0].token, 0));
    ws.deliver(block(ws.take()[0].token, 1, { etag: Uint8Array.of(8) }));
    await assert.rejects(reply, /representation changed during the block-wise transfer/);
  });

  test("a body over maxBodySize is not reassembled", async () => {
    const { client, ws } = await plainClient({ maxBodySize: 2000 });
    const reply = client.request({ path: "/big" });
    ws.deliver(block(ws.take()[0].token, 0));
    ws.deliver(block(ws.take()[0].token, 1));
    await assert.rejects(reply, /the body exceeds 2000 bytes/);
  });

  test("a block-wise notification is delivered whole, the rest fetched without Observe", async () => {
    const { client, ws } = await plainClient();
    const seen = [];
    await client.observe("/big", (message, info) => seen.push([message.payload.length, info.index]));
    const [register] = ws.take();
    ws.deliver(block(register.token, 0, { observe: 7 }));
    const [get1] = ws.take();
    assert.equal(getOption(get1, Option.OBSERVE), undefined);
    ws.deliver(block(get1.token, 1));
    const [get2] = ws.take();
    ws.deliver(block(get2.token, 2));
    await settle();
    assert.deepEqual(seen, [[2500, 1]]);
  });
});
