// CoAP over WebSockets for the browser: RFC 8323 section 4 framing and signaling on top of
// the RFC 7252 message format.  No dependencies; runs in browsers and in node (>= 18).
//
// Every CoAP message travels alone in one binary WebSocket message whose Len nibble is 0
// (RFC 8323 section 4.2).  Both sides send a CSM first (section 4.3); Ping is answered with
// Pong, Release and Abort end the connection (section 5).  Requests from the server (section
// 3.3) are answered from a ResourceTable (server.js) when one is given, else with 5.01.
// Responses sent block-wise (RFC 7959 section 2) are reassembled for the caller.

/** Message codes (RFC 7252 section 12.1, RFC 8323 section 11.1). */
export const Code = Object.freeze({
  EMPTY: 0x00,
  GET: 0x01,
  POST: 0x02,
  PUT: 0x03,
  DELETE: 0x04,
  FETCH: 0x05,
  PATCH: 0x06,
  IPATCH: 0x07,
  CONTENT: 0x45,
  NOT_IMPLEMENTED: 0xa1,
  CSM: 0xe1,
  PING: 0xe2,
  PONG: 0xe3,
  RELEASE: 0xe4,
  ABORT: 0xe5,
});

const CODE_NAMES = new Map([
  [0x00, "Empty"], [0x01, "GET"], [0x02, "POST"], [0x03, "PUT"], [0x04, "DELETE"],
  [0x05, "FETCH"], [0x06, "PATCH"], [0x07, "iPATCH"],
  [0x41, "Created"], [0x42, "Deleted"], [0x43, "Valid"], [0x44, "Changed"],
  [0x45, "Content"], [0x5f, "Continue"],
  [0x80, "Bad Request"], [0x81, "Unauthorized"], [0x82, "Bad Option"], [0x83, "Forbidden"],
  [0x84, "Not Found"], [0x85, "Method Not Allowed"], [0x86, "Not Acceptable"],
  [0x88, "Request Entity Incomplete"], [0x89, "Conflict"], [0x8c, "Precondition Failed"],
  [0x8d, "Request Entity Too Large"], [0x8f, "Unsupported Content-Format"],
  [0x96, "Unprocessable Entity"], [0x9d, "Too Many Requests"],
  [0xa0, "Internal Server Error"], [0xa1, "Not Implemented"], [0xa2, "Bad Gateway"],
  [0xa3, "Service Unavailable"], [0xa4, "Gateway Timeout"], [0xa5, "Proxying Not Supported"],
  [0xa8, "Hop Limit Reached"],
  [0xe1, "CSM"], [0xe2, "Ping"], [0xe3, "Pong"], [0xe4, "Release"], [0xe5, "Abort"],
]);

/** "2.05" for 0x45 (RFC 7252 section 3). */
export function codeDotted(code) {
  return `${code >> 5}.${String(code & 0x1f).padStart(2, "0")}`;
}

/** "2.05 Content"; unknown codes show only their number. */
export function codeText(code) {
  const name = CODE_NAMES.get(code);
  return name ? `${codeDotted(code)} ${name}` : codeDotted(code);
}

export const isRequest = (code) => code >= 0x01 && code <= 0x1f;
export const isResponse = (code) => code >> 5 >= 2 && code >> 5 <= 5;
export const isSignaling = (code) => code >> 5 === 7;
const isReservedClass = (code) => [1, 3, 6].includes(code >> 5);

/** Option numbers (RFC 7252 section 12.2 and the registry). */
export const Option = Object.freeze({
  IF_MATCH: 1,
  URI_HOST: 3,
  ETAG: 4,
  IF_NONE_MATCH: 5,
  OBSERVE: 6,
  URI_PORT: 7,
  LOCATION_PATH: 8,
  URI_PATH: 11,
  CONTENT_FORMAT: 12,
  MAX_AGE: 14,
  URI_QUERY: 15,
  ACCEPT: 17,
  LOCATION_QUERY: 20,
  BLOCK2: 23,
  BLOCK1: 27,
  SIZE2: 28,
  PROXY_URI: 35,
  PROXY_SCHEME: 39,
  SIZE1: 60,
  NO_RESPONSE: 258,
});

const OPTION_INFO = new Map([
  [1, ["If-Match", "opaque"]], [3, ["Uri-Host", "string"]], [4, ["ETag", "opaque"]],
  [5, ["If-None-Match", "empty"]], [6, ["Observe", "uint"]], [7, ["Uri-Port", "uint"]],
  [8, ["Location-Path", "string"]], [9, ["OSCORE", "opaque"]], [11, ["Uri-Path", "string"]],
  [12, ["Content-Format", "uint"]], [14, ["Max-Age", "uint"]], [15, ["Uri-Query", "string"]],
  [16, ["Hop-Limit", "uint"]], [17, ["Accept", "uint"]], [20, ["Location-Query", "string"]],
  [23, ["Block2", "uint"]], [27, ["Block1", "uint"]], [28, ["Size2", "uint"]],
  [35, ["Proxy-Uri", "string"]], [39, ["Proxy-Scheme", "string"]], [60, ["Size1", "uint"]],
  [258, ["No-Response", "uint"]],
]);

/** Signaling options, per signaling code (RFC 8323 sections 5.3-5.6). */
export const SignalingOption = Object.freeze({
  MAX_MESSAGE_SIZE: 2, // CSM
  BLOCK_WISE_TRANSFER: 4, // CSM
  CUSTODY: 2, // Ping, Pong
  ALTERNATIVE_ADDRESS: 2, // Release
  HOLD_OFF: 4, // Release
  BAD_CSM_OPTION: 2, // Abort
});

const SIGNALING_OPTION_INFO = new Map([
  [Code.CSM, new Map([[2, ["Max-Message-Size", "uint"]], [4, ["Block-Wise-Transfer", "empty"]]])],
  [Code.PING, new Map([[2, ["Custody", "empty"]]])],
  [Code.PONG, new Map([[2, ["Custody", "empty"]]])],
  [Code.RELEASE, new Map([[2, ["Alternative-Address", "string"]], [4, ["Hold-Off", "uint"]]])],
  [Code.ABORT, new Map([[2, ["Bad-CSM-Option", "uint"]]])],
]);

/** Content-Format numbers (RFC 7252 section 12.3 and the registry). */
export const ContentFormat = Object.freeze({
  TEXT: 0,
  LINK_FORMAT: 40,
  XML: 41,
  OCTET_STREAM: 42,
  EXI: 47,
  JSON: 50,
  CBOR: 60,
});

const CONTENT_FORMAT_NAMES = new Map([
  [0, "text/plain; charset=utf-8"], [40, "application/link-format"], [41, "application/xml"],
  [42, "application/octet-stream"], [47, "application/exi"], [50, "application/json"],
  [60, "application/cbor"],
]);

export function contentFormatName(number) {
  return CONTENT_FORMAT_NAMES.get(number) ?? `Content-Format ${number}`;
}

/** A malformed message from the peer: the connection must be aborted (RFC 8323 5.6). */
export class CoapFormatError extends Error {
  constructor(message) {
    super(message);
    this.name = "CoapFormatError";
  }
}

const encoder = new TextEncoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });
const EMPTY = new Uint8Array(0);

/** Minimal big-endian bytes of a non-negative integer (RFC 7252 section 3.2 "uint"). */
export function encodeUint(value) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new RangeError(`not a 32-bit unsigned integer: ${value}`);
  }
  const bytes = [];
  for (let v = value; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Uint8Array.from(bytes);
}

export function decodeUint(bytes) {
  let value = 0;
  for (const b of bytes) value = value * 256 + b;
  return value;
}

function toBytes(value) {
  if (value instanceof Uint8Array) return value;
  if (typeof value === "string") return encoder.encode(value);
  if (typeof value === "number") return encodeUint(value);
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (value === null || value === undefined) return EMPTY;
  throw new TypeError(`cannot encode an option value of type ${typeof value}`);
}

function nibble(value, extended) {
  if (value < 13) return value;
  if (value < 269) {
    extended.push(value - 13);
    return 13;
  }
  if (value > 65804) throw new RangeError(`option delta or length ${value} is too large`);
  extended.push((value - 269) >> 8, (value - 269) & 0xff);
  return 14;
}

/**
 * Encode one message for a WebSocket (RFC 8323 section 4.2: Len = 0, no length field).
 * options: an array of [number, value] where value is a Uint8Array, a string (UTF-8) or a
 * number (uint); they are sorted by number (stably, so repeated options keep their order).
 */
export function encodeMessage({ code, token = EMPTY, options = [], payload = EMPTY }) {
  token = toBytes(token);
  payload = toBytes(payload);
  if (token.length > 8) throw new RangeError(`token of ${token.length} bytes; at most 8`);
  const sorted = options
    .map(([number, value], index) => [number, toBytes(value), index])
    .sort((a, b) => a[0] - b[0] || a[2] - b[2]);
  const out = [token.length, code, ...token];
  let previous = 0;
  for (const [number, value] of sorted) {
    const extended = [];
    const delta = nibble(number - previous, extended);
    const length = nibble(value.length, extended);
    out.push((delta << 4) | length, ...extended);
    for (const b of value) out.push(b);
    previous = number;
  }
  const head = Uint8Array.from(out);
  if (!payload.length) return head;
  const message = new Uint8Array(head.length + 1 + payload.length);
  message.set(head);
  message[head.length] = 0xff;
  message.set(payload, head.length + 1);
  return message;
}

function readExtended(nib, bytes, pos, what) {
  if (nib < 13) return [nib, pos];
  if (nib === 13) {
    if (pos >= bytes.length) throw new CoapFormatError(`message ends inside an option ${what}`);
    return [bytes[pos] + 13, pos + 1];
  }
  if (nib === 14) {
    if (pos + 1 >= bytes.length) throw new CoapFormatError(`message ends inside an option ${what}`);
    return [((bytes[pos] << 8) | bytes[pos + 1]) + 269, pos + 2];
  }
  throw new CoapFormatError(`option ${what} nibble 15 is reserved`);
}

/**
 * Decode one binary WebSocket message into {code, token, options, payload}.
 * Throws CoapFormatError for anything RFC 8323 section 5.6 calls a message format error.
 */
export function decodeMessage(data) {
  const bytes = data instanceof Uint8Array ? data : new Uint8Array(data);
  if (bytes.length < 2) throw new CoapFormatError("WebSocket message shorter than a CoAP header");
  const len = bytes[0] >> 4;
  if (len !== 0) throw new CoapFormatError(`Len is ${len} in a WebSocket message; it must be 0`);
  const tkl = bytes[0] & 0x0f;
  if (tkl > 8) throw new CoapFormatError(`token length ${tkl} is reserved`);
  if (bytes.length < 2 + tkl) throw new CoapFormatError("message ends inside the token");
  const code = bytes[1];
  if (isReservedClass(code)) {
    throw new CoapFormatError(`code ${codeDotted(code)} is in a reserved class`);
  }
  const token = bytes.slice(2, 2 + tkl);
  const options = [];
  let pos = 2 + tkl;
  let number = 0;
  let payload = EMPTY;
  while (pos < bytes.length) {
    const head = bytes[pos];
    if (head === 0xff) {
      if (pos + 1 === bytes.length) throw new CoapFormatError("payload marker without a payload");
      payload = bytes.slice(pos + 1);
      break;
    }
    pos += 1;
    let delta;
    let length;
    [delta, pos] = readExtended(head >> 4, bytes, pos, "delta");
    [length, pos] = readExtended(head & 0x0f, bytes, pos, "length");
    number += delta;
    if (pos + length > bytes.length) {
      throw new CoapFormatError(`option ${number} runs past the end of the message`);
    }
    options.push([number, bytes.slice(pos, pos + length)]);
    pos += length;
  }
  return { code, token, options, payload };
}

/** The first value of option `number`, or undefined. */
export function getOption(message, number) {
  const found = message.options.find(([n]) => n === number);
  return found ? found[1] : undefined;
}

export function getUintOption(message, number) {
  const value = getOption(message, number);
  return value === undefined ? undefined : decodeUint(value);
}

/**
 * Uri-Path and Uri-Query options for "/a/b?x=1&y" (RFC 7252 section 6.4, steps 8-9):
 * percent-encoded characters are decoded; an empty path gives no Uri-Path.
 */
export function uriOptions(pathAndQuery) {
  const text = String(pathAndQuery).trim();
  const hash = text.indexOf("#");
  const withoutFragment = hash >= 0 ? text.slice(0, hash) : text;
  const question = withoutFragment.indexOf("?");
  const path = question >= 0 ? withoutFragment.slice(0, question) : withoutFragment;
  const query = question >= 0 ? withoutFragment.slice(question + 1) : null;
  const options = [];
  const trimmed = path.replace(/^\/+/, "");
  if (trimmed !== "") {
    for (const segment of trimmed.split("/")) {
      options.push([Option.URI_PATH, decodeURIComponent(segment)]);
    }
  }
  if (query !== null && query !== "") {
    for (const argument of query.split("&")) {
      options.push([Option.URI_QUERY, decodeURIComponent(argument)]);
    }
  }
  return options;
}

/** URI schemes a forward proxy may be asked to reach (RFC 7252 section 6, RFC 8323 section 8). */
export const COAP_SCHEMES = Object.freeze(["coap", "coaps", "coap+tcp", "coaps+tcp", "coap+ws", "coaps+ws"]);

/** The longest Proxy-Uri value, in bytes (RFC 7252 section 5.10.2). */
export const PROXY_URI_MAX_LENGTH = 1034;

/** A target URI the page cannot send as Proxy-Uri. */
export class CoapUriError extends Error {
  constructor(message) {
    super(message);
    this.name = "CoapUriError";
  }
}

// What may appear in a URI as it is (RFC 3986 section 2: unreserved, reserved and "%").
const NOT_IN_URI = /[^A-Za-z0-9\-._~:/?#[\]@!$&'()*+,;=%]|%(?![0-9A-Fa-f]{2})/gu;

function percentEncode(character) {
  return Array.from(encoder.encode(character),
    (b) => `%${b.toString(16).toUpperCase().padStart(2, "0")}`).join("");
}

/**
 * The Proxy-Uri option value for an absolute CoAP URI such as "coap://192.0.2.1:5683/temp"
 * (RFC 7252 section 5.10.2): the scheme in lower case (RFC 3986 section 3.1), characters
 * that may not appear in a URI (spaces, non-ASCII, a "%" not starting an escape) percent-
 * encoded as UTF-8 (RFC 3986 section 2.1), the rest as given.  Throws CoapUriError for a
 * relative URI, a scheme other than COAP_SCHEMES, a missing host, a fragment (RFC 7252
 * section 6.4: a CoAP request has none) or more than PROXY_URI_MAX_LENGTH bytes.
 */
export function proxyUriValue(uri) {
  const text = String(uri).trim();
  const found = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(text);
  if (!found) throw new CoapUriError(`"${text}" is not an absolute URI (scheme://host/path)`);
  const scheme = found[1].toLowerCase();
  if (!COAP_SCHEMES.includes(scheme)) {
    throw new CoapUriError(`the scheme "${scheme}" is not one of ${COAP_SCHEMES.join(", ")}`);
  }
  const rest = text.slice(found[0].length);
  if (!rest.startsWith("//") || /^\/\/(?:[^@/?#]*@)?(?:[:/?#]|$)/.test(rest)) {
    throw new CoapUriError(`"${text}" names no host`);
  }
  if (rest.includes("#")) throw new CoapUriError("a CoAP request URI has no fragment (#...)");
  const value = `${scheme}:${rest.replace(NOT_IN_URI, percentEncode)}`;
  if (value.length > PROXY_URI_MAX_LENGTH) {
    throw new CoapUriError(
      `the URI is ${value.length} bytes long; Proxy-Uri takes at most ${PROXY_URI_MAX_LENGTH}`);
  }
  return value;
}

/**
 * The options naming a request's target: Proxy-Uri when `proxyUri` is given (a request for
 * the server's forward proxy, RFC 7252 section 5.7.2), else Uri-Path and Uri-Query for
 * `path` on the server itself.  Proxy-Uri takes the place of the Uri-* options (section
 * 5.10.2), so the two are never sent together.
 */
export function targetOptions({ path = "/", proxyUri } = {}) {
  if (proxyUri !== undefined && proxyUri !== null && String(proxyUri).trim() !== "") {
    return [[Option.PROXY_URI, proxyUriValue(proxyUri)]];
  }
  return uriOptions(path);
}

function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** [{number, name, value}] for display; values shown by their format. */
export function describeOptions(message) {
  const table = SIGNALING_OPTION_INFO.get(message.code);
  return message.options.map(([number, value]) => {
    const [name, format] = (table ?? OPTION_INFO).get(number) ?? [`Option ${number}`, "opaque"];
    let shown;
    if (format === "uint") {
      shown = String(decodeUint(value));
      if (number === Option.CONTENT_FORMAT || number === Option.ACCEPT) {
        shown += ` (${contentFormatName(decodeUint(value))})`;
      }
    } else if (format === "string") {
      try {
        shown = strictDecoder.decode(value);
      } catch {
        shown = `0x${hex(value)} (not UTF-8)`;
      }
    } else if (format === "empty") {
      shown = value.length ? `0x${hex(value)}` : "(empty)";
    } else {
      shown = value.length ? `0x${hex(value)}` : "(empty)";
    }
    return { number, name, value: shown };
  });
}

/**
 * The payload for a person: {kind: "json"|"text"|"binary"|"empty", text}.  JSON is
 * pretty-printed; text formats and undeclared UTF-8 are shown as text; anything else in hex.
 */
export function formatPayload(payload, contentFormat) {
  if (!payload.length) return { kind: "empty", text: "" };
  let text = null;
  try {
    text = strictDecoder.decode(payload);
  } catch {
    text = null;
  }
  if (contentFormat === ContentFormat.JSON && text !== null) {
    try {
      return { kind: "json", text: JSON.stringify(JSON.parse(text), null, 2) };
    } catch {
      return { kind: "text", text };
    }
  }
  const textual = [undefined, ContentFormat.TEXT, ContentFormat.LINK_FORMAT, ContentFormat.XML];
  if (text !== null && textual.includes(contentFormat)) return { kind: "text", text };
  return { kind: "binary", text: hex(payload) };
}

/** Parse CoRE Link Format (RFC 6690 section 2): [{href, attributes}]. */
export function parseLinkFormat(text) {
  const links = [];
  let i = 0;
  const n = text.length;
  const skipSpace = () => {
    while (i < n && /\s/.test(text[i])) i += 1;
  };
  while (i < n) {
    skipSpace();
    if (i >= n) break;
    if (text[i] !== "<") throw new SyntaxError(`expected '<' at ${i} in link format`);
    const end = text.indexOf(">", i);
    if (end < 0) throw new SyntaxError("unterminated '<' in link format");
    const link = { href: text.slice(i + 1, end), attributes: {} };
    i = end + 1;
    skipSpace();
    while (i < n && text[i] === ";") {
      i += 1;
      skipSpace();
      let name = "";
      while (i < n && !/[=;,\s]/.test(text[i])) name += text[i++];
      skipSpace();
      let value = true;
      if (text[i] === "=") {
        i += 1;
        skipSpace();
        if (text[i] === '"') {
          let quoted = "";
          i += 1;
          while (i < n && text[i] !== '"') {
            if (text[i] === "\\" && i + 1 < n) i += 1;
            quoted += text[i++];
          }
          i += 1;
          value = quoted;
        } else {
          let raw = "";
          while (i < n && !/[;,\s]/.test(text[i])) raw += text[i++];
          value = raw;
        }
      }
      if (name) link.attributes[name] = value;
      skipSpace();
    }
    links.push(link);
    skipSpace();
    if (i < n) {
      if (text[i] !== ",") throw new SyntaxError(`expected ',' at ${i} in link format`);
      i += 1;
    }
  }
  return links;
}

/** Raised for requests that fail without a response (connection closed, aborted...). */
export class CoapConnectionError extends Error {
  constructor(message) {
    super(message);
    this.name = "CoapConnectionError";
  }
}

const METHOD_CODES = {
  GET: Code.GET, POST: Code.POST, PUT: Code.PUT, DELETE: Code.DELETE,
  FETCH: Code.FETCH, PATCH: Code.PATCH, IPATCH: Code.IPATCH,
};

export const DEFAULT_MAX_MESSAGE_SIZE = 64 * 1024 + 512;
/** The largest body reassembled from Block2 blocks; larger ones fail the request. */
export const DEFAULT_MAX_BODY_SIZE = 4 * 1024 * 1024;
const RELEASE_TIMEOUT_MS = 10000;
const BASE_MAX_MESSAGE_SIZE = 1152;

/**
 * One CoAP-over-WebSockets connection from the browser (RFC 8323 section 4).
 *
 *   const client = new CoapWebSocketClient("ws://host:8080/.well-known/coap");
 *   await client.connect();
 *   const response = await client.request({ method: "GET", path: "/hello" });
 *
 * Events (set the properties): onclose({code, reason, diagnostic}), onsignal(message, info)
 * for CSM/Pong/Release/Abort received, onsent(message) / onreceived(message) for logging,
 * onwarning(text) for a bound reached by the server side.
 *
 * With `resources` (a ResourceTable of server.js) the page serves those resources to the
 * server over this connection (RFC 8323 section 3.3).
 */
export class CoapWebSocketClient {
  constructor(url, {
    WebSocket: Impl = globalThis.WebSocket, maxMessageSize, maxBodySize, resources = null,
    timers = globalThis,
  } = {}) {
    if (!Impl) throw new Error("no WebSocket implementation available");
    this.url = url;
    this.Impl = Impl;
    this.maxMessageSize = maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
    this.maxBodySize = maxBodySize ?? DEFAULT_MAX_BODY_SIZE;
    this.resources = resources;
    this.responder = null;
    this.timers = timers;
    this.peerMaxMessageSize = BASE_MAX_MESSAGE_SIZE;
    this.peerBlockWise = false;
    this.peerCsmReceived = false;
    this.closed = false;
    this.closeInfo = null;
    this.ws = null;
    this._pending = new Map(); // token hex -> {resolve, reject, observer}
    this._pings = [];
    this._releaseTimer = undefined;
    this._nextToken = (Math.random() * 0xffffffff) >>> 0;
    this.onclose = null;
    this.onsignal = null;
    this.onsent = null;
    this.onreceived = null;
    this.onwarning = null;
  }

  /** Open the WebSocket offering "coap", send our CSM; resolves once it is sent. */
  connect() {
    return new Promise((resolve, reject) => {
      let opened = false;
      const ws = new this.Impl(this.url, "coap");
      ws.binaryType = "arraybuffer";
      this.ws = ws;
      ws.onopen = () => {
        if (ws.protocol !== "coap") {
          reject(new CoapConnectionError(
            `the server did not select the WebSocket subprotocol "coap" (got "${ws.protocol}")`));
          ws.close(1000);
          return;
        }
        opened = true;
        this._send({
          code: Code.CSM,
          options: [[SignalingOption.MAX_MESSAGE_SIZE, this.maxMessageSize]],
        });
        if (this.resources) {
          this.responder = this.resources.attach({
            send: (message) => {
              if (!this.closed) this._send(message);
            },
            peerMaxMessageSize: () => this.peerMaxMessageSize,
            timers: this.timers,
            onerror: (text) => this.onwarning?.(text),
          });
        }
        resolve(this);
      };
      ws.onmessage = (event) => this._receive(event.data);
      ws.onerror = () => {
        if (!opened) reject(new CoapConnectionError(`cannot open ${this.url}`));
      };
      ws.onclose = (event) => {
        if (!opened) reject(new CoapConnectionError(
          `cannot open ${this.url} (WebSocket closed with ${event.code})`));
        this._closed(event.code, event.reason);
      };
    });
  }

  _send(message) {
    const bytes = encodeMessage(message);
    this.ws.send(bytes);
    if (this.onsent) this.onsent(decodeMessage(bytes));
    return bytes.length;
  }

  _allocateToken() {
    for (;;) {
      this._nextToken = (this._nextToken + 1) >>> 0;
      const token = encodeUint(this._nextToken);
      const padded = new Uint8Array(4);
      padded.set(token, 4 - token.length);
      if (!this._pending.has(hex(padded))) return padded;
    }
  }

  /**
   * Send a request.  `path` may carry a query ("/a?x=1"); with `proxyUri` (an absolute
   * CoAP URI) the request goes through the server's forward proxy instead, with Proxy-Uri
   * and no Uri-Path or Uri-Query (RFC 7252 section 5.10.2).  Resolves with the response
   * ({code, token, options, payload}); rejects with CoapConnectionError if the connection
   * ends first.  With `observe` set, use observe() instead.
   */
  request({
    method = "GET", path = "/", proxyUri, payload = EMPTY, contentFormat, accept, options = [],
  } = {}) {
    return new Promise((resolve, reject) => {
      this._sendRequest({ method, path, proxyUri, payload, contentFormat, accept, options },
        { resolve, reject });
    });
  }

  /**
   * Observe a resource (RFC 7641 over RFC 8323 section 7): GET with Observe = 0.  Each
   * notification calls onNotification(message, {index, final, registered, deregistered})
   * (deregistered: the answer to our cancel(), final); the returned promise
   * resolves to a handle {token, cancel()}.  cancel() deregisters with GET Observe = 1 and
   * the same token (RFC 8323 section 7.4).  A response without an Observe option ends the
   * observation (the server did not register it) and is final.  With `proxyUri` the
   * resource is observed through the server's forward proxy (RFC 7641 section 5), and the
   * deregistering GET carries the same Proxy-Uri.
   */
  observe(path, onNotification, { accept, proxyUri } = {}) {
    const observer = { onNotification, count: 0, path, proxyUri, accept, finished: false };
    return new Promise((resolve, reject) => {
      const handle = { token: null, cancel: () => this._cancelObservation(handle, observer) };
      const token = this._sendRequest(
        { method: "GET", path, proxyUri, accept, options: [[Option.OBSERVE, 0]] },
        { resolve: () => {}, reject, observer });
      if (token === null) return;
      handle.token = token;
      observer.handle = handle;
      resolve(handle);
    });
  }

  _cancelObservation(handle, observer) {
    const key = hex(handle.token);
    const entry = this._pending.get(key);
    if (!entry || observer.finished) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      // The deregistering GET reuses the token; its response ends the observation.
      observer.deregistering = true;
      entry.resolve = resolve;
      entry.reject = reject;
      const options = [[Option.OBSERVE, 1],
        ...targetOptions({ path: observer.path, proxyUri: observer.proxyUri })];
      if (observer.accept !== undefined) options.push([Option.ACCEPT, observer.accept]);
      this._send({ code: Code.GET, token: handle.token, options });
    });
  }

  _sendRequest({ method, path, proxyUri, payload, contentFormat, accept, options }, entry) {
    const code = METHOD_CODES[String(method).toUpperCase()];
    if (code === undefined) {
      entry.reject(new Error(`unknown method ${method}`));
      return null;
    }
    if (this.closed || !this.ws) {
      entry.reject(new CoapConnectionError("not connected"));
      return null;
    }
    let all;
    try {
      all = [...options, ...targetOptions({ path, proxyUri })];
    } catch (error) {
      entry.reject(error);
      return null;
    }
    if (contentFormat !== undefined && contentFormat !== null && contentFormat !== "") {
      all.push([Option.CONTENT_FORMAT, Number(contentFormat)]);
    }
    if (accept !== undefined && accept !== null && accept !== "") {
      all.push([Option.ACCEPT, Number(accept)]);
    }
    return this._sendMessage(code, all, toBytes(payload), entry);
  }

  _sendMessage(code, options, payload, entry) {
    const token = this._allocateToken();
    const message = { code, token, options, payload };
    const size = encodeMessage(message).length;
    if (size > this.peerMaxMessageSize) {
      entry.reject(new Error(
        `request of ${size} bytes exceeds the server's Max-Message-Size of ` +
          `${this.peerMaxMessageSize} bytes`));
      return null;
    }
    entry.sent = { code, options, payload };
    this._pending.set(hex(token), entry);
    this._send(message);
    return token;
  }

  // The rest of a representation sent block-wise (RFC 7959 section 2.4, section 3.4 for a
  // notification): GET or FETCH each next block with the first request's options (less
  // Observe and Block2), check that the ETag stays the same, and resolve with the first
  // response's options (less Block2) and the whole payload.  Bounded by maxBodySize.
  _fetchRest(first, sent) {
    const block = decodeBlock2(getUintOption(first, Option.BLOCK2));
    const etag = getOption(first, Option.ETAG);
    const chunks = [first.payload];
    let total = first.payload.length;
    const base = sent.options.filter(([n]) => n !== Option.OBSERVE && n !== Option.BLOCK2);
    const size = 1 << (block.szx + 4);
    return new Promise((resolve, reject) => {
      const next = (num) => {
        const entry = {
          resolve: (message) => {
            if (!isSuccess(message.code)) {
              resolve(message); // an error while reading the rest ends the transfer with it
              return;
            }
            const got = decodeBlock2(getUintOption(message, Option.BLOCK2));
            const tag = getOption(message, Option.ETAG);
            if (!got || got.num * (1 << (got.szx + 4)) !== total) {
              reject(new Error("the server's Block2 answer does not continue the transfer"));
              return;
            }
            if (etag !== undefined && (tag === undefined || hex(tag) !== hex(etag))) {
              reject(new Error("the representation changed during the block-wise transfer (new ETag)"));
              return;
            }
            total += message.payload.length;
            if (total > this.maxBodySize) {
              reject(new Error(`the body exceeds ${this.maxBodySize} bytes; not reassembled`));
              return;
            }
            chunks.push(message.payload);
            if (got.more) {
              next(Math.floor(total / (1 << (got.szx + 4))));
              return;
            }
            const payload = new Uint8Array(total);
            let at = 0;
            for (const chunk of chunks) {
              payload.set(chunk, at);
              at += chunk.length;
            }
            resolve({ ...first, options: first.options.filter(([n]) => n !== Option.BLOCK2), payload });
          },
          reject,
        };
        this._sendMessage(sent.code,
          [...base, [Option.BLOCK2, num * 16 + block.szx]], sent.payload, entry);
      };
      if (total % size !== 0) reject(new Error("a Block2 block shorter than its size, with more to come"));
      else next(total / size);
    });
  }

  _blockwise(message, entry) {
    const block = decodeBlock2(getUintOption(message, Option.BLOCK2));
    return block !== null && block.more && block.num === 0 && isSuccess(message.code) &&
      (entry.sent.code === Code.GET || entry.sent.code === Code.FETCH);
  }

  /** Send a CoAP Ping (RFC 8323 section 5.4); resolves with the round trip in ms. */
  ping() {
    return new Promise((resolve, reject) => {
      if (this.closed || !this.ws) {
        reject(new CoapConnectionError("not connected"));
        return;
      }
      this._pings.push({ resolve, reject, sent: performance.now() });
      this._send({ code: Code.PING });
    });
  }

  /**
   * Release the connection (RFC 8323 section 5.5): send Release and let the server close
   * once it has answered what it received; close ourselves after `timeoutMs` otherwise.
   */
  release(diagnostic = "", { timeoutMs = RELEASE_TIMEOUT_MS } = {}) {
    if (this.closed || !this.ws || this.closeInfo) return;
    this._send({ code: Code.RELEASE, payload: diagnostic });
    this.closeInfo = { diagnostic: "we released the connection" };
    this._releaseTimer = setTimeout(() => {
      this.closeInfo = { diagnostic: "we released the connection; the server did not close it" };
      this.ws.close(1000, "released");
    }, timeoutMs);
  }

  /** Abort with a diagnostic (RFC 8323 section 5.6) and close the WebSocket. */
  abort(diagnostic) {
    if (this.closed || !this.ws) return;
    this.closeInfo = { diagnostic: `aborted by us: ${diagnostic}` };
    try {
      this._send({ code: Code.ABORT, payload: diagnostic });
    } finally {
      // Browsers may only send close code 1000 or 3000-4999.
      this.ws.close(1000, "CoAP Abort sent");
      this.closed = true;
      this._failAll(this.closeInfo.diagnostic);
    }
  }

  close() {
    if (this.ws && !this.closed) this.ws.close(1000);
  }

  _closed(code, reason) {
    clearTimeout(this._releaseTimer);
    if (this.responder) this.responder.close();
    const diagnostic = this.closeInfo?.diagnostic ?? `connection closed (${code}${reason ? `: ${reason}` : ""})`;
    this.closed = true;
    this._failAll(diagnostic);
    if (this.onclose) this.onclose({ code, reason, diagnostic });
    this.onclose = null;
  }

  _failAll(diagnostic) {
    const pending = [...this._pending.values()];
    this._pending.clear();
    for (const entry of pending) entry.reject(new CoapConnectionError(diagnostic));
    const pings = this._pings;
    this._pings = [];
    for (const ping of pings) ping.reject(new CoapConnectionError(diagnostic));
  }

  _receive(data) {
    if (this.closed) return;
    if (typeof data === "string") {
      this.abort("text WebSocket message; CoAP messages travel in binary messages");
      return;
    }
    if (data.byteLength > this.maxMessageSize) {
      // Larger than we said we accept (RFC 8323 section 5.3.1): the peer broke the CSM.
      this.abort(`a message of ${data.byteLength} bytes exceeds our Max-Message-Size of ` +
        `${this.maxMessageSize} bytes`);
      return;
    }
    let message;
    try {
      message = decodeMessage(new Uint8Array(data));
    } catch (error) {
      if (error instanceof CoapFormatError) {
        this.abort(error.message);
        return;
      }
      throw error;
    }
    if (this.onreceived) this.onreceived(message);
    const { code } = message;
    if (code === Code.EMPTY) return; // always ignored (RFC 8323 section 3.4)
    if (!this.peerCsmReceived && code !== Code.CSM && code !== Code.ABORT) {
      this.abort(`expected a CSM as the first message, got ${codeDotted(code)}`);
      return;
    }
    if (isSignaling(code)) {
      this._signal(message);
    } else if (isRequest(code)) {
      if (this.responder) {
        this.responder.handle(message); // RFC 8323 section 3.3
      } else {
        this._send({ code: Code.NOT_IMPLEMENTED, token: message.token,
          payload: "no resources are served in the browser" });
      }
    } else if (isResponse(code)) {
      this._response(message);
    }
  }

  _signal(message) {
    const { code } = message;
    const known = SIGNALING_OPTION_INFO.get(code) ?? new Map();
    for (const [number] of message.options) {
      if (number % 2 === 1 && !known.has(number) && code !== Code.ABORT) {
        this.abort(`unknown critical option ${number} in ${codeDotted(code)}`);
        return;
      }
    }
    let info = {};
    if (code === Code.CSM) {
      const mms = getUintOption(message, SignalingOption.MAX_MESSAGE_SIZE);
      if (mms !== undefined) this.peerMaxMessageSize = mms;
      if (getOption(message, SignalingOption.BLOCK_WISE_TRANSFER) !== undefined) {
        this.peerBlockWise = true;
      }
      this.peerCsmReceived = true;
      info = { maxMessageSize: this.peerMaxMessageSize, blockWise: this.peerBlockWise };
    } else if (code === Code.PING) {
      const custody = getOption(message, SignalingOption.CUSTODY) !== undefined;
      this._send({ code: Code.PONG, token: message.token,
        options: custody ? [[SignalingOption.CUSTODY, EMPTY]] : [] });
      info = { custody };
    } else if (code === Code.PONG) {
      const ping = this._pings.shift();
      if (ping) {
        const rtt = performance.now() - ping.sent;
        ping.resolve(rtt);
        info = { rtt };
      }
    } else if (code === Code.RELEASE || code === Code.ABORT) {
      const diagnostic = new TextDecoder().decode(message.payload);
      const who = code === Code.RELEASE ? "released" : "aborted";
      this.closeInfo = { diagnostic: `the server ${who} the connection${diagnostic ? `: ${diagnostic}` : ""}` };
      info = { diagnostic };
      if (this.onsignal) this.onsignal(message, info);
      this.ws.close(1000);
      return;
    }
    if (this.onsignal) this.onsignal(message, info);
  }

  _response(message) {
    const key = hex(message.token);
    const entry = this._pending.get(key);
    if (!entry) return; // late or unknown: ignored
    const { observer } = entry;
    if (!observer) {
      this._pending.delete(key);
      if (this._blockwise(message, entry)) {
        this._fetchRest(message, entry.sent).then(entry.resolve, entry.reject);
      } else {
        entry.resolve(message);
      }
      return;
    }
    const registered = getOption(message, Option.OBSERVE) !== undefined;
    const final = observer.deregistering || !registered || !isSuccess(message.code);
    observer.count += 1;
    if (final) {
      this._pending.delete(key);
      observer.finished = true;
    }
    const deregistered = Boolean(observer.deregistering);
    const info = { index: observer.count, final, registered, deregistered };
    if (this._blockwise(message, entry)) {
      // The notification's first block; the rest with plain GETs (RFC 7959 section 2.6).
      // A newer notification arriving meanwhile wins: the older one is not delivered.
      observer.generation = (observer.generation ?? 0) + 1;
      const generation = observer.generation;
      const sent = { ...entry.sent, options: entry.sent.options.filter(([n]) => n !== Option.OBSERVE) };
      this._fetchRest(message, sent).then((whole) => {
        if (observer.generation !== generation) return;
        observer.onNotification(whole, info);
        if (final) entry.resolve(whole);
      }, (error) => {
        if (observer.generation !== generation) return;
        observer.onNotification({ ...message, error }, info);
        if (final) entry.resolve(message);
      });
      return;
    }
    observer.generation = (observer.generation ?? 0) + 1;
    observer.onNotification(message, info);
    if (final) entry.resolve(message);
  }
}

function decodeBlock2(value) {
  return value === undefined ? null : decodeBlock(value);
}

/** The parts of a Block1 or Block2 option value (RFC 7959 section 2.2). */
export function decodeBlock(value) {
  return { num: Math.floor(value / 16), more: (value & 0x08) !== 0, szx: value & 0x07 };
}

export function encodeBlock({ num, more = false, szx }) {
  return num * 16 + (more ? 8 : 0) + szx;
}

function isSuccess(code) {
  return code >> 5 === 2;
}
