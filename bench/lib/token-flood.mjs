// A token-endpoint flood from one client address: `connections` keep-alive connections, each
// sending token-exchange requests back to back for `seconds`. Prints {status: count} as JSON.
//   node bench/lib/token-flood.mjs HOST:PORT SECONDS CONNECTIONS FORM
import { Agent, request } from 'node:http';

const [addr, seconds, connections, form] = process.argv.slice(2);
const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))];
const agent = new Agent({ keepAlive: true, maxSockets: Number(connections) });
const end = Date.now() + Number(seconds) * 1000;
const counts = {};
const post = () =>
  new Promise((resolve) => {
    const r = request({ host, port, path: '/oauth2/token', method: 'POST', agent, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    r.on('error', () => resolve('error'));
    r.end(form);
  });
await Promise.all(
  Array.from({ length: Number(connections) }, async () => {
    while (Date.now() < end) {
      const s = await post();
      counts[s] = (counts[s] ?? 0) + 1;
    }
  }),
);
agent.destroy();
console.log(JSON.stringify(counts));
