// A real OpenID provider for tests (node-oidc-provider, certified), on localhost.
//
//   node provider.mjs --port N --modules DIR/node_modules --client-id ID --client-secret S
//                     --redirect-uri URI [--redirect-uri URI ...]
//
// Its dev interactions (a login form taking any name, then a consent form) are
// what a test scripts with an HTTP client. The account's `sub` is the login
// name; its email is the name itself when it holds an '@' (else name@example.test),
// verified unless the name starts with "unverified". Signing keys are new at
// every start, so a restart is a key rotation (tests of JWKS refresh use it).
// --modules names the node_modules holding oidc-provider (installed outside the repo).
import { createRequire } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    modules: { type: 'string' },
    'client-id': { type: 'string', default: 'marquee-test' },
    'client-secret': { type: 'string', default: 'marquee-test-secret' },
    'redirect-uri': { type: 'string', multiple: true, default: [] },
  },
});
if (!values.port || !values.modules) {
  console.error('usage: provider.mjs --port N --modules DIR/node_modules [--redirect-uri URI ...]');
  process.exit(2);
}

const require = createRequire(path.join(values.modules, 'noop.js'));
const { default: Provider } = await import(pathToFileURL(require.resolve('oidc-provider')).href);

const issuer = `http://${values.host}:${values.port}`;
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), use: 'sig', alg: 'RS256' };

function claimsOf(name) {
  const email = name.includes('@') ? name : `${name}@example.test`;
  return { sub: name, email, email_verified: !name.startsWith('unverified'), name };
}

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: values['client-id'],
      client_secret: values['client-secret'],
      redirect_uris: values['redirect-uri'],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  // PKCE for every client, confidential ones too (the default asks public ones only).
  pkce: { required: () => true },
  jwks: { keys: [{ ...signingKey, kid: `k-${Date.now()}` }] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  scopes: ['openid', 'email', 'profile'],
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => claimsOf(sub),
  }),
  cookies: { keys: ['marquee-test-cookie-key'] },
  // Profile and email claims in the ID token itself (as Google's and Keycloak's are),
  // not only at the userinfo endpoint.
  conformIdTokenClaims: false,
  // Errors as JSON: a failing test then shows the provider's reason, not a page.
  renderError: async (ctx, out) => {
    ctx.type = 'application/json';
    ctx.body = out;
  },
});

const server = provider.listen(Number(values.port), values.host, () => {
  console.log(`oidc-provider listening on ${issuer}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
