// Types for unthrottled-env.mjs, imported by the type-checked bench:chain.
export const UNTHROTTLED_RELAY_ENV: Readonly<Record<string, string>>;
