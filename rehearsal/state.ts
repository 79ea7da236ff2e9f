/**
 * What `npm run rehearse -- <stack> --keep` leaves behind for `--down`: the kept rehearsal's state file. Its own
 * module so that main.ts (which reads it) and phases/index.ts (which writes it) import it without importing each other.
 */
import * as path from "node:path";
import { PROJECT_ROOT } from "../infra/offline";

export interface State {
  readonly stack: string;
  readonly namespaces: { vps: string; world: string };
  readonly host: { ipv4: string; ipv6?: string };
  readonly sshKey: string;
  readonly tunnelUrl?: string;
  readonly relayTokensFile: string;
  readonly mxDir: string;
  readonly dns: string;
  readonly pids: number[];
  readonly rootfs: string;
}

export function workDir(stack: string): string {
  return path.join(PROJECT_ROOT, ".rehearsal", stack);
}
