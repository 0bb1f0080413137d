// The browser as a CoAP server: a resource table answering the requests that arrive on
// the page's own WebSocket (RFC 8323 section 3.3: either end of a connection may send
// requests), with Observe (RFC 7641, RFC 8323 section 7) and Block2 (RFC 7959 section 2)
// for representations larger than the peer's Max-Message-Size (RFC 8323 section 5.3.1).
//
//   const table = new ResourceTable();
//   table.add("/clicks", { GET: () => ({ payload: String(count) }), observable: true,
//     attributes: { rt: "demo.clicks", ct: 0 } });
//   const client = new CoapWebSocketClient(url, { resources: table });
//   ...; count += 1; table.changed("/clicks");   // notifies every observer
//
// A handler gets a request {method, path, segments, query, payload, contentFormat, accept,
// observe, message} and returns (or resolves to) {code, contentFormat, payload, maxAge,
// etag, options}, or just a payload (a string or a Uint8Array); missing fields take their defaults (2.05 Content for GET and FETCH,
// 2.04 Changed for POST and PUT, 2.02 Deleted for DELETE).

import {
  Code,
  ContentFormat,
  Option,
  decodeBlock,
  encodeBlock,
  encodeMessage,
  getOption,
  getUintOption,
} from "./coap.js";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const EMPTY = new Uint8Array(0);

const METHOD_NAMES = new Map([
  [Code.GET, "GET"], [Code.POST, "POST"], [Code.PUT, "PUT"], [Code.DELETE, "DELETE"],
  [Code.FETCH, "FETCH"], [Code.PATCH, "PATCH"], [Code.IPATCH, "iPATCH"],
]);

const METHOD_SET = new Set(METHOD_NAMES.values());

const DEFAULT_CODES = { GET: 0x45, FETCH: 0x45, POST: 0x44, PUT: 0x44, DELETE: 0x42,
  PATCH: 0x44, iPATCH: 0x44 };

/** Response codes this module sends (RFC 7252 section 12.1.2). */
export const ResponseCode = Object.freeze({
  CREATED: 0x41, DELETED: 0x42, VALID: 0x43, CHANGED: 0x44, CONTENT: 0x45,
  BAD_REQUEST: 0x80, BAD_OPTION: 0x82, NOT_FOUND: 0x84, METHOD_NOT_ALLOWED: 0x85,
  NOT_ACCEPTABLE: 0x86, REQUEST_ENTITY_TOO_LARGE: 0x8d, INTERNAL_SERVER_ERROR: 0xa0,
  SERVICE_UNAVAILABLE: 0xa3, PROXYING_NOT_SUPPORTED: 0xa5,
});

// Critical options (odd numbers, RFC 7252 section 5.4.1) a request may carry here.
// Block1 (27), If-Match (1) and If-None-Match (5) are not supported: 4.02 Bad Option.
const UNDERSTOOD_CRITICAL = new Set([Option.URI_HOST, Option.URI_PORT, Option.URI_PATH,
  Option.URI_QUERY, Option.ACCEPT, Option.BLOCK2, Option.PROXY_URI, Option.PROXY_SCHEME]);

/** Bounds of one connection's server side; each is tested. */
export const DEFAULT_SERVER_LIMITS = Object.freeze({
  maxInFlight: 16, // requests being handled at once; more get 5.03 with Max-Age
  busyMaxAge: 1, // seconds, in that 5.03
  maxObservers: 32, // registrations per connection; more are answered without Observe
  maxRequestPayload: 16 * 1024, // bytes; more get 4.13 with Size1
  handlerTimeoutMs: 10000, // a handler that does not answer by then: 5.00
});

const BLOCK_SZX_MAX = 6; // 1024 bytes; BERT (SZX 7, RFC 8323 section 6) is not sent

/** A 4-byte ETag of a representation (FNV-1a), so block-wise readers can check that the
 *  blocks belong together (RFC 7959 section 2.4). */
export function etagOf(payload) {
  let hash = 0x811c9dc5;
  for (const byte of payload) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  return Uint8Array.of(hash >>> 24, (hash >>> 16) & 0xff, (hash >>> 8) & 0xff, hash & 0xff);
}

function toBytes(value) {
  if (value === undefined || value === null) return EMPTY;
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encoder.encode(value);
  throw new TypeError(`a payload must be a string or a Uint8Array, not ${typeof value}`);
}

function quoteValue(value) {
  return `"${String(value).replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

function normalisePath(path) {
  const segments = String(path).split("/").filter((s) => s !== "");
  return `/${segments.join("/")}`;
}

/**
 * The resources this page serves: path -> {GET, PUT, POST, DELETE, FETCH handlers,
 * observable, attributes}.  One table outlives the connections it serves; each
 * connection attaches a Responder to it.  It also serves /.well-known/core (RFC 6690
 * section 4) listing its resources, unless one is added under that path.
 */
export class ResourceTable {
  constructor({ limits = {} } = {}) {
    this.limits = { ...DEFAULT_SERVER_LIMITS, ...limits };
    this._resources = new Map();
    this._responders = new Set();
    this.onlinkschange = null;
  }

  /** Serve `path` with the given method handlers; replaces what was there. */
  add(path, { observable = false, attributes = {}, ...handlers } = {}) {
    const key = normalisePath(path);
    const methods = {};
    for (const [name, handler] of Object.entries(handlers)) {
      if (!METHOD_SET.has(name)) {
        throw new TypeError(`${name} is not a CoAP method name`);
      }
      if (typeof handler !== "function") throw new TypeError(`the ${name} handler is not a function`);
      methods[name] = handler;
    }
    this._resources.set(key, { path: key, methods, observable, attributes });
    if (this.onlinkschange) this.onlinkschange();
    return this;
  }

  remove(path) {
    const key = normalisePath(path);
    if (!this._resources.delete(key)) return false;
    for (const responder of this._responders) responder._resourceRemoved(key);
    if (this.onlinkschange) this.onlinkschange();
    return true;
  }

  get(path) {
    return this._resources.get(normalisePath(path));
  }

  paths() {
    return [...this._resources.keys()].sort();
  }

  /** The resource's state changed: notify its observers on every connection (RFC 7641
   *  section 4.2). */
  changed(path) {
    const key = normalisePath(path);
    for (const responder of this._responders) responder._notify(key);
  }

  /** How many registrations the resource has, over all connections. */
  observerCount(path) {
    const key = normalisePath(path);
    let count = 0;
    for (const responder of this._responders) count += responder.observersOf(key);
    return count;
  }

  /** The CoRE Link Format of the resources (RFC 6690 section 2), as registered with a
   *  resource directory (RFC 9176 section 5); `obs` marks observable ones (RFC 7641
   *  section 6). */
  linkFormat() {
    return this.paths().filter((p) => p !== "/.well-known/core").map((path) => {
      const { attributes, observable } = this._resources.get(path);
      let link = `<${path}>`;
      for (const [name, value] of Object.entries(attributes)) {
        if (value === true) link += `;${name}`;
        else if (typeof value === "number") link += `;${name}=${value}`;
        else link += `;${name}=${quoteValue(value)}`;
      }
      if (observable && !("obs" in attributes)) link += ";obs";
      return link;
    }).join(",");
  }

  /** A Responder answering requests on one connection: `send(message)` writes a message,
   *  `peerMaxMessageSize()` tells the peer's Max-Message-Size (RFC 8323 section 5.3.1). */
  attach({ send, peerMaxMessageSize, timers = globalThis, onerror = null }) {
    const responder = new Responder(this, { send, peerMaxMessageSize, timers, onerror });
    this._responders.add(responder);
    return responder;
  }

  _detach(responder) {
    this._responders.delete(responder);
  }

  _wellKnownCore(request) {
    const links = this.linkFormat();
    const filter = request.query.find((q) => q.includes("="));
    let body = links;
    if (filter && links) {
      // One name=value filter, a trailing "*" matching a prefix (RFC 6690 section 4.1).
      const [name, wanted] = [filter.slice(0, filter.indexOf("=")), filter.slice(filter.indexOf("=") + 1)];
      const matches = (value) => (wanted.endsWith("*")
        ? String(value).startsWith(wanted.slice(0, -1)) : String(value) === wanted);
      body = this.paths().filter((path) => {
        if (path === "/.well-known/core") return false;
        if (name === "href") return matches(path);
        const value = this._resources.get(path).attributes[name];
        return value !== undefined && String(value).split(" ").some(matches);
      }).map((path) => this._linkOf(path)).join(",");
    }
    return { code: ResponseCode.CONTENT, contentFormat: ContentFormat.LINK_FORMAT, payload: body };
  }

  _linkOf(path) {
    const saved = this._resources;
    this._resources = new Map([[path, saved.get(path)]]);
    try {
      return this.linkFormat();
    } finally {
      this._resources = saved;
    }
  }
}

function requestOf(message) {
  const segments = [];
  const query = [];
  for (const [number, value] of message.options) {
    if (number === Option.URI_PATH) segments.push(decoder.decode(value));
    else if (number === Option.URI_QUERY) query.push(decoder.decode(value));
  }
  return {
    method: METHOD_NAMES.get(message.code),
    path: `/${segments.join("/")}`,
    segments,
    query,
    payload: message.payload,
    contentFormat: getUintOption(message, Option.CONTENT_FORMAT),
    accept: getUintOption(message, Option.ACCEPT),
    observe: getUintOption(message, Option.OBSERVE),
    message,
    text() {
      return decoder.decode(message.payload);
    },
  };
}

const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

/**
 * One connection's server side: dispatch, the in-flight bound, its observers, Block2.
 * Made by ResourceTable.attach(); close() when the connection ends (RFC 8323 section
 * 3.4: observations end with their connection).
 */
export class Responder {
  constructor(table, { send, peerMaxMessageSize, timers, onerror }) {
    this.table = table;
    this.limits = table.limits;
    this._send = send;
    this._peerMms = peerMaxMessageSize;
    this._timers = timers;
    this._onerror = onerror;
    this.inFlight = 0;
    this.observers = new Map(); // token hex -> {token, path, request, accept, busy, dirty}
    this._nextObserve = 2;
    this.closed = false;
    this.refusals = { busy: 0, observers: 0 };
  }

  observersOf(path) {
    let count = 0;
    for (const observer of this.observers.values()) if (observer.path === path) count += 1;
    return count;
  }

  close() {
    this.closed = true;
    this.observers.clear();
    this.table._detach(this);
  }

  /** Answer one request message from the peer. */
  handle(message) {
    if (this.closed) return;
    const { token } = message;
    const key = hex(token);
    if (getUintOption(message, Option.OBSERVE) === 1) this.observers.delete(key);
    const refusal = this._check(message);
    if (refusal) {
      this._reply(token, refusal);
      return;
    }
    if (this.inFlight >= this.limits.maxInFlight) {
      this.refusals.busy += 1;
      if (this.refusals.busy === 1) this._warn(`more than ${this.limits.maxInFlight} requests in flight: answering 5.03`);
      this._reply(token, { code: ResponseCode.SERVICE_UNAVAILABLE,
        options: [[Option.MAX_AGE, this.limits.busyMaxAge]],
        payload: `${this.limits.maxInFlight} requests are being handled; retry later` });
      return;
    }
    const request = requestOf(message);
    const resource = this._resourceFor(request.path);
    if (!resource) {
      this._reply(token, { code: ResponseCode.NOT_FOUND, payload: `no resource at ${request.path}` });
      return;
    }
    const handler = resource.methods[request.method];
    if (!handler) {
      this._reply(token, { code: ResponseCode.METHOD_NOT_ALLOWED,
        payload: `${request.method} is not allowed on ${request.path}` });
      return;
    }
    this.observers.delete(key); // a new request with the token replaces an observation
    const wantsObserve = request.observe === 0 && request.method === "GET" && resource.observable;
    this.inFlight += 1;
    this._run(handler, request).then((answer) => {
      this.inFlight -= 1;
      if (this.closed) return;
      let observe;
      if (wantsObserve && isSuccess(answer.code ?? ResponseCode.CONTENT)) {
        if (this.observers.size < this.limits.maxObservers) {
          this.observers.set(key, { token, path: resource.path, request, busy: false, dirty: false });
          observe = this._observeNumber();
        } else {
          this.refusals.observers += 1;
          if (this.refusals.observers === 1) this._warn(`${this.limits.maxObservers} observers: further registrations are answered without Observe`);
        }
      }
      this._reply(token, answer, { request, observe });
    });
  }

  _check(message) {
    for (const [number] of message.options) {
      if (number % 2 === 1 && !UNDERSTOOD_CRITICAL.has(number)) {
        return { code: ResponseCode.BAD_OPTION, payload: `option ${number} is not supported here` };
      }
    }
    if (getOption(message, Option.PROXY_URI) !== undefined || getOption(message, Option.PROXY_SCHEME) !== undefined) {
      return { code: ResponseCode.PROXYING_NOT_SUPPORTED, payload: "this browser is not a proxy" };
    }
    if (message.payload.length > this.limits.maxRequestPayload) {
      return { code: ResponseCode.REQUEST_ENTITY_TOO_LARGE,
        options: [[Option.SIZE1, this.limits.maxRequestPayload]],
        payload: `request payloads of at most ${this.limits.maxRequestPayload} bytes` };
    }
    return null;
  }

  _resourceFor(path) {
    const found = this.table.get(path);
    if (found) return found;
    if (normalisePath(path) === "/.well-known/core") {
      return { path: "/.well-known/core", observable: false,
        methods: { GET: (request) => this.table._wellKnownCore(request) } };
    }
    return undefined;
  }

  // The handler's answer, or 5.00 when it throws, rejects or takes too long.
  _run(handler, request) {
    return new Promise((resolve) => {
      const timer = this._timers.setTimeout(() => resolve({ code: ResponseCode.INTERNAL_SERVER_ERROR,
        payload: `the handler did not answer within ${this.limits.handlerTimeoutMs} ms` }),
      this.limits.handlerTimeoutMs);
      const done = (answer) => {
        this._timers.clearTimeout(timer);
        resolve(answer);
      };
      try {
        Promise.resolve(handler(request)).then((answer) => done(answerOf(answer)), (error) => {
          this._warn(`handler for ${request.method} ${request.path} failed: ${error?.message ?? error}`);
          done({ code: ResponseCode.INTERNAL_SERVER_ERROR, payload: "the handler failed" });
        });
      } catch (error) {
        this._warn(`handler for ${request.method} ${request.path} failed: ${error?.message ?? error}`);
        done({ code: ResponseCode.INTERNAL_SERVER_ERROR, payload: "the handler failed" });
      }
    });
  }

  _observeNumber() {
    const value = this._nextObserve;
    this._nextObserve = (this._nextObserve + 1) % 0x1000000; // 24 bits (RFC 7641 section 4.4)
    return value;
  }

  _warn(text) {
    if (this._onerror) this._onerror(text);
  }

  // Build and send the response, as one block of a Block2 transfer if it must be.
  _reply(token, answer, { request, observe } = {}) {
    const method = request?.method ?? "GET";
    const code = answer.code ?? DEFAULT_CODES[method] ?? ResponseCode.CONTENT;
    let payload;
    try {
      payload = toBytes(answer.payload);
    } catch (error) {
      this._warn(error.message);
      this._reply(token, { code: ResponseCode.INTERNAL_SERVER_ERROR, payload: "the handler gave a bad payload" });
      return;
    }
    const options = [...(answer.options ?? [])];
    if (observe !== undefined) options.push([Option.OBSERVE, observe]);
    const contentFormat = answer.contentFormat ?? (payload.length && isSuccess(code) ? ContentFormat.TEXT : undefined);
    if (contentFormat !== undefined) options.push([Option.CONTENT_FORMAT, contentFormat]);
    if (answer.maxAge !== undefined) options.push([Option.MAX_AGE, answer.maxAge]);
    if (answer.etag !== undefined) options.push([Option.ETAG, toBytes(answer.etag)]);
    const accept = request?.accept;
    if (accept !== undefined && contentFormat !== undefined && accept !== contentFormat && isSuccess(code)) {
      this._send({ code: ResponseCode.NOT_ACCEPTABLE, token,
        payload: `this resource has Content-Format ${contentFormat}, not ${accept}` });
      return;
    }
    const wanted = request ? getUintOption(request.message, Option.BLOCK2) : undefined;
    const whole = { code, token, options, payload };
    const mms = this._peerMms();
    if (wanted === undefined && encodeMessage(whole).length <= mms) {
      this._send(whole);
      return;
    }
    if (method !== "GET" && method !== "FETCH") {
      this._send({ code: ResponseCode.INTERNAL_SERVER_ERROR, token,
        payload: `the response of ${payload.length} bytes does not fit the peer's Max-Message-Size of ${mms} bytes` });
      return;
    }
    this._sendBlock(whole, wanted, mms, answer.etag === undefined);
  }

  // RFC 7959 section 2.4: the block asked for (smaller if need be), else block 0.
  _sendBlock({ code, token, options, payload }, wanted, mms, addEtag) {
    const asked = wanted === undefined ? { num: 0, szx: BLOCK_SZX_MAX } : decodeBlock(wanted);
    const extra = [...options];
    if (addEtag) extra.push([Option.ETAG, etagOf(payload)]);
    if (asked.num === 0) extra.push([Option.SIZE2, payload.length]);
    let szx = Math.min(asked.szx, BLOCK_SZX_MAX);
    for (; szx >= 0; szx -= 1) {
      const size = 1 << (szx + 4);
      const num = asked.num * (1 << (Math.min(asked.szx, BLOCK_SZX_MAX) - szx));
      const offset = num * size;
      if (offset >= payload.length && !(offset === 0 && payload.length === 0)) {
        this._send({ code: ResponseCode.BAD_OPTION, token,
          payload: `Block2 ${asked.num} is past the end of the ${payload.length}-byte representation` });
        return;
      }
      const more = offset + size < payload.length;
      const message = { code, token, payload: payload.subarray(offset, offset + size),
        options: [...extra, [Option.BLOCK2, encodeBlock({ num, more, szx })]] };
      if (encodeMessage(message).length <= mms || szx === 0) {
        this._send(message);
        return;
      }
    }
  }

  // Notify each observer of `path` (RFC 7641 section 4.2), one evaluation at a time per
  // observer: changes while its handler runs are folded into one more notification.
  _notify(path) {
    for (const [key, observer] of this.observers) {
      if (observer.path !== path) continue;
      if (observer.busy) {
        observer.dirty = true;
        continue;
      }
      this._evaluate(key, observer);
    }
  }

  _evaluate(key, observer) {
    const resource = this.table.get(observer.path);
    const handler = resource?.methods.GET;
    if (!handler) return;
    observer.busy = true;
    this._run(handler, observer.request).then((answer) => {
      observer.busy = false;
      if (this.closed || this.observers.get(key) !== observer) return;
      const code = answer.code ?? ResponseCode.CONTENT;
      if (isSuccess(code)) {
        this._reply(observer.token, answer, { request: { ...observer.request, message:
          { ...observer.request.message, options: observer.request.message.options.filter(([n]) => n !== Option.BLOCK2) } },
        observe: this._observeNumber() });
      } else {
        this.observers.delete(key); // a non-2.xx notification ends it (RFC 7641 section 3.2)
        this._reply(observer.token, answer, { request: observer.request });
        return;
      }
      if (observer.dirty) {
        observer.dirty = false;
        this._evaluate(key, observer);
      }
    });
  }

  _resourceRemoved(path) {
    for (const [key, observer] of this.observers) {
      if (observer.path !== path) continue;
      this.observers.delete(key);
      this._send({ code: ResponseCode.NOT_FOUND, token: observer.token, payload: `${path} was removed` });
    }
  }
}

// A handler may answer with just a payload (a string or bytes), or nothing (an empty 2.xx).
function answerOf(answer) {
  if (answer === undefined || answer === null) return {};
  if (typeof answer === "string" || answer instanceof Uint8Array) return { payload: answer };
  return answer;
}

function isSuccess(code) {
  return code >> 5 === 2;
}
