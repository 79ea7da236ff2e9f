// Netstrings (https://cr.yp.to/proto/netstrings.txt), the framing of Postfix's socketmap protocol (socketmap_table(5)):
// "<decimal length>:<bytes>,".

/** One netstring. */
export function encodeNetstring(data: string): Buffer {
  const body = Buffer.from(data, "utf8");
  return Buffer.concat([Buffer.from(`${body.length}:`), body, Buffer.from(",")]);
}

export class NetstringError extends Error {}

/**
 * Splits a byte stream into netstrings. push() returns the complete ones so far; a malformed frame or one longer than
 * maxLength throws NetstringError (the caller drops the connection: there is no resynchronising a broken stream).
 */
export class NetstringReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly maxLength: number) {}

  push(chunk: Buffer): string[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: string[] = [];
    for (;;) {
      const colon = this.buf.indexOf(0x3a);
      const digits = this.buf.subarray(0, colon === -1 ? this.buf.length : colon).toString("latin1");
      if (!/^\d*$/.test(digits) || digits.length > String(this.maxLength).length)
        throw new NetstringError("malformed netstring length");
      if (colon === -1) return out;
      if (digits === "" || (digits.length > 1 && digits.startsWith("0")))
        throw new NetstringError("malformed netstring length");
      const len = Number(digits);
      if (len > this.maxLength) throw new NetstringError(`netstring longer than ${this.maxLength} bytes`);
      const end = colon + 1 + len;
      if (this.buf.length < end + 1) return out;
      if (this.buf[end] !== 0x2c) throw new NetstringError("netstring not terminated by a comma");
      out.push(this.buf.subarray(colon + 1, end).toString("utf8"));
      this.buf = this.buf.subarray(end + 1);
    }
  }
}
