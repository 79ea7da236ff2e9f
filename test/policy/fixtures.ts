/**
 * Hand-made stacks for the policy tests: one compliant stack shaped like the program's output (one node,
 * IPv4 + IPv6, tunnel + Access, SPF/DKIM/DMARC/BIMI, the file pushes), and `mutate` to break exactly one thing.
 */
import { generateKeyPairSync, randomBytes } from "node:crypto";
import { gzipSync } from "node:zlib";
import { type ResourceView, TYPES } from "../../infra/policy/model";

export interface FixtureResource extends ResourceView {
  readonly props: Record<string, unknown>;
}

function rsa(bits: number) {
  const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: bits });
  return {
    privatePem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
    spki: publicKey.export({ type: "spki", format: "der" }).toString("base64"),
  };
}

/** Generated once per test file: real keys, so the DKIM checks parse real SPKI. */
export const DKIM_KEY = rsa(2048);
export const WEAK_DKIM_KEY = rsa(1024);
export const OTHER_DKIM_KEY = rsa(2048);
export const SSH_PRIVATE_KEY = generateKeyPairSync("ed25519")
  .privateKey.export({ type: "pkcs8", format: "pem" })
  .toString();
export const RELAY_TOKEN = randomBytes(36)
  .toString("base64")
  .replace(/[^A-Za-z0-9]/g, "")
  .slice(0, 40);
export const TUNNEL_TOKEN = `eyJ${randomBytes(60)
  .toString("base64")
  .replace(/[^A-Za-z0-9]/g, "")}`;
export const SMARTHOST_PASSWORD = "fixture-smarthost-pw-9876";

/** TXT content as Cloudflare returns it: quoted <=255-char strings separated by a space. */
export function quotedTxt(value: string): string {
  const chunks: string[] = [];
  for (let i = 0; i < value.length; i += 255) chunks.push(value.slice(i, i + 255));
  return chunks.map((c) => `"${c}"`).join(" ");
}

export const MAIN_CF = `# main.cf fixture: continuation lines and comments on purpose
myhostname = mail.example.com
mydomain = example.com
myorigin = $mydomain
inet_interfaces = loopback-only
# trusted: loopback only
mynetworks = 127.0.0.0/8
    # a comment between continuation lines is ignored
    [::1]/128
mydestination = localhost
relay_domains =
smtpd_relay_restrictions = permit_mynetworks,
    reject_unauth_destination
smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_milters = unix:opendkim/opendkim.sock
non_smtpd_milters = $smtpd_milters
milter_default_action = tempfail
smtp_dns_support_level = dnssec
smtp_tls_security_level = dane
smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8462:dane, socketmap:inet:127.0.0.1:8461:postfix
`;

export const MASTER_CF = `# master.cf fixture
# service type  private unpriv  chroot  wakeup  maxproc command + args
smtp      inet  n       -       n       -       -       smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
relay     unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/$service_name
`;

export const OPENDKIM_CONF = `# opendkim.conf fixture
Syslog yes
Socket local:/var/spool/postfix/opendkim/opendkim.sock
KeyTable file:/etc/opendkim/KeyTable
SigningTable refile:/etc/opendkim/SigningTable
`;

const HOST = "198.51.100.10";
const HOST6 = "2001:db8:5::1";
const TUNNEL_ID = "0b5f9e9e-1111-2222-3333-444455556666";
export const ACCESS_AUD = "4714c1358e65fe4b408ad6d432a5f878f08194bdb4752441fd56faefa9b2b6f2";

/** One route of cloudflared's ingress file, as the renderer writes it. */
export interface CloudflaredIngress {
  hostname?: string;
  path?: string;
  service: string;
  originRequest?: { access: { required: boolean; teamName: string; audTag: string[] } };
}

/** cloudflared's locally managed ingress, as the renderer writes it (JSON). */
export function cloudflaredConfig(edit: (ingress: CloudflaredIngress[]) => void = () => undefined): string {
  const ingress: CloudflaredIngress[] = [
    {
      hostname: "mail-relay.example.com",
      path: "^/(send|health)$",
      service: "http://127.0.0.1:2525",
      originRequest: { access: { required: true, teamName: "example", audTag: [ACCESS_AUD] } },
    },
    { service: "http_status:404" },
  ];
  edit(ingress);
  return JSON.stringify({ "no-autoupdate": true, ingress }, null, 2) + "\n";
}

let seq = 0;
function res(type: string, name: string, props: Record<string, unknown>, id?: string): FixtureResource {
  seq++;
  return {
    type,
    name,
    urn: `urn:pulumi:fixture::mail-relay::${type}::${name}`,
    props,
    ...(id ? { id } : { id: `${name}-id-${seq}` }),
  };
}

function push(name: string, path: string, content: string): FixtureResource {
  return res(TYPES.command, name, {
    connection: { host: HOST, user: "root", privateKey: SSH_PRIVATE_KEY },
    create: 'install -m 0644 /dev/stdin "$1"',
    stdin: content,
    triggers: [path, "sha256-of-content"],
  });
}

/** A compliant stack: every rule passes on it (tested). */
export function baseline(): FixtureResource[] {
  const tunnelSecret = randomBytes(32).toString("base64");
  return [
    res(TYPES.sshKey, "ssh", {
      name: "mail-relay",
      publicKey: "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFixture deploy@example.com",
    }),
    res(
      TYPES.firewall,
      "fw",
      {
        name: "mail-relay-fw",
        rules: [
          { direction: "in", protocol: "tcp", port: "22", sourceIps: ["203.0.113.0/24", "2001:db8:1234::/48"] },
          { direction: "in", protocol: "icmp", sourceIps: ["0.0.0.0/0", "::/0"] },
        ],
      },
      "1",
    ),
    res(
      TYPES.primaryIp,
      "ipv4",
      {
        type: "ipv4",
        autoDelete: false,
        deleteProtection: true,
        labels: { "mail-relay-protect-ip": "true" },
        ipAddress: HOST,
      },
      "11",
    ),
    res(
      TYPES.primaryIp,
      "ipv6",
      {
        type: "ipv6",
        autoDelete: false,
        deleteProtection: true,
        labels: { "mail-relay-protect-ip": "true" },
        ipAddress: "2001:db8:5::/64",
      },
      "12",
    ),
    res(
      TYPES.server,
      "server",
      {
        name: "mail-example-com",
        firewallIds: [1],
        userData: "#cloud-config\nhostname: mail\nfqdn: mail.example.com\npackages: [postfix, opendkim]\n",
        publicNets: [{ ipv4Enabled: true, ipv4: 11, ipv6Enabled: true, ipv6: 12 }],
      },
      "21",
    ),
    res(TYPES.rdns, "ptr-ipv4", { primaryIpId: 11, ipAddress: HOST, dnsPtr: "mail.example.com" }),
    res(TYPES.rdns, "ptr-ipv6", { primaryIpId: 12, ipAddress: HOST6, dnsPtr: "mail.example.com" }),
    res(TYPES.dnsRecord, "a-node1", { name: "mail.example.com", type: "A", content: HOST, proxied: false, ttl: 300 }),
    res(TYPES.dnsRecord, "aaaa-node1", {
      name: "mail.example.com",
      type: "AAAA",
      content: HOST6,
      proxied: false,
      ttl: 300,
    }),
    res(TYPES.dnsRecord, "spf", {
      name: "example.com",
      type: "TXT",
      content: quotedTxt(`v=spf1 ip4:${HOST} ip6:${HOST6} include:_spf.mx.cloudflare.net ~all`),
      proxied: false,
    }),
    res(TYPES.dnsRecord, "dkim-mail202611", {
      name: "mail202611._domainkey.example.com",
      type: "TXT",
      content: quotedTxt(`v=DKIM1; k=rsa; p=${DKIM_KEY.spki}`),
      proxied: false,
    }),
    res(TYPES.dnsRecord, "dmarc", {
      name: "_dmarc.example.com",
      type: "TXT",
      content: quotedTxt("v=DMARC1; p=quarantine; pct=100; rua=mailto:dmarc@example.com; adkim=s; aspf=s"),
    }),
    res(TYPES.dnsRecord, "bimi", {
      name: "default._bimi.example.com",
      type: "TXT",
      content: quotedTxt("v=BIMI1; l=https://example.com/logo.svg; a="),
    }),
    res(TYPES.dnsRecord, "mx-route1", {
      name: "example.com",
      type: "MX",
      content: "route1.mx.cloudflare.net",
      priority: 10,
    }),
    res(TYPES.dnsRecord, "relay-cname", {
      name: "mail-relay.example.com",
      type: "CNAME",
      content: `${TUNNEL_ID}.cfargotunnel.com`,
      proxied: true,
      ttl: 1,
    }),
    res(TYPES.randomBytes, "tunnel-secret", {
      length: 32,
      base64: tunnelSecret,
      hex: Buffer.from(tunnelSecret, "base64").toString("hex"),
    }),
    res(TYPES.tunnel, "tunnel", { name: "mail-relay-prod", configSrc: "local", tunnelSecret }, TUNNEL_ID),
    res(TYPES.tunnelConfig, "ingress", {
      tunnelId: TUNNEL_ID,
      config: {
        ingresses: [
          { hostname: "mail-relay.example.com", path: "^/(send|health)$", service: "http://127.0.0.1:2525" },
          { service: "http_status:404" },
        ],
      },
    }),
    res(
      TYPES.serviceToken,
      "token-app",
      { name: "mail-relay-app", clientId: "abc.access", clientSecret: randomBytes(32).toString("hex") },
      "tok1",
    ),
    res(
      TYPES.accessPolicy,
      "access-policy",
      { name: "callers", decision: "non_identity", includes: [{ serviceToken: { tokenId: "tok1" } }] },
      "pol1",
    ),
    res(TYPES.accessApp, "access-app", {
      type: "self_hosted",
      domain: "mail-relay.example.com",
      destinations: [{ type: "public", uri: "mail-relay.example.com" }],
      policies: [{ id: "pol1", precedence: 1 }],
      aud: ACCESS_AUD,
    }),
    res(TYPES.randomPassword, "token-app-bearer", { length: 40, result: RELAY_TOKEN }),
    res(TYPES.privateKey, "dkim-mail202611", { algorithm: "RSA", rsaBits: 2048, privateKeyPem: DKIM_KEY.privatePem }),
    push("file-main-cf", "/etc/postfix/main.cf", MAIN_CF),
    push("file-master-cf", "/etc/postfix/master.cf", MASTER_CF),
    push("file-opendkim-conf", "/etc/opendkim.conf", OPENDKIM_CONF),
    push(
      "file-keytable",
      "/etc/opendkim/KeyTable",
      "mail202611._domainkey.example.com example.com:mail202611:/etc/opendkim/keys/example.com/mail202611.private\n",
    ),
    push("file-signingtable", "/etc/opendkim/SigningTable", "*@example.com mail202611._domainkey.example.com\n"),
    push("secret-dkim-key", "/etc/opendkim/keys/example.com/mail202611.private", DKIM_KEY.privatePem),
    push(
      "secret-relay-env",
      "/etc/mail-relay.env",
      `RELAY_LISTEN=127.0.0.1:2525\nSMTP_RELAY_TOKEN=app=${RELAY_TOKEN}\nRELAY_MESSAGE_ID_DOMAIN=example.com\nQUEUE_ROOT=/var/spool/mail-relay\n`,
    ),
    push(
      "secret-sasl",
      "/etc/postfix/sasl_passwd",
      `[smtp.eu.mailgun.org]:587 postmaster@example.com:${SMARTHOST_PASSWORD}\n`,
    ),
    push("file-cloudflared-config", "/etc/cloudflared/mail-relay.yml", cloudflaredConfig()),
    push("secret-cloudflared-env", "/etc/cloudflared/mail-relay.env", `TUNNEL_TOKEN=${TUNNEL_TOKEN}\n`),
    res(TYPES.command, "wait-cloud-init", {
      connection: { host: HOST, user: "root", privateKey: SSH_PRIVATE_KEY },
      create: "cloud-init status --wait",
      triggers: [21],
    }),
  ];
}

const isObject = (x: unknown): x is Record<string, unknown> => x !== null && typeof x === "object" && !Array.isArray(x);

/** The object at `o[key]`, to edit a fixture's props in place; throws when the fixture is not shaped that way. */
export function objectAt(o: Record<string, unknown>, key: string): Record<string, unknown> {
  const value = o[key];
  if (!isObject(value)) throw new Error(`fixture: ${key} is not an object`);
  return value;
}

/** The list at `o[key]` itself (not a copy), to edit a fixture's props in place; throws when it is not a list. */
export function listAt(o: Record<string, unknown>, key: string): unknown[] {
  const value = o[key];
  if (!Array.isArray(value)) throw new Error(`fixture: ${key} is not a list`);
  return value;
}

/** The list of objects at `o[key]` itself (firewall rules, tunnel ingresses); throws on any other shape. */
export function objectsAt(o: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const list = listAt(o, key);
  if (!list.every(isObject)) throw new Error(`fixture: ${key} holds something other than objects`);
  return list as Record<string, unknown>[];
}

/** The tunnel config's ingress rules of a fixture stack, edited in place. */
export const tunnelIngresses = (s: FixtureResource[]) =>
  objectsAt(objectAt(byName(s, "ingress").props, "config"), "ingresses");

/** A deep copy of `stack` with `edit` applied to it. */
export function mutate(stack: readonly FixtureResource[], edit: (s: FixtureResource[]) => void): FixtureResource[] {
  const copy = structuredClone(stack) as FixtureResource[];
  edit(copy);
  return copy;
}

export function byName(stack: readonly FixtureResource[], name: string): FixtureResource {
  const r = stack.find((x) => x.name === name);
  if (!r) throw new Error(`fixture has no resource ${name}`);
  return r;
}

/** Replace a main.cf parameter (whole logical line) in the main.cf push. */
export function setMainCf(stack: FixtureResource[], key: string, value: string | undefined): void {
  const r = byName(stack, "file-main-cf");
  const lines = (r.props.stdin as string).split("\n");
  const out: string[] = [];
  let skipping = false;
  for (const l of lines) {
    if (skipping && /^\s+\S/.test(l)) continue;
    skipping = false;
    if (l.startsWith(`${key} =`)) {
      skipping = true;
      if (value !== undefined) out.push(`${key} = ${value}`);
      continue;
    }
    out.push(l);
  }
  if (value !== undefined && !out.some((l) => l.startsWith(`${key} =`))) out.push(`${key} = ${value}`);
  r.props.stdin = out.join("\n");
}

export function appendMasterCf(stack: FixtureResource[], text: string): void {
  const r = byName(stack, "file-master-cf");
  r.props.stdin = `${r.props.stdin}${text}\n`;
}

export function remove(stack: FixtureResource[], name: string): void {
  stack.splice(stack.indexOf(byName(stack, name)), 1);
}

export function add(stack: FixtureResource[], type: string, name: string, props: Record<string, unknown>): void {
  stack.push(res(type, name, props));
}

export const gzBase64 = (s: string) => gzipSync(Buffer.from(s)).toString("base64");
