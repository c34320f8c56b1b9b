#!/usr/bin/env node
// An independent OTLP/gRPC receiver for isotrace's end-to-end tests.
//
// It decodes with the protobufjs code that the OpenTelemetry JS project generated from
// the upstream opentelemetry-proto files (@opentelemetry/otlp-transformer's
// build/src/generated/root.js), never with isotrace's own .proto files: if isotrace's
// encoder or protos drift from OTLP, this receiver is what notices.
//
// Every item of every accepted request becomes one JSON line in --out:
//   {"kind":"span", "resource":{...}, "scope":{...}, "traceId":"<hex>", "spanId", "parentSpanId",
//    "traceState", "flags", "name", "spanKind":2, "startTimeUnixNano":"<decimal>",
//    "endTimeUnixNano", "attributes":{...}, "events":[...], "links":[...],
//    "status":{"code":0,"message":""}}
//   {"kind":"log", ...}   {"kind":"metric", ...}
// Attribute ints are JSON numbers when they fit in a double exactly, decimal strings
// otherwise; bytes are lowercase hex; timestamps are decimal strings.
//
// Options:
//   --port N              0 (default) picks a free port; "LISTENING <port>" is printed on
//                         stdout once bound
//   --host H              default 127.0.0.1
//   --out PATH            JSONL output ("-" = stdout, the default)
//   --fail-code N         answer calls with gRPC status N instead of accepting them
//   --fail-first K        with --fail-code: fail only the first K calls, then accept
//   --delay-ms N          wait N ms before answering each call
//   --partial-rejected N  accept, but report N items rejected in partial_success (the
//                         last N items of the request are then not written)
//   --retry-after-ms N    with --fail-code: put a google.rpc.RetryInfo asking for an N ms
//                         delay into the status details (grpc-status-details-bin)
//   --control PATH        a JSON file re-read on every call whose fields override the
//                         options above while the receiver runs (fault tests switch
//                         behaviour without a restart): {"failCode": 14 | null,
//                         "delayMs": 0, "partialRejected": 0, "retryAfterMs": null}
// One line per call goes to stderr:
//   "CALL <signal> items=<n> status=<code> rejected=<n> t=<ms since epoch>".
// SIGTERM/SIGINT shut it down cleanly (exit 0).

import fs from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const grpc = require('@grpc/grpc-js');
// Resolve from this file's directory so the script works from any working directory.
const root = require(
  require.resolve('@opentelemetry/otlp-transformer/build/src/generated/root.js', {
    paths: [here],
  }),
);
const otlp = root.opentelemetry.proto;

function parseArgs(argv) {
  const opts = {
    port: 0,
    host: '127.0.0.1',
    out: '-',
    failCode: null,
    failFirst: null,
    delayMs: 0,
    partialRejected: 0,
    retryAfterMs: null,
    control: null,
  };
  const intArg = (name, v) => {
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) {
      throw new Error(`${name} needs a non-negative integer, got ${v}`);
    }
    return n;
  };
  for (let i = 2; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    switch (a) {
      case '--port': opts.port = intArg(a, next()); break;
      case '--host': opts.host = next(); break;
      case '--out': opts.out = next(); break;
      case '--fail-code': opts.failCode = intArg(a, next()); break;
      case '--fail-first': opts.failFirst = intArg(a, next()); break;
      case '--delay-ms': opts.delayMs = intArg(a, next()); break;
      case '--partial-rejected': opts.partialRejected = intArg(a, next()); break;
      case '--retry-after-ms': opts.retryAfterMs = intArg(a, next()); break;
      case '--control': opts.control = next(); break;
      case '-h':
      case '--help':
        process.stdout.write(
          'usage: otlp_receiver.mjs [--port N] [--host H] [--out PATH] [--fail-code N]\n' +
          '       [--fail-first K] [--delay-ms N] [--partial-rejected N] [--retry-after-ms N]\n' +
          '       [--control PATH]\n');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown argument ${a}`);
    }
  }
  if (opts.failCode !== null && (opts.failCode < 1 || opts.failCode > 16)) {
    throw new Error(`--fail-code must be a gRPC status code 1..16, got ${opts.failCode}`);
  }
  return opts;
}

// ---- value flattening ----------------------------------------------------------------

const isLong = (v) => v !== null && typeof v === 'object' && typeof v.low === 'number' &&
  typeof v.high === 'number';

// 64-bit integer → JSON number when exact, decimal string otherwise.
function int64(v) {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'number') return v;
  if (isLong(v)) {
    const s = v.toString();
    const n = Number(s);
    return Number.isSafeInteger(n) ? n : s;
  }
  return v;
}

// Unsigned 64-bit timestamp → decimal string.
function u64(v) {
  if (v === null || v === undefined) return '0';
  // fixed64 fields: read the two 32-bit halves as unsigned whatever Long's sign flag says.
  if (isLong(v)) return ((BigInt(v.high >>> 0) << 32n) | BigInt(v.low >>> 0)).toString();
  if (typeof v === 'number') return BigInt(v).toString();
  return String(v);
}

function hex(bytes) {
  if (!bytes || bytes.length === 0) return '';
  return Buffer.from(bytes).toString('hex');
}

function anyValue(v) {
  if (!v) return null;
  if (v.stringValue !== undefined && v.stringValue !== null) return v.stringValue;
  if (v.boolValue !== undefined && v.boolValue !== null) return v.boolValue;
  if (v.intValue !== undefined && v.intValue !== null) return int64(v.intValue);
  if (v.doubleValue !== undefined && v.doubleValue !== null) return v.doubleValue;
  if (v.arrayValue) return (v.arrayValue.values || []).map(anyValue);
  if (v.kvlistValue) return attrs(v.kvlistValue.values);
  if (v.bytesValue) return hex(v.bytesValue);
  return null;
}

// Which AnyValue member is set, for tests that care about the exact type.
function anyType(v) {
  if (!v) return 'empty';
  for (const k of ['stringValue', 'boolValue', 'intValue', 'doubleValue', 'arrayValue',
    'kvlistValue', 'bytesValue']) {
    if (v[k] !== undefined && v[k] !== null && Object.prototype.hasOwnProperty.call(v, k)) {
      return k.replace('Value', '');
    }
  }
  return 'empty';
}

function attrs(kvs) {
  const out = {};
  for (const kv of kvs || []) out[kv.key] = anyValue(kv.value);
  return out;
}
function attrTypes(kvs) {
  const out = {};
  for (const kv of kvs || []) out[kv.key] = anyType(kv.value);
  return out;
}

function scopeOf(s) {
  return s && s.scope ? { name: s.scope.name || '', version: s.scope.version || '' } : null;
}

// ---- per-signal flattening -----------------------------------------------------------

function flattenTraces(req) {
  const lines = [];
  for (const rs of req.resourceSpans || []) {
    const resource = attrs(rs.resource && rs.resource.attributes);
    for (const ss of rs.scopeSpans || []) {
      const scope = scopeOf(ss);
      for (const s of ss.spans || []) {
        lines.push({
          kind: 'span',
          resource,
          scope,
          schemaUrl: ss.schemaUrl || '',
          traceId: hex(s.traceId),
          spanId: hex(s.spanId),
          parentSpanId: hex(s.parentSpanId),
          traceState: s.traceState || '',
          name: s.name || '',
          spanKind: s.kind || 0,
          startTimeUnixNano: u64(s.startTimeUnixNano),
          endTimeUnixNano: u64(s.endTimeUnixNano),
          attributes: attrs(s.attributes),
          attributeTypes: attrTypes(s.attributes),
          events: (s.events || []).map((e) => ({
            name: e.name || '',
            timeUnixNano: u64(e.timeUnixNano),
            attributes: attrs(e.attributes),
          })),
          links: (s.links || []).map((l) => ({
            traceId: hex(l.traceId),
            spanId: hex(l.spanId),
            traceState: l.traceState || '',
            attributes: attrs(l.attributes),
          })),
          status: { code: (s.status && s.status.code) || 0, message: (s.status && s.status.message) || '' },
        });
      }
    }
  }
  return lines;
}

function flattenLogs(req) {
  const lines = [];
  for (const rl of req.resourceLogs || []) {
    const resource = attrs(rl.resource && rl.resource.attributes);
    for (const sl of rl.scopeLogs || []) {
      const scope = scopeOf(sl);
      for (const r of sl.logRecords || []) {
        lines.push({
          kind: 'log',
          resource,
          scope,
          timeUnixNano: u64(r.timeUnixNano),
          observedTimeUnixNano: u64(r.observedTimeUnixNano),
          severityNumber: r.severityNumber || 0,
          severityText: r.severityText || '',
          body: anyValue(r.body),
          attributes: attrs(r.attributes),
          traceId: hex(r.traceId),
          spanId: hex(r.spanId),
          flags: r.flags || 0,
        });
      }
    }
  }
  return lines;
}

function numberPoint(p) {
  let value = null;
  if (p.asInt !== undefined && p.asInt !== null) value = int64(p.asInt);
  else if (p.asDouble !== undefined && p.asDouble !== null) value = p.asDouble;
  return {
    attributes: attrs(p.attributes),
    startTimeUnixNano: u64(p.startTimeUnixNano),
    timeUnixNano: u64(p.timeUnixNano),
    value,
  };
}

function histogramPoint(p) {
  return {
    attributes: attrs(p.attributes),
    startTimeUnixNano: u64(p.startTimeUnixNano),
    timeUnixNano: u64(p.timeUnixNano),
    count: u64(p.count),
    sum: p.sum === undefined ? null : p.sum,
    bucketCounts: (p.bucketCounts || []).map(u64),
    explicitBounds: p.explicitBounds || [],
    min: p.min === undefined ? null : p.min,
    max: p.max === undefined ? null : p.max,
  };
}

function flattenMetrics(req) {
  const lines = [];
  for (const rm of req.resourceMetrics || []) {
    const resource = attrs(rm.resource && rm.resource.attributes);
    for (const sm of rm.scopeMetrics || []) {
      const scope = scopeOf(sm);
      for (const m of sm.metrics || []) {
        const line = {
          kind: 'metric', resource, scope, name: m.name || '', description: m.description || '',
          unit: m.unit || '', type: 'unknown', aggregationTemporality: 0, isMonotonic: false,
          dataPoints: [],
        };
        if (m.gauge) {
          line.type = 'gauge';
          line.dataPoints = (m.gauge.dataPoints || []).map(numberPoint);
        } else if (m.sum) {
          line.type = 'sum';
          line.aggregationTemporality = m.sum.aggregationTemporality || 0;
          line.isMonotonic = !!m.sum.isMonotonic;
          line.dataPoints = (m.sum.dataPoints || []).map(numberPoint);
        } else if (m.histogram) {
          line.type = 'histogram';
          line.aggregationTemporality = m.histogram.aggregationTemporality || 0;
          line.dataPoints = (m.histogram.dataPoints || []).map(histogramPoint);
        } else if (m.exponentialHistogram) {
          line.type = 'exponential_histogram';
        } else if (m.summary) {
          line.type = 'summary';
        }
        lines.push(line);
      }
    }
  }
  return lines;
}

// ---- fault injection -----------------------------------------------------------------

// google.rpc.Status{code, message, details: [Any{type.googleapis.com/google.rpc.RetryInfo,
// RetryInfo{retry_delay: Duration}}]}, written field by field with protobufjs's Writer
// (the generated root has no google.rpc types).
function retryInfoStatusDetails(code, message, delayMs) {
  const Writer = require(require.resolve('protobufjs/minimal', { paths: [here] })).Writer;
  const duration = Writer.create();
  const seconds = Math.floor(delayMs / 1000);
  const nanos = (delayMs % 1000) * 1e6;
  if (seconds) duration.uint32((1 << 3) | 0).int64(seconds);
  if (nanos) duration.uint32((2 << 3) | 0).int32(nanos);
  const retryInfo = Writer.create().uint32((1 << 3) | 2).bytes(duration.finish()).finish();
  const any = Writer.create()
    .uint32((1 << 3) | 2).string('type.googleapis.com/google.rpc.RetryInfo')
    .uint32((2 << 3) | 2).bytes(retryInfo)
    .finish();
  return Buffer.from(Writer.create()
    .uint32((1 << 3) | 0).int32(code)
    .uint32((2 << 3) | 2).string(message)
    .uint32((3 << 3) | 2).bytes(any)
    .finish());
}

// The options in force for this call: the command line, overridden by --control.
function currentOptions(opts) {
  if (!opts.control) return opts;
  let text;
  try {
    text = fs.readFileSync(opts.control, 'utf8');
  } catch (e) {
    return opts;  // no control file (yet): the command line rules
  }
  try {
    const c = JSON.parse(text);
    return { ...opts, ...c };
  } catch (e) {
    process.stderr.write(`otlp_receiver: bad --control file: ${e.message}\n`);
    return opts;
  }
}

// ---- server --------------------------------------------------------------------------

function main() {
  let opts;
  try {
    opts = parseArgs(process.argv);
  } catch (e) {
    process.stderr.write(`otlp_receiver: ${e.message}\n`);
    process.exit(2);
  }
  const outFd = opts.out === '-' ? 1 : fs.openSync(opts.out, 'a');
  let calls = 0;

  // Writes synchronously so a test that reads --out right after the exporter's call
  // returned sees every line.
  const emit = (lines) => {
    if (lines.length === 0) return;
    fs.writeSync(outFd, lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  };

  const signals = [
    {
      name: 'traces', proto: 'trace', pkg: otlp.collector.trace.v1, service: 'TraceService',
      req: 'ExportTraceServiceRequest', resp: 'ExportTraceServiceResponse',
      partial: 'ExportTracePartialSuccess', rejectedField: 'rejectedSpans', flatten: flattenTraces,
    },
    {
      name: 'logs', proto: 'logs', pkg: otlp.collector.logs.v1, service: 'LogsService',
      req: 'ExportLogsServiceRequest', resp: 'ExportLogsServiceResponse',
      partial: 'ExportLogsPartialSuccess', rejectedField: 'rejectedLogRecords', flatten: flattenLogs,
    },
    {
      name: 'metrics', proto: 'metrics', pkg: otlp.collector.metrics.v1, service: 'MetricsService',
      req: 'ExportMetricsServiceRequest', resp: 'ExportMetricsServiceResponse',
      partial: 'ExportMetricsPartialSuccess', rejectedField: 'rejectedDataPoints',
      flatten: flattenMetrics,
    },
  ];

  const server = new grpc.Server();
  for (const sig of signals) {
    const Req = sig.pkg[sig.req];
    const Resp = sig.pkg[sig.resp];
    const definition = {
      Export: {
        path: `/opentelemetry.proto.collector.${sig.proto}.v1.${sig.service}/Export`,
        requestStream: false,
        responseStream: false,
        requestSerialize: (msg) => Buffer.from(Req.encode(msg).finish()),
        requestDeserialize: (buf) => Req.decode(buf),
        responseSerialize: (msg) => Buffer.from(Resp.encode(msg).finish()),
        responseDeserialize: (buf) => Resp.decode(buf),
      },
    };
    server.addService(definition, {
      Export: (call, callback) => {
        const callNo = ++calls;
        const lines = sig.flatten(call.request);
        const o = currentOptions(opts);
        const answer = () => {
          const failing = o.failCode !== null && o.failCode !== undefined &&
            (o.failFirst === null || o.failFirst === undefined || callNo <= o.failFirst);
          if (failing) {
            process.stderr.write(`CALL ${sig.name} items=${lines.length} status=${o.failCode} rejected=0 t=${Date.now()}\n`);
            const err = { code: o.failCode, details: 'otlp_receiver: injected failure' };
            if (o.retryAfterMs !== null && o.retryAfterMs !== undefined) {
              err.metadata = new grpc.Metadata();
              err.metadata.set('grpc-status-details-bin',
                retryInfoStatusDetails(o.failCode, err.details, o.retryAfterMs));
            }
            callback(err);
            return;
          }
          // A call whose deadline passed was already given up by the client (it saw
          // DEADLINE_EXCEEDED): writing its items would record spans the client will
          // send again. grpc-js does not always flag such a call as cancelled.
          const deadline = call.getDeadline ? call.getDeadline() : Infinity;
          const deadlineMs = deadline instanceof Date ? deadline.getTime() : Number(deadline);
          if (call.cancelled || (Number.isFinite(deadlineMs) && Date.now() >= deadlineMs)) {
            process.stderr.write(`CALL ${sig.name} items=${lines.length} status=cancelled rejected=0 t=${Date.now()}\n`);
            return;
          }
          const rejected = Math.min(o.partialRejected || 0, lines.length);
          emit(lines.slice(0, lines.length - rejected));
          process.stderr.write(`CALL ${sig.name} items=${lines.length} status=0 rejected=${rejected} t=${Date.now()}\n`);
          const resp = {};
          if (rejected > 0) {
            resp.partialSuccess = {
              [sig.rejectedField]: rejected,
              errorMessage: `otlp_receiver: rejected ${rejected} as asked (--partial-rejected)`,
            };
          }
          callback(null, Resp.create(resp));
        };
        if (o.delayMs > 0) setTimeout(answer, o.delayMs);
        else answer();
      },
    });
  }

  server.bindAsync(`${opts.host}:${opts.port}`, grpc.ServerCredentials.createInsecure(), (err, port) => {
    if (err) {
      process.stderr.write(`otlp_receiver: cannot listen on ${opts.host}:${opts.port}: ${err.message}\n`);
      process.exit(1);
    }
    // grpc-js >= 1.10 (package.json) serves as soon as bindAsync succeeds.
    process.stdout.write(`LISTENING ${port}\n`);
  });

  const stop = () => {
    server.tryShutdown(() => {
      if (outFd !== 1) fs.closeSync(outFd);
      process.exit(0);
    });
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main();
