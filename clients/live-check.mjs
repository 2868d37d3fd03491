// Live updates as real clients meet them (tests/test_live_clients.py): the dashboard's
// subscription documents in operations/ over graphql-transport-ws, with graphql-ws's own
// client or with Apollo Client (GraphQLWsLink for subscriptions beside an HttpLink for the
// rest, split by operation type); or over Server-Sent Events with graphql-sse's client.
//
//   GRAPHQL_URL=http://127.0.0.1:8000/graphql TOKEN=... MODE=graphql-ws node live-check.mjs
//   GRAPHQL_URL=... TOKEN=... MODE=apollo TICKET_ID=... node --conditions=development live-check.mjs
//   GRAPHQL_URL=... TOKEN=... MODE=graphql-sse node live-check.mjs
//
// MODE=graphql-ws: createClient subscribes to ConnectionEvents.
// MODE=graphql-sse: graphql-sse's createClient, in its distinct connections mode (a POST with
//   Accept: text/event-stream and the bearer token for each subscription), subscribes to
//   ConnectionEvents.
// MODE=apollo: Apollo Client loads the Ticket page (TICKET_ID) over HTTP, watches it in its
//   cache, and subscribes to ConnectionEvents and TicketEvents over the WebSocket.
//
// It makes no change itself: whoever runs it makes the changes (once the server follows the
// subscriptions) and reads what arrives. It prints one JSON line per observation:
//   {"type":"next","operation":...,"payload":{...}}   an event (or an error inside a `next`)
//   {"type":"error","operation":...,"error":{...}}    a subscription ended with an error (for
//                                                     graphql-sse, a refused request's "status")
//   {"type":"complete","operation":...}               a subscription ended without an error
//   {"type":"closed","code":...,"reason":...}         the socket was closed
//   {"type":"loaded","status":...,"messageCount":...,"lastMessageId":...}  (apollo) the Ticket
//                                                     page, loaded over HTTP
//   {"type":"page","status":...,"messageCount":...,"lastMessageId":...}  (apollo) the watched
//                                                     Ticket page, each time the cache changes it
// and, once its stdin ends, {"type":"end","cache":{...},"logged":[...]}: (apollo) the ticket
// and its messages as Apollo's cache holds them, and every warning or error logged (by Apollo
// or anything else); then it exits 0. Sockets and event streams are not retried (retryAttempts:
// 0), so a socket the server drops shows as a "closed" line, and a request refused (graphql-sse
// retries a 401 too) or a stream cut short as an "error" line, rather than a silent reconnection.
import { readFileSync } from "node:fs";
import { format } from "node:util";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from "@apollo/client/core";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { __DEV__ } from "@apollo/client/utilities/environment";
import { buildSchema, isAbstractType, OperationTypeNode, parse } from "graphql";
import { createClient as createSseClient } from "graphql-sse";
import { createClient } from "graphql-ws";
import { WebSocket as NodeWebSocket } from "ws";

const { GRAPHQL_URL, TOKEN, MODE = "graphql-ws", TICKET_ID } = process.env;
if (!GRAPHQL_URL || TOKEN === undefined || !["graphql-ws", "apollo", "graphql-sse"].includes(MODE) || (MODE === "apollo" && !TICKET_ID)) {
  console.error("live-check: set GRAPHQL_URL (e.g. http://127.0.0.1:8000/graphql), TOKEN, MODE (graphql-ws, apollo or graphql-sse) "
    + "and, for MODE=apollo, TICKET_ID");
  process.exit(2);
}
if (MODE === "apollo" && !__DEV__) {
  // Apollo only warns about lost or missing cache data in development builds.
  console.error("live-check: run MODE=apollo with `node --conditions=development`");
  process.exit(2);
}

// Node.js has a global WebSocket from version 22; before, the `ws` package is the one
// (Apollo's GraphQLWsLink also looks at the global WebSocket when a socket errors).
const WebSocketImpl = globalThis.WebSocket ?? NodeWebSocket;
globalThis.WebSocket ??= NodeWebSocket;

const emit = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

// Every warning or error logged is reported at the end (the test expects none).
const logged = [];
for (const level of ["warn", "error"]) {
  console[level] = (...args) => logged.push(`console.${level}: ${format(...args).split("\n")[0]}`);
}

const text = (name) => readFileSync(new URL(`../operations/${name}.graphql`, import.meta.url), "utf8");
const wsUrl = GRAPHQL_URL.replace(/^http/, "ws");

// The cache must know which types implement Node (and each other interface or union): an
// event's `node { ... on Ticket { } ... on Invoice { } ... }` cannot be matched without it
// ("Cannot match inline fragment ... missing possibleTypes", and data may be lost). Made from
// ../schema.graphql, as Apollo's docs on fragments (possibleTypes) say; graphql-codegen's
// fragment-matcher plugin writes the same map.
function possibleTypesOf(sdl) {
  const schema = buildSchema(sdl);
  return Object.fromEntries(Object.values(schema.getTypeMap())
    .filter((type) => isAbstractType(type) && !type.name.startsWith("__"))
    .map((type) => [type.name, schema.getPossibleTypes(type).map((t) => t.name).sort()]));
}

const closeEvent = (event) => ({ code: event?.code ?? null, reason: event?.reason?.toString() ?? null });
const errorOf = (error) => (error && typeof error === "object" && "code" in error && "reason" in error
  ? { closed: closeEvent(error) }
  : Array.isArray(error) ? { graphQLErrors: error }
    : { message: error?.message ?? String(error), errors: error?.errors, status: error?.response?.status });

const wsClient = MODE === "graphql-sse" ? null : createClient({
  url: wsUrl,
  webSocketImpl: WebSocketImpl,
  connectionParams: { Authorization: `Bearer ${TOKEN}` },
  retryAttempts: 0,
  on: {
    closed: (event) => emit({ type: "closed", ...closeEvent(event) }),
  },
});

let apollo;
let ticketCacheId;
const finishers = [];

if (MODE === "graphql-sse") {
  // Node.js's global fetch (with its ReadableStream body) is the one graphql-sse uses.
  const sseClient = createSseClient({
    url: GRAPHQL_URL,
    headers: { Authorization: `Bearer ${TOKEN}` },
    singleConnection: false,
    retryAttempts: 0,
  });
  const dispose = sseClient.subscribe({ query: text("ConnectionEvents"), operationName: "ConnectionEvents", variables: {} }, {
    next: (payload) => emit({ type: "next", operation: "ConnectionEvents", payload }),
    error: (error) => emit({ type: "error", operation: "ConnectionEvents", error: errorOf(error) }),
    complete: () => emit({ type: "complete", operation: "ConnectionEvents" }),
  });
  finishers.push(dispose, () => sseClient.dispose());
} else if (MODE === "graphql-ws") {
  const dispose = wsClient.subscribe({ query: text("ConnectionEvents"), operationName: "ConnectionEvents", variables: {} }, {
    next: (payload) => emit({ type: "next", operation: "ConnectionEvents", payload }),
    error: (error) => emit({ type: "error", operation: "ConnectionEvents", error: errorOf(error) }),
    complete: () => emit({ type: "complete", operation: "ConnectionEvents" }),
  });
  finishers.push(dispose);
} else {
  const [Ticket, ConnectionEvents, TicketEvents] = ["Ticket", "ConnectionEvents", "TicketEvents"]
    .map((name) => parse(text(name)));
  const http = new HttpLink({ uri: GRAPHQL_URL, headers: { Authorization: `Bearer ${TOKEN}` } });
  const ws = new GraphQLWsLink(wsClient);
  apollo = new ApolloClient({
    // As Apollo documents it: subscriptions over the WebSocket, queries and mutations over HTTP.
    link: ApolloLink.split(({ operationType }) => operationType === OperationTypeNode.SUBSCRIPTION, ws, http),
    cache: new InMemoryCache({
      possibleTypes: possibleTypesOf(readFileSync(new URL("../schema.graphql", import.meta.url), "utf8")),
    }),
    clientAwareness: { name: "revampd-live-check", version: "1" },
  });
  ticketCacheId = apollo.cache.identify({ __typename: "Ticket", id: TICKET_ID });

  // The Ticket page, loaded over HTTP, then watched: it changes as the cache does.
  const summary = (data) => {
    const ticket = data?.node;
    return { status: ticket?.status, messageCount: ticket?.messageCount, lastMessageId: ticket?.lastMessage?.id ?? null };
  };
  const { data } = await apollo.query({ query: Ticket, variables: { id: TICKET_ID } });
  emit({ type: "loaded", ...summary(data) });
  const page = apollo.watchQuery({ query: Ticket, variables: { id: TICKET_ID }, fetchPolicy: "cache-only" })
    .subscribe({
      next: (result) => {
        if (result.dataState === "complete") emit({ type: "page", ...summary(result.data) });
      },
      error: (error) => emit({ type: "error", operation: "Ticket", error: errorOf(error) }),
    });
  finishers.push(() => page.unsubscribe());

  for (const [name, query, variables] of [
    ["ConnectionEvents", ConnectionEvents, {}],
    ["TicketEvents", TicketEvents, { ticketId: TICKET_ID }],
  ]) {
    const subscription = apollo.subscribe({ query, variables }).subscribe({
      next: (result) => emit({ type: "next", operation: name, payload: { data: result.data, error: result.error?.message } }),
      error: (error) => emit({ type: "error", operation: name, error: errorOf(error) }),
      complete: () => emit({ type: "complete", operation: name }),
    });
    finishers.push(() => subscription.unsubscribe());
  }
}

// The end: whoever runs the check closes its stdin once it has read what it waited for.
process.stdin.resume();
process.stdin.on("end", async () => {
  let cache = null;
  if (apollo) {
    const extract = apollo.cache.extract();
    const messages = Object.entries(extract)
      .filter(([id]) => id.startsWith("TicketMessage:"))
      .map(([, message]) => ({ id: message.id, body: message.body, internal: message.internal }));
    cache = { ticket: extract[ticketCacheId] ?? null, messages };
  }
  for (const finish of finishers) finish();
  apollo?.stop();
  try {
    await wsClient?.dispose();
  } catch {
    // the socket never opened (a "closed" line said so)
  }
  emit({ type: "end", cache, logged: [...new Set(logged)] });
  process.exit(0);
});
