// A real DNS server (dns2) on 127.0.0.1 for tests: fixed answers, NXDOMAIN otherwise, or a
// black hole that never answers.
import dns2 from 'dns2';

const { Packet } = dns2;

export interface TestDns {
  port: number;
  queries: string[];
  close(): Promise<void>;
}

/** `records`: `"PTR 1.0.0.127.in-addr.arpa"` -> names (or addresses for A/AAAA, text for TXT). */
export async function start_dns(records: Record<string, string[]> = {}, opts: { blackhole?: boolean } = {}): Promise<TestDns> {
  const queries: string[] = [];
  const server = dns2.createServer({
    udp: true,
    handle: (request: any, send: (r: any) => void) => {
      const [q] = request.questions;
      const type = Object.keys(Packet.TYPE).find((k) => (Packet.TYPE as Record<string, number>)[k] === q.type) ?? String(q.type);
      queries.push(`${type} ${q.name}`);
      if (opts.blackhole) return;
      const response = Packet.createResponseFromRequest(request);
      const found = records[`${type} ${q.name.toLowerCase()}`];
      if (!found) response.header.rcode = 3; // NXDOMAIN
      for (const value of found ?? []) {
        const base = { name: q.name, type: q.type, class: Packet.CLASS.IN, ttl: 60 };
        if (type === 'PTR') response.answers.push({ ...base, domain: value });
        else if (type === 'TXT') response.answers.push({ ...base, data: value });
        else response.answers.push({ ...base, address: value });
      }
      send(response);
    },
  } as any);
  await server.listen({ udp: { port: 0, address: '127.0.0.1' } } as any);
  const port = (server as any).addresses().udp.port as number;
  return { port, queries, close: () => server.close() as Promise<void> };
}
