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
const INT64_MIN = -(2n ** 63n), INT64_MAX = 2n ** 63n - 1n;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

export class IncrementRefused extends Error {
  constructor(code, message) {
    super(code + ": " + message);
    this.name = "IncrementRefused";
    this.code = code;
    this.reason = message;
  }
}

export class IncrementUnknown extends Error {
  constructor(message) {
    super(message);
    this.name = "IncrementUnknown";
  }
}

export class ClientClosed extends Error {
  constructor(message) {
    super(message);
    this.name = "ClientClosed";
  }
}

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
  for (const key of ["total", "seq"]) {
    const match = text.match(new RegExp('"' + key + '":(-?\\d+)'));
    if (match) message[key] = BigInt(match[1]);
  }
  return message;
}

/** A session's outstanding increments by number, in the order sent (rules.Session). */
export class Session {
  constructor() {
    this.id = newSessionId();
    this.nextN = 1;
    this.outstanding = new Map(); // n -> { by, frame, ticket, resends }
  }

  add(by, ticket) {
    const n = this.nextN++;
    const frame = '{"op":"incr","by":' + checkBy(by).toString() + ',"session":"' + this.id + '","n":' + n + "}";
    const item = { by, frame, ticket, resends: 0 };
    this.outstanding.set(n, item);
    return [n, item];
  }

  frames(start = 1) {
    return [...this.outstanding].filter(([n]) => n >= start).map(([, item]) => item.frame);
  }

  settle(session, n) {
    if (session !== this.id || !this.outstanding.has(n)) return null;
    const item = this.outstanding.get(n);
    this.outstanding.delete(n);
    return item;
  }

  /** {fail: item} | {resend: start, attempt} | {forgotten: items} | null */
  refused(session, n, code, expected) {
    if (session !== this.id || !this.outstanding.has(n)) return null;
    const item = this.outstanding.get(n);
    if (!RESENDABLE.has(code)) {
      this.outstanding.delete(n);
      // Refused before it reached Redis: the next increment takes its number.
      if (!CONSUMES_NUMBER.has(code) && n === this.nextN - 1) this.nextN = n;
      return { fail: item };
    }
    item.resends += 1;
    let start = n;
    if (code === "out_of_order" && Number.isInteger(expected)) {
      const numbers = [...this.outstanding.keys()];
      if (expected < Math.min(...numbers)) return this.forget();
      start = Math.min(...numbers.filter((k) => k >= expected));
    }
    return { resend: start, attempt: item.resends };
  }

  // The worker forgot the session (idle past WS_SESSION_TTL): whether the
  // outstanding increments were applied before cannot be told any more.
  forget() {
    const items = [...this.outstanding.values()];
    this.id = newSessionId();
    this.nextN = 1;
    this.outstanding = new Map();
    return { forgotten: items };
  }
}

/** The newest state seen of one counter (rules.Freshness). */
export class Freshness {
  constructor() {
    this.epoch = null;
    this.seq = null;
  }

  isNews(epoch, seq) {
    if (this.epoch === epoch && this.seq !== null && seq <= this.seq) return false;
    this.epoch = epoch;
    this.seq = seq;
    return true;
  }
}

/** Capped exponential backoff with full jitter: the n-th delay from [c/2, c], c = min(cap, first * 2**n). */
export function nthDelay(first, cap, attempt) {
  const ceiling = Math.min(cap, first * 2 ** Math.min(attempt, 64));
  return ceiling / 2 + Math.random() * (ceiling / 2);
}

/**
 * url pointed at counter on the same service, with ?token= when given. A path
 * in front of /counters/ (a proxy's prefix) is kept; a URL that already names
 * the counter (or the root, for "default") is kept as given.
 */
export function counterUrl(url, counter, token) {
  const target = new URL(url);
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
 * A client of one counter over one WebSocket, reconnected as needed.
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
    this.backoff = options.backoff ?? [500, 15000];
    this.maxInFlight = options.maxInFlight ?? 64;
    this.onStatus = options.onStatus ?? (() => {});
    this.session = new Session();
    this.freshness = new Freshness();
    this.latest = null;
    this.version = 0;
    this.socket = null;
    this.attempt = 0;
    this.closed = false;
    this.waiters = new Set(); // totals() consumers waiting for news
    this.roomWaiters = []; // increment() calls waiting for room
    this.resendTimer = null;
    this.resendStart = null;
    this.reconnectTimer = null;
    let resolveReady;
    this.ready = new Promise((resolve) => { resolveReady = resolve; });
    this.resolveReady = resolveReady;
    if (typeof addEventListener === "function") {
      this.onOnline = () => { if (!this.socket && !this.closed) this.reconnectNow(); };
      addEventListener("online", this.onOnline);
    }
    this.open();
  }

  /** The newest total seen: {counter, total, seq, epoch, missed}, or null. */
  get total() { return this.latest; }
  get connected() { return this.socket !== null && this.socket.readyState === WebSocket.OPEN; }
  get inFlight() { return this.session.outstanding.size; }

  /** Add `by`; resolves to the ack once applied, exactly once. */
  async increment(by) {
    checkBy(by);
    if (this.closed) throw new ClientClosed("the client is closed");
    while (this.session.outstanding.size >= this.maxInFlight) {
      await new Promise((resolve) => this.roomWaiters.push(resolve));
      if (this.closed) throw new ClientClosed("the client is closed");
    }
    return new Promise((resolve, reject) => {
      const [, item] = this.session.add(by, { resolve, reject });
      if (this.connected) this.socket.send(item.frame);
    });
  }

  /** Totals as they change: the newest first, never a backlog. */
  async *totals() {
    let version = 0;
    while (!this.closed) {
      if (this.version !== version && this.latest !== null) {
        version = this.version;
        yield this.latest;
        continue;
      }
      await new Promise((resolve) => this.waiters.add(resolve));
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.resendTimer);
    clearTimeout(this.reconnectTimer);
    if (this.onOnline) removeEventListener("online", this.onOnline);
    for (const item of this.session.outstanding.values()) {
      item.ticket.reject(new ClientClosed("closed before this increment was acknowledged"));
    }
    this.session.outstanding.clear();
    this.wake();
    if (this.socket) this.socket.close(1000);
    this.onStatus({ state: "closed" });
  }

  open() {
    this.onStatus({ state: this.attempt ? "reconnecting" : "connecting", retryAt: null });
    const socket = new WebSocket(this.resumeUrl());
    this.socket = socket;
    socket.onopen = () => {
      this.attempt = 0;
      this.onStatus({ state: "connected" });
      // Unacknowledged increments go again, in order, unchanged.
      for (const frame of this.session.frames()) socket.send(frame);
    };
    socket.onmessage = (event) => this.receive(parseMessage(event.data));
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      this.socket = null;
      if (this.closed) return;
      const delay = nthDelay(this.backoff[0], this.backoff[1], this.attempt);
      this.attempt += 1;
      this.onStatus({ state: "reconnecting", retryAt: Date.now() + delay, code: event.code });
      this.reconnectTimer = setTimeout(() => this.open(), delay);
    };
  }

  reconnectNow() {
    clearTimeout(this.reconnectTimer);
    this.attempt = 0;
    this.open();
  }

  resumeUrl() {
    if (this.freshness.seq === null) return this.url;
    const target = new URL(this.url);
    target.searchParams.set("since", this.freshness.seq.toString());
    return target.toString();
  }

  receive(message) {
    if (message.type === "total") this.see(message);
    else if (message.type === "ack") this.onAck(message);
    else if (message.type === "error") this.onError(message);
  }

  see(message) {
    if (!this.freshness.isNews(message.epoch, message.seq)) return;
    this.latest = {
      counter: message.counter ?? this.counter,
      total: message.total,
      seq: message.seq,
      epoch: message.epoch,
      missed: Boolean(message.missed),
    };
    this.version += 1;
    this.wake();
    this.resolveReady(this);
  }

  onAck(message) {
    const item = this.session.settle(message.session, message.n);
    if (item === null) return;
    if (message.seq !== undefined) this.see(message);
    this.freeRoom();
    item.ticket.resolve({
      session: message.session,
      n: message.n,
      by: checkBy(item.by),
      total: message.total ?? null,
      seq: message.seq ?? null,
      epoch: message.epoch ?? null,
      duplicate: Boolean(message.duplicate),
    });
  }

  onError(message) {
    const decision = this.session.refused(message.session, message.n, message.code, message.expected);
    if (decision === null) return;
    if (decision.fail) {
      this.freeRoom();
      decision.fail.ticket.reject(new IncrementRefused(message.code, message.message));
    } else if (decision.resend !== undefined) {
      this.resendLater(decision.resend, decision.attempt);
    } else if (decision.forgotten) {
      const unknown = new IncrementUnknown("the worker no longer knows this session: the"
        + " increment may or may not have been applied before; it is not sent again");
      for (const item of decision.forgotten) {
        this.freeRoom();
        item.ticket.reject(unknown);
      }
    }
  }

  // One resend of everything from the lowest refused number on, after a backoff:
  // one refused number makes every later one out_of_order.
  resendLater(start, attempt) {
    this.resendStart = this.resendStart === null ? start : Math.min(this.resendStart, start);
    if (this.resendTimer !== null) return;
    this.resendTimer = setTimeout(() => {
      const from = this.resendStart ?? 1;
      this.resendTimer = null;
      this.resendStart = null;
      this.resendNow(from);
    }, nthDelay(this.backoff[0], this.backoff[1], attempt));
  }

  resendNow(start) {
    // On a lost connection the reconnect sends them all anyway.
    if (this.connected) for (const frame of this.session.frames(start)) this.socket.send(frame);
  }

  freeRoom() {
    const waiter = this.roomWaiters.shift();
    if (waiter) waiter();
  }

  wake() {
    const waiters = [...this.waiters];
    this.waiters.clear();
    for (const resolve of waiters) resolve();
    if (this.closed) for (const resolve of this.roomWaiters.splice(0)) resolve();
  }
}
