// node-oidc-provider as sessiond-bench's optional introspection peer (BENCHMARKS.md).
//
//   node server.js [PORT]        (or PORT=... node server.js; 0 or nothing: any free port)
//
// Listens on 127.0.0.1 with one confidential client (client_secret_basic) allowed the
// client_credentials grant, the introspection feature on and the default in-memory adapter.
// Access tokens from client_credentials are opaque (the provider's default format), so
// introspecting one looks it up in the adapter. Prints `READY <port>` on stdout once listening.
// The client's credentials can be set with PEER_CLIENT_ID and PEER_CLIENT_SECRET. With
// PEER_EXIT_ON_STDIN_EOF=1 (as the bench starts it) it exits when its standard input closes, so
// that it never outlives the process that started it, even one killed with SIGKILL.

import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const port = Number(process.argv[2] ?? process.env.PORT ?? 0);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`bad port: ${process.argv[2] ?? process.env.PORT}`);
  process.exit(2);
}
const clientId = process.env.PEER_CLIENT_ID ?? 'bench';
const clientSecret = process.env.PEER_CLIENT_SECRET ?? 'bench-peer-secret-0123456789abcdef';

// A signing key of this process's own (the provider would otherwise use, and warn about, its
// development keys). Opaque access tokens are not signed with it.
const jwk = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });

const configuration = {
  clients: [
    {
      client_id: clientId,
      client_secret: clientSecret,
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
    },
  ],
  features: {
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    devInteractions: { enabled: false },
  },
  // Longer than a full bench run (the default is 10 minutes).
  ttl: { ClientCredentials: 3600 },
  jwks: { keys: [{ ...jwk, kid: 'bench', use: 'sig', alg: 'ES256' }] },
  cookies: { keys: [randomBytes(32).toString('base64url')] },
};

// The issuer names the port, which is only known once listening: the provider is made then.
let handler = (req, res) => {
  res.statusCode = 503;
  res.end();
};
const server = createServer((req, res) => handler(req, res));
server.keepAliveTimeout = 60_000;
server.on('error', (err) => {
  console.error(`cannot listen: ${err.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  const { port: bound } = server.address();
  const provider = new Provider(`http://127.0.0.1:${bound}`, configuration);
  provider.on('server_error', (ctx, err) => console.error(`server_error: ${err.stack ?? err}`));
  handler = provider.callback();
  process.stdout.write(`READY ${bound}\n`);
});

if (process.env.PEER_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.on('error', () => process.exit(0));
  process.stdin.resume();
}
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => process.exit(0));
}
