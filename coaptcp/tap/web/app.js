// The page's behaviour: connect, list /.well-known/core, send requests, show responses.
// All server data is put into the page with textContent, never as HTML.

import {
  CoapWebSocketClient,
  Code,
  ContentFormat,
  Option,
  codeText,
  describeOptions,
  formatPayload,
  getUintOption,
  isResponse,
  parseLinkFormat,
  proxyUriValue,
} from "./coap.js";
import { CoapDevice, DeviceState } from "./device.js";
import { ResourceTable } from "./server.js";

const $ = (id) => document.getElementById(id);
let client = null;

function defaultEndpoint() {
  if (location.protocol === "http:" || location.protocol === "https:") {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/.well-known/coap`;
  }
  return "ws://localhost:8080/.well-known/coap";
}

function element(tag, { text, className, attrs } = {}, children = []) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = text;
  if (className) node.className = className;
  for (const [name, value] of Object.entries(attrs ?? {})) node.setAttribute(name, value);
  for (const child of children) node.append(child);
  return node;
}

function setStatus(text, state) {
  const status = $("status");
  status.textContent = text;
  status.dataset.state = state;
}

function setConnected(connected) {
  for (const id of ["release", "ping", "reload", "send"]) $(id).disabled = !connected;
  $("connect").disabled = connected;
  $("url").disabled = connected;
}

function codeClass(code) {
  if (!isResponse(code)) return "code";
  return code >> 5 === 2 ? "code success" : "code error";
}

// One response (or notification) as a block: code, options, payload.
function renderMessage(message, { testid = "response" } = {}) {
  const block = element("div", { className: "message", attrs: { "data-testid": testid } });
  block.append(element("span", {
    text: codeText(message.code), className: codeClass(message.code),
    attrs: { "data-testid": "code" },
  }));
  const options = describeOptions(message);
  if (options.length) {
    const table = element("table", { attrs: { "data-testid": "options" } });
    for (const option of options) {
      table.append(element("tr", {}, [
        element("th", { text: option.name }),
        element("td", { text: option.value }),
      ]));
    }
    block.append(table);
  }
  const shown = formatPayload(message.payload, getUintOption(message, Option.CONTENT_FORMAT));
  if (shown.kind === "empty") {
    block.append(element("p", { text: "(no payload)", className: "note" }));
  } else {
    block.append(element("pre", {
      text: shown.text, className: `payload ${shown.kind}`,
      attrs: { "data-testid": "payload", "data-kind": shown.kind },
    }));
  }
  return block;
}

function newResultCard(requestLine) {
  const card = element("article", { className: "result", attrs: { "data-testid": "result" } });
  const header = element("header", {}, [
    element("span", { text: requestLine, className: "request-line",
      attrs: { "data-testid": "request-line" } }),
    element("time", { text: new Date().toLocaleTimeString() }),
  ]);
  card.append(header);
  $("results").prepend(card);
  return { card, header };
}

function showError(card, error) {
  card.append(element("p", { text: `Failed: ${error.message}`, className: "note",
    attrs: { "data-testid": "failure" } }));
}

// What a result card says it asked for: the path, or the URI asked of the proxy.
function targetLine(path, proxyUri) {
  return proxyUri ? `${proxyUri} (through the proxy)` : path;
}

function markProxied(card, proxyUri) {
  if (proxyUri) card.dataset.proxyUri = proxyUri;
}

async function sendRequest({ method, path, proxyUri, payload, contentFormat }) {
  const { card } = newResultCard(`${method} ${targetLine(path, proxyUri)}`);
  markProxied(card, proxyUri);
  try {
    const response = await client.request({ method, path, proxyUri, payload, contentFormat });
    card.append(renderMessage(response));
    return response;
  } catch (error) {
    showError(card, error);
    return null;
  }
}

// Why an observation is over, for the card (RFC 7641 sections 3.2 and 3.6).
function observationEnd(message, { registered, deregistered }) {
  if (deregistered) return "Observation cancelled.";
  if (message.code >> 5 !== 2) return `Observation ended: ${codeText(message.code)}.`;
  if (registered) return "Observation ended.";
  return "Observation ended: the response carried no Observe option, so the server " +
    "sends no notifications for this resource.";
}

async function startObservation(path, { proxyUri } = {}) {
  const { card, header } = newResultCard(`GET ${targetLine(path, proxyUri)} (Observe)`);
  card.dataset.observe = "true";
  markProxied(card, proxyUri);
  const counter = element("span", { text: "0 notifications", className: "note",
    attrs: { "data-testid": "notification-count" } });
  const cancel = element("button", { text: "Cancel observation",
    attrs: { type: "button", "data-testid": "cancel-observe" } });
  const state = element("p", { text: "Observing…", className: "note",
    attrs: { "data-testid": "observe-state" } });
  header.append(counter, cancel);
  card.append(state);
  const onNotification = (message, { index, final, registered, deregistered }) => {
    counter.textContent = `${index} notification${index === 1 ? "" : "s"}`;
    const block = renderMessage(message, { testid: "notification" });
    block.classList.add("notification");
    block.prepend(element("span", { text: `#${index} `, className: "note" }));
    card.append(block);
    if (final) {
      cancel.disabled = true;
      state.textContent = observationEnd(message, { registered, deregistered });
    }
  };
  try {
    const handle = await client.observe(path, onNotification, { proxyUri });
    cancel.addEventListener("click", async () => {
      cancel.disabled = true;
      try {
        await handle.cancel();
      } catch (error) {
        showError(card, error);
      }
    });
  } catch (error) {
    cancel.disabled = true;
    showError(card, error);
  }
}

async function loadResources() {
  const list = $("resources");
  list.replaceChildren(element("li", { text: "Loading…", className: "note" }));
  let response;
  try {
    response = await client.request({ method: "GET", path: "/.well-known/core" });
  } catch (error) {
    list.replaceChildren(element("li", { text: `Failed: ${error.message}` }));
    return;
  }
  if (response.code !== Code.CONTENT) {
    list.replaceChildren(element("li", { text: `/.well-known/core: ${codeText(response.code)}` }));
    return;
  }
  let links;
  try {
    links = parseLinkFormat(new TextDecoder().decode(response.payload));
  } catch (error) {
    list.replaceChildren(element("li", { text: `Cannot read the link format: ${error.message}` }));
    return;
  }
  list.replaceChildren(...links.map((link) => {
    const attrs = Object.entries(link.attributes)
      .map(([name, value]) => (value === true ? name : `${name}=${value}`)).join("; ");
    const pick = element("button", { text: link.href,
      attrs: { type: "button", "data-testid": "resource", "data-href": link.href } });
    pick.addEventListener("click", () => {
      $("path").value = link.href;
      const ct = link.attributes.ct;
      if (ct === String(ContentFormat.JSON) || ct === String(ContentFormat.TEXT)) {
        $("format").value = ct;
      }
    });
    const get = element("button", { text: "GET", attrs: { type: "button" } });
    get.addEventListener("click", () => sendRequest({ method: "GET", path: link.href }));
    const observe = element("button", { text: "Observe", attrs: { type: "button" } });
    observe.addEventListener("click", () => startObservation(link.href));
    return element("li", { attrs: { "data-href": link.href } },
      [pick, get, observe, element("span", { text: attrs, className: "attrs" })]);
  }));
}

async function connect(event) {
  event.preventDefault();
  const url = $("url").value.trim();
  setStatus(`Connecting to ${url}…`, "connecting");
  $("connect").disabled = true;
  client = new CoapWebSocketClient(url);
  client.onsignal = (message, info) => {
    if (message.code === Code.CSM) {
      setStatus(`Connected to ${url}. Server Max-Message-Size: ${info.maxMessageSize} bytes.`,
        "open");
    }
  };
  client.onclose = ({ diagnostic }) => {
    setStatus(`Disconnected: ${diagnostic}.`, "closed");
    setConnected(false);
  };
  try {
    await client.connect();
  } catch (error) {
    setStatus(`Cannot connect: ${error.message}`, "closed");
    $("connect").disabled = false;
    return;
  }
  setStatus(`Connected to ${url}.`, "open");
  setConnected(true);
  await loadResources();
}

function submitRequest(event) {
  event.preventDefault();
  $("request-error").textContent = "";
  const method = $("method").value;
  const path = $("path").value.trim() || "/";
  let proxyUri;
  if ($("proxy-uri").value.trim() !== "") {
    try {
      proxyUri = proxyUriValue($("proxy-uri").value);
    } catch (error) {
      $("request-error").textContent = `Proxy-Uri: ${error.message}.`;
      return;
    }
  }
  if ($("observe").checked) {
    if (method !== "GET") {
      $("request-error").textContent = "Observe works with GET only.";
      return;
    }
    startObservation(path, { proxyUri });
    return;
  }
  const withBody = method === "PUT" || method === "POST";
  const contentFormat = withBody ? Number($("format").value) : undefined;
  const payload = withBody ? $("payload").value : "";
  if (withBody && contentFormat === ContentFormat.JSON) {
    try {
      JSON.parse(payload);
    } catch (error) {
      $("request-error").textContent = `The payload is not valid JSON: ${error.message}`;
      return;
    }
  }
  sendRequest({ method, path, proxyUri, payload, contentFormat });
}

// Path does not apply while a Proxy-Uri is given; the field says so by being disabled.
function proxyUriChanged() {
  $("path").disabled = $("proxy-uri").value.trim() !== "";
}

async function ping() {
  try {
    const rtt = await client.ping();
    setStatus(`${$("status").textContent.replace(/ Pong in .*$/, "")} Pong in ${rtt.toFixed(1)} ms.`,
      "open");
  } catch (error) {
    setStatus(`Ping failed: ${error.message}`, "closed");
  }
}

$("url").value = defaultEndpoint();
$("connect-form").addEventListener("submit", connect);
$("request-form").addEventListener("submit", submitRequest);
$("release").addEventListener("click", () => client?.release("closed from the page"));
$("ping").addEventListener("click", ping);
$("reload").addEventListener("click", loadResources);
$("proxy-uri").addEventListener("input", proxyUriChanged);
$("proxy-uri").addEventListener("change", proxyUriChanged);
proxyUriChanged();

// -- the page as a CoAP server: /clicks, registered with the resource directory -------

const served = new ResourceTable();
let clicks = 0;
let device = null;
served.add("/clicks", {
  GET: () => ({ contentFormat: ContentFormat.TEXT, payload: String(clicks) }),
  observable: true,
  attributes: { rt: "demo.clicks", ct: ContentFormat.TEXT, title: "Clicks on the page" },
});

function showObservers() {
  $("observers").textContent = String(served.observerCount("/clicks"));
}

function registrationText({ state, endpoint, location, error, retryInMs, registrations }) {
  switch (state) {
    case DeviceState.CONNECTING: return `Connecting as ${endpoint}…`;
    case DeviceState.REGISTERING: return `Registering ${endpoint}…`;
    case DeviceState.REGISTERED:
      return `Registered as ${endpoint} at ${location}` +
        (registrations > 1 ? ` (registration ${registrations}, after a reconnect).` : ".");
    case DeviceState.WAITING:
      return `${error ?? "Not registered"}; retrying in ${(retryInMs / 1000).toFixed(1)} s.`;
    case DeviceState.STOPPED: return "Stopped; not registered.";
    default: return "Not registered.";
  }
}

function register(event) {
  event.preventDefault();
  const endpoint = $("endpoint").value.trim();
  try {
    device = new CoapDevice($("url").value.trim(), { endpoint, resources: served });
  } catch (error) {
    $("registration").textContent = error.message;
    return;
  }
  device.onstate = (info) => {
    $("registration").textContent = registrationText(info);
    $("registration").dataset.state = info.state;
    showObservers();
  };
  $("register").disabled = true;
  $("endpoint").disabled = true;
  $("unregister").disabled = false;
  device.start();
}

function unregister() {
  device?.stop();
  device = null;
  $("register").disabled = false;
  $("endpoint").disabled = false;
  $("unregister").disabled = true;
}

$("click").addEventListener("click", () => {
  clicks += 1;
  $("clicks").textContent = String(clicks);
  served.changed("/clicks");
});
$("serve-form").addEventListener("submit", register);
$("unregister").addEventListener("click", unregister);
setInterval(showObservers, 1000);
document.body.dataset.ready = "true";
