// A real OpenID Connect provider for the tests: the certified `oidc-provider` package, started
// by libs/testkit's `OidcProvider` as `node tests/oidc-provider/provider.mjs`. Its settings
// come from the environment:
//   PORT           the loopback port; the issuer is http://127.0.0.1:PORT
//   AUDIENCE       the API's audience (resource indicator), e.g. api://followups
//   CLAIMS         JSON: the claims added to the access tokens of an account or client, by
//                  its id, or by "*" for anyone: {"*": {"inst": "KP", "groups": ["admissions"]}}
//   REDIRECT_URIS  comma-separated redirect URIs of the web inbox's client (followups-web)
//   ACCESS_TOKEN_TTL  seconds an access token lives (default 600)
// Its signing keys (one RS256, one ES256) are new at every start: a restart rotates them.
// Clients: tests-rs256 / tests-es256 (client credentials, secret "secret"; their access tokens
// are signed RS256 / ES256), and followups-web (public, authorization code with PKCE).
import Provider from 'oidc-provider';
import { calculateJwkThumbprint, exportJWK, generateKeyPair } from 'jose';

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const audience = process.env.AUDIENCE || 'api://followups';
const claims = JSON.parse(process.env.CLAIMS || '{}');
const redirectUris = (process.env.REDIRECT_URIS || '').split(',').filter(Boolean);
const accessTokenTtl = Number(process.env.ACCESS_TOKEN_TTL || 600);

async function signingKey(alg) {
  const { privateKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, alg, use: 'sig', kid: await calculateJwkThumbprint(jwk) };
}

const keys = [await signingKey('RS256'), await signingKey('ES256')];
const machine = (id) => ({
  client_id: id,
  client_secret: 'secret',
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
});

const provider = new Provider(issuer, {
  clients: [
    machine('tests-rs256'),
    machine('tests-es256'),
    {
      client_id: 'followups-web',
      token_endpoint_auth_method: 'none',
      application_type: 'web',
      grant_types: ['authorization_code', 'refresh_token'],
      response_types: ['code'],
      redirect_uris: redirectUris.length ? redirectUris : ['http://127.0.0.1/app/'],
      post_logout_redirect_uris: redirectUris,
    },
  ],
  jwks: { keys },
  cookies: { keys: ['a-cookie-key-for-the-tests-only'] },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, name: sub }),
  }),
  claims: { openid: ['sub'], profile: ['name'] },
  scopes: ['openid', 'profile', 'offline_access', 'followups'],
  pkce: { required: () => true },
  clientBasedCORS: () => true,
  issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: accessTokenTtl, ClientCredentials: accessTokenTtl },
  extraTokenClaims: async (ctx, token) => {
    const id = token.accountId || token.clientId;
    return claims[id] || claims['*'] || {};
  },
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => audience,
      useGrantedResource: () => true,
      getResourceServerInfo: (ctx, resource, client) => ({
        scope: 'followups',
        audience: resource,
        accessTokenTTL: accessTokenTtl,
        accessTokenFormat: 'jwt',
        jwt: { sign: { alg: client.clientId === 'tests-es256' ? 'ES256' : 'RS256' } },
      }),
    },
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`oidc-provider listening at ${issuer}`);
});
