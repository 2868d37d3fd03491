// The dashboard as Apollo Client meets it: load the dashboard, upgrade the plan, and
// read the Plan page and the dashboard back from the cache alone, with the pending
// upgrade on them and no warning from Apollo on the way.
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql TOKEN=... npm run apollo-check
//
// APQ=0 sends whole documents; APQ=get sends hashed queries by GET; otherwise by POST
// (automatic persisted queries, sha256 from Node's crypto). Prints one line per check
// and exits 1 if any failed.
import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { format } from "node:util";

import { ApolloClient, HttpLink, InMemoryCache } from "@apollo/client/core";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { __DEV__ } from "@apollo/client/utilities/environment";
import { parse } from "graphql";

const { GRAPHQL_URL, TOKEN, APQ = "1" } = process.env;
if (!GRAPHQL_URL || !TOKEN) {
  console.error("apollo-check: set GRAPHQL_URL (e.g. http://127.0.0.1:8000/graphql) and TOKEN (revampd-bff demo-tokens)");
  process.exit(2);
}
if (!__DEV__) {
  // Apollo only warns about lost cache data in development builds.
  console.error("apollo-check: run it with `node --conditions=development` (npm run apollo-check does)");
  process.exit(2);
}

// Every warning or error Apollo (or anything else) logs fails the check.
const logged = [];
for (const level of ["warn", "error"]) {
  console[level] = (...args) => logged.push(`console.${level}: ${format(...args).split("\n")[0]}`);
}

const document = (name) => parse(readFileSync(new URL(`../operations/${name}.graphql`, import.meta.url), "utf8"));
const [DashboardOverview, Plan, PlanChangePreview, UpgradePlan] =
  ["DashboardOverview", "Plan", "PlanChangePreview", "UpgradePlan"].map(document);

// What went over the wire: whether each request carried the document or only its hash.
const requests = [];
async function recordingFetch(url, init) {
  const body = init?.body ? JSON.parse(init.body) : Object.fromEntries(new URL(url).searchParams);
  const response = await fetch(url, init);
  requests.push({ operation: body.operationName, method: init?.method ?? "GET", hashOnly: !body.query,
                  status: response.status, text: await response.clone().text() });
  return response;
}

const http = new HttpLink({ uri: GRAPHQL_URL, headers: { Authorization: `Bearer ${TOKEN}` }, fetch: recordingFetch });
const apq = new PersistedQueryLink({
  sha256: (text) => createHash("sha256").update(text).digest("hex"),
  useGETForHashedQueries: APQ === "get",
});
const client = new ApolloClient({
  link: APQ === "0" ? http : apq.concat(http),
  cache: new InMemoryCache(),
  clientAwareness: { name: "revampd-apollo-check", version: "1" },
});

const results = [];
async function check(name, body) {
  try {
    const problem = await body();
    results.push(problem ? `FAIL ${name}: ${problem}` : `ok   ${name}`);
  } catch (error) {
    results.push(`FAIL ${name}: ${error?.message ?? error}`.split("\n")[0]);
  }
}

const cents = (amount) => Math.round(Number(amount) * 100);
const pendingOf = (data) => {
  const connection = data?.viewer?.partner?.revampdConnection;
  return { subscription: connection?.subscription?.pendingChange, connection: connection?.pendingChange };
};
let target;

// The paths of a MissingTree: { viewer: { user: "Can't find field ..." } } -> ["viewer.user"].
const missingPaths = (tree, path = []) => (typeof tree === "object" && tree
  ? Object.entries(tree).flatMap(([key, sub]) => missingPaths(sub, [...path, key])) : [path.join(".")]);

await check("the dashboard loads (DashboardOverview, Plan, PlanChangePreview)", async () => {
  await client.query({ query: DashboardOverview });
  const { data } = await client.query({ query: Plan });
  const { plan } = data.viewer.partner.revampdConnection.subscription;
  target = data.plans
    .filter((p) => !p.retired && cents(p.monthlyPrice.amount) > cents(plan.monthlyPrice.amount))
    .sort((a, b) => cents(a.monthlyPrice.amount) - cents(b.monthlyPrice.amount))[0];
  if (!target) return `no plan dearer than ${plan.code} to upgrade to`;
  // The Upgrade dialog: another selection of the viewer, subscription and usage.
  const preview = await client.query({ query: PlanChangePreview, variables: { planId: target.id } });
  const direction = preview.data.viewer.partner.revampdConnection.planChangePreview.direction;
  return direction === "UPGRADE" ? null : `the preview of ${target.code} says ${direction}`;
});

await check("upgradePlan to a dearer plan answers with the pending upgrade", async () => {
  if (!target) return "no plan to upgrade to (the dashboard did not load)";
  const { data } = await client.mutate({ mutation: UpgradePlan, variables: { input: { planId: target.id } } });
  const { userErrors, subscription } = data.upgradePlan;
  if (userErrors.length) return `userErrors ${JSON.stringify(userErrors)}`;
  return subscription?.pendingChange?.targetPlan?.id === target.id ? null
    : `the payload's pending change is ${JSON.stringify(subscription?.pendingChange)}`;
});

for (const [page, query] of [["Plan", Plan], ["DashboardOverview", DashboardOverview]]) {
  await check(`the ${page} page, read from the cache only, shows the pending upgrade`, async () => {
    const { data } = await client.query({ query, fetchPolicy: "cache-only" });
    if (!data) {
      const { missing } = client.cache.diff({ query, returnPartialData: true, optimistic: false });
      return `the page is no longer complete in the cache (${missingPaths(missing?.missing).join(", ")} missing)`;
    }
    const pending = pendingOf(data);
    const wrong = Object.entries(pending)
      .filter(([where, change]) => change !== undefined && (change?.kind !== "UPGRADE" || change?.targetPlan?.id !== target?.id))
      .map(([where, change]) => `${where === "subscription" ? "subscription.pendingChange" : "revampdConnection.pendingChange"} is ${JSON.stringify(change)}`);
    return wrong.length ? wrong.join("; ") : null;
  });
}

await check("the server agrees (Plan from the network)", async () => {
  const { data } = await client.query({ query: Plan, fetchPolicy: "network-only" });
  const { subscription } = pendingOf(data);
  return subscription?.kind === "UPGRADE" ? null : `the server's pending change is ${JSON.stringify(subscription)}`;
});

if (APQ !== "0") {
  await check(`persisted queries (${APQ === "get" ? "GET" : "POST"}): a known query is sent by its hash alone and answered`, async () => {
    const failed = requests.filter((r) => r.status !== 200 && !/PERSISTED_QUERY_NOT_FOUND|PersistedQueryNotFound/.test(r.text));
    if (failed.length) return failed.map((r) => `${r.method} ${r.operation} ${r.hashOnly ? "by hash" : "with its document"}: ${r.status} ${r.text.slice(0, 160)}`).join("; ");
    const reused = requests.filter((r) => r.hashOnly && r.status === 200 && /"data"/.test(r.text));
    return reused.length ? null : "no request by hash alone was answered with data";
  });
}

await check("Apollo logged no warning or error", async () => (logged.length ? [...new Set(logged)].join(" | ") : null));

process.stdout.write(`${results.join("\n")}\n`);
const failures = results.filter((r) => r.startsWith("FAIL")).length;
if (failures) process.stdout.write(`apollo-check: ${failures} of ${results.length} checks failed\n`);
process.exit(failures ? 1 : 0);
