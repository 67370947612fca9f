// Sends the fixture through @segment/analytics-next (the browser SDK) in jsdom.
// Usage: SLUICE_URL=http://127.0.0.1:8080 WRITE_KEY=... node send_browser.mjs
import { readFileSync } from 'node:fs';
import { JSDOM } from 'jsdom';

const f = JSON.parse(readFileSync(new URL('./fixture.json', import.meta.url)));
const url = new URL(process.env.SLUICE_URL);
const writeKey = process.env.WRITE_KEY;

const dom = new JSDOM('<!doctype html><html><head></head><body></body></html>', {
  url: 'http://shop.example/pricing?utm_source=golden', pretendToBeVisual: true,
});
for (const name of ['window', 'document', 'navigator', 'location', 'localStorage', 'sessionStorage', 'HTMLElement', 'Node', 'screen']) {
  if (!(name in globalThis) || name === 'navigator') {
    Object.defineProperty(globalThis, name, { value: dom.window[name], configurable: true, writable: true });
  }
}
dom.window.fetch = globalThis.fetch;

const { AnalyticsBrowser } = await import('@segment/analytics-next');
const strategy = process.argv[2] === 'batching' ? { strategy: 'batching', config: { size: 6, timeout: 500 } } : undefined;
const userId = strategy ? 'browser-batch-user' : 'browser-user';
// Standard delivery loads its settings from Sluice's CDN settings endpoint, as a page
// pointing `cdnURL` at Sluice does; the batching run passes them inline.
const [analytics] = strategy
  ? await AnalyticsBrowser.load(
      {
        writeKey,
        cdnSettings: {
          integrations: {
            'Segment.io': { apiKey: writeKey, apiHost: `${url.host}/v1`, protocol: url.protocol.replace(':', ''), deliveryStrategy: strategy },
          },
        },
      },
      { integrations: { 'Segment.io': { apiHost: `${url.host}/v1`, protocol: url.protocol.replace(':', ''), deliveryStrategy: strategy } } },
    )
  : await AnalyticsBrowser.load({ writeKey, cdnURL: url.origin });
const sent = [];
sent.push(await analytics.identify(userId, f.traits));
sent.push(await analytics.track(f.event, f.properties));
sent.push(await analytics.page(null, f.page.name, f.page.properties));
sent.push(await analytics.group(f.groupId, f.groupTraits));
sent.push(await analytics.alias(userId, 'anon-browser'));
// Wait for the Segment.io plugin's queue to drain.
const deadline = Date.now() + 10000;
const flushed = () => analytics.queue.queue.length === 0 && analytics.queue.queue.todo === 0;
while (!flushed() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
await new Promise((r) => setTimeout(r, strategy ? 1500 : 300));
const failures = sent.flatMap((ctx) => ctx.logs().filter((l) => l.level === 'error'));
if (failures.length) throw new Error(`analytics-next: ${JSON.stringify(failures)}`);
console.log(`browser SDK (${strategy ? 'batching' : 'standard'}): sent`);
process.exit(0);
