// Segment's official Public API client (@segment/public-api-sdk-typescript), pointed at
// Sluice's control plane, through the scenario of the control-plane issue. Every answer
// is checked; the first mismatch exits non-zero with what was expected and what came.
//
// Env: SLUICE_API (e.g. http://127.0.0.1:8081/api/v1), OWNER_TOKEN, READER_TOKEN,
// MEMBER_TOKEN (a member with no_access on source "hidden"), SLUICE_TRACK (the Tracking
// API base, e.g. http://127.0.0.1:8080).
import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(import.meta.url);
const sdk = require('@segment/public-api-sdk-typescript');

const base = process.env.SLUICE_API;
const track = process.env.SLUICE_TRACK;

function apis(token) {
  const make = (Cls) => {
    const api = new Cls(base);
    api.accessToken = token;
    return api;
  };
  return {
    workspaces: make(sdk.WorkspacesApi),
    sources: make(sdk.SourcesApi),
    destinations: make(sdk.DestinationsApi),
    audit: make(sdk.AuditTrailApi),
    users: make(sdk.IAMUsersApi),
    groups: make(sdk.IAMGroupsApi),
    roles: make(sdk.IAMRolesApi),
    labels: make(sdk.LabelsApi),
    plans: make(sdk.TrackingPlansApi),
  };
}

async function send(key, id) {
  const r = await fetch(`${track}/v1/track`, {
    method: 'POST',
    headers: {
      authorization: 'Basic ' + Buffer.from(`${key}:`).toString('base64'),
      'content-type': 'application/json',
    },
    body: JSON.stringify({ event: 'SDK Scenario', userId: 'u1', messageId: id }),
  });
  return r.status;
}

async function until(key, want) {
  const start = Date.now();
  for (let n = 0; ; n++) {
    if ((await send(key, `sdk-${n}-${Math.random()}`)) === want) return Date.now() - start;
    if (Date.now() - start > 5000) throw new Error(`key still not ${want} after 5 s`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function refused(promise, status) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.statusCode ?? e.response?.statusCode, status, `expected HTTP ${status}: ${e}`);
    return;
  }
  throw new Error(`expected HTTP ${status}, got success`);
}

const owner = apis(process.env.OWNER_TOKEN);
const reader = apis(process.env.READER_TOKEN);
const member = apis(process.env.MEMBER_TOKEN);
const page = { count: 100 };

// Workspace.
const ws = await sdk.unwrap(owner.workspaces.getWorkspace());
assert.equal(ws.workspace.slug, 'default');

// Create a source; add a key; rotate it (add a second, remove the first).
const created = await sdk.unwrap(owner.sources.createSource({ slug: 'sdk-web', enabled: true, metadataId: 'IqDTy1TpoU' }));
assert.equal(created.source.id, 'sdk-web');
assert.equal(created.source.enabled, true);
const first = await sdk.unwrap(owner.sources.createWriteKeyForSource('sdk-web'));
assert.equal(first.source.writeKeys.length, 1);
const key1 = first.source.writeKeys[0];
assert.match(key1, /^[0-9A-Za-z]{32}$/);
await until(key1, 200);
const second = await sdk.unwrap(owner.sources.createWriteKeyForSource('sdk-web'));
const key2 = second.source.writeKeys.find((k) => k.length === 32);
assert.ok(key2 && key2 !== key1, 'a new key in writeKeys');
assert.equal(second.source.writeKeys.length, 2, 'both keys valid during the overlap');
await until(key2, 200); // live within a second, like any change
assert.equal(await send(key1, 'overlap-1'), 200);
assert.equal(await send(key2, 'overlap-2'), 200);
const removed = await sdk.unwrap(owner.sources.removeWriteKeyFromSource('sdk-web', key1));
assert.equal(removed.status, 'SUCCESS');
const revokedAfter = await until(key1, 401);
assert.ok(revokedAfter < 1000, `revoked key accepted for ${revokedAfter} ms`);
assert.equal(await send(key2, 'after-rotation'), 200);
const labelled = await sdk.unwrap(owner.sources.addLabelsToSource('sdk-web', { labels: [{ key: 'environment', value: 'prod' }] }));
assert.deepEqual(labelled.labels.map((l) => `${l.key}:${l.value}`), ['environment:prod']);

// A destination.
const dest = await sdk.unwrap(owner.destinations.createDestination({
  sourceId: 'sdk-web', metadataId: 'webhook', enabled: true,
  settings: { url: 'https://hooks.example.com/sdk/SECRET-PATH', secret: 'sdk-hmac' },
}));
assert.ok(dest.destination.id);
assert.equal(dest.destination.enabled, true);
const readBack = await sdk.unwrap(owner.destinations.getDestination(dest.destination.id));
assert.ok(!JSON.stringify(readBack).includes('SECRET-PATH') && !JSON.stringify(readBack).includes('sdk-hmac'), 'secrets redacted on read');

// Lists as different users.
const ownerList = await sdk.unwrap(owner.sources.listSources(page));
const ids = (r) => r.sources.map((s) => s.id).sort();
assert.deepEqual(ids(ownerList), ['demo', 'hidden', 'sdk-web']);
assert.deepEqual(ids(await sdk.unwrap(reader.sources.listSources(page))), ['demo', 'hidden', 'sdk-web']);
assert.deepEqual(ids(await sdk.unwrap(member.sources.listSources(page))), ['demo', 'sdk-web']);
await refused(member.sources.getSource('hidden'), 404);
await refused(reader.sources.createSource({ slug: 'nope', enabled: true, metadataId: 'x' }), 403);
await refused(reader.sources.createWriteKeyForSource('sdk-web'), 403);

// IAM: roles, invites, groups.
const roles = await sdk.unwrap(owner.roles.listRoles(page));
assert.ok(roles.roles.some((r) => r.id === 'read_only'));
await sdk.unwrap(owner.users.createInvites({ invites: [{ email: 'sdk-invitee@example.com' }] }));
const invites = await sdk.unwrap(owner.users.listInvites(page));
assert.ok(invites.invites.includes('sdk-invitee@example.com'), JSON.stringify(invites));
const users = await sdk.unwrap(owner.users.listUsers(page));
assert.ok(users.users.some((u) => u.email === 'owner@example.com'));
const group = await sdk.unwrap(owner.groups.createUserGroup({ name: 'sdk-analysts' }));
const groups = await sdk.unwrap(owner.groups.listUserGroups(page));
assert.ok(groups.userGroups.some((g) => g.id === group.userGroup.id));
await sdk.unwrap(owner.groups.deleteUserGroup(group.userGroup.id));
await sdk.unwrap(owner.users.deleteInvites(['sdk-invitee@example.com']));

// Audit trail: what just happened, newest first.
const audit = await sdk.unwrap(owner.audit.listAuditEvents({ count: 200 }));
const types = audit.events.map((e) => e.type);
for (const t of ['source.create', 'source.writekey.create', 'source.writekey.revoke', 'destination.create', 'group.create', 'access.denied.create_source']) {
  assert.ok(types.includes(t), `${t} missing from the audit trail: ${types}`);
}
assert.ok(audit.events.every((e) => e.id && e.timestamp && e.resourceType !== undefined));
assert.ok(!JSON.stringify(audit).includes(key2), 'a write key in the audit trail');
await refused(reader.audit.listAuditEvents({ count: 10 }), 403);

console.log(`public-api scenario: ok (revoked key refused after ${revokedAfter} ms)`);
