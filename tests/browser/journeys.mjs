// The console's main journeys in headless Debian Chromium, driven by playwright-core,
// with axe-core run on every page (no serious or critical violation may remain) and a
// screenshot of each page saved under $SHOTS.
//
// Env: BASE (the control listener), SETUP (the first owner's setup link, a path),
// SHOTS (a directory for screenshots), GATEWAY (the Tracking API, for the new key),
// ISSUER (an OpenID Connect provider: oidc-provider-mock).
import { chromium } from "playwright-core";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import assert from "node:assert/strict";

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const { BASE, SETUP, SHOTS, GATEWAY, ISSUER } = process.env;
mkdirSync(SHOTS, { recursive: true });
const PASSWORD = "correct horse battery staple";

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--no-sandbox"],
});
// The pages run under their own Content-Security-Policy (no bypass): anything it
// blocks is reported on the console and fails the run. axe is evaluated through the
// DevTools protocol, which a page's CSP does not govern.
const blocked = [];
async function open(ctx) {
  const p = await ctx.newPage();
  p.on("console", (m) => {
    if (/Content.Security.Policy|Refused to/i.test(m.text())) blocked.push(`${p.url()}: ${m.text()}`);
  });
  return p;
}
const context = await browser.newContext({ baseURL: BASE });
const page = await open(context);
const checked = [];

/** Runs axe on the page and saves its screenshot as `name`. */
async function check(p, name) {
  await p.evaluate(axeSource);
  const result = await p.evaluate(async () =>
    // eslint-disable-next-line no-undef
    await axe.run(document, { resultTypes: ["violations"] }),
  );
  const bad = result.violations.filter((v) => ["serious", "critical"].includes(v.impact));
  assert.deepEqual(
    bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(" ")).join("; ")})`),
    [],
    `axe on ${name} (${p.url()})`,
  );
  await p.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
  checked.push(name);
}

function step(text) {
  console.log(`browser: ${text}`);
}

// On a failure: where the page was and what it said.
process.on("uncaughtException", async (error) => {
  console.error(error);
  try {
    console.error(`browser: failed at ${page.url()}:\n${(await page.innerText("body")).slice(0, 2000)}`);
    await page.screenshot({ path: `${SHOTS}/failure.png`, fullPage: true });
  } finally {
    process.exit(1);
  }
});

// 1. The first owner: the setup link, then the console, signed in.
step("first-owner setup");
await page.goto(SETUP);
await check(page, "setup");
await page.getByLabel("Email", { exact: true }).fill("owner@example.com");
await page.getByLabel("First name", { exact: true }).fill("Olive");
await page.getByRole("button", { name: "Create account" }).click();
await page.getByText("You're set up").waitFor();
await page.getByRole("link", { name: "Open the console" }).click();
await page.waitForURL("**/sources");
await check(page, "sources");
assert.ok(await page.getByRole("cell", { name: "demo" }).count() >= 0);

// 2. A password, for signing in later.
step("password");
await page.getByRole("link", { name: "Your account" }).click();
await page.getByLabel("New password", { exact: true }).fill(PASSWORD);
await page.getByLabel("New password again", { exact: true }).fill(PASSWORD);
await page.getByRole("button", { name: "Set password" }).click();
await page.getByText("Password set.").waitFor();
await check(page, "account");

// 3. Sign out, and in again with the form (keyboard only).
step("sign out and in");
await page.getByRole("button", { name: "Sign out", exact: true }).click();
await page.getByText("You are signed out.").waitFor();
await check(page, "sign-in");
await page.getByLabel("Email", { exact: true }).fill("owner@example.com");
await page.getByLabel("Password", { exact: true }).fill("wrong password, twice");
await page.getByLabel("Password", { exact: true }).press("Enter");
await page.getByText("is not right").waitFor();
await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
await page.getByLabel("Password", { exact: true }).press("Enter");
await page.waitForURL("**/sources");

// 4. Key rotation: a new key (shown once, accepted by the gateway), the old one revoked.
step("write key rotation");
await page.getByRole("link", { name: "demo" }).first().click();
await page.waitForURL("**/sources/demo");
await check(page, "source");
await page.getByRole("button", { name: "New write key" }).click();
const key = (await page.locator("#write-key").innerText()).trim();
assert.ok(key.length > 20, `a key: ${key}`);
await check(page, "source-new-key");
const tracked = async (k) =>
  (await fetch(`${GATEWAY}/v1/track`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Basic ${Buffer.from(`${k}:`).toString("base64")}`,
    },
    body: JSON.stringify({ userId: "u1", event: "Console Rotated", messageId: `m-${Date.now()}` }),
  })).status;
let status = 0;
for (let i = 0; i < 100 && status !== 200; i++) {
  status = await tracked(key);
  if (status !== 200) await new Promise((r) => setTimeout(r, 50));
}
assert.equal(status, 200, "the new key is accepted");
await page.goto("/sources/demo");
const revoke = page.getByRole("button", { name: /^Revoke key/ });
const before = await revoke.count();
assert.ok(before >= 2, "the old key and the new one");
// The old key is the one the new key does not start with (a key shows its first characters).
const labels = await revoke.evaluateAll((buttons) => buttons.map((b) => b.getAttribute("aria-label")));
const old = labels.find((l) => !key.startsWith(l.replace("Revoke key ", "").replace(/…+$/, "")));
assert.ok(old, `the old key among ${labels}`);
await page.getByRole("button", { name: old, exact: true }).click();
await page.getByText("Write key revoked").waitFor();
assert.equal(await page.getByRole("button", { name: /^Revoke key/ }).count(), before - 1);
status = await tracked("demo-write-key");
for (let i = 0; i < 100 && status !== 401; i++) {
  await new Promise((r) => setTimeout(r, 50));
  status = await tracked("demo-write-key");
}
assert.equal(status, 401, "the revoked key is refused");

// 5. A token: scopes ticked, shown once, then revoked.
step("token creation");
await page.getByRole("link", { name: "API tokens" }).click();
await page.getByLabel("Name", { exact: true }).fill("warehouse loader");
await page.getByLabel("sources:read", { exact: true }).check();
await page.getByRole("button", { name: "Create token" }).click();
const secret = (await page.locator("#token-secret").innerText()).trim();
assert.match(secret, /^slc_pat_/);
await check(page, "tokens");
let answer = await fetch(`${BASE}/api/v1/sources`, { headers: { authorization: `Bearer ${secret}` } });
assert.equal(answer.status, 200);
await page.goto("/tokens");
assert.equal(await page.locator("#token-secret").count(), 0, "shown once");
await page.getByRole("button", { name: "Revoke token warehouse loader" }).click();
await page.getByText("Token revoked.").waitFor();
answer = await fetch(`${BASE}/api/v1/sources`, { headers: { authorization: `Bearer ${secret}` } });
assert.equal(answer.status, 401);

// 6. Invite + accept, in a second browser: the member sees no owner's forms.
step("invite and accept");
await page.getByRole("link", { name: "Team" }).click();
await check(page, "team");
await page.getByLabel("Email", { exact: true }).fill("member@example.com");
await page.getByLabel("Role", { exact: true }).selectOption("member");
await page.getByRole("button", { name: "Invite" }).click();
const link = (await page.locator("#invite-url").innerText()).trim();
const other = await browser.newContext({ baseURL: BASE });
const member = await open(other);
await member.goto(new URL(link).pathname);
await member.getByRole("button", { name: "Create account" }).click();
await member.getByRole("link", { name: "Open the console" }).click();
await member.waitForURL("**/sources");
assert.equal(await member.getByRole("link", { name: "API tokens" }).count(), 0);
await check(member, "sources-as-member");
await member.getByRole("link", { name: "Team" }).click();
assert.equal(await member.getByRole("button", { name: "Invite" }).count(), 0, "members do not invite");
assert.equal(await member.getByRole("button", { name: "Change" }).count(), 0, "nor change roles");

// 7. Grant a source, with the effective access explained before and after.
step("grant a source");
await page.getByRole("link", { name: "Team" }).click();
await page.getByRole("link", { name: "member@example.com" }).click();
await page.getByLabel("Action", { exact: true }).selectOption("manage_write_keys");
await page.getByLabel("On", { exact: true }).selectOption("source");
await page.getByLabel("Id (of the source or destination)").fill("demo");
await page.getByRole("button", { name: "Explain" }).click();
await page.locator("#explain-answer").getByText("Refused").waitFor();
await check(page, "person");
await page.getByLabel("The id (for a label: key:value)").fill("demo");
await page.getByLabel("Level", { exact: true }).selectOption("full");
await page.getByLabel("Why (kept with the grant)").fill("owns the web source");
await page.getByRole("button", { name: "Grant", exact: true }).click();
await page.getByText("Access granted.").waitFor();
await page.getByRole("button", { name: "Explain" }).click();
await page.locator("#explain-answer").getByText("Allowed").waitFor();
await member.goto("/sources/demo");
await member.getByRole("button", { name: "New write key" }).waitFor();

// 8. A tracking-plan change: the member proposes, the owner reads the diff and publishes.
step("change request approved and published");
await page.getByRole("link", { name: "Tracking plans" }).click();
await page.getByLabel("Name", { exact: true }).fill("Web");
await page.getByRole("button", { name: "Create plan" }).click();
await page.getByText("Tracking plan created").waitFor();
const planUrl = new URL(page.url()).pathname;
await member.goto(planUrl);
await member.getByLabel("Why (shown to reviewers)").fill("Orders need a total");
await member.getByLabel("Rules", { exact: true }).fill(JSON.stringify([
  { type: "TRACK", key: "Order Completed", version: 1,
    jsonSchema: { type: "object", properties: { properties: { type: "object", required: ["total"] } } } },
], null, 2));
await member.getByRole("button", { name: "Propose for review" }).click();
await member.getByText("Change request opened").waitFor();
assert.equal(await member.getByRole("button", { name: "Approve and publish" }).count(), 0, "not one's own");
const requestUrl = new URL(member.url()).pathname;
await page.goto(requestUrl);
await page.locator(".diff .added").first().waitFor();
await check(page, "change-request");
await page.getByLabel("Comment (optional)").fill("looks right");
await page.getByRole("button", { name: "Approve and publish" }).click();
await page.getByText("Approved: the rules are published").waitFor();
assert.match(await page.locator("#request-state").innerText(), /PUBLISHED as version 1/);
await page.goto(planUrl);
await page.getByText("TRACK Order Completed v1").waitFor();
await check(page, "plan");

// 9. Offboarding: the plan first, then carried out; the member's session ends.
step("offboarding");
await page.getByRole("link", { name: "Team" }).click();
await page.getByRole("link", { name: "member@example.com" }).click();
await page.getByLabel("Who takes over what they own").selectOption({ label: "owner@example.com" });
await page.getByRole("button", { name: "Show the offboarding plan" }).click();
await page.locator("#offboarding-plan").waitFor();
await check(page, "offboarding-plan");
await page.getByRole("button", { name: "Carry out this offboarding" }).click();
await page.getByText("Offboarded:").waitFor();
await member.goto("/sources");
await member.waitForURL("**/sign-in?**");
await other.close();

// 10. The audit trail: filtered, and exported as CSV.
step("audit filter and export");
await page.getByRole("link", { name: "Audit trail" }).click();
await page.getByLabel("Action", { exact: true }).fill("token.create");
await page.getByRole("button", { name: "Filter" }).click();
await page.waitForURL("**/audit?**");
const rows = page.locator("tbody tr");
assert.ok((await rows.count()) >= 1);
for (const text of await rows.allInnerTexts()) assert.match(text, /token\.create/);
await check(page, "audit");
const [download] = await Promise.all([
  page.waitForEvent("download"),
  page.getByRole("link", { name: "Export these events as CSV" }).click(),
]);
const csv = readFileSync(await download.path(), "utf8").trim().split("\n");
assert.match(csv[0], /timestamp/);
assert.ok(csv.length >= 2 && csv.slice(1).every((l) => l.includes("token.create")), csv.join("\n"));

// 11. An access review opened, with the workspace's evidence a click away.
step("access review");
await page.getByRole("link", { name: "Reviews" }).click();
await page.getByLabel("Name", { exact: true }).fill("2026 Q4");
await page.getByRole("button", { name: "Open review" }).click();
await page.getByText("Access review opened").waitFor();
await check(page, "access-review");

// 11a. Temporary access: the page and its form.
step("temporary access");
await page.getByRole("link", { name: "Temporary access" }).click();
await page.getByRole("button", { name: "Ask" }).waitFor();
await check(page, "elevations");

// 11b. Usage, quotas and gateways.
step("usage and gateways");
await page.getByRole("link", { name: "Usage" }).click();
await page.getByText("catalog is at revision").waitFor();
await check(page, "operations");

// 12. Single sign-on: a connection added and tested, then someone signs in through it.
step("SSO sign-in against the test identity provider");
const claims = { email: "alice@example.com", given_name: "Alice", family_name: "Liddell" };
const put = await fetch(`${ISSUER}/users/alice-sub`, {
  method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(claims),
});
assert.equal(put.status, 204);
await page.getByRole("link", { name: "Sign-in", exact: true }).click();
await page.getByLabel("Name (shown on the sign-in button)").fill("Test IdP");
await page.getByLabel("Protocol", { exact: true }).selectOption("oidc");
await page.getByLabel("New people join as").selectOption("member");
await page.getByLabel("Issuer URL").fill(ISSUER);
await page.getByLabel("Client id").fill("sluice");
await page.getByLabel("Client secret").fill("browser-test-secret");
await page.getByRole("button", { name: "Add connection" }).click();
await page.getByText("Connection added, turned off").waitFor();
await check(page, "identity");
await page.getByRole("button", { name: "Test connection Test IdP" }).click();
const resultLink = page.getByRole("link", { name: "see what the test received" });
const resultPath = new URL(await resultLink.getAttribute("href"), BASE).pathname;
await page.getByRole("link", { name: "Sign in at the provider" }).click();
await page.locator("input[name=sub]").fill("alice-sub");
await page.getByRole("button", { name: "Authorize" }).click();
await page.waitForLoadState();
await page.goto(resultPath);
await page.locator("#test-result").waitFor();
assert.match(await page.locator("#test-result").innerText(), /alice@example.com/);
await check(page, "sso-test");
await page.goto("/identity");
await page.getByRole("button", { name: "Turn on Test IdP" }).click();
await page.getByText("Connection updated.").waitFor();
const fourth = await browser.newContext({ baseURL: BASE });
const alice = await open(fourth);
await alice.goto("/sign-in");
await alice.getByRole("link", { name: "Sign in with Test IdP" }).click();
await alice.locator("input[name=sub]").fill("alice-sub");
await alice.getByRole("button", { name: "Authorize" }).click();
await alice.waitForURL("**/sources");
await alice.getByText("alice@example.com").waitFor();
await fourth.close();

// 13. The rest of the governance pages: a destination made and connected, settings and
// labels, a group, gateway credentials, changes for review, the audit chain.
step("destinations, settings, groups, gateway credentials, the audit chain");
await page.goto("/sources");
await page.evaluate(() => { window.notReloaded = true; });
await page.getByRole("link", { name: "Destinations" }).click();
await page.getByRole("button", { name: "Create destination" }).waitFor();
// htmx swapped the page in: the same document, so nothing was loaded twice.
assert.equal(await page.evaluate(() => window.notReloaded), true, "a boosted navigation");
await page.getByLabel("Name", { exact: true }).fill("Warehouse hook");
await page.getByLabel("Type").selectOption("webhook");
await page.getByLabel(/^Settings/).fill('{"url": "https://hooks.example.com/in", "secret": "hook-secret"}');
await page.getByRole("button", { name: "Create destination" }).click();
await page.getByText("Destination created").waitFor();
await check(page, "destination");
await page.getByRole("link", { name: "Settings", exact: true }).click();
await page.getByLabel("Key (a-z, 0-9, - and _)").fill("team");
await page.getByLabel("Value", { exact: true }).fill("growth");
await page.getByRole("button", { name: "Add label" }).click();
await page.getByText("Labels changed.").waitFor();
await check(page, "settings");
await page.getByRole("link", { name: "Team" }).click();
await page.getByRole("link", { name: "Groups" }).click();
await page.getByLabel("Name", { exact: true }).fill("Analysts");
await page.getByRole("button", { name: "Create group" }).click();
await page.getByText("Group updated.").waitFor();
await page.getByLabel(/^Add by email/).fill("owner@example.com");
await page.getByRole("button", { name: "Add", exact: true }).click();
await page.locator("#members").getByText("owner@example.com").waitFor();
await check(page, "group");
await page.getByRole("link", { name: "Usage" }).click();
await page.getByRole("link", { name: "gateway credential" }).click();
await page.getByLabel(/^Name/).fill("edge-1");
await page.getByRole("button", { name: "Create credential" }).click();
assert.match(await page.locator("#node-secret").innerText(), /^slc_node_/);
await check(page, "nodes");
await page.getByRole("link", { name: "Changes for review" }).click();
await page.getByText("Changes to protected sources").waitFor();
await check(page, "changes");
await page.getByRole("link", { name: "Audit trail" }).click();
await page.getByRole("link", { name: "Verify the chain" }).click();
await page.locator("#chain-status").getByText("Intact.").waitFor();
await check(page, "audit-chain");
assert.equal(await page.evaluate(() => window.notReloaded), true, "every step boosted");

// 14. On a phone's screen: nothing wider than the screen (tables scroll in their own
// box), and the keyboard reaches the skip link first.
step("a phone's screen and the keyboard");
const phone = await browser.newContext({ baseURL: BASE, viewport: { width: 390, height: 844 } });
await phone.addCookies(await context.cookies());
const small = await open(phone);
for (const path of ["/sources", "/sources/demo", "/destinations", "/team", "/audit", "/settings"]) {
  await small.goto(path);
  const [wide, screen, past] = await small.evaluate(() => [
    document.documentElement.scrollWidth,
    window.innerWidth,
    // What reaches past the screen's edge (outside a scrolling box), for the message.
    [...document.querySelectorAll("main *, header *")]
      .filter((e) => e.getBoundingClientRect().right > window.innerWidth)
      .slice(0, 5)
      .map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${e.className ? "." + e.className : ""}`),
  ]);
  assert.ok(wide <= screen, `${path} is ${wide}px wide on a ${screen}px screen: ${past.join(", ")}`);
}
await check(small, "phone-settings");
await small.keyboard.press("Tab");
assert.equal(await small.evaluate(() => document.activeElement.textContent), "Skip to the content");
await phone.close();

// 15. Without JavaScript the same pages work: links, forms, post/redirect/get.
step("without JavaScript: sign in, a token made and revoked");
const plain = await browser.newContext({ baseURL: BASE, javaScriptEnabled: false });
const bare = await open(plain);
await bare.goto("/sign-in");
await bare.getByLabel("Email", { exact: true }).fill("owner@example.com");
await bare.getByLabel("Password", { exact: true }).fill(PASSWORD);
await bare.getByRole("button", { name: "Sign in" }).click();
await bare.waitForURL("**/sources");
await bare.getByRole("link", { name: "API tokens" }).click();
await bare.getByLabel("Name", { exact: true }).fill("no script");
await bare.getByLabel("sources:read", { exact: true }).check();
await bare.getByRole("button", { name: "Create token" }).click();
assert.match(await bare.locator("#token-secret").innerText(), /^slc_pat_/);
await bare.getByRole("button", { name: "Revoke token no script" }).click();
await bare.getByText("Token revoked.").waitFor();
await plain.close();

// 16. Sessions: another browser signed in, then signed out from this one.
step("sign out everywhere else");
const third = await browser.newContext({ baseURL: BASE });
const elsewhere = await open(third);
await elsewhere.goto("/sign-in");
await elsewhere.getByLabel("Email", { exact: true }).fill("owner@example.com");
await elsewhere.getByLabel("Password", { exact: true }).fill(PASSWORD);
await elsewhere.getByRole("button", { name: "Sign in" }).click();
await elsewhere.waitForURL("**/sources");
await page.getByRole("link", { name: "Your account" }).click();
await page.getByRole("button", { name: "Sign out everywhere else" }).click();
await page.getByText("Every other session of yours has ended.").waitFor();
await elsewhere.goto("/sources");
await elsewhere.waitForURL("**/sign-in?**");
await third.close();

await browser.close();
assert.deepEqual(blocked, [], "nothing on any page was blocked by its CSP");
console.log(`browser: every journey passed; axe clean on ${checked.length} pages: ${checked.join(", ")}`);
