/**
 * SPF for the doctor: the same evaluator the config check uses before a deploy (infra/spf.ts), fed by the doctor's
 * resolver. This file only adapts one to the other; the evaluation itself is infra/spf.ts's.
 */
import { evaluateSpf, type SpfResolver } from "../infra/spf";
import type { SpfEvaluate } from "./checks-dns";
import type { Lookup } from "./dns";

export function spfResolver(dns: Lookup): SpfResolver {
  return {
    txt: (name: string) => dns.txt(name),
    a: (name: string) => dns.a(name),
    aaaa: (name: string) => dns.aaaa(name),
    mx: (name: string) => dns.mx(name),
  } as unknown as SpfResolver;
}

export function spfEvaluator(dns: Lookup): SpfEvaluate {
  const resolver = spfResolver(dns);
  return async (domain, ip) => {
    const v = (await evaluateSpf(domain, ip, resolver)) as unknown as
      string | { result: string; lookups?: number; lookupCount?: number; explanation?: string; reason?: string };
    if (typeof v === "string") return { result: v, lookups: 0 };
    return { result: v.result, lookups: v.lookups ?? v.lookupCount ?? 0, detail: v.reason ?? v.explanation };
  };
}
