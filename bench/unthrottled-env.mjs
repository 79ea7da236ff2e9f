// The relay's own limits lifted for the benchmarks (bench:relay, bench:chain): its per-caller rate limit and quotas
// (500 recipients a minute by default) would refuse most of a benchmark's load, and the free-space floor is the
// machine's business, not the benchmark's.
export const UNTHROTTLED_RELAY_ENV = {
  RELAY_RATE_LIMIT_PER_MIN: "100000000",
  RELAY_QUOTA_RECIPIENTS_PER_MIN: "100000000",
  RELAY_QUOTA_RECIPIENTS_PER_DAY: "100000000",
  RELAY_QUOTA_BYTES_PER_MIN: "1000000000000",
  RELAY_QUOTA_BYTES_PER_DAY: "1000000000000",
  RELAY_MIN_FREE_BYTES: "0",
};
