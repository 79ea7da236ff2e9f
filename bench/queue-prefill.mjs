// Pre-filled queues for the benchmarks (bench:relay's start-to-door phases, bench:chain's scaling phase): the relay's
// own job file, taken from a queue it wrote, copied under new ids as due jobs, as an outage leaves them.
import { randomUUID } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

/**
 * Watches a queue's pending/ directory every 5 ms and keeps the first job file it can read (the worker may take a
 * file between readdir and read: the next tick tries again). stop() ends the watch and returns the job, or undefined.
 */
export function sampleJobFile(queueRoot) {
  let job;
  const timer = setInterval(() => {
    if (job) return;
    const dir = path.join(queueRoot, "pending");
    try {
      for (const f of fs.readdirSync(dir).slice(0, 1)) job = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
    } catch {
      // not created yet, or claimed meanwhile
    }
  }, 5);
  return {
    stop() {
      clearInterval(timer);
      return job;
    },
  };
}

/**
 * Writes `n` due jobs into a queue root (creating its directories): `template` under a new id each, the template's
 * id replaced everywhere in the file (so its Message-ID names the new id too), one attempt already failed, due in
 * creation order before now. Returns the ids in due order.
 */
export function prefillQueue(root, n, template) {
  for (const d of ["pending", "processing", "sent", "failed", "tmp"])
    fs.mkdirSync(path.join(root, d), { recursive: true, mode: 0o700 });
  const text = JSON.stringify({
    ...template,
    attempts: 1,
    lastError: "connect ECONNREFUSED 127.0.0.1:25",
  });
  const parts = text.split(template.id);
  const now = Date.now();
  const ids = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    const job = JSON.parse(parts.join(id));
    job.createdAt = now - n + i;
    job.nextAttemptAt = now - n + i;
    fs.writeFileSync(path.join(root, "pending", `${id}.json`), JSON.stringify(job));
    ids.push(id);
  }
  return ids;
}
