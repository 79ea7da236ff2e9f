/**
 * Postfix log lines as postlogd writes them to maillog_file (Postfix 3.7, "%b %d %H:%M:%S.%06d host service[pid]: ")
 * and as syslog writes them, for the relay's message ids (Message-ID <uuid@mail.example.com>).
 */
export const ID1 = "6f1c2d3e-0000-4000-8000-000000000001";
export const ID2 = "6f1c2d3e-0000-4000-8000-000000000002";
export const DOMAIN = "mail.example.com";

export function handoffLines(qid: string, id: string, h = "Nov 30 10:00:00.100000"): string[] {
  return [
    `${h} mail postfix/smtpd[1001]: connect from localhost[127.0.0.1]`,
    `${h} mail postfix/smtpd[1001]: ${qid}: client=localhost[127.0.0.1]`,
    `${h} mail postfix/cleanup[1002]: ${qid}: message-id=<${id}@${DOMAIN}>`,
    `${h} mail postfix/qmgr[1003]: ${qid}: from=<noreply@example.com>, size=1234, nrcpt=3 (queue active)`,
  ];
}

export const SENT = (qid: string, rcpt: string, h = "Nov 30 10:00:01.250000") =>
  `${h} mail postfix/smtp[1004]: ${qid}: to=<${rcpt}>, relay=mx.example.net[192.0.2.10]:25, delay=1.2, delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4ABCDEF)`;
export const DEFERRED = (qid: string, rcpt: string, h = "Nov 30 10:00:01.300000") =>
  `${h} mail postfix/smtp[1004]: ${qid}: to=<${rcpt}>, relay=mx.example.net[192.0.2.10]:25, delay=1.3, delays=0.1/0.01/0.5/0.7, dsn=4.2.0, status=deferred (host mx.example.net[192.0.2.10] said: 450 4.2.0 <${rcpt}>: Recipient address rejected: try again later (in reply to RCPT TO command))`;
export const BOUNCED = (qid: string, rcpt: string, dsn = "5.1.1", h = "Nov 30 10:00:01.400000") =>
  `${h} mail postfix/smtp[1004]: ${qid}: to=<${rcpt}>, relay=mx.example.net[192.0.2.10]:25, delay=1.4, delays=0.1/0.01/0.5/0.8, dsn=${dsn}, status=bounced (host mx.example.net[192.0.2.10] said: 550 ${dsn} <${rcpt}>: Recipient address rejected: User unknown (in reply to RCPT TO command))`;
export const SMARTHOST_SENT = (qid: string, rcpt: string) =>
  `Nov 30 10:00:02.000000 mail postfix/smtp[1004]: ${qid}: to=<${rcpt}>, relay=smtp.provider.example[198.51.100.5]:587, delay=0.9, delays=0.05/0.02/0.4/0.43, dsn=2.0.0, status=sent (250 2.0.0 OK  1764496802 e7-20020a05 - gsmtp)`;
export const ERROR_DEFERRED = (qid: string, rcpt: string) =>
  `Nov 30 10:05:00.000000 mail postfix/error[1005]: ${qid}: to=<${rcpt}>, relay=none, delay=300, delays=300/0/0/0, dsn=4.4.1, status=deferred (delivery temporarily suspended: connect to mx.example.net[192.0.2.10]:25: Connection refused)`;
export const EXPIRED = (qid: string) =>
  `Dec  5 10:00:00.000000 mail postfix/qmgr[1003]: ${qid}: from=<noreply@example.com>, status=expired, returned to sender`;
export const REMOVED = (qid: string, h = "Nov 30 10:00:03.000000") => `${h} mail postfix/qmgr[1003]: ${qid}: removed`;
export const BOUNCE_NOTICE = (qid: string) =>
  `Nov 30 10:00:01.500000 mail postfix/bounce[1006]: ${qid}: sender non-delivery notification: 4XNEWID1`;
