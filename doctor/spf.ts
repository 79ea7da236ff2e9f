/**
 * SPF for the doctor: the evaluator the config check uses before a deploy (infra/spf.ts), on the doctor's resolver.
 * The doctor's `Lookup` is an `SpfResolver` as it is (empty answer = no such name; a failure is thrown). This file
 * only joins the two calls one check needs: the verdict for an address, and the record's worst-case lookup count.
 */
import { countSpfLookups, evaluateSpf } from "../infra/spf";
import type { SpfEvaluate } from "./checks-dns";
import type { Lookup } from "./dns";

export function spfEvaluator(dns: Lookup): SpfEvaluate {
  return async (domain, ip) => {
    const [v, count] = await Promise.all([evaluateSpf(domain, ip, dns), countSpfLookups(domain, dns)]);
    return {
      result: v.result,
      lookups: count.lookups,
      ...(v.mechanism ? { mechanism: v.mechanism } : {}),
      ...(v.problem ? { problem: v.problem } : {}),
      countProblems: count.problems,
    };
  };
}
