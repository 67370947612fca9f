// Sluice's function prelude: runs once per sandbox, before the function's own code.
// It defines what Segment's runtime gives a function (its error classes, `console`),
// freezes every built-in so no invocation can change what the next one sees, and
// keeps the driver the host calls out of the function's reach.
(() => {
  "use strict";
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const settle = Promise.prototype.then;
  const resolved = Promise.resolve.bind(Promise);
  const define = Object.defineProperty;
  const freezeOne = Object.freeze;
  const ownKeys = Reflect.ownKeys;
  const describe = Object.getOwnPropertyDescriptor;
  const protoOf = Object.getPrototypeOf;
  const toText = String;
  const Failure = TypeError;
  const wellFormed = String.prototype.toWellFormed;
  const keysOf = Object.keys;
  const bare = () => Object.create(null);
  // Text handed to the host: well-formed (no lone surrogate) and at most `width` long.
  const clean = (s, width) => wellFormed.call(s.length > width ? s.slice(0, width) : s);

  const errors = ["DropEvent", "RetryError", "ValidationError", "InvalidEventPayload", "EventNotSupported"];
  for (const name of errors) {
    const made = { [name]: class extends Error {
      constructor(message) { super(message); this.name = name; }
    } }[name];
    define(globalThis, name, { value: made, writable: false, enumerable: false, configurable: false });
  }

  const LINES = 50;
  const WIDTH = 1000;
  const lines = [];
  const text = (args) => {
    let out = "";
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      let s;
      if (typeof a === "string") s = a;
      else { try { s = stringify(a); } catch (_) { try { s = toText(a); } catch (_) { s = "?"; } } }
      out += (i ? " " : "") + s;
      if (out.length > WIDTH) break;
    }
    return clean(out, WIDTH);
  };
  const line = (level) => (...args) => {
    if (lines.length < LINES) lines.push(level + " " + text(args));
  };
  define(globalThis, "console", {
    value: { log: line("log"), info: line("info"), warn: line("warn"), error: line("error"), debug: line("debug") },
    writable: false, enumerable: false, configurable: false,
  });

  const seen = new WeakSet();
  const freeze = (o) => {
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) return o;
    seen.add(o);
    freezeOne(o);
    for (const key of ownKeys(o)) {
      const d = describe(o, key);
      if (!d) continue;
      if ("value" in d) freeze(d.value); else { freeze(d.get); freeze(d.set); }
    }
    freeze(protoOf(o));
    return o;
  };

  // Source functions: `Segment.track({…})` and its kin queue an event (a copy, typed);
  // what `onRequest` queued is the invocation's answer. Emptied at every invocation.
  const MAX_EVENTS = 2500;
  const emitted = [];
  const emit = (type) => (fields) => {
    if (fields === null || typeof fields !== "object" || Array.isArray(fields)) {
      throw new Failure("Segment." + type + " takes an object");
    }
    if (emitted.length >= MAX_EVENTS) throw new Failure("one request may make at most " + MAX_EVENTS + " events");
    const event = parse(stringify(fields));
    event.type = type;
    emitted.push(event);
  };
  const segment = bare();
  for (const type of ["track", "identify", "page", "screen", "group", "alias"]) segment[type] = emit(type);
  define(globalThis, "Segment", { value: segment, writable: false, enumerable: false, configurable: false });
  // A webhook's request as `onRequest` sees it: `url`, `method`, `headers.get(name)`,
  // and its body through `json()` and `text()`.
  const requestOf = (input) => {
    const body = typeof input.body === "string" ? input.body : "";
    const headers = bare();
    const given = input.headers !== null && typeof input.headers === "object" ? input.headers : {};
    for (const k of keysOf(given)) headers[toText(k).toLowerCase()] = toText(given[k]);
    const get = (name) => {
      const v = headers[toText(name).toLowerCase()];
      return v === undefined ? null : v;
    };
    return {
      url: toText(input.url || ""),
      method: toText(input.method || "POST"),
      headers: { get, has: (name) => get(name) !== null },
      json: async () => parse(body),
      text: async () => body,
    };
  };

  // `fetch(url, {method, headers, body, redirect})`: the host makes the call (the address guard,
  // time, call and size limits are its own) and the answer becomes a Response with
  // `ok`, `status`, `statusText`, `url`, `redirected`, `headers.get/has`, `text()` and
  // `json()`. A body is text (`JSON.stringify` an object first).
  const hostFetch = globalThis.__sluice_fetch;
  delete globalThis.__sluice_fetch;
  const isArray = Array.isArray;
  const headerPairs = (given) => {
    const pairs = [];
    if (given === undefined || given === null) return pairs;
    if (typeof given !== "object") throw new Failure("fetch: headers must be an object");
    const entries = isArray(given) ? given : keysOf(given).map((k) => [k, given[k]]);
    for (const entry of entries) {
      if (!isArray(entry) || entry.length !== 2) throw new Failure("fetch: headers must be name-value pairs");
      pairs.push([toText(entry[0]), toText(entry[1])]);
    }
    return pairs;
  };
  const fetch = async (resource, init) => {
    const options = init === undefined || init === null ? {} : init;
    if (typeof options !== "object") throw new Failure("fetch: the options must be an object");
    const body = options.body;
    if (body !== undefined && body !== null && typeof body !== "string") {
      throw new Failure("fetch: a body must be a string (JSON.stringify an object first)");
    }
    const asked = {
      url: toText(resource),
      method: options.method === undefined ? "GET" : toText(options.method),
      headers: headerPairs(options.headers),
    };
    if (typeof body === "string") asked.body = body;
    if (options.redirect !== undefined) {
      const redirect = toText(options.redirect);
      if (redirect !== "follow" && redirect !== "manual") throw new Failure("fetch: redirect must be follow or manual");
      asked.redirect = redirect;
    }
    const got = parse(hostFetch(stringify(asked)));
    const headers = bare();
    for (const k of keysOf(got.headers)) headers[k] = got.headers[k];
    const get = (name) => {
      const v = headers[toText(name).toLowerCase()];
      return v === undefined ? null : v;
    };
    return {
      ok: got.status >= 200 && got.status < 300,
      status: got.status,
      statusText: got.statusText,
      url: got.url,
      redirected: got.redirected,
      headers: { get, has: (name) => get(name) !== null },
      text: async () => got.body,
      json: async () => parse(got.body),
    };
  };
  define(globalThis, "fetch", { value: fetch, writable: false, enumerable: false, configurable: false });

  // The outcome of the invocation under way: "" until it settles.
  let kind = "";
  let out = "";
  let settings = null;
  const done = (k, v) => { kind = k; out = v; };
  const failed = (e) => {
    // QuickJS throws `null` when memory is so short it cannot make the error.
    if (e === null) return done("null", "");
    let name = "Error";
    let message = "";
    try {
      if (e !== null && typeof e === "object" && typeof e.name === "string") name = clean(e.name, 100);
      message = clean(toText(e !== null && typeof e === "object" && e.message !== undefined ? e.message : e), 1000);
    } catch (_) { message = "(an error that cannot be shown)"; }
    switch (name) {
      case "DropEvent": return done("drop", message);
      case "RetryError": return done("retry", message);
      case "ValidationError": case "InvalidEventPayload": case "EventNotSupported":
        return done("invalid", name + ": " + message);
      default: return done("error", name + ": " + message);
    }
  };
  const returned = (v) => {
    if (v === undefined || v === null) return done("drop", "");
    if (typeof v !== "object") return done("error", "the handler returned a " + typeof v + ", not an event");
    try {
      const json = stringify(v);
      if (typeof json !== "string") return done("error", "the handler returned something JSON cannot hold");
      done("event", wellFormed.call(json));
    } catch (e) { failed(e); }
  };

  const host = {
    // Settings, as JSON: parsed once, frozen, the same object on every call.
    configure(json) { settings = freeze(parse(json)); },
    // Starts the handler `name` on the event (JSON); the host then runs the jobs.
    run(name, json) {
      kind = ""; out = ""; lines.length = 0; emitted.length = 0;
      const handler = globalThis[name];
      if (typeof handler !== "function") return done("pass", "");
      let event;
      try { event = parse(json); } catch (e) { return failed(e); }
      if (name === "onRequest") {
        const request = requestOf(event);
        const sent = () => {
          try { done("event", wellFormed.call(stringify(emitted))); } catch (e) { failed(e); }
        };
        settle.call(resolved(undefined), () => handler(request, settings)).then(sent, failed);
        return;
      }
      settle.call(resolved(undefined), () => handler(event, settings)).then(returned, failed);
    },
    // "kind\noutput" once settled, "" before.
    outcome() { return kind === "" ? "" : kind + "\n" + out; },
    // The console lines of the last invocation, one per line.
    logs() { return stringify(lines); },
  };
  define(globalThis, "__sluice", { value: host, writable: false, enumerable: false, configurable: false });

  // Frozen, a prototype's data property cannot be shadowed by assignment (`this.name =
  // "MyError"` in an Error subclass would throw). The properties code commonly
  // assigns on its own objects become accessors whose setter gives the object its own
  // property; the prototype itself still cannot be changed.
  const shadowable = ["constructor", "name", "message", "toString", "valueOf", "toJSON", "toLocaleString"];
  const enable = (proto, key) => {
    const d = describe(proto, key);
    if (!d || !("value" in d) || !d.configurable) return;
    const value = d.value;
    define(proto, key, {
      get() { return value; },
      set(v) {
        if (this === proto) throw new Failure("built-ins are read-only: cannot change " + toText(key));
        define(this, key, { value: v, writable: true, enumerable: true, configurable: true });
      },
      enumerable: d.enumerable,
      configurable: false,
    });
  };
  for (const name of ownKeys(globalThis)) {
    const value = globalThis[name];
    if (typeof value !== "function" || !value.prototype || typeof value.prototype !== "object") continue;
    for (const key of shadowable) enable(value.prototype, key);
  }

  for (const name of ownKeys(globalThis)) {
    if (name === "globalThis") continue;
    const d = describe(globalThis, name);
    if (d && "value" in d) {
      freeze(d.value);
      // The built-in's name stays bound to it: `JSON = …` changes nothing for later.
      if (d.configurable) define(globalThis, name, { value: d.value, writable: false, enumerable: d.enumerable, configurable: false });
    }
  }
})();
