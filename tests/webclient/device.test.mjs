// Unit tests of the browser as a registered device (coaptcp/tap/web/device.js): RFC 9176
// registration and updates, back-off and reconnects, re-registration and re-observation.
// The WebSocket and the clock are fakes (fakes.mjs): no real sleeps.

import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { Code, Option, getUintOption } from "../../coaptcp/tap/web/coap.js";
import { Backoff, CoapDevice, DeviceState } from "../../coaptcp/tap/web/device.js";
import { ResourceTable } from "../../coaptcp/tap/web/server.js";
import { FakeClock, FakeWebSocket, settle } from "./fakes.mjs";

const text = (bytes) => new TextDecoder().decode(bytes);
const strings = (message, number) =>
  message.options.filter(([n]) => n === number).map(([, v]) => text(v));

function table() {
  const resources = new ResourceTable();
  resources.add("/clicks", { GET: () => ({ payload: "0" }), observable: true, attributes: { rt: "demo.clicks" } });
  return resources;
}

function makeDevice(options = {}) {
  const clock = new FakeClock();
  const states = [];
  const device = new CoapDevice("ws://test/.well-known/coap", {
    endpoint: "browser1", resources: table(), WebSocket: FakeWebSocket, timers: clock,
    now: () => clock.now, random: () => 0.5, ...options,
  });
  device.onstate = (info) => states.push(info);
  return { device, clock, states };
}

// Open the connection the device asked for, exchange CSMs; returns the POST /rd.
async function acceptConnection() {
  const ws = FakeWebSocket.last;
  ws.accept();
  await settle();
  ws.csm(66048);
  await settle();
  const sent = ws.take();
  assert.equal(sent[0].code, Code.CSM);
  return { ws, post: sent[1] };
}

function created(ws, post, key = "k1") {
  ws.deliver({ code: 0x41, token: post.token, options: [[Option.LOCATION_PATH, "rd"], [Option.LOCATION_PATH, key]] });
}

describe("CoapDevice", () => {
  test("registers with ep, lt and its links in link-format, then is registered", async () => {
    const { device, states } = makeDevice();
    device.start();
    const { ws, post } = await acceptConnection();
    assert.equal(post.code, Code.POST);
    assert.deepEqual(strings(post, Option.URI_PATH), ["rd"]);
    assert.deepEqual(strings(post, Option.URI_QUERY), ["ep=browser1", "lt=120"]);
    assert.equal(getUintOption(post, Option.CONTENT_FORMAT), 40);
    assert.equal(text(post.payload), '</clicks>;rt="demo.clicks";obs');
    created(ws, post);
    await settle();
    assert.equal(device.state, DeviceState.REGISTERED);
    assert.equal(device.location, "/rd/k1");
    assert.deepEqual(states.map((s) => s.state), ["connecting", "registering", "registered"]);
  });

  test("updates at three quarters of the lifetime; a 4.04 makes it register anew", async () => {
    const { device, clock } = makeDevice({ lifetime: 100 });
    device.start();
    const { ws, post } = await acceptConnection();
    created(ws, post);
    await settle();
    clock.advance(74999);
    assert.deepEqual(ws.take(), []);
    clock.advance(1);
    const [update] = ws.take();
    assert.deepEqual(strings(update, Option.URI_PATH), ["rd", "k1"]);
    assert.equal(update.payload.length, 0);
    ws.deliver({ code: 0x44, token: update.token });
    await settle();
    clock.advance(75000);
    const [second] = ws.take();
    ws.deliver({ code: 0x84, token: second.token });
    await settle();
    const [again] = ws.take();
    assert.deepEqual(strings(again, Option.URI_PATH), ["rd"]);
    assert.equal(device.state, DeviceState.REGISTERING);
  });

  test("a lost connection: jittered exponential back-off, reconnect, register and observe again", async () => {
    const { device, clock, states } = makeDevice({ backoff: { initialMs: 1000, maxMs: 8000 } });
    const seen = [];
    device.observe("/time", (message) => seen.push(text(message.payload)));
    device.start();
    let { ws, post } = await acceptConnection();
    created(ws, post);
    await settle();
    const [observe] = ws.take();
    assert.equal(getUintOption(observe, Option.OBSERVE), 0);
    ws.deliver({ code: 0x45, token: observe.token, options: [[Option.OBSERVE, 2]], payload: "t1" });
    ws.drop();
    await settle();
    assert.equal(device.state, DeviceState.WAITING);
    const delays = [states.at(-1).retryInMs];
    for (let i = 0; i < 4; i += 1) { // refused four times
      const before = FakeWebSocket.all.length;
      clock.advance(delays.at(-1));
      assert.equal(FakeWebSocket.all.length, before + 1);
      FakeWebSocket.last.refuse();
      await settle();
      delays.push(states.at(-1).retryInMs);
    }
    assert.deepEqual(delays, [750, 1500, 3000, 6000, 6000]); // random 0.5, jitter 0.5, cap 8 s
    clock.advance(6000);
    ({ ws, post } = await acceptConnection());
    created(ws, post, "k2");
    await settle();
    assert.equal(device.location, "/rd/k2");
    assert.equal(device.registrations, 2);
    const [again] = ws.take();
    assert.equal(getUintOption(again, Option.OBSERVE), 0);
    assert.deepEqual(strings(again, Option.URI_PATH), ["time"]);
    ws.deliver({ code: 0x45, token: again.token, options: [[Option.OBSERVE, 9]], payload: "t2" });
    assert.deepEqual(seen, ["t1", "t2"]);
  });

  test("a 5.03 registration is retried after its Max-Age", async () => {
    const { device, clock } = makeDevice();
    device.start();
    const { ws, post } = await acceptConnection();
    ws.deliver({ code: 0xa3, token: post.token, options: [[Option.MAX_AGE, 30]], payload: "full" });
    await settle();
    assert.equal(device.state, DeviceState.WAITING);
    assert.equal(device.lastError, "5.03 Service Unavailable: full");
    clock.advance(29999);
    assert.deepEqual(ws.take(), []);
    clock.advance(1);
    assert.deepEqual(strings(ws.take()[0], Option.URI_PATH), ["rd"]);
  });

  test("changed links are sent as an update with the new link-format", async () => {
    const { device } = makeDevice();
    device.start();
    const { ws, post } = await acceptConnection();
    created(ws, post);
    await settle();
    device.resources.add("/name", { GET: () => ({ payload: "b" }) });
    const [update] = ws.take();
    assert.deepEqual(strings(update, Option.URI_PATH), ["rd", "k1"]);
    assert.equal(text(update.payload), '</clicks>;rt="demo.clicks";obs,</name>');
  });

  test("stop deletes the registration, releases, and does not reconnect", async () => {
    const { device, clock } = makeDevice();
    device.start();
    const { ws, post } = await acceptConnection();
    created(ws, post);
    await settle();
    const count = FakeWebSocket.all.length;
    device.stop();
    const [del, release] = ws.take();
    assert.equal(del.code, Code.DELETE);
    assert.deepEqual(strings(del, Option.URI_PATH), ["rd", "k1"]);
    assert.equal(release.code, Code.RELEASE);
    ws.drop();
    clock.advance(600000);
    assert.equal(FakeWebSocket.all.length, count);
    assert.equal(device.state, DeviceState.STOPPED);
  });

  test("bad parameters are refused at once", () => {
    assert.throws(() => makeDevice({ endpoint: "x".repeat(64) }), /1 to 63 bytes/);
    assert.throws(() => makeDevice({ lifetime: 0 }), /lifetime/);
    assert.throws(() => new Backoff({ factor: 0.5 }), /factor/);
  });
});
