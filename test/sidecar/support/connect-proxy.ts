/**
 * A forward proxy, run as a process of its own by the proxy tests (`node connect-proxy.ts`): CONNECT
 * tunnels for HTTPS and absolute-form requests for plain HTTP, as corporate egress proxies serve them.
 * It prints `listening <port>` once, then one line per request it carried (`CONNECT host:port`,
 * `GET http://…`), and refuses any target that is not on loopback (the machine's network rule).
 */
import { createServer, request } from "node:http";
import { connect } from "node:net";

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|\[::1\]|localhost)$/;

const server = createServer((req, res) => {
  const target = new URL(req.url ?? "");
  if (!LOOPBACK.test(target.hostname)) {
    res.writeHead(403).end();
    return;
  }
  console.log(`${req.method} ${req.url}`);
  const upstream = request(target, { method: req.method, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    answer.pipe(res);
  });
  upstream.on("error", () => res.writeHead(502).end());
  req.pipe(upstream);
});

server.on("connect", (req, client, head) => {
  const [host, port] = (req.url ?? "").split(/:(?=\d+$)/);
  if (!host || !port || !LOOPBACK.test(host)) {
    client.end("HTTP/1.1 403 Forbidden\r\n\r\n");
    return;
  }
  console.log(`CONNECT ${req.url}`);
  const upstream = connect(Number(port), host, () => {
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
    upstream.write(head);
    upstream.pipe(client);
    client.pipe(upstream);
  });
  upstream.on("error", () => client.end("HTTP/1.1 502 Bad Gateway\r\n\r\n"));
  client.on("error", () => upstream.destroy());
});

server.listen(0, "127.0.0.1", () => {
  const address = server.address();
  console.log(`listening ${typeof address === "object" && address ? address.port : 0}`);
});
process.on("SIGTERM", () => process.exit(0));
