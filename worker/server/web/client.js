// ws-counter's JavaScript client: exactly-once increments and live totals.
// An ES module with no dependencies, served by every worker at /client.js.
//
//   import { connect } from "/client.js";
//   const votes = connect("ws://localhost:8000", { counter: "votes" });
//   await votes.ready;
//   const ack = await votes.increment(5n);
//   for await (const total of votes.totals()) console.log(total.total);
//
// The rules are those of the Python library (ws_counter_client/rules.py,
// docs/clients.md): a session numbers its increments 1, 2, 3, ...; after a
// reconnect or a refusal that applied nothing they are sent again, in order
// and unchanged, so none is lost or doubled; when the worker no longer knows
// the session, what was outstanding ends as unknown (never sent again) and a
// new session starts; a total is news if it is of a new epoch or has a
// higher seq. Totals, seqs and `by` are BigInt: they are exact signed
// 64-bit integers, which a JavaScript number cannot hold.

const RESENDABLE = new Set(["unavailable", "rate_limited", "out_of_order"]);
const CONSUMES_NUMBER = new Set(["overflow"]);
// Handshake refusals a retry cannot change. A browser cannot see the status of
// a refused WebSocket handshake, so there the client keeps retrying.
export const PERMANENT_STATUSES = new Set([400, 401, 403, 404]);
// The code of a note about a server message the core could not read.
export const MALFORMED = "malformed_message";
const UNSURE = "refused now, but an earlier attempt of this increment may have been applied (its"
  + " connection was lost, or Redis could not say); it is not sent again";
const FORGOTTEN = "the worker no longer knows this client's session (idle past WS_SESSION_TTL): this"
  + " increment may or may not have been applied before; it is not sent again";
const INT64_MIN = -(2n ** 63n), INT64_MAX = 2n ** 63n - 1n;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Base class of the client's errors (results.CounterClientError). */
export class CounterClientError extends Error {
  constructor(message) {
    super(message);
    this.name = this.constructor.name;
  }
}

/** The worker refused the handshake with a status a retry cannot change. */
export class ConnectionRefused extends CounterClientError {
  constructor(status, reason) {
    super("HTTP " + status + ": " + reason);
    this.status = status;
    this.reason = reason;
  }
}

/** The worker refused an increment for good; it was not applied. */
export class IncrementRefused extends CounterClientError {
  constructor(code, message) {
    super(code + ": " + message);
    this.code = code;
    this.reason = message;
  }
}

/** What became of the increment cannot be known; it is not sent again. */
export class IncrementUnknown extends CounterClientError {}

/** The client stopped before the increment was acknowledged. */
export class ClientClosed extends CounterClientError {}

/** 96 random bits as 16 URL-safe characters (the protocol asks for 8 to 64). */
export function newSessionId() {
  return Array.from(crypto.getRandomValues(new Uint8Array(16)), (b) => ALPHABET[b % 64]).join("");
}

/** ``by`` as an exact BigInt in the signed 64-bit range; a TypeError/RangeError otherwise. */
export function checkBy(by) {
  let value;
  if (typeof by === "bigint") value = by;
  else if (typeof by === "number" && Number.isSafeInteger(by)) value = BigInt(by);
  else if (typeof by === "string" && /^[+-]?\d+$/.test(by.trim())) value = BigInt(by.trim());
  else throw new TypeError("by must be a whole number (a BigInt, a safe integer or its digits)");
  if (value < INT64_MIN || value > INT64_MAX) throw new RangeError("by must be within the signed 64-bit range");
  return value;
}

/** Read a server message, taking integer fields from the text so none is rounded. */
export function parseMessage(text) {
  const message = JSON.parse(text);
  if (message === null || typeof message !== "object" || Array.isArray(message)) return {};
  for (const key of ["total", "seq"]) {
    const match = text.match(new RegExp('"' + key + '"\\s*:\\s*(-?\\d+)'));
    if (match && Number.isInteger(message[key])) message[key] = BigInt(match[1]);
  }
  return message;
}

/** Outstanding increments by position, in the order sent (rules.Book). */
class Book {
  constructor() {
    this.outstanding = new Map(); // position -> { by, frame, ticket, position, resends }
  }

  /** The frames to send of every outstanding increment from `start` (counted as sent). */
  frames(start = 1) {
    const items = [...this.outstanding].filter(([p]) => p >= start).map(([, item]) => item);
    for (const item of items) item.sent += 1;
    return items.map((item) => item.frame);
  }

  drop(item) { this.outstanding.delete(item.position); }

  takeAll() {
    const items = [...this.outstanding.values()];
    this.outstanding = new Map();
    return items;
  }

  resend(item, start = null) {
    item.resends += 1;
    return { resend: start ?? item.position, attempt: item.resends, item };
  }
}

/** A session: increments numbered 1, 2, 3, ... (rules.Session). */
export class Session extends Book {
  constructor(id = newSessionId()) {
    super();
    this.id = id;
    this.nextN = 1;
  }

  add(by, ticket) {
    const n = this.nextN++;
    const frame = '{"op":"incr","by":' + checkBy(by).toString() + ',"session":"' + this.id + '","n":' + n + "}";
    const item = { by, frame, ticket, position: n, resends: 0, sent: 0 };
    this.outstanding.set(n, item);
    return item;
  }

  number(message) {
    if (message.session !== this.id || !Number.isInteger(message.n)) return null;
    return this.outstanding.has(message.n) ? message.n : null;
  }

  settle(message) {
    const n = this.number(message);
    if (n === null) return null;
    const item = this.outstanding.get(n);
    this.outstanding.delete(n);
    return item;
  }

  /** {fail: item} | {unsure: item} | {resend: start, attempt, item} | {forgotten: items} | null */
  refused(message, code) {
    const n = this.number(message);
    if (n === null) return null;
    const item = this.outstanding.get(n);
    if (!RESENDABLE.has(code)) {
      this.outstanding.delete(n);
      // Sent more than once: an earlier attempt may have been applied; its number stays used.
      if (item.sent > 1) return { unsure: item };
      // Refused before it reached Redis: the next increment takes its number.
      if (!CONSUMES_NUMBER.has(code) && n === this.nextN - 1) this.nextN = n;
      return { fail: item };
    }
    const expected = message.expected;
    if (code !== "out_of_order" || !Number.isInteger(expected)) return this.resend(item);
    const numbers = [...this.outstanding.keys()];
    if (expected < Math.min(...numbers)) return this.forget();
    return this.resend(item, Math.min(...numbers.filter((k) => k >= expected)));
  }

  // The worker forgot the session (idle past WS_SESSION_TTL): whether the
  // outstanding increments were applied before cannot be told any more.
  forget() {
    const items = this.takeAll();
    this.id = newSessionId();
    this.nextN = 1;
    return { forgotten: items };
  }
}

/** One id per increment, prefix-1, prefix-2, ... (rules.Ids). */
export class Ids extends Book {
  constructor(prefix = newSessionId()) {
    super();
    this.prefix = prefix;
    this.count = 0;
    this.positions = new Map();
  }

  add(by, ticket) {
    const key = this.prefix + "-" + ++this.count;
    const frame = '{"op":"incr","by":' + checkBy(by).toString() + ',"id":' + JSON.stringify(key) + "}";
    const item = { by, frame, ticket, position: this.count, resends: 0, sent: 0 };
    this.outstanding.set(this.count, item);
    this.positions.set(key, this.count);
    return item;
  }

  settle(message) {
    const position = this.positions.get(message.id);
    if (position === undefined) return null;
    this.positions.delete(message.id);
    const item = this.outstanding.get(position) ?? null;
    this.outstanding.delete(position);
    return item;
  }

  refused(message, code) {
    const position = this.positions.get(message.id);
    if (position === undefined || !this.outstanding.has(position)) return null;
    const item = this.outstanding.get(position);
    if (RESENDABLE.has(code)) return this.resend(item);
    this.outstanding.delete(position);
    this.positions.delete(message.id);
    return item.sent > 1 ? { unsure: item } : { fail: item };
  }

  drop(item) {
    super.drop(item);
    for (const [key, position] of this.positions) if (position === item.position) this.positions.delete(key);
  }
}

/** The refusals of one burst, answered by one resend from the lowest position (rules.ResendFrom). */
export class ResendFrom {
  constructor() { this.start = null; }

  ask(start) {
    const first = this.start === null;
    this.start = first ? start : Math.min(this.start, start);
    return first;
  }

  take() {
    const start = this.start ?? 1;
    this.start = null;
    return start;
  }
}

/** The newest state seen of one counter (rules.Freshness). */
export class Freshness {
  constructor() {
    this.epoch = null;
    this.seq = null;
  }

  takeIfNews(epoch, seq) {
    if (this.isOld(epoch, seq) || (this.epoch === epoch && seq === this.seq)) return false;
    this.epoch = epoch;
    this.seq = seq;
    return true;
  }

  isOld(epoch, seq) { return this.epoch === epoch && this.seq !== null && seq < this.seq; }
}

/** The largest delay before retry number `attempt` (0-based): min(cap, first * 2**attempt). */
export function backoffCeiling(first, cap, attempt) {
  return Math.min(cap, first * 2 ** Math.min(attempt, 64));
}

/**
 * url pointed at counter on the same service, with ?token= when given. A path
 * in front of /counters/ (a proxy's prefix) is kept; a URL that already names
 * the counter (or the root, for "default") is kept as given.
 */
export function counterUrl(url, counter, token) {
  const target = new URL(url);
  // The page's http(s):// address names the same service (WEBSOCKET_SCHEMES in urls.py).
  const scheme = { "ws:": "ws:", "wss:": "wss:", "http:": "ws:", "https:": "wss:" }[target.protocol];
  if (!scheme) throw new TypeError(url + " is not a ws://, wss://, http:// or https:// URL");
  if (scheme !== target.protocol) target.href = scheme + target.href.slice(target.protocol.length);
  const prefix = target.pathname.replace(/\/+$/, "");
  const namesIt = prefix.endsWith("/counters/" + counter) || (counter === "default" && prefix === "");
  if (counter !== undefined && counter !== null && !namesIt) {
    target.pathname = prefix.split("/counters/")[0] + "/counters/" + counter;
  }
  if (token) target.searchParams.set("token", token);
  return target.toString();
}

/** The counter a URL names: what follows /counters/, else "default". */
export function counterOfUrl(url) {
  const path = new URL(url).pathname;
  const at = path.indexOf("/counters/");
  const name = at < 0 ? "" : path.slice(at + "/counters/".length).replace(/\/+$/, "");
  return name || "default";
}

/**
 * The client as a state machine without I/O (ws_counter_client/core.py, rule
 * for rule): handle(event) takes what happened and returns what to do.
 *
 * events:  {type: "connected"} {type: "received", text} {type: "lost", detail, status, reason}
 *          {type: "timerFired", timer} {type: "incrementAsked", by, ticket} {type: "closeAsked"}
 * actions: {type: "send", frames} {type: "resolve", ticket, ack} {type: "reject", ticket, error}
 *          {type: "show", total} {type: "regress", total} {type: "note", code, message}
 *          {type: "arm", timer, delay} {type: "reconnect", delay, detail} {type: "stop", error}
 *
 * policy: backoff [first, cap] (in the unit the adapter's timers use),
 * maxInFlight (64), maxResends and maxReconnects (null: no limit).
 */
export class ClientCore {
  constructor(counter, book, policy = {}, uniform = (low, high) => low + Math.random() * (high - low)) {
    this.counter = counter;
    this.book = book;
    this.policy = { backoff: [0.5, 15], maxInFlight: 64, maxResends: null, maxReconnects: null, ...policy };
    this.freshness = new Freshness();
    this.lastTotal = new Freshness();
    this.uniform = uniform;
    this.waiting = [];
    this.resendFrom = new ResendFrom();
    this.connected = false;
    this.stopped = false;
    this.reconnects = 0;
  }

  /** The seq of the newest state seen, to resume from (?since=). */
  get since() { return this.freshness.seq; }

  /** Every increment asked for and not yet answered. */
  tickets() {
    return [...[...this.book.outstanding.values()].map((item) => item.ticket), ...this.waiting.map(([, t]) => t)];
  }

  handle(event) {
    switch (event.type) {
      case "incrementAsked": return this.increment(event.by, event.ticket);
      case "received": return this.received(event.text);
      case "connected":
        this.connected = true;
        this.reconnects = 0;
        return this.send(this.book.frames());
      case "timerFired": {
        const start = this.resendFrom.take();
        return this.connected ? this.send(this.book.frames(start)) : [];
      }
      case "lost": return this.lost(event);
      case "closeAsked": return this.stop(null);
    }
    throw new TypeError("not an event: " + event.type);
  }

  increment(by, ticket) {
    checkBy(by);
    if (this.stopped) return [{ type: "reject", ticket, error: new ClientClosed("the client is closed") }];
    this.waiting.push([by, ticket]);
    return this.fill();
  }

  fill() {
    const limit = this.policy.maxInFlight;
    const items = [];
    while (this.waiting.length && (limit === null || this.book.outstanding.size < limit)) {
      items.push(this.book.add(...this.waiting.shift()));
    }
    if (!this.connected) return [];
    for (const item of items) item.sent += 1;
    return this.send(items.map((item) => item.frame));
  }

  send(frames) { return frames.length && this.connected ? [{ type: "send", frames }] : []; }

  received(text) {
    let message;
    try {
      message = parseMessage(text);
    } catch {
      return [note(MALFORMED, "not JSON")];
    }
    if (message.type === "total") return this.onTotal(message);
    if (message.type === "ack") return this.onAck(message);
    if (message.type === "error") return this.onError(message);
    return [note(MALFORMED, "no known type")];
  }

  onTotal(message) {
    const total = this.totalOf(message);
    if (total === null) return [note(MALFORMED, "a total without a valid state")];
    if (this.lastTotal.isOld(total.epoch, total.seq)) return [{ type: "regress", total }];
    this.lastTotal.takeIfNews(total.epoch, total.seq);
    return this.see(total);
  }

  onAck(message) {
    const item = this.book.settle(message);
    if (item === null) return [];
    const total = this.totalOf(message);
    const ack = {
      session: typeof message.session === "string" ? message.session : null,
      n: Number.isInteger(message.n) ? message.n : null,
      id: typeof message.id === "string" ? message.id : null,
      by: checkBy(item.by),
      total: total?.total ?? null,
      seq: total?.seq ?? null,
      epoch: total?.epoch ?? null,
      duplicate: message.duplicate === true,
    };
    const seen = total === null ? [] : this.see(total);
    return [...seen, { type: "resolve", ticket: item.ticket, ack }, ...this.fill()];
  }

  onError(message) {
    const code = String(message.code), text = String(message.message ?? "");
    const noted = [note(code, text)];
    const decision = this.book.refused(message, code);
    if (decision === null) return noted;
    if (decision.fail) {
      return [...noted, reject(decision.fail, new IncrementRefused(code, text)), ...this.fill()];
    }
    if (decision.unsure) {
      return [...noted, reject(decision.unsure, new IncrementUnknown(code + ": " + UNSURE)), ...this.fill()];
    }
    if (decision.forgotten) {
      const unknown = new IncrementUnknown(FORGOTTEN);
      return [...noted, ...decision.forgotten.map((item) => reject(item, unknown)), ...this.fill()];
    }
    const limit = this.policy.maxResends;
    if (limit !== null && decision.attempt > limit) {
      this.book.drop(decision.item);
      const refused = new IncrementRefused(code, text + " (refused " + decision.attempt + " times)");
      return [...noted, reject(decision.item, refused), ...this.fill()];
    }
    if (this.resendFrom.ask(decision.resend)) {
      return [...noted, { type: "arm", timer: "resend", delay: this.delay(decision.attempt) }];
    }
    return noted;
  }

  totalOf(message) {
    const { total, seq, epoch } = message;
    if (typeof total !== "bigint" || typeof seq !== "bigint" || typeof epoch !== "string") return null;
    const counter = typeof message.counter === "string" ? message.counter : this.counter;
    return { counter, total, seq, epoch, missed: message.missed === true };
  }

  see(total) { return this.freshness.takeIfNews(total.epoch, total.seq) ? [{ type: "show", total }] : []; }

  lost(event) {
    this.connected = false;
    if (this.stopped) return [];
    if (PERMANENT_STATUSES.has(event.status)) {
      return this.stop(new ConnectionRefused(event.status, event.reason || event.detail));
    }
    const limit = this.policy.maxReconnects;
    if (limit !== null && this.reconnects >= limit) {
      return this.stop(new CounterClientError("gave up after " + limit + " reconnects"));
    }
    this.reconnects += 1;
    return [{ type: "reconnect", delay: this.delay(this.reconnects - 1), detail: event.detail }];
  }

  stop(error) {
    if (this.stopped) return [];
    this.stopped = true;
    this.connected = false;
    const why = error ?? new ClientClosed("the client closed before this increment was acknowledged");
    const rejects = this.tickets().map((ticket) => ({ type: "reject", ticket, error: why }));
    this.book.takeAll();
    this.waiting = [];
    return [...rejects, { type: "stop", error }];
  }

  delay(attempt) {
    const ceiling = backoffCeiling(this.policy.backoff[0], this.policy.backoff[1], attempt);
    return this.uniform(ceiling / 2, ceiling);
  }
}

function note(code, message) { return { type: "note", code, message }; }
function reject(item, error) { return { type: "reject", ticket: item.ticket, error }; }

/**
 * A client of one counter over one WebSocket, reconnected as needed: the
 * adapter that carries out the core's actions with a WebSocket and timers.
 *
 * options: counter, token, backoff [firstMs, capMs] (default [500, 15000]),
 * maxInFlight (64), onStatus({state, retryAt, code}) with state one of
 * "connecting", "connected", "reconnecting", "closed".
 */
export function connect(url, options = {}) {
  return new CounterClient(counterUrl(url, options.counter, options.token), options);
}

export class CounterClient {
  constructor(url, options = {}) {
    this.url = url;
    // Acks carry no counter name; the totals they hold are this counter's.
    this.counter = counterOfUrl(url);
    this.onStatus = options.onStatus ?? (() => {});
    this.core = new ClientCore(this.counter, new Session(), {
      backoff: options.backoff ?? [500, 15000],
      maxInFlight: options.maxInFlight ?? 64,
    });
    this.latest = null;
    this.version = 0;
    this.socket = null;
    this.lastCode = null;
    this.waiters = new Set(); // totals() consumers waiting for news
    this.timers = new Map();
    this.reconnectTimer = null;
    this.ready = new Promise((resolve) => { this.resolveReady = resolve; });
    if (typeof addEventListener === "function") {
      this.onOnline = () => { if (!this.socket && !this.core.stopped) this.reconnectNow(); };
      addEventListener("online", this.onOnline);
    }
    this.open();
  }

  /** The newest total seen: {counter, total, seq, epoch, missed}, or null. */
  get total() { return this.latest; }
  get connected() { return this.core.connected; }
  get inFlight() { return this.core.tickets().length; }
  get closed() { return this.core.stopped; }

  /** Add `by`; resolves to the ack once applied, exactly once. */
  increment(by) {
    return new Promise((resolve, reject) => {
      this.apply(this.core.handle({ type: "incrementAsked", by, ticket: { resolve, reject } }));
    });
  }

  /** Totals as they change: the newest first, never a backlog. */
  async *totals() {
    let version = 0;
    while (!this.core.stopped) {
      if (this.version !== version && this.latest !== null) {
        version = this.version;
        yield this.latest;
        continue;
      }
      await new Promise((resolve) => this.waiters.add(resolve));
    }
  }

  close() { this.apply(this.core.handle({ type: "closeAsked" })); }

  open() {
    this.onStatus({ state: this.core.reconnects ? "reconnecting" : "connecting", retryAt: null });
    const since = this.core.since;
    const target = new URL(this.url);
    if (since !== null) target.searchParams.set("since", since.toString());
    const socket = new WebSocket(target.toString());
    this.socket = socket;
    socket.onopen = () => {
      this.onStatus({ state: "connected" });
      this.apply(this.core.handle({ type: "connected" }));
    };
    socket.onmessage = (event) => this.apply(this.core.handle({ type: "received", text: event.data }));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.lastCode = event.code;
      const detail = "closed with " + event.code;
      this.apply(this.core.handle({ type: "lost", detail, status: null, reason: event.reason }));
    };
  }

  reconnectNow() {
    clearTimeout(this.reconnectTimer);
    this.open();
  }

  apply(actions) {
    for (const action of actions) {
      switch (action.type) {
        case "send":
          if (this.socket?.readyState === WebSocket.OPEN) for (const frame of action.frames) this.socket.send(frame);
          break;
        case "resolve": action.ticket.resolve(action.ack); break;
        case "reject": action.ticket.reject(action.error); break;
        case "show": this.show(action.total); break;
        case "arm": this.arm(action.timer, action.delay); break;
        case "reconnect":
          this.onStatus({ state: "reconnecting", retryAt: Date.now() + action.delay, code: this.lastCode });
          this.reconnectTimer = setTimeout(() => this.open(), action.delay);
          break;
        case "stop": this.stopped(); break;
        case "regress": console.warn("a total went back within its epoch", action.total); break;
      }
    }
  }

  arm(timer, delay) {
    clearTimeout(this.timers.get(timer));
    this.timers.set(timer, setTimeout(() => {
      this.timers.delete(timer);
      this.apply(this.core.handle({ type: "timerFired", timer }));
    }, delay));
  }

  show(total) {
    this.latest = total;
    this.version += 1;
    this.wake();
    this.resolveReady(this);
  }

  stopped() {
    for (const handle of this.timers.values()) clearTimeout(handle);
    clearTimeout(this.reconnectTimer);
    if (this.onOnline) removeEventListener("online", this.onOnline);
    this.wake();
    if (this.socket) this.socket.close(1000);
    this.onStatus({ state: "closed" });
  }

  wake() {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiters) resolve();
  }
}
