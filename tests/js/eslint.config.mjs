// graphql-eslint's schema-recommended rules on the exported schema.graphql, run by
// tests/test_schema_lint.py (node lint-schema.mjs ../../schema.graphql). Every rule is on
// as the preset sets it; the exceptions below say why, and the README lists them.
import { fileURLToPath } from "node:url";

import graphql from "@graphql-eslint/eslint-plugin";

// The schema the rules check against: the file being linted (lint-schema.mjs sets it).
const schema = process.env.GRAPHQL_SCHEMA ?? fileURLToPath(new URL("../../schema.graphql", import.meta.url));

// Values, not entities: each is only ever read inside the object that holds it (its
// description says so), has no identity of its own, and Apollo caches it in its parent.
const valueTypes = [
  "Money", "PageInfo", "UserError", "PaymentCard", "InvoiceLineItem", "InvoicePayment",
  "PendingPlanChange", "PlanChangeBlocker", "PlanChangePreview",
  "PlanComparison", "PlanComparisonRow", "PlanLimits", "WalletFunding", "NotificationSetting",
  "Refund", "CreditNoteLine", "ClawbackRecovery",
];

export default [
  {
    files: ["**/*.graphql"],
    languageOptions: { parser: graphql.parser, parserOptions: { graphQLConfig: { schema } } },
    plugins: { "@graphql-eslint": graphql },
    rules: {
      ...graphql.configs["flat/schema-recommended"].rules,
      "@graphql-eslint/strict-id-in-types": [
        "error",
        {
          acceptedIdNames: ["id"],
          acceptedIdTypes: ["ID"],
          exceptions: {
            types: valueTypes,
            // Relay connections and edges, mutation payloads and subscription events are
            // envelopes around objects that have ids; they have no identity of their own.
            suffixes: ["Connection", "Edge", "Payload", "Event"],
          },
        },
      ],
    },
  },
];
