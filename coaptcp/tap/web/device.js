// The browser as a device that calls in: it keeps a CoAP-over-WebSockets connection open,
// serves its ResourceTable over it (RFC 8323 section 3.3), registers with the server's
// resource directory (RFC 9176 section 5), updates the registration before its lifetime
// ends (section 5.3.1), and after a lost connection reconnects with jittered exponential
// back-off, registers again and observes again what it observed.  This is RFC 8323
// section 4's third configuration: a CoAP server in a web browser, reachable through the
// WebSocket server acting as a reverse proxy.
//
//   const device = new CoapDevice("ws://host/.well-known/coap", { endpoint: "browser1",
//     resources: table });
//   device.onstate = (info) => show(info.state);
//   device.start();

import {
  Code,
  ContentFormat,
  CoapWebSocketClient,
  Option,
  codeText,
} from "./coap.js";

const decoder = new TextDecoder();

/** The states a device reports through onstate({state, ...}). */
export const DeviceState = Object.freeze({
  IDLE: "idle", // not started
  CONNECTING: "connecting", // opening the WebSocket
  REGISTERING: "registering", // POST /rd sent
  REGISTERED: "registered", // 2.01 received; updates follow
  WAITING: "waiting", // connection lost or refused: retrying after a back-off
  STOPPED: "stopped", // stop() was called
});

/**
 * Jittered exponential back-off, as coaptcp's own call home (coaptcp.callhome.Backoff):
 * after `failures` consecutive failures the ceiling is min(maxMs, initialMs *
 * factor^failures), and the delay is that ceiling shortened by up to `jitter` of it.
 */
export class Backoff {
  constructor({ initialMs = 1000, factor = 2, maxMs = 60000, jitter = 0.5, resetAfterMs = 60000 } = {}) {
    for (const [name, value] of Object.entries({ initialMs, factor, maxMs, jitter, resetAfterMs })) {
      if (typeof value !== "number" || !Number.isFinite(value)) throw new RangeError(`${name} must be a finite number`);
    }
    if (initialMs <= 0) throw new RangeError("initialMs must be positive");
    if (factor < 1) throw new RangeError("factor must be at least 1");
    if (maxMs < initialMs) throw new RangeError("maxMs must be at least initialMs");
    if (jitter < 0 || jitter > 1) throw new RangeError("jitter must be between 0 and 1");
    Object.assign(this, { initialMs, factor, maxMs, jitter, resetAfterMs });
  }

  ceiling(failures) {
    return Math.min(this.maxMs, this.initialMs * this.factor ** failures);
  }

  delay(failures, random = Math.random) {
    return this.ceiling(failures) * (1 - this.jitter * Math.min(Math.max(random(), 0), 1));
  }
}

/** RFC 9176 section 5: lt is 1 to 2^32-1 seconds; ep at most 63 bytes. */
function checkParameters(endpoint, lifetime) {
  if (typeof endpoint !== "string" || endpoint === "" || new TextEncoder().encode(endpoint).length > 63) {
    throw new RangeError("the endpoint name must be 1 to 63 bytes");
  }
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 0xffffffff) {
    throw new RangeError("the lifetime must be 1 to 4294967295 seconds");
  }
}

/**
 * A registered device over one WebSocket at a time.  Options: endpoint (ep), sector (d),
 * lifetime (lt, seconds), resources (a ResourceTable), rdPath ("/rd"), backoff (a Backoff
 * or its options), WebSocket, timers ({setTimeout, clearTimeout}), now (ms clock) and
 * random, the last four for tests.
 */
export class CoapDevice {
  constructor(url, {
    endpoint, sector, lifetime = 120, resources, rdPath = "/rd", backoff = {},
    WebSocket, timers = globalThis, now = () => Date.now(), random = Math.random,
  } = {}) {
    checkParameters(endpoint, lifetime);
    if (!resources) throw new TypeError("a device needs a ResourceTable to serve");
    this.url = url;
    this.endpoint = endpoint;
    this.sector = sector;
    this.lifetime = lifetime;
    this.resources = resources;
    this.rdPath = rdPath;
    this.backoff = backoff instanceof Backoff ? backoff : new Backoff(backoff);
    this.WebSocket = WebSocket;
    this.timers = timers;
    this.now = now;
    this.random = random;
    this.state = DeviceState.IDLE;
    this.client = null;
    this.location = null; // "/rd/KEY" while registered
    this.failures = 0;
    this.registrations = 0; // how many times it registered (a reconnect adds one)
    this.lastError = null;
    this._timer = undefined;
    this._registeredAt = null;
    this._observations = new Set(); // {path, onNotification, options, handle}
    this.onstate = null;
    resources.onlinkschange = () => this._linksChanged();
  }

  _set(state, extra = {}) {
    this.state = state;
    const info = { state, endpoint: this.endpoint, location: this.location,
      failures: this.failures, registrations: this.registrations, error: this.lastError, ...extra };
    if (this.onstate) this.onstate(info);
  }

  _later(ms, action) {
    this.timers.clearTimeout(this._timer);
    this._timer = this.timers.setTimeout(() => {
      this._timer = undefined;
      action();
    }, ms);
  }

  /** Connect, register, and keep at it until stop(). */
  start() {
    if (this.state !== DeviceState.IDLE && this.state !== DeviceState.STOPPED) return;
    this._connect();
  }

  /** Remove the registration (DELETE, RFC 9176 section 5.3.2), release the connection
   *  and stop retrying. */
  stop() {
    this.timers.clearTimeout(this._timer);
    const { client, location } = this;
    this.state = DeviceState.STOPPED;
    this.location = null;
    this.client = null;
    if (client && !client.closed) {
      if (location) client.request({ method: "DELETE", path: location }).catch(() => {});
      client.release("the device stopped");
    }
    this._set(DeviceState.STOPPED);
  }

  /**
   * Observe a resource of the server; the observation is made again after every
   * reconnect.  Returns {cancel()}.
   */
  observe(path, onNotification, options = {}) {
    const observation = { path, onNotification, options, handle: null };
    this._observations.add(observation);
    if (this.state === DeviceState.REGISTERED) this._observe(observation);
    return {
      cancel: () => {
        this._observations.delete(observation);
        return observation.handle ? observation.handle.cancel() : Promise.resolve(null);
      },
    };
  }

  _observe(observation) {
    const client = this.client;
    client.observe(observation.path, (message, info) => {
      if (client === this.client) observation.onNotification(message, info);
    }, observation.options).then((handle) => {
      observation.handle = handle;
    }, () => {});
  }

  async _connect() {
    this._set(DeviceState.CONNECTING);
    const client = new CoapWebSocketClient(this.url, {
      WebSocket: this.WebSocket, resources: this.resources, timers: this.timers,
    });
    this.client = client;
    client.onclose = ({ diagnostic }) => this._lost(client, diagnostic);
    let csm;
    const csmSeen = new Promise((resolve) => { csm = resolve; });
    client.onsignal = (message) => {
      if (message.code === Code.CSM) csm();
    };
    try {
      await client.connect();
    } catch (error) {
      this._lost(client, error.message);
      return;
    }
    await csmSeen; // the server's Max-Message-Size is known before the first request
    if (client !== this.client) return;
    this._register(client);
  }

  _query() {
    const query = [`ep=${this.endpoint}`, `lt=${this.lifetime}`];
    if (this.sector) query.push(`d=${this.sector}`);
    return query;
  }

  async _register(client) {
    this.location = null;
    this._set(DeviceState.REGISTERING);
    const query = this._query().map((q) => [Option.URI_QUERY, q]);
    let response;
    try {
      response = await client.request({ method: "POST", path: this.rdPath, options: query,
        contentFormat: ContentFormat.LINK_FORMAT, payload: this.resources.linkFormat() });
    } catch (error) {
      return; // the connection ended: _lost() takes over
    }
    if (client !== this.client) return;
    if (response.code !== 0x41) {
      this._refused(client, response);
      return;
    }
    const segments = response.options.filter(([n]) => n === Option.LOCATION_PATH)
      .map(([, v]) => decoder.decode(v));
    this.location = `/${segments.join("/")}`;
    this.registrations += 1;
    this.lastError = null;
    this._registeredAt = this.now();
    this._set(DeviceState.REGISTERED);
    this._scheduleUpdate(client);
    for (const observation of this._observations) this._observe(observation);
  }

  // A registration refused: after its Max-Age for a 5.03 (RFC 9176 section 4), else
  // after the back-off, on the same connection.
  _refused(client, response) {
    const reason = decoder.decode(response.payload);
    this.lastError = `${codeText(response.code)}${reason ? `: ${reason}` : ""}`;
    const maxAge = response.options.find(([n]) => n === Option.MAX_AGE);
    const delay = response.code === 0xa3 && maxAge
      ? maxAge[1].reduce((v, b) => v * 256 + b, 0) * 1000
      : this.backoff.delay(this.failures, this.random);
    this.failures += 1;
    this._set(DeviceState.WAITING, { retryInMs: delay });
    this._later(delay, () => {
      if (client === this.client && !client.closed) this._register(client);
    });
  }

  // Update before the lifetime ends: at three quarters of it (RFC 9176 section 5.3.1).
  _scheduleUpdate(client) {
    this._later(this.lifetime * 750, () => this._update(client));
  }

  async _update(client, payload) {
    if (client !== this.client || !this.location) return;
    const options = [];
    let response;
    try {
      response = await client.request({ method: "POST", path: this.location, options,
        ...(payload === undefined ? {} : { payload, contentFormat: ContentFormat.LINK_FORMAT }) });
    } catch {
      return;
    }
    if (client !== this.client) return;
    if (response.code === 0x44) {
      this._scheduleUpdate(client);
    } else {
      this._register(client); // gone (4.04) or refused: register anew
    }
  }

  _linksChanged() {
    if (this.state === DeviceState.REGISTERED) this._update(this.client, this.resources.linkFormat());
  }

  _lost(client, diagnostic) {
    if (client !== this.client || this.state === DeviceState.STOPPED) return;
    this.timers.clearTimeout(this._timer);
    this.location = null;
    for (const observation of this._observations) observation.handle = null;
    // A connection that stayed registered long enough counts as a first failure again.
    if (this._registeredAt !== null && this.now() - this._registeredAt >= this.backoff.resetAfterMs) {
      this.failures = 0;
    }
    this._registeredAt = null;
    const delay = this.backoff.delay(this.failures, this.random);
    this.failures += 1;
    this.lastError = diagnostic;
    this.client = null;
    this._set(DeviceState.WAITING, { retryInMs: delay });
    this._later(delay, () => {
      if (this.state === DeviceState.WAITING && this.client === null) this._connect();
    });
  }
}
