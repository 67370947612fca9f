// Conformance of Sluice's control plane with Segment's official Public API client
// (@segment/public-api-sdk-typescript), method by method.
//
// Calls every method of WorkspacesApi, SourcesApi, DestinationsApi, TrackingPlansApi,
// LabelsApi, IAMUsersApi, IAMRolesApi, IAMGroupsApi, AuditTrailApi and FunctionsApi, plus the source and
// destination methods of CatalogApi, through the client, in a fresh workspace. All traffic
// goes through a local recording proxy, so each raw answer (status, content type, body) is
// kept. A method WORKS when every call of it resolves in the client, answers 2xx, and the
// raw body has every field the client's response model marks required (and `data`, which
// `sdk.unwrap()` needs), with the model's primitive types, nullability and enum values. The
// models are read from the client's own generated sources (api/*.ts, model/*.ts), so the
// check follows the installed client version.
//
// Env:
//   SLUICE_API   the control plane API base, e.g. http://127.0.0.1:8081/api/v1 (127.0.0.1 only)
//   OWNER_TOKEN  an owner's API token in a fresh workspace
//   RESULT       where to write the JSON result
// Other users (a member, a read-only user, a user to delete) are invited and accepted
// through the API itself. Prints one line per method: `Class.method: works` or
// `Class.method: fails: reason`. Exits 0 when the run completed (whatever the verdicts),
// non-zero when it could not run (bad env, setup refused, overall timeout).
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { createRequire } from 'node:module';

const API = process.env.SLUICE_API;
const OWNER_TOKEN = process.env.OWNER_TOKEN;
const RESULT = process.env.RESULT;
if (!API || !OWNER_TOKEN || !RESULT) {
  console.error('conformance.mjs needs SLUICE_API, OWNER_TOKEN and RESULT');
  process.exit(2);
}
const target = new URL(API);
if (target.hostname !== '127.0.0.1' || target.protocol !== 'http:') {
  console.error(`SLUICE_API must be http://127.0.0.1:PORT/...; got ${API}`);
  process.exit(2);
}
const CALL_TIMEOUT = 10_000;
const RUN_TIMEOUT = 200_000;

const require = createRequire(import.meta.url);
const SDK_DIR = path.dirname(require.resolve('@segment/public-api-sdk-typescript/package.json'));
const SDK_VERSION = JSON.parse(fs.readFileSync(path.join(SDK_DIR, 'package.json'), 'utf8')).version;
const sdk = require('@segment/public-api-sdk-typescript');

// ------------------------------------------------------------------ the client's models
// Every method: HTTP method, path, response model. Every model: fields (JSON name, type,
// required, nullable). Every enum: its values.
const API_FILES = {
  WorkspacesApi: 'workspacesApi.ts',
  SourcesApi: 'sourcesApi.ts',
  DestinationsApi: 'destinationsApi.ts',
  TrackingPlansApi: 'trackingPlansApi.ts',
  LabelsApi: 'labelsApi.ts',
  IAMUsersApi: 'iAMUsersApi.ts',
  IAMRolesApi: 'iAMRolesApi.ts',
  IAMGroupsApi: 'iAMGroupsApi.ts',
  AuditTrailApi: 'auditTrailApi.ts',
  CatalogApi: 'catalogApi.ts',
  FunctionsApi: 'functionsApi.ts',
  DeletionAndSuppressionApi: 'deletionAndSuppressionApi.ts',
};
// Of CatalogApi, only what Sluice can mean: no warehouses.
const CATALOG_METHODS = ['getSourcesCatalog', 'getSourceMetadata', 'getDestinationsCatalog', 'getDestinationMetadata'];

function extractSpec() {
  const methods = [];
  for (const [cls, file] of Object.entries(API_FILES)) {
    const src = fs.readFileSync(path.join(SDK_DIR, 'api', file), 'utf8');
    for (const part of src.split(/\n    public async /).slice(1)) {
      const name = part.match(/^(\w+)\(/)?.[1];
      const route = part.match(/localVarPath\s*=\s*this\.basePath\s*\+\s*'([^']+)'/)?.[1];
      const verb = part.match(/method: '(\w+)'/)?.[1];
      const response = part.match(/body: (\w+);/)?.[1];
      if (!name || !route || !verb || !response) throw new Error(`cannot parse a method of ${file}`);
      if (cls === 'CatalogApi' && !CATALOG_METHODS.includes(name)) continue;
      // Cloud sources (objects synced from SaaS tools) are not a Sluice thing.
      if (cls === 'DeletionAndSuppressionApi' && name === 'createCloudSourceRegulation') continue;
      methods.push({ cls, name, http: verb, path: route, response });
    }
  }
  const models = {};
  const enums = {};
  for (const file of fs.readdirSync(path.join(SDK_DIR, 'model'))) {
    if (!file.endsWith('.ts') || file === 'models.ts') continue;
    const src = fs.readFileSync(path.join(SDK_DIR, 'model', file), 'utf8');
    const cm = src.match(/export class (\w+) \{([\s\S]*?)static discriminator/);
    if (!cm) continue;
    const decl = [...cm[2].matchAll(/^\s+'(\w+)'(\??):\s*([^;]+);/gm)].map((m) => ({ name: m[1], required: m[2] !== '?', tsType: m[3].trim() }));
    const attrs = [...src.matchAll(/name: '(\w+)',\s*baseName: '(\w+)',\s*type: '([^']+)'/g)].map((m) => ({ name: m[1], baseName: m[2], type: m[3] }));
    models[cm[1]] = attrs.map((a) => {
      const d = decl.find((x) => x.name === a.name) || {};
      return { ...a, required: !!d.required, nullable: /\| null/.test(d.tsType || '') };
    });
    for (const em of src.matchAll(/export enum (\w+) \{([\s\S]*?)\}/g)) {
      enums[`${cm[1]}.${em[1]}`] = [...em[2].matchAll(/=\s*<any>'([^']*)'/g)].map((m) => m[1]);
    }
  }
  if (methods.length < 60 || Object.keys(models).length < 100) {
    throw new Error(`client sources not understood: ${methods.length} methods, ${Object.keys(models).length} models`);
  }
  return { methods, models, enums };
}
const spec = extractSpec();

// Checks `value` against the client's `type`; pushes what is wrong onto `issues`.
const MAP = '{ [key: string]: any; }';
function check(value, type, at, issues, nullable = false) {
  if (value === null) {
    if (!nullable && type !== 'any') issues.push(`${at}: null but ${type} is not nullable`);
    return;
  }
  const arr = type.match(/^Array<(.+)>$/);
  if (arr) {
    if (!Array.isArray(value)) issues.push(`${at}: expected ${type}, got ${typeof value}`);
    else value.forEach((v, i) => check(v, arr[1], `${at}[${i}]`, issues));
    return;
  }
  if (type === 'any') return;
  if (type === 'string' || type === 'number' || type === 'boolean') {
    if (typeof value !== type) issues.push(`${at}: expected ${type}, got ${JSON.stringify(value)?.slice(0, 60)}`);
    return;
  }
  if (type === MAP || type === 'object') {
    if (typeof value !== 'object' || Array.isArray(value)) issues.push(`${at}: expected an object`);
    return;
  }
  if (spec.enums[type]) {
    if (!spec.enums[type].includes(String(value))) issues.push(`${at}: ${JSON.stringify(value)} not in ${type} (${spec.enums[type].join('|')})`);
    return;
  }
  const fields = spec.models[type];
  if (!fields) return; // a type the parser does not know (Date, RequestFile): not checked
  if (typeof value !== 'object' || Array.isArray(value)) {
    issues.push(`${at}: expected ${type} object, got ${JSON.stringify(value)?.slice(0, 60)}`);
    return;
  }
  for (const f of fields) {
    const v = value[f.baseName];
    const here = at === '$' ? f.baseName : `${at}.${f.baseName}`;
    const required = f.required || (at === '$' && f.baseName === 'data'); // sdk.unwrap() needs data
    if (v === undefined) {
      if (required) issues.push(`missing ${here} (${f.type}, required in ${type})`);
      continue;
    }
    check(v, f.type, here, issues, f.nullable);
  }
}

// ------------------------------------------------------------------ recording proxy
let currentTag = 'setup';
const exchanges = [];
const proxy = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const reqBody = Buffer.concat(chunks);
    const rec = { tag: currentTag, method: req.method, url: req.url, reqBody: reqBody.toString('utf8') };
    const up = http.request(
      { host: '127.0.0.1', port: target.port, method: req.method, path: req.url, headers: { ...req.headers, host: target.host }, timeout: CALL_TIMEOUT },
      (r) => {
        const rc = [];
        r.on('data', (c) => rc.push(c));
        r.on('end', () => {
          const body = Buffer.concat(rc);
          rec.status = r.statusCode;
          rec.resType = r.headers['content-type'] || null;
          rec.resBody = body.toString('utf8');
          exchanges.push(rec);
          res.writeHead(r.statusCode, r.headers);
          res.end(body);
        });
      },
    );
    up.on('timeout', () => up.destroy(new Error('upstream timeout')));
    up.on('error', (e) => {
      rec.status = 0;
      rec.resBody = String(e);
      exchanges.push(rec);
      res.writeHead(502);
      res.end();
    });
    up.end(reqBody);
  });
});
await new Promise((r) => proxy.listen(0, '127.0.0.1', r));
const PROXY = `http://127.0.0.1:${proxy.address().port}`;
const BASE = `${PROXY}${target.pathname.replace(/\/$/, '')}`;

// ------------------------------------------------------------------ results
const calls = [];
function methodVerdicts() {
  return spec.methods.map((m) => {
    const id = `${m.cls}.${m.name}`;
    const mine = calls.filter((c) => c.method === id);
    const bad = mine.find((c) => !c.ok);
    return {
      method: id,
      http: `${m.http} ${m.path}`,
      works: mine.length > 0 && !bad,
      reason: mine.length === 0 ? 'not called by conformance.mjs' : bad ? bad.reason : null,
      calls: mine,
    };
  });
}
function writeResult(complete, error) {
  const methods = methodVerdicts();
  const result = {
    client: `@segment/public-api-sdk-typescript@${SDK_VERSION}`,
    when: new Date().toISOString(),
    complete,
    error: error || null,
    total: methods.length,
    working: methods.filter((m) => m.works).length,
    methods,
  };
  fs.writeFileSync(RESULT, JSON.stringify(result, null, 1));
  return result;
}
const runTimer = setTimeout(() => {
  writeResult(false, `run timed out after ${RUN_TIMEOUT / 1000} s (during ${currentTag})`);
  console.error(`conformance: run timed out during ${currentTag}`);
  process.exit(3);
}, RUN_TIMEOUT);

// ------------------------------------------------------------------ setup (raw HTTP)
async function raw(method, url, { token, json, form } = {}) {
  const headers = { accept: 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  let body;
  if (json !== undefined) {
    headers['content-type'] = 'application/json';
    body = JSON.stringify(json);
  }
  if (form !== undefined) {
    headers['content-type'] = 'application/x-www-form-urlencoded';
    body = new URLSearchParams(form).toString();
  }
  // Links are on the public URL; whatever their host, they are sent to this server.
  const u = new URL(url, PROXY);
  const r = await fetch(`${PROXY}${u.pathname}${u.search}`, { method, headers, body, signal: AbortSignal.timeout(CALL_TIMEOUT) });
  const text = await r.text();
  let parsed;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: r.status, text, json: parsed };
}
async function inviteUser(email, role) {
  const inv = await raw('POST', `${target.pathname.replace(/\/$/, '')}/invites`, { token: OWNER_TOKEN, json: { invites: [{ email, role }] } });
  const link = inv.json?.data?.invites?.[0]?.link;
  if (inv.status !== 200 || !link) throw new Error(`invite ${email}: ${inv.status} ${inv.text}`);
  const acc = await raw('POST', link, { form: { email, first_name: 'Conformance', last_name: email.split('@')[0] } });
  if (acc.status !== 200 || !acc.json?.data?.secret || !acc.json?.data?.user?.id) throw new Error(`accept ${email}: ${acc.status} ${acc.text}`);
  return { token: acc.json.data.secret, id: acc.json.data.user.id, email };
}

// ------------------------------------------------------------------ calling the client
const api = {};
for (const cls of Object.keys(API_FILES)) {
  const a = new sdk[cls](BASE);
  a.accessToken = OWNER_TOKEN;
  a.addInterceptor((opts) => {
    opts.timeout = CALL_TIMEOUT;
  });
  api[cls] = a;
}
const find = (cls, name) => spec.methods.find((m) => m.cls === cls && m.name === name);

function errorSummary(ex) {
  let j;
  try {
    j = JSON.parse(ex.resBody);
  } catch {
    return `HTTP ${ex.status} (no JSON error envelope${ex.resBody ? `: ${ex.resBody.slice(0, 60)}` : ''})`;
  }
  const e = j?.errors?.[0];
  if (!e) return `HTTP ${ex.status} (JSON without {errors:[…]})`;
  return `HTTP ${ex.status} ${e.type}: ${String(e.message || '').slice(0, 100)}`;
}

// Calls Class.method(...args) through the client; records the verdict; returns the raw JSON.
async function call(cls, name, args) {
  const m = find(cls, name);
  if (!m) throw new Error(`the client has no ${cls}.${name}`);
  currentTag = `${cls}.${name}#${calls.length}`;
  const before = exchanges.length;
  const rec = { method: `${cls}.${name}` };
  let thrown = null;
  try {
    await Promise.race([
      api[cls][name](...args),
      new Promise((_, rej) => setTimeout(() => rej(new Error('no answer in time')), CALL_TIMEOUT + 2000)),
    ]);
  } catch (e) {
    thrown = e?.statusCode ? `HttpError ${e.statusCode}` : String(e?.message || e);
  }
  await new Promise((r) => setTimeout(r, 5));
  const ex = exchanges.slice(before).find((x) => x.tag === currentTag);
  let json;
  if (!ex) {
    rec.reason = `no request reached the server (${thrown || 'unknown'})`;
  } else {
    rec.request = `${ex.method} ${ex.url}`;
    rec.status = ex.status;
    rec.response = ex.resBody.length > 2000 ? `${ex.resBody.slice(0, 2000)}…` : ex.resBody;
    try {
      json = JSON.parse(ex.resBody);
    } catch {
      json = undefined;
    }
    if (ex.status < 200 || ex.status > 299) rec.reason = errorSummary(ex);
    else {
      const issues = [];
      if (json === undefined) issues.push('body is not JSON');
      else check(json, m.response, '$', issues);
      rec.issues = [...new Set(issues.map((i) => i.replace(/\[\d+\]/g, '[]')))];
      if (rec.issues.length) rec.reason = `HTTP ${ex.status} but ${rec.issues[0]}${rec.issues.length > 1 ? ` (+${rec.issues.length - 1} more)` : ''}`;
      else if (thrown) rec.reason = `HTTP ${ex.status} but the client threw: ${thrown}`;
    }
  }
  rec.ok = !rec.reason;
  calls.push(rec);
  return json;
}
const page = (count = 100) => ({ count });
const d = (j) => j?.data;

// ------------------------------------------------------------------ the run
const W = 'WorkspacesApi', S = 'SourcesApi', D = 'DestinationsApi', T = 'TrackingPlansApi', L = 'LabelsApi';
const U = 'IAMUsersApi', R = 'IAMRolesApi', G = 'IAMGroupsApi', A = 'AuditTrailApi', C = 'CatalogApi';
const F = 'FunctionsApi', P = 'DeletionAndSuppressionApi';
const ctx = {};
try {
  const member = await inviteUser('member@example.com', 'member');
  const reader = await inviteUser('reader@example.com', 'read_only');
  const doomed = await inviteUser('doomed@example.com', 'member'); // deleteUsers removes them

  ctx.workspaceId = d(await call(W, 'getWorkspace', []))?.workspace?.id || 'default';

  // Catalog
  const sourceKinds = d(await call(C, 'getSourcesCatalog', [page(2)]))?.sourcesCatalog || [];
  // A source type the catalog lists (Sluice's ids are slugs such as `javascript`).
  await call(C, 'getSourceMetadata', [sourceKinds[0]?.id || 'javascript']);
  await call(C, 'getDestinationsCatalog', [page(2)]);
  await call(C, 'getDestinationMetadata', ['webhook']);

  // Labels
  await call(L, 'createLabel', [{ label: { key: 'team', value: 'analytics', description: 'Analytics team' } }]);
  await call(L, 'createLabel', [{ label: { key: 'team', value: 'growth' } }]);
  await call(L, 'listLabels', []);

  // Sources
  const src = d(await call(S, 'createSource', [{ slug: 'conf-web', enabled: true, metadataId: 'IqDTy1TpoU', settings: {} }]));
  ctx.sourceId = src?.source?.id || 'conf-web';
  const keysBefore = src?.source?.writeKeys || [];
  const tmp = d(await call(S, 'createSource', [{ slug: 'conf-tmp', enabled: false, metadataId: 'IqDTy1TpoU' }]));
  ctx.tmpSourceId = tmp?.source?.id || 'conf-tmp';
  await call(S, 'getSource', [ctx.sourceId]);
  await call(S, 'listSources', [page(100)]);
  await call(S, 'updateSource', [ctx.sourceId, { name: 'Conformance Web', enabled: true }]);
  const keysAfter = d(await call(S, 'createWriteKeyForSource', [ctx.sourceId]))?.source?.writeKeys || [];
  // The key just made, as this answer gives it (older ones may be masked).
  ctx.newKey = keysAfter.find((k) => !keysBefore.includes(k) && !k.includes('…')) || keysAfter.at(-1) || 'none-returned';
  await call(S, 'createWriteKeyForSource', [ctx.sourceId]);
  await call(S, 'addLabelsToSource', [ctx.sourceId, { labels: [{ key: 'environment', value: 'prod' }] }]);
  await call(S, 'replaceLabelsInSource', [ctx.sourceId, { labels: [{ key: 'environment', value: 'staging' }] }]);
  await call(S, 'listSchemaSettingsInSource', [ctx.sourceId]);
  await call(S, 'updateSchemaSettingsInSource', [ctx.sourceId, { track: { allowUnplannedEvents: true, allowUnplannedEventProperties: true, allowEventOnViolations: true, allowPropertiesOnViolations: true, commonEventOnViolations: 'ALLOW' } }]);
  await call(S, 'listConnectedWarehousesFromSource', [ctx.sourceId, page(10)]);

  // Destinations (a public URL: private and loopback hosts are refused)
  const dst = d(await call(D, 'createDestination', [{ sourceId: ctx.sourceId, metadataId: 'webhook', enabled: true, name: 'Conformance hook', settings: { url: 'https://hooks.example.com/x' } }]));
  ctx.destId = dst?.destination?.id || 'missing-destination';
  const dst2 = d(await call(D, 'createDestination', [{ sourceId: ctx.sourceId, metadataId: 'webhook', enabled: false, name: 'Conformance hook 2', settings: { url: 'https://hooks.example.com/y' } }]));
  ctx.dest2Id = dst2?.destination?.id || 'missing-destination-2';
  await call(D, 'getDestination', [ctx.destId]);
  await call(D, 'listDestinations', [page(100)]);
  await call(D, 'updateDestination', [ctx.destId, { name: 'Conformance hook renamed', enabled: true, settings: { url: 'https://hooks.example.com/x2' } }]);
  await call(S, 'listConnectedDestinationsFromSource', [ctx.sourceId, page(100)]);
  const sub = d(await call(D, 'createDestinationSubscription', [ctx.destId, { name: 'Track to hook', actionId: 'sendTrack', trigger: 'type = "track"', enabled: true, settings: {} }]));
  ctx.subId = sub?.destinationSubscription?.id || 'missing-subscription';
  await call(D, 'listSubscriptionsFromDestination', [ctx.destId, page(10)]);
  await call(D, 'getSubscriptionFromDestination', [ctx.destId, ctx.subId]);
  await call(D, 'updateSubscriptionForDestination', [ctx.destId, ctx.subId, { input: { name: 'Track to hook v2', enabled: false } }]);
  await call(D, 'removeSubscriptionFromDestination', [ctx.destId, ctx.subId]);
  const end = new Date(Date.UTC(2030, 0, 1));
  const start = new Date(end.getTime() - 3600e3);
  await call(D, 'listDeliveryMetricsSummaryFromDestination', [ctx.destId, ctx.sourceId, start.toISOString(), end.toISOString(), 'HOUR']);
  await call(D, 'deleteDestination', [ctx.dest2Id]);

  // Functions: versions, deployment, an insert function on the destination
  const secret = { name: 'apiKey', label: 'API key', description: 'a secret', type: 'STRING', required: false, sensitive: true };
  const fn = d(await call(F, 'createFunction', [{ code: 'async function onTrack(event) { return event; }', displayName: 'Conformance insert fn', resourceType: 'INSERT_DESTINATION', description: 'made by conformance.mjs', settings: [secret] }]));
  ctx.fnId = fn?.function?.id || 'missing-function';
  const fn2 = d(await call(F, 'createFunction', [{ code: 'async function onTrack(event) { return; }', displayName: 'Conformance doomed fn', resourceType: 'INSERT_DESTINATION' }]));
  ctx.fn2Id = fn2?.function?.id || 'missing-function-2';
  await call(F, 'getFunction', [ctx.fnId]);
  await call(F, 'listFunctions', [page(100), 'INSERT_DESTINATION']);
  await call(F, 'updateFunction', [ctx.fnId, { code: 'async function onTrack(event) { event.properties = event.properties || {}; return event; }', description: 'version 2' }]);
  const versions = d(await call(F, 'listFunctionVersions', [ctx.fnId, page(10)]))?.versions || [];
  ctx.firstVersion = versions.at(-1)?.id || '1';
  await call(F, 'getFunctionVersion', [ctx.fnId, ctx.firstVersion]);
  await call(F, 'restoreFunctionVersion', [ctx.fnId, { versionId: ctx.firstVersion }]);
  await call(F, 'createFunctionDeployment', [ctx.fnId]);
  const inst = d(await call(F, 'createInsertFunctionInstance', [{ functionId: ctx.fnId, integrationId: ctx.destId, name: 'Conformance insert', enabled: true, settings: { apiKey: 'k-123' } }]));
  ctx.instanceId = inst?.insertFunctionInstance?.id || 'missing-instance';
  await call(F, 'getInsertFunctionInstance', [ctx.instanceId]);
  await call(F, 'listInsertFunctionInstances', [page(10), ctx.fnId]);
  await call(F, 'updateInsertFunctionInstance', [ctx.instanceId, { name: 'Conformance insert renamed', settings: { apiKey: '<redacted>' } }]);
  await call(F, 'deleteInsertFunctionInstance', [ctx.instanceId]);
  await call(F, 'deleteFunction', [ctx.fn2Id]);

  // Tracking plans
  const plan = d(await call(T, 'createTrackingPlan', [{ name: 'Conformance plan', description: 'made by conformance.mjs', type: 'LIVE' }]));
  ctx.planId = plan?.trackingPlan?.id || 'missing-plan';
  const plan2 = d(await call(T, 'createTrackingPlan', [{ name: 'Conformance plan 2', type: 'LIVE' }]));
  ctx.plan2Id = plan2?.trackingPlan?.id || 'missing-plan-2';
  await call(T, 'getTrackingPlan', [ctx.planId]);
  await call(T, 'listTrackingPlans', [page(100)]);
  await call(T, 'updateTrackingPlan', [ctx.planId, { name: 'Conformance plan renamed', description: 'updated' }]);
  const schema = (props) => ({ $schema: 'http://json-schema.org/draft-07/schema#', type: 'object', properties: { properties: { type: 'object', properties: props } } });
  await call(T, 'replaceRulesInTrackingPlan', [ctx.planId, { rules: [
    { type: 'TRACK', key: 'Order Completed', jsonSchema: schema({ total: { type: 'number' } }), version: 1 },
    { type: 'IDENTIFY', jsonSchema: { type: 'object', properties: { traits: { type: 'object' } } }, version: 1 },
  ] }]);
  await call(T, 'updateRulesInTrackingPlan', [ctx.planId, { rules: [
    { type: 'TRACK', key: 'Product Viewed', jsonSchema: schema({ sku: { type: 'string' } }), version: 1 },
  ] }]);
  await call(T, 'listRulesFromTrackingPlan', [ctx.planId, page(100)]);
  await call(T, 'removeRulesFromTrackingPlan', [ctx.planId, [{ type: 'TRACK', key: 'Product Viewed', version: 1 }]]);
  await call(T, 'addSourceToTrackingPlan', [ctx.planId, { sourceId: ctx.sourceId }]);
  await call(T, 'listSourcesFromTrackingPlan', [ctx.planId, page(10)]);
  await call(T, 'removeSourceFromTrackingPlan', [ctx.planId, ctx.sourceId]);
  await call(T, 'deleteTrackingPlan', [ctx.plan2Id]);

  // IAM
  const roles = d(await call(R, 'listRoles', [page(100)]))?.roles || [];
  const pickRole = (re, dflt) => roles.find((r) => re.test(`${r.id} ${r.name}`))?.id || dflt;
  ctx.roleMember = pickRole(/source admin/i, null) || pickRole(/member/i, 'member');
  ctx.roleRead = pickRole(/read/i, 'read_only');
  await call(U, 'listUsers', [page(100)]);
  await call(U, 'getUser', [member.id]);
  await call(U, 'createInvites', [{ invites: [{ email: 'invitee@example.com', permissions: [{ roleId: ctx.roleRead, resources: [{ id: ctx.workspaceId, type: 'WORKSPACE' }] }] }] }]);
  await call(U, 'listInvites', [page(100)]);
  await call(U, 'addPermissionsToUser', [member.id, { permissions: [{ roleId: ctx.roleMember, resources: [{ id: ctx.sourceId, type: 'SOURCE' }] }] }]);
  await call(U, 'replacePermissionsForUser', [member.id, { permissions: [{ roleId: ctx.roleRead, resources: [{ id: ctx.workspaceId, type: 'WORKSPACE' }] }] }]);

  const grp = d(await call(G, 'createUserGroup', [{ name: 'conf-analysts' }]));
  ctx.groupId = grp?.userGroup?.id || 'missing-group';
  const grp2 = d(await call(G, 'createUserGroup', [{ name: 'conf-doomed' }]));
  ctx.group2Id = grp2?.userGroup?.id || 'missing-group-2';
  await call(G, 'getUserGroup', [ctx.groupId]);
  await call(G, 'listUserGroups', [page(100)]);
  await call(G, 'updateUserGroup', [ctx.groupId, { name: 'conf-analysts-renamed' }]);
  await call(G, 'addUsersToUserGroup', [ctx.groupId, { emails: [member.email] }]);
  await call(G, 'replaceUsersInUserGroup', [ctx.groupId, { emails: [member.email, reader.email] }]);
  await call(G, 'listUsersFromUserGroup', [ctx.groupId, page(100)]);
  await call(G, 'removeUsersFromUserGroup', [ctx.groupId, [reader.email]]);
  await call(G, 'listInvitesFromUserGroup', [ctx.groupId, page(100)]);
  await call(G, 'addPermissionsToUserGroup', [ctx.groupId, { permissions: [{ roleId: ctx.roleMember, resources: [{ id: ctx.sourceId, type: 'SOURCE' }] }] }]);
  await call(G, 'replacePermissionsForUserGroup', [ctx.groupId, { permissions: [{ roleId: ctx.roleRead, resources: [{ id: ctx.workspaceId, type: 'WORKSPACE' }] }] }]);
  await call(U, 'listUserGroupsFromUser', [member.id, page(100)]);
  await call(G, 'deleteUserGroup', [ctx.group2Id]);
  await call(U, 'deleteInvites', [['invitee@example.com']]);
  await call(U, 'deleteUsers', [[doomed.id]]);

  // Deletion and suppression: suppression (deletion is not built)
  const reg = d(await call(P, 'createWorkspaceRegulation', [{ regulationType: 'SUPPRESS_ONLY', subjectType: 'USER_ID', subjectIds: ['conf-user-1', 'conf-user-2'] }]));
  ctx.regId = reg?.regulateId || 'missing-regulation';
  const sreg = d(await call(P, 'createSourceRegulation', [ctx.sourceId, { regulationType: 'SUPPRESS_ONLY', subjectType: 'USER_ID', subjectIds: ['conf-user-3'] }]));
  ctx.sourceRegId = sreg?.regulateId || 'missing-source-regulation';
  await call(P, 'getRegulation', [ctx.regId]);
  await call(P, 'listWorkspaceRegulations', [page(10), 'FINISHED', ['SUPPRESS_ONLY', 'UNSUPPRESS']]);
  await call(P, 'listRegulationsFromSource', [ctx.sourceId, page(10)]);
  await call(P, 'listSuppressions', [page(10)]);
  await call(P, 'deleteRegulation', [ctx.sourceRegId]);

  // Audit
  await call(A, 'listAuditEvents', [page(50)]);

  // Deletes last
  await call(S, 'removeWriteKeyFromSource', [ctx.sourceId, ctx.newKey]);
  await call(L, 'deleteLabel', ['team', 'growth']);
  await call(S, 'deleteSource', [ctx.tmpSourceId]);
} catch (e) {
  writeResult(false, `setup failed: ${e?.stack || e}`);
  console.error(`conformance: ${e?.stack || e}`);
  process.exit(1);
}

clearTimeout(runTimer);
const result = writeResult(true);
const width = Math.max(...result.methods.map((m) => m.method.length));
for (const m of result.methods) console.log(`${`${m.method}:`.padEnd(width + 1)} ${m.works ? 'works' : `fails: ${m.reason}`}`);
console.log(`conformance: ${result.working} of ${result.total} methods work (${result.client})`);
proxy.close();
process.exit(0);
