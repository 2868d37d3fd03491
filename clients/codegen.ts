// TypeScript types for the dashboard's documents: `npm run codegen` writes src/gql/
// (or $CODEGEN_OUT) from ../schema.graphql and ../operations/*.graphql.
import type { CodegenConfig } from "@graphql-codegen/cli";

const config: CodegenConfig = {
  schema: "../schema.graphql",
  documents: ["../operations/*.graphql"],
  // Imports with their .js extension, as Node.js and TypeScript (nodenext) resolve them.
  emitLegacyCommonJSImports: false,
  generates: {
    [process.env.CODEGEN_OUT ?? "src/gql/"]: {
      preset: "client",
      presetConfig: { fragmentMasking: false },
      config: {
        // Every custom scalar is mapped; a new one fails codegen until it is.
        strictScalars: true,
        scalars: {
          DateTime: "string", // ISO 8601 with offset, e.g. "2025-06-18T00:00:00+00:00"
          Decimal: "string", // exact, e.g. "149.00"; never a float
        },
        enumsAsTypes: true,
        useTypeImports: true,
        skipTypename: false,
      },
    },
  },
};

export default config;
