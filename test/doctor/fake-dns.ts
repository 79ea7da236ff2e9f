/** A fake resolver for the doctor's checks: answers from a table, and throws a DnsFailure for names marked failing. */
import { DnsFailure, type Lookup, type MxAnswer } from "../../doctor/dns";

export interface FakeZone {
  readonly a?: Record<string, string[]>;
  readonly aaaa?: Record<string, string[]>;
  readonly txt?: Record<string, string[]>;
  readonly mx?: Record<string, MxAnswer[]>;
  readonly cname?: Record<string, string[]>;
  readonly ptr?: Record<string, string[]>;
  /** Names (or addresses, for PTR) whose query times out. */
  readonly failing?: string[];
}

export function fakeDns(z: FakeZone): Lookup & { asked: string[] } {
  const asked: string[] = [];
  const get =
    <T>(table: Record<string, T[]> | undefined, type: string) =>
    async (name: string): Promise<T[]> => {
      asked.push(`${type} ${name}`);
      if (z.failing?.includes(name)) throw new DnsFailure("ETIMEOUT", `${type} ${name}`);
      return table?.[name] ?? [];
    };
  return {
    asked,
    a: get(z.a, "A"),
    aaaa: get(z.aaaa, "AAAA"),
    txt: get(z.txt, "TXT"),
    mx: get(z.mx, "MX"),
    cname: get(z.cname, "CNAME"),
    ptr: get(z.ptr, "PTR"),
  };
}
