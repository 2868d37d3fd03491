// GraphiQL in headless Chromium, offline: every request to a host other than 127.0.0.1 is aborted.
//
//   node graphiql.mjs <chromium> <url> [<token>]
//
// Opens the page at <url>, shows the Query type in the documentation explorer, runs
// `{ viewer { user { name } } }` (with <token> put in the Headers pane when given; else with the
// headers the page opened with), then a subscription to the connection's events while a ticket is
// submitted, and prints one JSON line: what it saw, and every request it aborted.
import { chromium } from "playwright-core";

const [executablePath, url, token] = process.argv.slice(2);
const QUERY = "{ viewer { user { name } } }";
const SUBSCRIPTION = "subscription { connectionEvents { action node { __typename ... on Ticket { title } } } }";
const SUBMIT = `mutation($title: String!) {
  submitTicket(input: { title: $title, description: "d", priority: LOW }) { ticket { id } } }`;
const WAIT = { timeout: 20_000 };

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--no-first-run"],
});
const aborted = [];
const problems = [];
try {
  const context = await browser.newContext();
  await context.route("**/*", (route) => {
    if (new URL(route.request().url()).hostname === "127.0.0.1") return route.continue();
    aborted.push(route.request().url());
    return route.abort("internetdisconnected");
  });
  const page = await context.newPage();
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => message.type() === "error" && problems.push(`console: ${message.text()}`));

  await page.goto(url, WAIT);
  await page.locator(".graphiql-query-editor .CodeMirror").waitFor(WAIT);

  // Documentation: the root types, then the Query type's fields.
  await page.getByRole("button", { name: /Documentation Explorer/ }).click(WAIT);
  const docs = page.locator(".graphiql-doc-explorer");
  await docs.locator(".graphiql-doc-explorer-type-name", { hasText: /^Query$/ }).first().click(WAIT);
  await docs.locator(".graphiql-doc-explorer-field-name", { hasText: /^viewer$/ }).waitFor(WAIT);
  const fields = await docs.locator(".graphiql-doc-explorer-field-name").allTextContents();

  // Editors are CodeMirror 5 instances: set their text as a user's typing would.
  const setText = (selector, text) => page.locator(selector).first().evaluate(
    (element, value) => element.CodeMirror.setValue(value), text);
  const headers = await page.locator(".graphiql-editor-tool .CodeMirror").evaluateAll(
    (elements) => elements.map((element) => element.CodeMirror.getValue()).join("\n"));
  if (token) {
    await page.getByRole("button", { name: "Headers" }).click(WAIT);
    await setText(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror",
      JSON.stringify({ Authorization: `Bearer ${token}` }));
  }
  await setText(".graphiql-query-editor .CodeMirror", QUERY);
  await page.getByRole("button", { name: /Execute query/ }).click(WAIT);
  const response = page.locator(".graphiql-response .CodeMirror");
  await page.waitForFunction(
    () => /"data"|"errors"/.test(document.querySelector(".graphiql-response .CodeMirror")?.CodeMirror.getValue() ?? ""),
    null, WAIT,
  );
  const result = JSON.parse(await response.evaluate((element) => element.CodeMirror.getValue()));

  // A subscription over graphql-transport-ws, signed in with the same headers; a ticket submitted
  // (over HTTP, until the subscription is listening) shows up in the response pane.
  await setText(".graphiql-query-editor .CodeMirror", SUBSCRIPTION);
  await page.getByRole("button", { name: /Execute query/ }).click(WAIT);
  const bearer = token ? `Bearer ${token}` : headers.match(/Bearer [^"]+/)[0];
  const pane = () => response.evaluate((element) => element.CodeMirror.getValue());
  let event = null;
  for (let attempt = 0; attempt < 40 && event === null; attempt += 1) {
    const submitted = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: bearer },
      body: JSON.stringify({ query: SUBMIT, variables: { title: `From GraphiQL ${attempt}` } }),
    });
    if (!submitted.ok) throw new Error(`submitTicket: ${submitted.status} ${await submitted.text()}`);
    try {
      await page.waitForFunction(
        () => /From GraphiQL/.test(document.querySelector(".graphiql-response .CodeMirror")?.CodeMirror.getValue() ?? ""),
        null, { timeout: 500 },
      );
      event = JSON.parse(await pane());
    } catch {
      // not listening yet: submit another
    }
  }
  console.log(JSON.stringify({ fields, headers, result, event, aborted, problems }));
} catch (error) {
  console.error(`${error.stack}\naborted: ${JSON.stringify(aborted)}\nproblems: ${JSON.stringify(problems)}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
