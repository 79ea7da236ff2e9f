// ESLint: typescript-eslint's recommended rules on every TypeScript and JavaScript file; Prettier owns layout.
import js from "@eslint/js";
import prettier from "eslint-config-prettier";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  {
    ignores: [
      "node_modules/**",
      "relay/dist/**",
      "client/dist/**",
      "infra/policy/node_modules/**",
      "plan-out/**",
      ".cache/**",
      ".rehearsal/**",
      "bin/**",
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  // Before the project's rules: eslint-config-prettier turns max-len off, and the block below turns it back on.
  prettier,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      // Prettier wraps code at 120; this holds comments and long strings to the same width (split with +).
      "max-len": ["error", { code: 120, ignoreRegExpLiterals: true, ignoreUrls: true }],
      "@typescript-eslint/no-unused-vars": [
        "error",
        { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" },
      ],
    },
  },
  {
    // A test's title is the rule it enforces, written as one sentence: titles and expected strings stay whole.
    files: ["test/**"],
    rules: {
      "max-len": [
        "error",
        { code: 120, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreUrls: true },
      ],
    },
  },
);
