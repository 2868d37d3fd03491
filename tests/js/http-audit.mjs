// The graphql-http audit of GraphQL over HTTP conformance, against $GRAPHQL_URL with $TOKEN.
// Prints one JSON array: each audit's id, name, status (ok, warn, error) and reason.
import { serverAudits } from 'graphql-http';

const token = process.env.TOKEN;
const fetchFn = (input, init = {}) =>
  fetch(input, { ...init, headers: { ...(init.headers ?? {}), authorization: `Bearer ${token}` } });

const results = await Promise.all(serverAudits({ url: process.env.GRAPHQL_URL, fetchFn }).map((audit) => audit.fn()));
console.log(JSON.stringify(results.map(({ id, name, status, reason }) => ({ id, name, status, reason }))));
