// Every body of Apollo's persisted query manifest (argv[2]) must be the text Apollo Client
// sends: graphql-js 16's print of itself, with the SHA-256 of that text as its id.
// Prints one line per operation that is not; exits 1 if any.
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { parse, print } from "graphql";

const manifest = JSON.parse(readFileSync(process.argv[2], "utf8"));
let bad = 0;
for (const op of manifest.operations) {
  const printed = print(parse(op.body));
  const id = createHash("sha256").update(printed).digest("hex");
  if (printed !== op.body || id !== op.id) {
    bad++;
    console.log(`${op.name}: graphql-js prints ${JSON.stringify(printed)}, id ${id}`);
  }
}
console.log(`${manifest.operations.length} operations, ${bad} not as graphql-js prints them`);
process.exit(bad ? 1 : 0);
