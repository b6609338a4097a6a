// An independent client of the care-terminal district sync API, written from the
// published spec only (sync/spec/openapi.yaml and its rendered README.md).
//
//   node client.mjs --print-key KEYFILE
//   node client.mjs URL DEVICE_ID CENTRE_ID KEYFILE
//
// Makes an Ed25519 key in KEYFILE (PKCS#8 PEM) when it is missing and prints the
// public key in the spec's encoding. With a URL it uploads one valid record of every
// record kind, replays the batch, reads the stream heads and pulls every dataset,
// checking every reply against the spec. One JSON line per step; exit 1 on the first
// step that is not as the spec says.

import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import canonicalize from "canonicalize";
import yaml from "js-yaml";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SPEC_PATH = path.resolve(HERE, "../../sync/spec/openapi.yaml");
const GENESIS = "0".repeat(64);

class StepFailure extends Error {
  constructor(step, message) {
    super(message);
    this.step = step;
  }
}

function report(step, fields = {}) {
  process.stdout.write(JSON.stringify({ step, ok: true, ...fields }) + "\n");
}

function expect(step, cond, message) {
  if (!cond) throw new StepFailure(step, message);
}

// ------------------------------------------------------------------ record hash

// The spec's record hash version 2: SHA-256 of the RFC 8785 (JCS) form of the
// envelope's device_id, centre_id, stream, seq, record_id, kind, created_at,
// prev_hash and payload, plus "hash_version": 2. JCS comes from the `canonicalize`
// package (an implementation of RFC 8785 by one of its authors).
const HASHED = [
  "device_id",
  "centre_id",
  "stream",
  "seq",
  "record_id",
  "kind",
  "created_at",
  "prev_hash",
  "payload",
];

function hashInput(env) {
  const doc = { hash_version: 2 };
  for (const k of HASHED) doc[k] = env[k];
  return canonicalize(doc);
}

const recordHash = (env) => sha256hex(Buffer.from(hashInput(env), "utf8"));

const sha256hex = (bytes) => crypto.createHash("sha256").update(bytes).digest("hex");
const sha256b64 = (bytes) => crypto.createHash("sha256").update(bytes).digest("base64");

// ------------------------------------------------------------------ keys and ids

function loadOrMakeKey(file) {
  if (!fs.existsSync(file)) {
    const { privateKey } = crypto.generateKeyPairSync("ed25519");
    fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
    fs.writeFileSync(file, privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
  }
  const privateKey = crypto.createPrivateKey(fs.readFileSync(file));
  const jwk = crypto.createPublicKey(privateKey).export({ format: "jwk" });
  // DevicePublicKey: standard padded base64 of the 32 raw bytes.
  const publicKey = Buffer.from(jwk.x, "base64url").toString("base64");
  return { privateKey, publicKey };
}

const CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

function ulid() {
  let t = Date.now();
  let time = "";
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32] + time;
    t = Math.floor(t / 32);
  }
  const rnd = crypto.randomBytes(16);
  let tail = "";
  for (let i = 0; i < 16; i++) tail += CROCKFORD[rnd[i] % 32];
  return time + tail;
}

function nowRfc3339() {
  // local time at +08:00, milliseconds, explicit offset
  const d = new Date(Date.now() + 8 * 3600 * 1000);
  return d.toISOString().replace("Z", "+08:00");
}

// ------------------------------------------------------------------ spec and ajv

function loadSpec() {
  const doc = yaml.load(fs.readFileSync(SPEC_PATH, "utf8"));
  // Every documented JSON response schema gets a name under components/schemas, so
  // its '#/components/...' references resolve against the document.
  const responses = {};
  let n = 0;
  for (const [tmpl, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const table = {};
      for (const [status, resp0] of Object.entries(op.responses)) {
        const resp = resp0.$ref ? resolve(doc, resp0.$ref) : resp0;
        const schema = resp.content?.["application/json"]?.schema;
        let name = null;
        if (schema) {
          name = `__response_${n++}`;
          doc.components.schemas[name] = schema;
        }
        const headers = Object.entries(resp.headers || {})
          .filter(([, h]) => h.required)
          .map(([h]) => h);
        table[status] = { schema: name, headers };
      }
      responses[`${method.toUpperCase()} ${tmpl}`] = table;
    }
  }
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: true });
  addFormats(ajv);
  ajv.addSchema(doc, "spec");
  const validators = new Map();
  const validator = (name) => {
    if (!validators.has(name)) {
      const v = ajv.getSchema(`spec#/components/schemas/${name}`);
      if (!v) throw new Error(`no schema ${name} in the spec`);
      validators.set(name, v);
    }
    return validators.get(name);
  };
  return { doc, responses, validator };
}

function resolve(doc, ref) {
  let node = doc;
  for (const part of ref.replace(/^#\//, "").split("/")) {
    node = node[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  }
  return node;
}

function checkSchema(spec, step, name, value) {
  const v = spec.validator(name);
  if (!v(value)) {
    const errs = v.errors.slice(0, 5).map((e) => `${e.instancePath || "/"} ${e.message}`);
    throw new StepFailure(step, `${name} does not hold: ${errs.join("; ")}`);
  }
}

// Check a reply against the operation's documented responses: the status is one the
// spec lists, the headers it names are there, and a JSON body satisfies the schema.
function checkReply(spec, step, opKey, reply, expectedStatus) {
  const table = spec.responses[opKey];
  const doc = table[String(reply.status)];
  let body = null;
  if (reply.text.length) {
    try {
      body = JSON.parse(reply.text);
    } catch {
      body = undefined;
    }
  }
  expect(
    step,
    reply.status === expectedStatus,
    `status ${reply.status}, expected ${expectedStatus}: ${reply.text.slice(0, 300)}`
  );
  expect(step, doc, `status ${reply.status} is not a documented answer of ${opKey}`);
  for (const h of doc.headers) {
    expect(step, reply.headers.get(h) !== null, `header ${h} missing from the ${reply.status}`);
  }
  if (doc.schema) {
    expect(step, body !== undefined && body !== null, "reply body is not JSON");
    const ctype = reply.headers.get("content-type") || "";
    expect(step, ctype.startsWith("application/json"), `Content-Type is ${ctype}`);
    checkSchema(spec, step, doc.schema, body);
  } else {
    expect(step, reply.text.length === 0, `a ${reply.status} with a body`);
  }
  return body;
}

// ------------------------------------------------------------------ signed requests

// RFC 9421 as the spec profiles it: the covered components, then the parameters,
// one "<name>": <value> line each, joined by a line feed.
function signedHeaders(privateKey, keyid, { method, pathname, query, bytes, headers, created, nonce }) {
  const hdrs = { ...headers, "Content-Digest": `sha-256=:${sha256b64(bytes)}:` };
  const components = ["@method", "@path", "@query", "content-digest"];
  if (hdrs["Idempotency-Key"] !== undefined) components.push("idempotency-key");
  const params =
    "(" +
    components.map((c) => `"${c}"`).join(" ") +
    `);created=${created};nonce="${nonce}";keyid="${keyid}";alg="ed25519"`;
  const value = (c) => {
    if (c === "@method") return method;
    if (c === "@path") return pathname;
    if (c === "@query") return "?" + query;
    const key = Object.keys(hdrs).find((k) => k.toLowerCase() === c);
    return hdrs[key];
  };
  const base = [
    ...components.map((c) => `"${c}": ${value(c)}`),
    `"@signature-params": ${params}`,
  ].join("\n");
  const signature = crypto.sign(null, Buffer.from(base, "utf8"), privateKey).toString("base64");
  hdrs["Signature-Input"] = `sig1=${params}`;
  hdrs["Signature"] = `sig1=:${signature}:`;
  return { headers: hdrs, base, signature };
}

// The spec's worked example (x-device-registration): the same key, public key, record
// hash, digest, signature base and signature, byte for byte.
// The spec's record hash test vectors (hash-vectors.json beside openapi.yaml): the
// canonical text and the hash of every version 2 vector, byte for byte. Version 1
// (spec 1.0 devices, Python's number form) is not implemented by this client.
function checkHashVectors() {
  const step = "hash_vectors";
  const file = path.resolve(path.dirname(SPEC_PATH), "hash-vectors.json");
  const { vectors } = JSON.parse(fs.readFileSync(file, "utf8"));
  let checked = 0;
  for (const v of vectors) {
    if (v.hash_version !== 2) continue;
    const text = hashInput(v.envelope);
    expect(step, text === v.canonical, `${v.name}: canonical ${text} is not ${v.canonical}`);
    const h = sha256hex(Buffer.from(text, "utf8"));
    expect(step, h === v.hash, `${v.name}: hash ${h} is not ${v.hash}`);
    checked += 1;
  }
  expect(step, checked >= 5, `only ${checked} version 2 vectors`);
  report(step, { checked, skipped_version_1: vectors.length - checked });
}

function checkWorkedExample(spec) {
  const step = "signing_example";
  const ex = spec.doc["x-device-registration"].example;
  const pkcs8 = Buffer.concat([
    Buffer.from("302e020100300506032b657004220420", "hex"),
    Buffer.from(ex.private_key_seed_hex, "hex"),
  ]);
  const privateKey = crypto.createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
  const jwk = crypto.createPublicKey(privateKey).export({ format: "jwk" });
  const pub = Buffer.from(jwk.x, "base64url").toString("base64");
  expect(step, pub === ex.public_key, `public key ${pub}, spec ${ex.public_key}`);
  expect(
    step,
    ex.registration === `${ex.device_id}:${ex.centre_id}:${ex.public_key}`,
    "registration is not DEVICE:CENTRE:PUBKEY"
  );
  const batch = JSON.parse(ex.body);
  checkSchema(spec, step, "BatchRequest", batch);
  let prev = GENESIS;
  for (const r of batch.records) {
    expect(step, r.hash_version === 2, `record ${r.seq} is not hash version 2`);
    const h = recordHash(r);
    expect(step, r.prev_hash === prev && r.hash === h, `record ${r.seq} hash ${h}, spec ${r.hash}`);
    prev = h;
  }
  const got = signedHeaders(privateKey, ex.device_id, {
    method: ex.method,
    pathname: ex.path,
    query: ex.query,
    bytes: Buffer.from(ex.body, "utf8"),
    headers: { "Idempotency-Key": ex.headers["Idempotency-Key"] },
    created: ex.created,
    nonce: ex.nonce,
  });
  expect(step, got.base === ex.signature_base, `signature base differs:\n${got.base}`);
  for (const h of ["Content-Digest", "Signature-Input", "Signature"]) {
    expect(step, got.headers[h] === ex.headers[h], `${h} ${got.headers[h]}, spec ${ex.headers[h]}`);
  }
  expect(step, got.signature === ex.signature, "signature differs");
  report(step);
}

class Client {
  constructor(base, deviceId, privateKey) {
    this.base = base.replace(/\/$/, "");
    this.deviceId = deviceId;
    this.privateKey = privateKey;
  }

  async request(method, pathname, { query = "", body = "", headers = {} } = {}) {
    const bytes = Buffer.from(body, "utf8");
    const hdrs = signedHeaders(this.privateKey, this.deviceId, {
      method,
      pathname,
      query,
      bytes,
      headers,
      created: Math.floor(Date.now() / 1000),
      nonce: crypto.randomBytes(18).toString("base64url"),
    }).headers;
    if (method !== "GET") hdrs["Content-Type"] = "application/json";
    const url = this.base + pathname + (query ? "?" + query : "");
    const resp = await fetch(url, {
      method,
      headers: hdrs,
      body: method === "GET" ? undefined : bytes,
    });
    const raw = Buffer.from(await resp.arrayBuffer());
    return { status: resp.status, headers: resp.headers, raw, text: raw.toString("utf8") };
  }
}

// ------------------------------------------------------------------ records

function payloads(deviceId) {
  const resident = "R00001";
  const mealId = ulid();
  const face = {
    method: "face",
    match_score: 1e-7, // a float whose rendering differs between languages without JCS
    match_threshold: 0.5,
    liveness: {
      live: true,
      method: "passive+blink",
      signals: { passive: 0.93, blink: 1.0 },
      reason: null,
    },
    card_id_hmac: null,
    id_number_hmac: null,
    staff_id: null,
  };
  // One wallet's story the platform's ledger view can follow: a top-up, a meal paid
  // from it, a part refund of that meal, then the void of the rest.
  const kiosk = [
    [
      "wallet_topup",
      {
        resident_id: resident,
        amount_fen: 10000,
        method: "cash",
        staff_id: "S01",
        wallet_before_fen: 0,
        wallet_after_fen: 10000,
        receipt_no: null,
      },
    ],
    [
      "meal_transaction",
      {
        resident_id: resident,
        categories: ["age_80_89"],
        meal_date: "2026-01-05",
        slot: "lunch",
        items: [
          {
            item_id: "M1",
            name: "红烧肉套餐",
            quantity: 2,
            unit_price_fen: 1300,
            line_total_fen: 2600,
            subsidisable: true,
          },
        ],
        list_total_fen: 2600,
        // a policy the platform does not publish: its lines are not checked
        subsidy_lines: [
          {
            policy_id: "spec-client-policy",
            policy_version: 1,
            category: "age_80_89",
            rule: "age_80_89/lunch: fixed 3.00",
            amount_fen: 300,
          },
        ],
        subsidy_total_fen: 300,
        amount_due_fen: 2300,
        payment_source: "wallet",
        wallet_before_fen: 10000,
        wallet_after_fen: 7700,
        verification: face,
        staff_id: null,
        corrects_record_id: null,
        receipt_no: "00000001",
      },
      mealId,
    ],
    [
      "meal_refund",
      {
        original_record_id: mealId,
        resident_id: resident,
        amount_fen: 200,
        refund_to: "wallet",
        reason_code: "meal_not_served",
        reason_text: "汤没有上",
        staff_id: "S01",
        wallet_before_fen: 7700,
        wallet_after_fen: 7900,
      },
    ],
    [
      "meal_void",
      {
        original_record_id: mealId,
        resident_id: resident,
        reason_code: "wrong_item",
        reason_text: null,
        staff_id: "S01",
        amount_returned_fen: 2100,
        subsidy_reversed_fen: 300,
        wallet_before_fen: 7900,
        wallet_after_fen: 10000,
      },
    ],
    [
      "footfall_hourly",
      {
        hour_start: "2026-01-05T10:00:00.000+08:00",
        date: "2026-01-05",
        visits_in: 18,
        visits_out: 15,
        unique_visitors: 12,
        identified_attendance: 4,
        observed_seconds: 3600,
        partial: false,
        detector: "face",
      },
    ],
    [
      "attendance",
      {
        resident_id: resident,
        date: "2026-01-05",
        session: 2,
        first_seen: "2026-01-05T11:30:00.000+08:00",
        score: 0.71,
      },
    ],
    [
      "enrolment",
      {
        resident_id: resident,
        pack_id: "open-1",
        template_count: 3,
        quality_min: 0.62,
        quality_mean: 0.71,
        consent: {
          face_pay: true,
          attendance: false,
          consented_at: "2026-01-05T11:30:00.000+08:00",
          evidence: "paper_form",
        },
        staff_id: "S01",
      },
    ],
    [
      "unenrolment",
      {
        resident_id: resident,
        pack_id: "open-1",
        templates_deleted: 3,
        reason: "consent_withdrawn",
        staff_id: null,
      },
    ],
    [
      "district_wallet_topup",
      { resident_id: resident, amount_fen: 2000, method: "cash", staff_id: "S01" },
    ],
  ];
  const agent = [
    [
      "heartbeat",
      {
        software_version: `spec-client/${deviceId}`.slice(0, 64),
        uptime_s: 100,
        disk_free_bytes: 10,
        disk_total_bytes: 20,
        queue_depth: 0,
        oldest_unsynced_age_s: null,
        dead_letters: 0,
        blocked_streams: [],
        camera_status: "ok",
        printer_status: "unknown",
        last_upload_at: null,
        datasets: {},
      },
    ],
    [
      "ota_status",
      {
        deployment_id: "42",
        action: "download",
        status: "started",
        version_from: "0.1.0",
        version_to: "0.2.0",
        detail: null,
      },
    ],
  ];
  return { kiosk, agent };
}

// Envelopes with seq 1..n, each prev_hash the hash before it (64 zeros first).
function chain(deviceId, centreId, stream, items) {
  let prev = GENESIS;
  return items.map(([kind, payload, recordId], i) => {
    const seq = i + 1;
    const record_id = recordId || ulid();
    const env = {
      device_id: deviceId,
      centre_id: centreId,
      stream,
      seq,
      record_id,
      kind,
      created_at: nowRfc3339(),
      prev_hash: prev,
      hash_version: 2,
      payload,
    };
    env.hash = recordHash(env);
    prev = env.hash;
    return env;
  });
}

// ------------------------------------------------------------------ steps

async function uploadStream(spec, client, deviceId, centreId, stream, records) {
  const batch = { device_id: deviceId, centre_id: centreId, stream, records };
  const body = JSON.stringify(batch);
  checkSchema(spec, `build_${stream}`, "BatchRequest", JSON.parse(body));
  report(`build_${stream}`, { records: records.length, kinds: records.map((r) => r.kind) });

  const key = "batch-" + crypto.randomBytes(16).toString("hex");
  const op = "POST /v1/batches";
  let step = `upload_${stream}`;
  const first = await client.request("POST", "/v1/batches", {
    body,
    headers: { "Idempotency-Key": key },
  });
  const resp = checkReply(spec, step, op, first, 200);
  expect(step, resp.device_id === deviceId && resp.stream === stream, "device_id/stream echo");
  expect(step, resp.results.length === records.length, `${resp.results.length} results`);
  records.forEach((rec, i) => {
    const r = resp.results[i];
    expect(
      step,
      r.seq === rec.seq && r.record_id === rec.record_id,
      `result ${i} is for seq ${r.seq} / ${r.record_id}, not ${rec.seq} / ${rec.record_id}`
    );
    expect(
      step,
      r.result === "accepted" && r.stored_as === "record" && r.retryable === false,
      `${rec.kind} (seq ${rec.seq}) answered ${JSON.stringify(r)}`
    );
  });
  const last = records[records.length - 1];
  expect(step, resp.next_seq === last.seq + 1, `next_seq ${resp.next_seq}`);
  expect(step, resp.head_hash === last.hash, `head_hash ${resp.head_hash} is not ${last.hash}`);
  report(step, { status: first.status, results: resp.results.map((r) => r.result) });

  // The same key and body: the stored answer, byte for byte, marked as replayed.
  step = `replay_${stream}`;
  const again = await client.request("POST", "/v1/batches", {
    body,
    headers: { "Idempotency-Key": key },
  });
  checkReply(spec, step, op, again, 200);
  expect(step, again.headers.get("idempotent-replayed") === "true", "no Idempotent-Replayed: true");
  expect(step, again.raw.equals(first.raw), "replayed body differs from the first answer");
  report(step, { status: again.status, replayed: true });

  // The same records under a new key: processed again, each an idempotent duplicate.
  step = `resend_${stream}`;
  const resent = await client.request("POST", "/v1/batches", {
    body,
    headers: { "Idempotency-Key": "batch-" + crypto.randomBytes(16).toString("hex") },
  });
  const dup = checkReply(spec, step, op, resent, 200);
  expect(step, resent.headers.get("idempotent-replayed") === null, "a new key answered as replay");
  for (const r of dup.results) {
    expect(
      step,
      r.result === "duplicate" && r.stored_as === "record" && r.retryable === false,
      `seq ${r.seq} answered ${JSON.stringify(r)}`
    );
  }
  expect(step, dup.next_seq === last.seq + 1 && dup.head_hash === last.hash, "stream head moved");
  report(step, { status: resent.status, results: dup.results.map((r) => r.result) });

  step = `head_${stream}`;
  const p = `/v1/devices/${deviceId}/streams/${stream}`;
  const head = checkReply(
    spec,
    step,
    "GET /v1/devices/{device_id}/streams/{stream}",
    await client.request("GET", p),
    200
  );
  expect(
    step,
    head.next_seq === last.seq + 1 && head.head_hash === last.hash && head.quarantined === 0,
    `stream head ${JSON.stringify(head)}`
  );
  report(step, head);
}

const etagOf = (value) => `"${value}"`;

async function pullDatasets(spec, client, centreId) {
  const op = "GET /v1/centres/{centre_id}/datasets/{kind}";
  for (const kind of spec.doc.components.schemas.DatasetKind.enum) {
    const p = `/v1/centres/${centreId}/datasets/${kind}`;
    let step = `pull_${kind}`;
    const reply = await client.request("GET", p);
    const doc = checkReply(spec, step, op, reply, 200);
    const etag = reply.headers.get("etag");
    expect(step, /^"[^"]*"$/.test(etag), `ETag ${etag} is not a strong entity-tag`);
    expect(step, doc.kind === kind && doc.centre_id === centreId, "kind/centre_id echo");
    let info;
    if (kind === "consent_changes") {
      checkSchema(spec, step, "ConsentChangesPage", doc);
      expect(step, doc.cursor === null, `first page cursor ${doc.cursor}`);
      let page = doc;
      let changes = doc.changes.length;
      let pages = 1;
      while (page.has_more) {
        const next = await client.request("GET", p, {
          query: "cursor=" + encodeURIComponent(page.next_cursor),
        });
        page = checkReply(spec, step, op, next, 200);
        checkSchema(spec, step, "ConsentChangesPage", page);
        changes += page.changes.length;
        pages += 1;
      }
      info = { pages, changes };
    } else {
      checkSchema(spec, step, "DatasetDocument", doc);
      expect(step, etag === etagOf(doc.etag), `ETag header ${etag}, document etag ${doc.etag}`);
      info = { version: doc.version, etag: doc.etag };
    }
    report(step, { status: reply.status, ...info });

    step = `pull_${kind}_unchanged`;
    const cond = await client.request("GET", p, { headers: { "If-None-Match": etag } });
    checkReply(spec, step, op, cond, 304);
    expect(step, cond.headers.get("etag") === etag, `304 ETag ${cond.headers.get("etag")}`);
    report(step, { status: cond.status });
  }
}

async function main(argv) {
  if (argv[0] === "--print-key" && argv.length === 2) {
    const { publicKey } = loadOrMakeKey(argv[1]);
    report("key", { public_key: publicKey });
    return;
  }
  if (argv.length !== 4) {
    process.stderr.write("usage: client.mjs URL DEVICE_ID CENTRE_ID KEYFILE | --print-key KEYFILE\n");
    process.exit(2);
  }
  const [url, deviceId, centreId, keyFile] = argv;
  const spec = loadSpec();
  checkHashVectors();
  checkWorkedExample(spec);
  const { privateKey, publicKey } = loadOrMakeKey(keyFile);
  checkSchema(spec, "key", "DevicePublicKey", publicKey);
  report("key", { public_key: publicKey });

  const client = new Client(url, deviceId, privateKey);
  const { kiosk, agent } = payloads(deviceId);
  const streams = {
    kiosk: chain(deviceId, centreId, "kiosk", kiosk),
    agent: chain(deviceId, centreId, "agent", agent),
  };
  const kinds = new Set([...streams.kiosk, ...streams.agent].map((r) => r.kind));
  const missing = spec.doc.components.schemas.RecordKind.enum.filter((k) => !kinds.has(k));
  expect("build", missing.length === 0, `no record of kind ${missing.join(", ")}`);
  for (const [stream, records] of Object.entries(streams)) {
    for (const rec of records) checkSchema(spec, `build_${stream}`, "Record", rec);
    await uploadStream(spec, client, deviceId, centreId, stream, records);
  }
  await pullDatasets(spec, client, centreId);
  report("done");
}

main(process.argv.slice(2)).catch((err) => {
  const step = err instanceof StepFailure ? err.step : "internal";
  const cause = err.cause ? ` (${err.cause.message || err.cause})` : "";
  const error = String(err.message || err) + cause;
  process.stdout.write(JSON.stringify({ step, ok: false, error }) + "\n");
  process.exit(1);
});
