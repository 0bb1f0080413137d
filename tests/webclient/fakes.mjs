// Test doubles for the browser modules: a WebSocket the test plays the server of, and a
// clock whose timers run only when the test advances it (no real sleeps).

import { Code, decodeMessage, encodeMessage } from "../../coaptcp/tap/web/coap.js";

export class FakeWebSocket {
  static all = [];
  static get last() {
    return FakeWebSocket.all.at(-1);
  }
  constructor(url, protocol) {
    this.url = url;
    this.requested = protocol;
    this.protocol = "";
    this.sent = [];
    this.closedWith = null;
    FakeWebSocket.all.push(this);
  }
  send(bytes) {
    this.sent.push(decodeMessage(bytes));
  }
  close(code, reason) {
    if (this.closedWith) return;
    this.closedWith = { code, reason };
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? "" }));
  }
  // The test plays the server:
  accept(protocol = "coap") {
    this.protocol = protocol;
    this.onopen();
  }
  refuse() {
    this.onerror?.({});
    this.onclose?.({ code: 1006, reason: "" });
  }
  drop() {
    this.closedWith = { code: 1006 };
    this.onclose?.({ code: 1006, reason: "" });
  }
  deliver(message) {
    this.deliverBytes(encodeMessage(message));
  }
  deliverBytes(bytes) {
    this.onmessage({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) });
  }
  csm(maxMessageSize = 1152) {
    this.deliver({ code: Code.CSM, options: [[2, maxMessageSize]] });
  }
  take() {
    const sent = this.sent;
    this.sent = [];
    return sent;
  }
}

/** setTimeout/clearTimeout on a clock the test moves with advance(ms). */
export class FakeClock {
  constructor() {
    this.now = 0;
    this._timers = new Map();
    this._next = 1;
  }
  setTimeout = (fn, ms = 0) => {
    const id = this._next++;
    this._timers.set(id, { at: this.now + ms, fn });
    return id;
  };
  clearTimeout = (id) => {
    this._timers.delete(id);
  };
  pending() {
    return [...this._timers.values()].map((t) => t.at - this.now).sort((a, b) => a - b);
  }
  advance(ms) {
    const end = this.now + ms;
    for (;;) {
      let first = null;
      for (const [id, timer] of this._timers) {
        if (timer.at <= end && (first === null || timer.at < first[1].at)) first = [id, timer];
      }
      if (first === null) break;
      this._timers.delete(first[0]);
      this.now = first[1].at;
      first[1].fn();
    }
    this.now = end;
  }
}

/** Let promise callbacks and microtasks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}
