// analytics-next with Segment's consent wrapper (@segment/analytics-consent-tools) in
// headless Debian Chromium, loading its settings from Sluice's CDN endpoint and sending
// to Sluice: the wrapper stamps `context.consent.categoryPreferences` on every event and
// sends `Segment Consent Preference Updated` when consent changes; Sluice's file
// destinations get exactly what their consent categories allow.
//
// Env: GATEWAY (the Tracking API), KEY (the write key), EXPORTS (delivery.file_dir),
// CHROMIUM (the browser). The catalog (see consent.sh): destinations `analytics`
// (Analytics), `ads` (Advertising, Analytics) and `plain` (none).
import { chromium } from "playwright-core";
import { build } from "esbuild";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { fileURLToPath } from "node:url";
import { dirname, join } from "node:path";
import assert from "node:assert/strict";

const { GATEWAY, KEY, EXPORTS } = process.env;
const here = dirname(fileURLToPath(import.meta.url));
const UPDATED = "Segment Consent Preference Updated";

// The two packages as one script for the page, as a site's bundler would make it.
const bundled = await build({
  stdin: {
    contents:
      "import { AnalyticsBrowser } from '@segment/analytics-next';\n" +
      "import { createWrapper } from '@segment/analytics-consent-tools';\n" +
      "window.Shop = { AnalyticsBrowser, createWrapper };\n",
    resolveDir: here,
  },
  bundle: true,
  format: "iife",
  platform: "browser",
  write: false,
  logLevel: "error",
});
const page_html = `<!doctype html><html lang="en"><head><title>Shop</title>
<script>${bundled.outputFiles[0].text}</script></head><body><h1>Shop</h1></body></html>`;

/** Event names a file destination has written, with their consent preferences. */
function delivered(destination) {
  let text = "";
  try {
    text = readFileSync(join(EXPORTS, `${destination}.ndjson`), "utf8");
  } catch {
    return [];
  }
  return text
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line))
    .map((e) => ({ name: e.event, consent: e.context?.consent?.categoryPreferences }));
}
const names = (destination) => delivered(destination).map((e) => e.name).sort();

async function until(what, test) {
  const deadline = Date.now() + 20000;
  while (!test()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
const page = await browser.newPage();
const errors = [];
page.on("pageerror", (e) => errors.push(String(e)));
page.on("crash", () => errors.push("the page crashed"));
page.on("console", (m) => console.log(`page: ${m.text()}`));
// The shop's page, served from loopback like the gateway (Chromium keeps public pages
// from reaching private addresses).
const shop = createServer((_, res) => {
  res.writeHead(200, { "content-type": "text/html" });
  res.end(page_html);
});
await new Promise((r) => shop.listen(0, "127.0.0.1", r));
await page.goto(`http://127.0.0.1:${shop.address().port}/`);

// Analytics consented, Advertising not; then both; then neither.
await page.evaluate(
  async ({ gateway, key }) => {
    window.consent = { Analytics: true, Advertising: false };
    const withCMP = window.Shop.createWrapper({
      getCategories: () => window.consent,
      registerOnConsentChanged: (set) => {
        window.changeConsent = (c) => {
          window.consent = c;
          set(c);
        };
      },
      shouldLoadSegment: (ctx) => ctx.load({ consentModel: "opt-in" }),
    });
    window.analytics = withCMP(new window.Shop.AnalyticsBrowser());
    window.analytics.load({ writeKey: key, cdnURL: gateway });
    await window.analytics.track("Viewed A");
    window.changeConsent({ Analytics: true, Advertising: true });
    await window.analytics.track("Viewed B");
    window.changeConsent({ Analytics: false, Advertising: false });
    await window.analytics.track("Viewed C");
  },
  { gateway: GATEWAY, key: KEY },
);

// `plain` has no categories: it gets everything, which tells that all are stored.
const all = [UPDATED, UPDATED, "Viewed A", "Viewed B", "Viewed C"];
await until("every event at plain", () => names("plain").length >= all.length);
// A last event, stored after the others: once a destination has it, it has decided on
// every earlier one.
await page.evaluate(async () => {
  window.consent = { Analytics: true, Advertising: true };
  await window.analytics.track("Fence");
});
await until("the fence", () =>
  ["analytics", "ads", "plain"].every((d) => names(d).includes("Fence")),
);
await browser.close();
shop.close();

assert.deepEqual(errors, [], "page errors");
assert.deepEqual(names("plain"), [...all, "Fence"].sort(), "plain gets everything");
assert.deepEqual(
  names("analytics"),
  [UPDATED, UPDATED, "Fence", "Viewed A", "Viewed B"].sort(),
  "analytics: Analytics consented for A and B, not C; consent updates always",
);
assert.deepEqual(
  names("ads"),
  [UPDATED, UPDATED, "Fence", "Viewed B"].sort(),
  "ads: both categories consented only for B; consent updates always",
);
const a = delivered("plain").find((e) => e.name === "Viewed A");
assert.deepEqual(a.consent, { Analytics: true, Advertising: false }, "stamped by the wrapper");
const update = delivered("plain").filter((e) => e.name === UPDATED);
assert.deepEqual(
  update.map((e) => e.consent).sort((x, y) => Number(y.Analytics) - Number(x.Analytics)),
  [
    { Analytics: true, Advertising: true },
    { Analytics: false, Advertising: false },
  ],
);
console.log("consent: analytics-next with its consent wrapper routed as consented");
