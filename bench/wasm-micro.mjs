#!/usr/bin/env node
// In-VM profile of a proxy-wasm module, without Envoy: Node's V8 runs the .wasm against a stub
// host that implements the proxy-wasm 0.2 ABI calls a filter makes, and drives the exact hook
// sequence Envoy drives for one HTTP request (context create, request headers, response headers,
// response body, log, done, delete), many times.
//
// It answers what the Envoy benchmark is too noisy to resolve: which host calls a module makes
// per request (counted by name) and how long the Wasm side takes per request (ns, median of
// several runs). The stub host does no real work, so the time is the module's own code plus
// V8's JS<->Wasm boundary crossings — not Envoy's C++ side of each call (bench/run.sh measures
// that, and the probe builds of bench/wasm-floor isolate it per call).
//
//   node bench/wasm-micro.mjs MODULE.wasm [CONFIG.json] [--iterations N] [--runs R] [--json]
//
// The request is the first one of bench/requests.txt as Envoy presents it (pseudo-headers first).
import fs from "node:fs";
import path from "node:path";
import { WASI } from "node:wasi";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));

function parseArgs(argv) {
  const args = { iterations: 200000, runs: 7, json: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--iterations") args.iterations = Number(argv[++i]);
    else if (a === "--runs") args.runs = Number(argv[++i]);
    else if (a === "--json") args.json = true;
    else args.positional.push(a);
  }
  if (args.positional.length < 1) {
    console.error("usage: node bench/wasm-micro.mjs MODULE.wasm [CONFIG.json] [--iterations N] [--runs R] [--json]");
    process.exit(2);
  }
  return args;
}

// The request Envoy hands the filter for the first entry of bench/requests.txt.
function requestHeaders() {
  const block = fs.readFileSync(path.join(HERE, "requests.txt"), "utf8").split("\n%%\n")[0].trim();
  const [requestLine, ...lines] = block.split("\n");
  const [method, target] = requestLine.split(" ");
  const headers = [];
  let host = "";
  const rest = [];
  for (const line of lines) {
    const i = line.indexOf(":");
    const name = line.slice(0, i).trim().toLowerCase();
    const value = line.slice(i + 1).trim();
    if (name === "host") host = value;
    else rest.push([name, value]);
  }
  headers.push([":authority", host], [":path", target], [":method", method], [":scheme", "http"]);
  headers.push(...rest);
  headers.push(["x-forwarded-proto", "http"], ["x-request-id", "5f2d3f0e-8c4b-4c8e-9d6a-3b1f2e4d5c6b"]);
  return headers;
}

const RESPONSE_HEADERS = [
  [":status", "200"], ["content-type", "text/plain"], ["content-length", "2"],
  ["date", "Sun, 22 Nov 2026 03:00:00 GMT"], ["x-envoy-upstream-service-time", "0"],
  ["server", "envoy"],
];

// proxy-wasm pairs serialisation: u32 count, count x (u32 name_len, u32 value_len), then each
// name and value NUL-terminated.
function serializePairs(pairs) {
  const enc = new TextEncoder();
  const encoded = pairs.map(([n, v]) => [enc.encode(n), enc.encode(v)]);
  let size = 4 + 8 * pairs.length;
  for (const [n, v] of encoded) size += n.length + 1 + v.length + 1;
  const buf = new Uint8Array(size);
  const dv = new DataView(buf.buffer);
  dv.setUint32(0, pairs.length, true);
  let off = 4;
  for (const [n, v] of encoded) {
    dv.setUint32(off, n.length, true);
    dv.setUint32(off + 4, v.length, true);
    off += 8;
  }
  for (const [n, v] of encoded) {
    buf.set(n, off); off += n.length + 1;
    buf.set(v, off); off += v.length + 1;
  }
  return buf;
}

const MAP_REQUEST_HEADERS = 0;
const MAP_RESPONSE_HEADERS = 2;
const BUFFER_PLUGIN_CONFIGURATION = 7;
const BUFFER_VM_CONFIGURATION = 6;
const OK = 0, NOT_FOUND = 1;

async function main() {
  process.removeAllListeners("warning");
  const args = parseArgs(process.argv.slice(2));
  const [modulePath, configPath] = args.positional;
  const config = configPath ? fs.readFileSync(configPath) : new Uint8Array(0);
  const reqHeaders = requestHeaders();
  const reqPairs = serializePairs(reqHeaders);
  const respPairs = serializePairs(RESPONSE_HEADERS);
  const dec = new TextDecoder();
  const enc = new TextEncoder();

  let instance;
  const mem = () => new DataView(instance.exports.memory.buffer);
  const bytes = () => new Uint8Array(instance.exports.memory.buffer);
  const str = (ptr, len) => dec.decode(bytes().subarray(ptr, ptr + len));
  // Hands a host-owned byte string to the module the way Envoy does: allocated by the module.
  const give = (data, ptrPtr, sizePtr) => {
    const p = data.length ? instance.exports.proxy_on_memory_allocate(data.length) : 0;
    if (data.length) bytes().set(data, p);
    mem().setUint32(ptrPtr, p, true);
    mem().setUint32(sizePtr, data.length, true);
    return OK;
  };

  const calls = new Map();
  let counting = false;
  const count = (name) => { if (counting) calls.set(name, (calls.get(name) || 0) + 1); };
  let nextMetric = 1;
  let logs = [];

  const host = {
    proxy_log: (level, ptr, len) => { logs.push(str(ptr, len)); return OK; },
    proxy_get_log_level: (ptr) => { mem().setUint32(ptr, 2, true); return OK; },
    proxy_set_tick_period_milliseconds: () => OK,
    proxy_get_current_time_nanoseconds: (ptr) => {
      mem().setBigUint64(ptr, BigInt(Date.now()) * 1000000n, true); return OK;
    },
    proxy_get_buffer_bytes: (type, start, max, ptrPtr, sizePtr) => {
      if (type === BUFFER_PLUGIN_CONFIGURATION || type === BUFFER_VM_CONFIGURATION) {
        const data = type === BUFFER_PLUGIN_CONFIGURATION ? config : new Uint8Array(0);
        // Arguments arrive as signed i32: the SDK asks for usize::MAX (-1) bytes.
        return give(data.subarray(start >>> 0, (start >>> 0) + (max >>> 0)), ptrPtr, sizePtr);
      }
      return NOT_FOUND;
    },
    proxy_get_header_map_pairs: (mapType, ptrPtr, sizePtr) =>
      give(mapType === MAP_RESPONSE_HEADERS ? respPairs : reqPairs, ptrPtr, sizePtr),
    proxy_get_header_map_value: (mapType, keyPtr, keyLen, ptrPtr, sizePtr) => {
      const key = str(keyPtr, keyLen);
      const list = mapType === MAP_RESPONSE_HEADERS ? RESPONSE_HEADERS : reqHeaders;
      const hit = list.find(([n]) => n === key);
      return hit ? give(enc.encode(hit[1]), ptrPtr, sizePtr) : NOT_FOUND;
    },
    proxy_define_metric: (type, namePtr, nameLen, idPtr) => {
      mem().setUint32(idPtr, nextMetric++, true); return OK;
    },
    proxy_call_foreign_function: (namePtr, nameLen, argPtr, argLen, retPtrPtr, retSizePtr) => {
      mem().setUint32(retPtrPtr, 0, true);
      mem().setUint32(retSizePtr, 0, true);
      return OK;
    },
    proxy_get_property: () => NOT_FOUND,
  };

  const bytesWasm = fs.readFileSync(modulePath);
  const module = await WebAssembly.compile(bytesWasm);
  const env = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== "env" || imp.kind !== "function") continue;
    const impl = host[imp.name] || (() => OK);
    env[imp.name] = (...a) => { count(imp.name); return impl(...a); };
  }
  const wasi = new WASI({ version: "preview1", args: [], env: {}, returnOnExit: true });
  instance = await WebAssembly.instantiate(module, { env, ...wasi.getImportObject() });
  if (instance.exports._initialize) wasi.initialize(instance);
  else if (instance.exports._start) wasi.start(instance);

  const x = instance.exports;
  const ROOT = 1;
  x.proxy_on_context_create(ROOT, 0);
  if (x.proxy_on_vm_start) x.proxy_on_vm_start(ROOT, 0);
  if (x.proxy_on_configure && !x.proxy_on_configure(ROOT, config.length)) {
    console.error(`proxy_on_configure refused the configuration:\n${logs.join("\n")}`);
    process.exit(1);
  }

  let ctx = 2;
  const oneRequest = () => {
    const id = ctx++;
    x.proxy_on_context_create(id, ROOT);
    x.proxy_on_request_headers(id, reqHeaders.length, 1);
    x.proxy_on_response_headers(id, RESPONSE_HEADERS.length, 0);
    x.proxy_on_response_body(id, 2, 1);
    x.proxy_on_log(id);
    x.proxy_on_done(id);
    x.proxy_on_delete(id);
  };

  // Host calls of one request, counted once everything is warm.
  for (let i = 0; i < 1000; i++) oneRequest();
  counting = true;
  oneRequest();
  counting = false;
  const perRequest = Object.fromEntries([...calls.entries()].sort());

  const results = [];
  for (let r = 0; r < args.runs; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < args.iterations; i++) oneRequest();
    const t1 = process.hrtime.bigint();
    results.push(Number(t1 - t0) / args.iterations);
  }
  results.sort((a, b) => a - b);
  const median = results[Math.floor(results.length / 2)];
  const out = {
    module: path.basename(modulePath),
    config: configPath ? path.basename(configPath) : null,
    bytes: bytesWasm.length,
    host_calls_per_request: perRequest,
    host_calls_total: Object.values(perRequest).reduce((a, b) => a + b, 0),
    ns_per_request_median: Math.round(median),
    ns_per_request_min: Math.round(results[0]),
    ns_per_request_max: Math.round(results[results.length - 1]),
    iterations: args.iterations,
    runs: args.runs,
  };
  if (args.json) {
    console.log(JSON.stringify(out));
  } else {
    console.log(`${out.module}${out.config ? " + " + out.config : ""}: ${out.ns_per_request_median} ns/request ` +
      `(min ${out.ns_per_request_min}, max ${out.ns_per_request_max}, ${args.runs} runs x ${args.iterations}); ` +
      `${out.host_calls_total} host calls/request: ` +
      Object.entries(perRequest).map(([k, v]) => `${k.replace(/^proxy_/, "")} x${v}`).join(", "));
  }
}

main().catch((e) => { console.error(e); process.exit(1); });
