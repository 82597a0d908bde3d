// oauth2-mock-server (an OAuth 2.0 server nobody here wrote) dressed as a
// Microsoft Entra ID v2.0 token endpoint for the identity tests:
//
//   node tests/oauth2/server.mjs CONFIG.json
//
// prints `LISTENING <port> <issuer>` once it serves on 127.0.0.1. Tokens
// come from POST /<tenant>/oauth2/v2.0/token (client credentials grant);
// keys at GET /jwks. CONFIG maps client ids to how they authenticate and
// what their tokens say:
//
//   {"tenant": "t", "clients": {"<client_id>": {
//      "secret": "...",                    // client_secret expected, or
//      "certificate_pem": "-----BEGIN...", // RS256 client assertion by this certificate, or
//      "federated_tokens": {"tokA": "oid-a"}, // client_assertion = one of these (its oid)
//      "oid": "...", "ttl": 3600}}}
//
// The assertion is checked as Entra ID does: RS256 signature by the
// certificate, x5t = base64url(SHA-1(DER)), aud = the token URL, iss = sub
// = client id, a jti, exp in the future. Failures answer 401 with Entra's
// error body (AADSTS codes). Access tokens get aud
// https://eventhubs.azure.net and the client's oid, appid, azp and tid.
import { createVerify, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { OAuth2Server } from 'oauth2-mock-server';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const server = new OAuth2Server(undefined, undefined, {
  endpoints: { token: '/:tenant/oauth2/v2.0/token' },
});
await server.issuer.keys.generate('RS256');

const b64url = (buf) => Buffer.from(buf).toString('base64url');
const fail = (code, description) => ({
  statusCode: 401,
  body: {
    error: code === 7000215 ? 'invalid_client' : 'invalid_client',
    error_description: `AADSTS${code}: ${description} Trace ID: 00000000-0000-0000-0000-000000000000 Correlation ID: 00000000-0000-0000-0000-000000000000 Timestamp: ${new Date().toISOString()}`,
    error_codes: [code],
    timestamp: new Date().toISOString(),
    trace_id: '00000000-0000-0000-0000-000000000000',
    correlation_id: '00000000-0000-0000-0000-000000000000',
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  },
});

function tokenUrl(req) {
  return `http://${req.headers.host}/${req.params.tenant}/oauth2/v2.0/token`;
}

// Why the request's client authentication fails, or null; `who` gets the oid.
function authenticate(req, who) {
  const body = req.body ?? {};
  const client = config.clients[body.client_id];
  if (!client) return fail(700016, `Application with identifier '${body.client_id}' was not found in the directory.`);
  if (req.params.tenant !== config.tenant) return fail(90002, `Tenant '${req.params.tenant}' not found.`);
  if (body.grant_type !== 'client_credentials') return fail(70003, 'unsupported grant type');
  if (body.scope !== 'https://eventhubs.azure.net/.default' && body.scope !== 'https://eventhubs.azure.net//.default') {
    return fail(500011, `The resource principal named ${body.scope} was not found.`);
  }
  who.oid = client.oid;
  if (client.secret !== undefined) {
    if (body.client_secret !== client.secret) return fail(7000215, 'Invalid client secret provided.');
    return null;
  }
  if (body.client_assertion_type !== 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer') {
    return fail(7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.");
  }
  const assertion = String(body.client_assertion ?? '');
  if (client.federated_tokens !== undefined) {
    const oid = client.federated_tokens[assertion];
    if (oid === undefined) return fail(700024, 'Client assertion is not within its valid time range.');
    who.oid = oid;
    return null;
  }
  const parts = assertion.split('.');
  if (parts.length !== 3) return fail(50027, 'JWT token is invalid or malformed.');
  const header = JSON.parse(Buffer.from(parts[0], 'base64url'));
  const claims = JSON.parse(Buffer.from(parts[1], 'base64url'));
  const cert = new X509Certificate(client.certificate_pem);
  const sha1 = cert.fingerprint.replaceAll(':', '');
  const x5t = b64url(Buffer.from(sha1, 'hex'));
  if (header.alg !== 'RS256') return fail(5002738, `Invalid JWT token. '${header.alg}' is not a supported signature algorithm.`);
  if (header.x5t !== x5t) return fail(700027, `Client assertion failed signature validation. (x5t ${header.x5t} is not ${x5t})`);
  const verify = createVerify('RSA-SHA256');
  verify.update(`${parts[0]}.${parts[1]}`);
  if (!verify.verify(cert.publicKey, Buffer.from(parts[2], "base64url"))) {
    return fail(700027, 'Client assertion failed signature validation.');
  }
  const now = Math.floor(Date.now() / 1000);
  if (claims.aud !== tokenUrl(req)) return fail(700212, `No matching federated identity record found for presented assertion audience '${claims.aud}'.`);
  if (claims.iss !== body.client_id || claims.sub !== body.client_id) return fail(700021, 'Client assertion application identifier doesn\'t match.');
  if (!claims.jti) return fail(50027, 'JWT token is invalid or malformed: no jti.');
  if (!(claims.exp > now) || (claims.nbf !== undefined && claims.nbf > now + 300)) return fail(700024, 'Client assertion is not within its valid time range.');
  if (header.x5c !== undefined && header.x5c[0] !== cert.raw.toString('base64')) return fail(700027, 'x5c does not start with the certificate.');
  return null;
}

const verdicts = new WeakMap();
server.service.on('beforeTokenSigning', (token, req) => {
  const who = {};
  verdicts.set(req, { failure: authenticate(req, who) });
  const client = config.clients[req.body?.client_id] ?? {};
  const ttl = client.ttl ?? 3600;
  Object.assign(token.payload, {
    aud: 'https://eventhubs.azure.net',
    exp: token.payload.iat + ttl,
    oid: who.oid,
    appid: req.body?.client_id,
    azp: req.body?.client_id,
    tid: config.tenant,
    sub: who.oid,
  });
  delete token.payload.scope;
});
server.service.on('beforeResponse', (response, req) => {
  const failure = verdicts.get(req)?.failure;
  if (failure) {
    response.statusCode = failure.statusCode;
    response.body = failure.body;
    return;
  }
  const client = config.clients[req.body?.client_id] ?? {};
  response.body.expires_in = client.ttl ?? 3600;
  response.body.ext_expires_in = client.ttl ?? 3600;
  delete response.body.scope;
});

await server.start(0, '127.0.0.1');
process.stdout.write(`LISTENING ${server.address().port} ${server.issuer.url}\n`);
process.on('SIGTERM', async () => {
  await server.stop();
  process.exit(0);
});
