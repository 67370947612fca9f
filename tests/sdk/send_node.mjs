// Sends the fixture through @segment/analytics-node and @rudderstack/rudder-sdk-node.
// Usage: SLUICE_URL=http://127.0.0.1:8080 WRITE_KEY=... node send_node.mjs
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Analytics } from '@segment/analytics-node';

const require = createRequire(import.meta.url);
const Rudder = require('@rudderstack/rudder-sdk-node');
const f = JSON.parse(readFileSync(new URL('./fixture.json', import.meta.url)));
const url = process.env.SLUICE_URL;
const writeKey = process.env.WRITE_KEY;

function calls(sdk, userId) {
  return [
    ['identify', { userId, traits: f.traits }],
    ['track', { userId, event: f.event, properties: f.properties }],
    ['page', { userId, name: f.page.name, properties: f.page.properties }],
    ['screen', { userId, name: f.page.name, properties: f.page.properties }],
    ['group', { userId, groupId: f.groupId, traits: f.groupTraits }],
    ['alias', { userId, previousId: `anon-${sdk}` }],
  ];
}

async function segmentNode() {
  const analytics = new Analytics({ writeKey, host: url, flushAt: 3, maxRetries: 0 });
  let failed = null;
  analytics.on('error', (err) => { failed = err; });
  for (const [method, msg] of calls('node', 'node-user')) analytics[method](msg);
  await analytics.closeAndFlush({ timeout: 10000 });
  if (failed) throw new Error(`analytics-node: ${failed.reason ?? failed}`);
}

async function rudderNode() {
  let failed = null;
  const client = new Rudder(writeKey, {
    dataPlaneUrl: url, flushAt: 3, retryCount: 0, logLevel: 'error',
    errorHandler: (err) => { failed = err; },
  });
  for (const [method, msg] of calls('rudder', 'rudder-user')) client[method](msg);
  await client.flush();
  if (failed) throw new Error(`rudder-sdk-node: ${failed.message ?? failed}`);
}

await segmentNode();
await rudderNode();
console.log('node SDKs: sent');
