/**
 * Every policy of the pack, driven through the real `policies` array the way CrossGuard calls it: each
 * hand-made violating fixture trips exactly its own rule, and the compliant baseline trips none.
 */
import { describe, expect, it } from "vitest";
import { policies } from "../../infra/policy/policies";
import { TYPES } from "../../infra/policy/model";
import { rules } from "../../infra/policy/rules";
import { firedPolicies, runPolicies } from "./crossguard";
import {
  add,
  appendMasterCf,
  baseline,
  byName,
  FixtureResource,
  gzBase64,
  mutate,
  OTHER_DKIM_KEY,
  quotedTxt,
  RELAY_TOKEN,
  remove,
  setMainCf,
  SMARTHOST_PASSWORD,
  TUNNEL_TOKEN,
  WEAK_DKIM_KEY,
  cloudflaredConfig,
  listAt,
  objectsAt,
  tunnelIngresses,
} from "./fixtures";

const base = baseline();
const fw = (s: FixtureResource[]) => objectsAt(byName(s, "fw").props, "rules");

interface Case {
  readonly rule: string;
  readonly what: string;
  readonly edit: (s: FixtureResource[]) => void;
  /** The resource the message must name, and a value it must mention. */
  readonly names: string;
  readonly mentions: RegExp;
}

/** Adds an -o override to the master.cf's one `smtp inet ... smtpd` service. */
function overrideSmtpService(stack: FixtureResource[], option: string): void {
  const r = byName(stack, "file-master-cf");
  const text = r.props.stdin as string;
  const smtp = /^smtp\s+inet\s.*smtpd\n/m.exec(text);
  if (!smtp) throw new Error("the master.cf fixture has no smtp inet smtpd line");
  r.props.stdin = text.replace(smtp[0], `${smtp[0]}  ${option}\n`);
}

const cases: Case[] = [
  // 1
  {
    rule: "no-public-smtp-ports",
    what: "tcp 25 open to 0.0.0.0/0",
    edit: (s) => fw(s).push({ direction: "in", protocol: "tcp", port: "25", sourceIps: ["0.0.0.0/0"] }),
    names: "fw",
    mentions: /port 25\b.*0\.0\.0\.0\/0/,
  },
  {
    rule: "no-public-smtp-ports",
    what: "a range containing 25 (24-30) from ::/0",
    edit: (s) => fw(s).push({ direction: "in", protocol: "tcp", port: "24-30", sourceIps: ["::/0"] }),
    names: "fw",
    mentions: /24-30.*::\/0/,
  },
  {
    rule: "no-public-smtp-ports",
    what: "587 open only to the admin range (any source counts)",
    edit: (s) => fw(s).push({ direction: "in", protocol: "tcp", port: "587", sourceIps: ["203.0.113.0/24"] }),
    names: "fw",
    mentions: /587/,
  },
  {
    rule: "no-public-smtp-ports",
    what: "port 465 on a tcp rule with port 'any' from an IPv6 range",
    edit: (s) => fw(s).push({ direction: "in", protocol: "tcp", port: "any", sourceIps: ["2001:db8:1234::/48"] }),
    names: "fw",
    mentions: /25\/465\/587/,
  },
  {
    rule: "no-public-smtp-ports",
    what: "GRE (can encapsulate TCP) from the admin range",
    edit: (s) => fw(s).push({ direction: "in", protocol: "gre", sourceIps: ["203.0.113.0/24"] }),
    names: "fw",
    mentions: /gre/,
  },
  // 2
  {
    rule: "firewall-before-first-boot",
    what: "server without firewallIds",
    edit: (s) => delete byName(s, "server").props.firewallIds,
    names: "server",
    mentions: /firewallIds/,
  },
  {
    rule: "firewall-before-first-boot",
    what: "server with firewallIds: []",
    edit: (s) => (byName(s, "server").props.firewallIds = []),
    names: "server",
    mentions: /firewallIds is \[\]/,
  },
  // 3
  {
    rule: "ssh-restricted",
    what: "22 open to 0.0.0.0/0",
    edit: (s) => (fw(s)[0].sourceIps = ["203.0.113.0/24", "0.0.0.0/0"]),
    names: "fw",
    mentions: /0\.0\.0\.0\/0/,
  },
  {
    rule: "ssh-restricted",
    what: "22 open to ::/0",
    edit: (s) => fw(s).push({ direction: "in", protocol: "tcp", port: "22", sourceIps: ["::/0"] }),
    names: "fw",
    mentions: /::\/0/,
  },
  // 4
  {
    rule: "postfix-loopback-only",
    what: "inet_interfaces = all",
    edit: (s) => setMainCf(s, "inet_interfaces", "all"),
    names: "file-main-cf",
    mentions: /inet_interfaces = all/,
  },
  {
    rule: "postfix-loopback-only",
    what: "inet_interfaces not set (default all)",
    edit: (s) => setMainCf(s, "inet_interfaces", undefined),
    names: "file-main-cf",
    mentions: /inet_interfaces/,
  },
  {
    rule: "postfix-loopback-only",
    what: "master.cf adds submission",
    edit: (s) =>
      appendMasterCf(
        s,
        "submission inet n       -       n       -       -       smtpd\n  -o smtpd_sasl_auth_enable=yes",
      ),
    names: "file-master-cf",
    mentions: /submission/,
  },
  {
    rule: "postfix-loopback-only",
    what: "master.cf binds smtpd to 0.0.0.0:2525",
    edit: (s) => appendMasterCf(s, "0.0.0.0:2525 inet n - n - - smtpd"),
    names: "file-master-cf",
    mentions: /0\.0\.0\.0:2525/,
  },
  {
    rule: "postfix-loopback-only",
    what: "a second push to /etc/postfix//main.cf (a spelling of main.cf) with inet_interfaces = all",
    edit: (s) =>
      add(s, TYPES.command, "file-main-cf-again", {
        connection: { host: "198.51.100.10" },
        stdin: (byName(s, "file-main-cf").props.stdin as string).replace(
          "inet_interfaces = loopback-only",
          "inet_interfaces = all",
        ),
        triggers: ["/etc/postfix//main.cf", "x"],
      }),
    names: "file-main-cf-again",
    mentions: /inet_interfaces = all/,
  },
  {
    rule: "postfix-loopback-only",
    what: "a push to /etc/postfix/./main.cf is main.cf (with inet_interfaces = all)",
    edit: (s) => {
      setMainCf(s, "inet_interfaces", "all");
      byName(s, "file-main-cf").props.triggers = ["/etc/postfix/./main.cf", "x"];
    },
    names: "file-main-cf",
    mentions: /inet_interfaces = all/,
  },
  {
    rule: "postfix-loopback-only",
    what: "a push of another file under /etc/postfix/ (e.g. a map)",
    edit: (s) =>
      add(s, TYPES.command, "file-postfix-extra", {
        connection: { host: "198.51.100.10" },
        stdin: "0.0.0.0/0 OK\n",
        triggers: ["/etc/postfix/sub/../client_ok", "x"],
      }),
    names: "file-postfix-extra",
    mentions: /\/etc\/postfix\/client_ok/,
  },
  {
    rule: "postfix-loopback-only",
    what: "smtpd on a unix socket (smtpsock unix n - n - - smtpd)",
    edit: (s) => appendMasterCf(s, "smtpsock unix n - n - - smtpd"),
    names: "file-master-cf",
    mentions: /smtpd on a unix service "smtpsock"/,
  },
  {
    rule: "postfix-loopback-only",
    what: "smtpd on a fifo",
    edit: (s) => appendMasterCf(s, "smtpfifo fifo n - n - - smtpd"),
    names: "file-master-cf",
    mentions: /fifo/,
  },
  {
    rule: "postfix-loopback-only",
    what: "smtpd as a pass service",
    edit: (s) => appendMasterCf(s, "smtpd pass - - n - - smtpd"),
    names: "file-master-cf",
    mentions: /pass/,
  },
  {
    rule: "postfix-loopback-only",
    what: "no main.cf pushed at all",
    edit: (s) => remove(s, "file-main-cf"),
    names: "server",
    mentions: /main\.cf/,
  },
  // 5
  {
    rule: "trusted-networks-loopback-only",
    what: "mynetworks has the Docker NAT gateway (incident 001)",
    edit: (s) => setMainCf(s, "mynetworks", "127.0.0.0/8 [::1]/128 172.22.1.1/32"),
    names: "file-main-cf",
    mentions: /172\.22\.1\.1\/32/,
  },
  {
    rule: "trusted-networks-loopback-only",
    what: "mynetworks has a private range",
    edit: (s) => setMainCf(s, "mynetworks", "127.0.0.0/8, 10.0.0.0/8"),
    names: "file-main-cf",
    mentions: /10\.0\.0\.0\/8/,
  },
  {
    rule: "trusted-networks-loopback-only",
    what: "mynetworks wider than loopback (127.0.0.0/7)",
    edit: (s) => setMainCf(s, "mynetworks", "127.0.0.0/7"),
    names: "file-main-cf",
    mentions: /127\.0\.0\.0\/7/,
  },
  {
    rule: "trusted-networks-loopback-only",
    what: "mynetworks not set",
    edit: (s) => setMainCf(s, "mynetworks", undefined),
    names: "file-main-cf",
    mentions: /mynetworks/,
  },
  {
    rule: "trusted-networks-loopback-only",
    what: "master.cf -o mynetworks override",
    // On the one smtp listener: a second listener would trip postfix-loopback-only as well.
    edit: (s) => overrideSmtpService(s, "-o mynetworks=0.0.0.0/0"),
    names: "file-master-cf",
    mentions: /0\.0\.0\.0\/0/,
  },
  // 6
  {
    rule: "relay-restrictions-closed",
    what: "no reject_unauth_destination",
    edit: (s) => setMainCf(s, "smtpd_relay_restrictions", "permit_mynetworks, permit_sasl_authenticated"),
    names: "file-main-cf",
    mentions: /reject_unauth_destination/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "permit after reject_unauth_destination",
    edit: (s) => setMainCf(s, "smtpd_relay_restrictions", "permit_mynetworks, reject_unauth_destination, permit"),
    names: "file-main-cf",
    mentions: /holds permit/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "bare permit before reject_unauth_destination",
    edit: (s) => setMainCf(s, "smtpd_relay_restrictions", "permit, reject_unauth_destination"),
    names: "file-main-cf",
    mentions: /holds permit/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "a lookup that says OK to everyone (check_client_access static:OK)",
    edit: (s) => setMainCf(s, "smtpd_relay_restrictions", "check_client_access static:OK, reject_unauth_destination"),
    names: "file-main-cf",
    mentions: /holds check_client_access, static:OK/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "a restriction class defined as permit",
    edit: (s) => {
      setMainCf(s, "smtpd_restriction_classes", "trusted");
      setMainCf(s, "trusted", "permit");
      setMainCf(s, "smtpd_relay_restrictions", "trusted, reject_unauth_destination");
    },
    names: "file-main-cf",
    mentions: /holds trusted/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "permit_sasl_authenticated in the recipient restrictions",
    edit: (s) =>
      setMainCf(
        s,
        "smtpd_recipient_restrictions",
        "permit_sasl_authenticated, permit_mynetworks, reject_unauth_destination",
      ),
    names: "file-main-cf",
    mentions: /smtpd_recipient_restrictions.*permit_sasl_authenticated/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "a master.cf override with a lookup",
    edit: (s) =>
      overrideSmtpService(s, "-o smtpd_relay_restrictions=check_client_access,static:OK,reject_unauth_destination"),
    names: "file-master-cf",
    mentions: /overrides smtpd_relay_restrictions/,
  },
  {
    rule: "relay-restrictions-closed",
    what: "not set",
    edit: (s) => setMainCf(s, "smtpd_relay_restrictions", undefined),
    names: "file-main-cf",
    mentions: /smtpd_relay_restrictions/,
  },
  // 7
  {
    rule: "send-only-mydestination",
    what: "mydestination = $myhostname",
    edit: (s) => setMainCf(s, "mydestination", "$myhostname, localhost"),
    names: "file-main-cf",
    mentions: /mail\.example\.com/,
  },
  {
    rule: "send-only-mydestination",
    what: "mydestination lists the domain",
    edit: (s) => setMainCf(s, "mydestination", "localhost example.com"),
    names: "file-main-cf",
    mentions: /lists example\.com/,
  },
  {
    rule: "send-only-mydestination",
    what: "mydestination not set (default has $myhostname)",
    edit: (s) => setMainCf(s, "mydestination", undefined),
    names: "file-main-cf",
    mentions: /mydestination/,
  },
  // 8
  {
    rule: "never-send-unsigned",
    what: "milter_default_action = accept",
    edit: (s) => setMainCf(s, "milter_default_action", "accept"),
    names: "file-main-cf",
    mentions: /accept/,
  },
  {
    rule: "never-send-unsigned",
    what: "non_smtpd_milters empty",
    edit: (s) => setMainCf(s, "non_smtpd_milters", ""),
    names: "file-main-cf",
    mentions: /non_smtpd_milters/,
  },
  {
    rule: "never-send-unsigned",
    what: "smtpd_milters points at a milter that is not OpenDKIM's socket",
    edit: (s) => setMainCf(s, "smtpd_milters", "inet:127.0.0.1:8891"),
    names: "file-main-cf",
    mentions: /inet:127\.0\.0\.1:8891/,
  },
  {
    rule: "never-send-unsigned",
    what: "per-milter default_action=accept",
    edit: (s) => setMainCf(s, "smtpd_milters", "{ unix:opendkim/opendkim.sock, default_action=accept }"),
    names: "file-main-cf",
    mentions: /default_action=accept/,
  },
  {
    rule: "never-send-unsigned",
    what: "master.cf -o receive_override_options=no_milters",
    edit: (s) =>
      (byName(s, "file-master-cf").props.stdin = (byName(s, "file-master-cf").props.stdin as string).replace(
        "smtpd\n",
        "smtpd\n  -o receive_override_options=no_milters\n",
      )),
    names: "file-master-cf",
    mentions: /no_milters/,
  },
  // 9
  {
    rule: "tunnel-cannot-reach-mail-ports",
    what: "ingress to smtp://127.0.0.1:25",
    edit: (s) =>
      tunnelIngresses(s).unshift({
        hostname: "mail-relay.example.com",
        path: "^/smtp$",
        service: "smtp://127.0.0.1:25",
      }),
    names: "ingress",
    mentions: /smtp:\/\//,
  },
  {
    rule: "tunnel-cannot-reach-mail-ports",
    what: "ingress to tcp://localhost:587",
    edit: (s) =>
      tunnelIngresses(s).unshift({
        hostname: "mail-relay.example.com",
        path: "^/tcp$",
        service: "tcp://localhost:587",
      }),
    names: "ingress",
    mentions: /tcp:\/\//,
  },
  {
    rule: "tunnel-cannot-reach-mail-ports",
    what: "http to port 25",
    edit: (s) => (tunnelIngresses(s)[0].service = "http://127.0.0.1:25"),
    names: "ingress",
    mentions: /mail port/,
  },
  {
    rule: "tunnel-cannot-reach-mail-ports",
    what: "no catch-all 404 last",
    edit: (s) => tunnelIngresses(s).pop(),
    names: "ingress",
    mentions: /http_status:404/,
  },
  {
    rule: "tunnel-cannot-reach-mail-ports",
    what: "service on another host",
    edit: (s) => (tunnelIngresses(s)[0].service = "http://10.0.0.5:2525"),
    names: "ingress",
    mentions: /10\.0\.0\.5/,
  },
  // 10
  {
    rule: "access-in-front-of-tunnel",
    what: "no Access application",
    edit: (s) => remove(s, "access-app"),
    names: "tunnel",
    mentions: /mail-relay\.example\.com/,
  },
  {
    rule: "access-in-front-of-tunnel",
    what: "Access application for another hostname",
    edit: (s) => {
      byName(s, "access-app").props.domain = "other.example.com";
      byName(s, "access-app").props.destinations = [{ type: "public", uri: "other.example.com" }];
    },
    names: "tunnel",
    mentions: /no Access application/,
  },
  {
    rule: "access-in-front-of-tunnel",
    what: "policy is allow-everyone, not a service token",
    edit: (s) => Object.assign(byName(s, "access-policy").props, { decision: "allow", includes: [{ everyone: {} }] }),
    names: "access-app",
    mentions: /everyone/,
  },
  {
    rule: "access-in-front-of-tunnel",
    what: "a service token plus {ip: 0.0.0.0/0} (includes are OR-ed)",
    edit: (s) => listAt(byName(s, "access-policy").props, "includes").push({ ip: { ip: "0.0.0.0/0" } }),
    names: "access-app",
    mentions: /include #1 .*0\.0\.0\.0\/0.*not one of this stack's service tokens/,
  },
  {
    rule: "access-in-front-of-tunnel",
    what: "anyValidServiceToken (any token of the account)",
    edit: (s) => (byName(s, "access-policy").props.includes = [{ anyValidServiceToken: {} }]),
    names: "access-app",
    mentions: /anyValidServiceToken/,
  },
  {
    rule: "access-in-front-of-tunnel",
    what: "a service token this stack does not manage",
    edit: (s) => (byName(s, "access-policy").props.includes = [{ serviceToken: { tokenId: "someone-elses" } }]),
    names: "access-app",
    mentions: /someone-elses/,
  },
  {
    rule: "access-in-front-of-tunnel",
    what: "bypass policy",
    edit: (s) => (byName(s, "access-policy").props.decision = "bypass"),
    names: "access-app",
    mentions: /bypass/,
  },
  // 11
  {
    rule: "forward-confirmed-rdns",
    what: "A record points at another IP than the PTR's",
    edit: (s) => (byName(s, "a-node1").props.content = "198.51.100.99"),
    names: "ptr-ipv4",
    mentions: /198\.51\.100\.10/,
  },
  {
    rule: "forward-confirmed-rdns",
    what: "mail host A record proxied",
    edit: (s) => (byName(s, "a-node1").props.proxied = true),
    names: "a-node1",
    mentions: /proxied/,
  },
  {
    rule: "forward-confirmed-rdns",
    what: "no AAAA for the IPv6 PTR",
    edit: (s) => remove(s, "aaaa-node1"),
    names: "ptr-ipv6",
    mentions: /2001:db8:5::1/,
  },
  // 12
  {
    rule: "spf-covers-every-node",
    what: "+all",
    edit: (s) => (byName(s, "spf").props.content = quotedTxt("v=spf1 ip4:198.51.100.10 ip6:2001:db8:5::1 +all")),
    names: "spf",
    mentions: /\+all/,
  },
  {
    rule: "spf-covers-every-node",
    what: "?all",
    edit: (s) => (byName(s, "spf").props.content = quotedTxt("v=spf1 ip4:198.51.100.10 ip6:2001:db8:5::1 ?all")),
    names: "spf",
    mentions: /\?all/,
  },
  {
    rule: "spf-covers-every-node",
    what: "no all",
    edit: (s) => (byName(s, "spf").props.content = quotedTxt("v=spf1 ip4:198.51.100.10 ip6:2001:db8:5::1")),
    names: "spf",
    mentions: /~all or -all/,
  },
  {
    rule: "spf-covers-every-node",
    what: "two SPF records at the domain",
    edit: (s) =>
      add(s, TYPES.dnsRecord, "spf-second", {
        name: "example.com",
        type: "TXT",
        content: quotedTxt("v=spf1 include:mailgun.org -all"),
      }),
    names: "spf-second",
    mentions: /2 SPF records/,
  },
  {
    rule: "spf-covers-every-node",
    what: "IPv6 node address not covered",
    edit: (s) => (byName(s, "spf").props.content = quotedTxt("v=spf1 ip4:198.51.100.10 ~all")),
    names: "spf",
    mentions: /2001:db8:5::1/,
  },
  {
    rule: "spf-covers-every-node",
    what: "IPv4 covered only by a neighbouring network",
    edit: (s) => (byName(s, "spf").props.content = quotedTxt("v=spf1 ip4:198.51.100.0/29 ip6:2001:db8:5::/64 -all")),
    names: "spf",
    mentions: /198\.51\.100\.10/,
  },
  // 13
  {
    rule: "dkim-dmarc-bimi",
    what: "1024-bit DKIM key",
    edit: (s) => {
      byName(s, "dkim-mail202611").props.content = quotedTxt(`v=DKIM1; k=rsa; p=${WEAK_DKIM_KEY.spki}`);
      byName(s, "secret-dkim-key").props.stdin = WEAK_DKIM_KEY.privatePem;
      byName(s, "dkim-mail202611").props.name = "mail202611._domainkey.example.com";
    },
    names: "dkim-mail202611",
    mentions: /1024-bit/,
  },
  {
    rule: "dkim-dmarc-bimi",
    what: "no record for the active selector",
    edit: (s) => (byName(s, "dkim-mail202611").props.name = "mail202606._domainkey.example.com"),
    names: "file-signingtable",
    mentions: /mail202611/,
  },
  {
    rule: "dkim-dmarc-bimi",
    what: "published key is not the pushed private key",
    edit: (s) => (byName(s, "dkim-mail202611").props.content = quotedTxt(`v=DKIM1; k=rsa; p=${OTHER_DKIM_KEY.spki}`)),
    names: "dkim-mail202611",
    mentions: /does not match/,
  },
  {
    rule: "dkim-dmarc-bimi",
    what: "no DMARC record",
    edit: (s) => remove(s, "dmarc"),
    names: "example.com",
    mentions: /_dmarc\.example\.com/,
  },
  {
    rule: "dkim-dmarc-bimi",
    what: "BIMI with DMARC p=none",
    edit: (s) => (byName(s, "dmarc").props.content = quotedTxt("v=DMARC1; p=none; rua=mailto:dmarc@example.com")),
    names: "bimi",
    mentions: /p=none/,
  },
  {
    rule: "dkim-dmarc-bimi",
    what: "BIMI with DMARC pct=50",
    edit: (s) => (byName(s, "dmarc").props.content = quotedTxt("v=DMARC1; p=reject; pct=50")),
    names: "bimi",
    mentions: /pct=50/,
  },
  // 14
  {
    rule: "no-secrets-in-user-data",
    what: "relay bearer token in user-data",
    edit: (s) =>
      (byName(s, "server").props.userData += `write_files:\n  - path: /etc/x\n    content: "${RELAY_TOKEN}"\n`),
    names: "server",
    mentions: /randomPassword.*token-app-bearer/,
  },
  {
    rule: "no-secrets-in-user-data",
    what: "a PRIVATE KEY block in user-data",
    edit: (s) => (byName(s, "server").props.userData += "  -----BEGIN OPENSSH PRIVATE KEY-----\n  AAAA\n"),
    names: "server",
    mentions: /PRIVATE KEY/,
  },
  {
    rule: "no-secrets-in-user-data",
    what: "tunnel token gzip+base64 encoded in write_files",
    edit: (s) =>
      (byName(s, "server").props.userData +=
        `write_files:\n  - encoding: gz+b64\n    content: ${gzBase64(`TUNNEL_TOKEN=${TUNNEL_TOKEN}\n`)}\n`),
    names: "server",
    mentions: /TUNNEL_TOKEN in \/etc\/cloudflared\/mail-relay\.env/,
  },
  {
    rule: "no-secrets-in-user-data",
    what: "smarthost password in user-data",
    edit: (s) => (byName(s, "server").props.userData += `runcmd:\n  - echo ${SMARTHOST_PASSWORD} > /tmp/x\n`),
    names: "server",
    mentions: /sasl_passwd/,
  },
  // 15
  {
    rule: "mx-never-points-at-relay",
    what: "MX at the MTA hostname",
    edit: (s) =>
      add(s, TYPES.dnsRecord, "mx-relay", {
        name: "example.com",
        type: "MX",
        content: "mail.example.com",
        priority: 5,
      }),
    names: "mx-relay",
    mentions: /mail\.example\.com/,
  },
  {
    rule: "mx-never-points-at-relay",
    what: "MX at a host whose A record is a node IP",
    edit: (s) => {
      add(s, TYPES.dnsRecord, "a-mx", { name: "mx.example.com", type: "A", content: "198.51.100.10", proxied: false });
      add(s, TYPES.dnsRecord, "mx-node", { name: "example.com", type: "MX", content: "mx.example.com", priority: 5 });
    },
    names: "mx-node",
    mentions: /198\.51\.100\.10/,
  },
  // 16
  {
    rule: "primary-ips-kept",
    what: "autoDelete true",
    edit: (s) => (byName(s, "ipv4").props.autoDelete = true),
    names: "ipv4",
    mentions: /autoDelete is true/,
  },
  {
    rule: "primary-ips-kept",
    what: "autoDelete not set",
    edit: (s) => delete byName(s, "ipv6").props.autoDelete,
    names: "ipv6",
    mentions: /autoDelete is not set/,
  },
  {
    rule: "primary-ips-kept",
    what: "protected by config but deleteProtection false",
    edit: (s) => (byName(s, "ipv4").props.deleteProtection = false),
    names: "ipv4",
    mentions: /deleteProtection is false/,
  },
  // 17
  {
    rule: "tunnel-ingress-local",
    what: "a remotely managed tunnel (routes editable in the dashboard)",
    edit: (s) => (byName(s, "tunnel").props.configSrc = "cloudflare"),
    names: "tunnel",
    mentions: /configSrc is "cloudflare"/,
  },
  {
    rule: "tunnel-ingress-local",
    what: "configSrc unknown (fails closed)",
    edit: (s) => (byName(s, "tunnel").props.configSrc = undefined),
    names: "tunnel",
    mentions: /unknown or not set/,
  },
  {
    rule: "tunnel-ingress-local",
    what: "no local ingress file pushed",
    edit: (s) => remove(s, "file-cloudflared-config"),
    names: "tunnel",
    mentions: /no \/etc\/cloudflared\/mail-relay\.yml/,
  },
  {
    rule: "tunnel-ingress-local",
    what: "a route without cloudflared's own Access check",
    edit: (s) =>
      (byName(s, "file-cloudflared-config").props.stdin = cloudflaredConfig((i) => delete i[0].originRequest)),
    names: "file-cloudflared-config",
    mentions: /access\.required/,
  },
  {
    rule: "tunnel-ingress-local",
    what: "Access check present but not required",
    edit: (s) =>
      (byName(s, "file-cloudflared-config").props.stdin = cloudflaredConfig(
        (i) => (i[0].originRequest!.access.required = false),
      )),
    names: "file-cloudflared-config",
    mentions: /access\.required/,
  },
  {
    rule: "tunnel-ingress-local",
    what: "the AUD of another application",
    edit: (s) =>
      (byName(s, "file-cloudflared-config").props.stdin = cloudflaredConfig(
        (i) => (i[0].originRequest!.access.audTag = ["f".repeat(64)]),
      )),
    names: "file-cloudflared-config",
    mentions: /not this stack's Access application/,
  },
  {
    rule: "tunnel-ingress-local",
    what: "the local ingress routes to loopback SMTP",
    edit: (s) =>
      (byName(s, "file-cloudflared-config").props.stdin = cloudflaredConfig(
        (i) => (i[0].service = "tcp://127.0.0.1:25"),
      )),
    names: "file-cloudflared-config",
    mentions: /tcp:\/\//,
  },
  {
    rule: "tunnel-ingress-local",
    what: "a local ingress file that is not the rendered JSON",
    edit: (s) => (byName(s, "file-cloudflared-config").props.stdin = "ingress:\n  - service: tcp://127.0.0.1:25\n"),
    names: "file-cloudflared-config",
    mentions: /not the JSON/,
  },
  {
    rule: "dkim-dmarc-bimi",
    what: "an Ed25519 DKIM record carrying the SubjectPublicKeyInfo instead of the raw key (RFC 8463)",
    edit: (s) =>
      s.push({
        type: "cloudflare:index/dnsRecord:DnsRecord",
        name: "dns-dkim-ed",
        props: {
          name: "mail202611-ed25519._domainkey.example.com",
          type: "TXT",
          content: quotedTxt(`v=DKIM1; k=ed25519; p=${Buffer.alloc(44).toString("base64")}`),
        },
      }),
    names: "dns-dkim-ed",
    mentions: /k=ed25519 p= is 44 bytes/,
  },
  // 18
  {
    rule: "outbound-tls-not-downgradable",
    what: "direct delivery with opportunistic TLS (smtp_tls_security_level = may)",
    edit: (s) => setMainCf(s, "smtp_tls_security_level", "may"),
    names: "file-main-cf",
    mentions: /smtp_tls_security_level = may; must be dane/,
  },
  {
    rule: "outbound-tls-not-downgradable",
    what: "direct delivery without the MTA-STS policy map",
    edit: (s) => setMainCf(s, "smtp_tls_policy_maps", undefined),
    names: "file-main-cf",
    mentions: /smtp_tls_policy_maps = \(not set\)/,
  },
];

describe("the policy pack", () => {
  it("has one mandatory policy per rule, named as the rule, with its reason as description", () => {
    expect(policies.map((p) => p.name)).toEqual(rules.map((r) => r.name));
    expect(new Set(policies.map((p) => p.name)).size).toBe(rules.length);
    for (const p of policies) {
      expect(p.enforcementLevel).toBe("mandatory");
      expect(p.description.length).toBeGreaterThan(20);
    }
  });

  it("the compliant baseline trips no rule", async () => {
    expect(await runPolicies(base)).toEqual([]);
  });

  it("every rule has at least one fixture that trips it", () => {
    for (const r of rules)
      expect(
        cases.some((c) => c.rule === r.name),
        `fixture for ${r.name}`,
      ).toBe(true);
  });
});

describe.each(rules.map((r) => r.name))("rule %s", (rule) => {
  it.each(cases.filter((c) => c.rule === rule).map((c) => ({ ...c, label: c.what })))(
    "fires alone on: $label",
    async (c) => {
      const stack = mutate(base, c.edit);
      expect(await firedPolicies(stack)).toEqual([c.rule]);
      const reported = (await runPolicies(stack)).filter((r) => r.policy === c.rule);
      // The message names the offending resource (type and name) and the value.
      expect(
        reported.some((r) => r.message.includes(c.names)),
        reported.map((r) => r.message).join("\n"),
      ).toBe(true);
      expect(reported.some((r) => /^[a-z]+:[A-Za-z/]+:[A-Za-z]+ "/.test(r.message))).toBe(true);
      expect(
        reported.some((r) => c.mentions.test(r.message)),
        reported.map((r) => r.message).join("\n"),
      ).toBe(true);
      expect(reported.every((r) => r.urn !== undefined && r.urn.startsWith("urn:pulumi:"))).toBe(true);
    },
  );
});

describe("ranges and protocols that reach an SMTP port", () => {
  it.each([
    ["20-30", "tcp"],
    ["1-65535", "tcp"],
    ["any", "tcp"],
    [undefined, "tcp"],
    ["any", "esp"],
  ])("no firewall rule opens 25/465/587: port %s over %s fires no-public-smtp-ports", async (port, protocol) => {
    const stack = mutate(base, (s) =>
      fw(s).push({ direction: "in", protocol, ...(port === undefined ? {} : { port }), sourceIps: ["::/0"] }),
    );
    expect(await firedPolicies(stack)).toContain("no-public-smtp-ports");
  });

  it.each([
    ["udp 25 (cannot carry TCP)", { direction: "in", protocol: "udp", port: "25", sourceIps: ["0.0.0.0/0"] }],
    ["icmp from anywhere", { direction: "in", protocol: "icmp", sourceIps: ["0.0.0.0/0"] }],
    ["outbound tcp 25", { direction: "out", protocol: "tcp", port: "25", destinationIps: ["0.0.0.0/0"] }],
    ["tcp 443 from anywhere", { direction: "in", protocol: "tcp", port: "443", sourceIps: ["0.0.0.0/0"] }],
  ])("%s is not an SMTP opening", async (_what, rule) => {
    const stack = mutate(base, (s) => fw(s).push(rule));
    expect(await firedPolicies(stack)).toEqual([]);
  });
});
