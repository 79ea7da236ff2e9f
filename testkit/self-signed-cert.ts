// A self-signed certificate made by openssl (as @pulumi/tls makes one for the host), for the SMTP ingress's tests
// and its benchmark.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";

export const haveOpenssl = (() => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

let cached: { key: string; cert: string } | undefined;
/**
 * An ECDSA P-256 self-signed certificate for smtp-relay.example.com, localhost and 127.0.0.1 (one per test process).
 */
export function selfSignedCert(): { key: string; cert: string } {
  if (cached) return cached;
  const dir = mkdtempSync(path.join(tmpdir(), "smtp-cert-"));
  try {
    execFileSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        path.join(dir, "key.pem"),
        "-out",
        path.join(dir, "cert.pem"),
        "-days",
        "2",
        "-subj",
        "/CN=smtp-relay.example.com",
        "-addext",
        "subjectAltName=DNS:smtp-relay.example.com,DNS:localhost,IP:127.0.0.1",
      ],
      { stdio: "ignore" },
    );
    cached = {
      key: readFileSync(path.join(dir, "key.pem"), "utf8"),
      cert: readFileSync(path.join(dir, "cert.pem"), "utf8"),
    };
    return cached;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
