// A resource server in Node.js: verifies a sessiond session token offline with `jose`,
// from the JWKS, and refuses a tampered one. Usage: node verify.mjs ISSUER TOKEN
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [issuer, token] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(`${issuer}/.well-known/jwks.json`));
const options = { issuer, audience: 'sessiond', typ: 'at+jwt', algorithms: ['EdDSA', 'ES256'] };

const { payload, protectedHeader } = await jwtVerify(token, jwks, options);
console.log(`jose: verified ${protectedHeader.alg} token of tenant ${payload.tid}, session ${payload.sid}`);

const [h, p, s] = token.split('.');
const claims = JSON.parse(Buffer.from(p, 'base64url'));
claims.tid = 'another-tenant';
const tampered = [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
try {
  await jwtVerify(tampered, jwks, options);
  console.error('jose: a tampered token was accepted');
  process.exit(1);
} catch (e) {
  console.log(`jose: tampered token refused (${e.code})`);
}
