// Test-only authorization server for the broker's interop test
// (broker/tests/interop_oidc_provider.rs): panva's OpenID Certified
// `oidc-provider`, configured the way a strict production server is:
//
// * one public client (token_endpoint_auth_method "none", application_type
//   "native" so any loopback port is accepted for the redirect, RFC 8252),
//   grant types authorization_code + refresh_token + device_code;
// * PKCE (S256) required, device flow, revocation, userinfo;
// * refresh-token rotation on every use; presenting a rotated (consumed)
//   refresh token again is reuse, which oidc-provider answers with
//   invalid_grant AND by revoking the whole grant;
// * short access-token lifetime (ACCESS_TOKEN_TTL_SECS, default 4 s) so a
//   test spans several lifetimes in seconds;
// * the built-in development login and consent pages (devInteractions) that
//   the test drives over plain HTTP like a browser would.
//
// Nothing in here makes tokens by hand: every token comes out of
// oidc-provider's own grant handlers.
//
// Protocol with the test:
// * stdout: one JSON object per line. First {"event":"ready","issuer":…}
//   once the server listens (on an OS-picked loopback port), then one line
//   per token-endpoint outcome and per revocation, for the test's log.
// * GET  /__test/records  the server's own records: every token-endpoint
//   outcome by grant type, reuse detections, revoked grants, discovery
//   document fetches.
// * POST /__test/revoke?account=ID  revokes every grant of that account the
//   way an administrator would (all its tokens and the grant itself).
// * The process exits when its stdin closes, so a test that dies (even by
//   SIGKILL) never leaves the server running.

import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const CLIENT_ID = process.env.CLIENT_ID || 'oauth-broker-interop';
const ACCESS_TOKEN_TTL = Number(process.env.ACCESS_TOKEN_TTL_SECS || 4);
// The redirect URI registered for the broker's loopback login; the port is
// ignored for native clients (RFC 8252 section 7.3), the path is not.
const REDIRECT_URIS = (process.env.REDIRECT_URIS || 'http://127.0.0.1/callback')
  .split(',')
  .filter(Boolean);

const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

function emit(obj) {
  process.stdout.write(`${JSON.stringify({ at: Date.now() / 1000, ...obj })}\n`);
}

/** The server's own records, as the test asks for them. */
const records = {
  // One entry per token-endpoint answer: { grant_type, outcome, error, detail, grant_id, account }
  token_requests: [],
  // Grant ids revoked by reuse detection or by /__test/revoke.
  revoked_grants: [],
  // Known grants: grant id -> account id.
  grants: {},
  server_errors: 0,
  // User-Agent of every GET of /.well-known/openid-configuration (the broker
  // must use discovery).
  discovery_requests: [],
};

function summary() {
  const refreshes = records.token_requests.filter((r) => r.grant_type === 'refresh_token');
  return {
    ...records,
    refresh: {
      total: refreshes.length,
      succeeded: refreshes.filter((r) => r.outcome === 'success').length,
      failed: refreshes.filter((r) => r.outcome !== 'success').length,
      reuse_detected: refreshes.filter((r) => r.detail === 'refresh token already used').length,
    },
  };
}

// Listen first: the issuer must carry the port the OS picked.
const server = createServer();
// Idle keep-alive connections stay open for the whole test. Node closes them
// after 5 s by default, and a client that reuses one at that very moment gets a
// connection error: the test's own calls and the broker's refreshes alike
// (seen on a loaded machine after a 6 s device login).
server.keepAliveTimeout = 10 * 60 * 1000;
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: CLIENT_ID,
      client_name: 'oauth-broker interop test',
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code', 'refresh_token', DEVICE_CODE_GRANT],
      response_types: ['code'],
      redirect_uris: REDIRECT_URIS,
    },
  ],
  // Public clients must use PKCE; oidc-provider only knows S256.
  pkce: { required: () => true },
  scopes: ['openid', 'offline_access'],
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
    userinfo: { enabled: true },
  },
  // Rotate on every use; a consumed token presented again revokes the grant.
  rotateRefreshToken: true,
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  ttl: {
    AccessToken: ACCESS_TOKEN_TTL,
    AuthorizationCode: 60,
    DeviceCode: 300,
    IdToken: 300,
    RefreshToken: 3600,
    Grant: 3600,
    Interaction: 600,
    Session: 3600,
  },
  cookies: { keys: ['interop-test-only-cookie-key'] },
  async findAccount(ctx, id) {
    return { accountId: id, claims: async () => ({ sub: id }) };
  },
});

provider.on('grant.success', (ctx) => {
  const { grant_type: grantType } = ctx.oidc.params;
  const grant = ctx.oidc.entities.Grant;
  if (grant) {
    records.grants[grant.jti] = grant.accountId;
  }
  const entry = {
    grant_type: grantType,
    outcome: 'success',
    grant_id: grant?.jti,
    account: grant?.accountId,
  };
  records.token_requests.push(entry);
  emit({ event: 'token', ...entry });
});

provider.on('grant.error', (ctx, err) => {
  const entry = {
    grant_type: ctx.oidc?.params?.grant_type,
    outcome: 'error',
    error: err.error,
    detail: err.error_detail,
    grant_id: ctx.oidc?.entities?.RefreshToken?.grantId,
  };
  // authorization_pending / slow_down are the device flow's normal polling.
  if (entry.grant_type === DEVICE_CODE_GRANT
      && ['authorization_pending', 'slow_down'].includes(err.error)) {
    emit({ event: 'device_poll', error: err.error });
    return;
  }
  records.token_requests.push(entry);
  emit({ event: 'token', ...entry });
});

provider.on('grant.revoked', (ctx, grantId) => {
  records.revoked_grants.push({ grant_id: grantId, by: 'server' });
  emit({ event: 'grant_revoked', grant_id: grantId, by: 'server' });
});

provider.on('server_error', (ctx, err) => {
  records.server_errors += 1;
  emit({ event: 'server_error', message: String(err && err.message) });
});

/** Revokes everything of one grant, the way oidc-provider's own revoke does. */
async function revokeGrant(grantId) {
  await Promise.all([
    provider.AccessToken.revokeByGrantId(grantId),
    provider.RefreshToken.revokeByGrantId(grantId),
    provider.AuthorizationCode.revokeByGrantId(grantId),
    provider.DeviceCode.revokeByGrantId(grantId),
    provider.Grant.adapter.destroy(grantId),
  ]);
  records.revoked_grants.push({ grant_id: grantId, by: 'admin' });
  emit({ event: 'grant_revoked', grant_id: grantId, by: 'admin' });
}

async function testRoutes(req, res, url) {
  const send = (status, body) => {
    res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' });
    res.end(JSON.stringify(body));
  };
  if (req.method === 'GET' && url.pathname === '/__test/records') {
    return send(200, summary());
  }
  if (req.method === 'POST' && url.pathname === '/__test/revoke') {
    const account = url.searchParams.get('account');
    const ids = Object.entries(records.grants)
      .filter(([, acct]) => !account || acct === account)
      .map(([id]) => id);
    for (const id of ids) {
      await revokeGrant(id);
      delete records.grants[id];
    }
    return send(200, { revoked: ids });
  }
  return send(404, { error: 'not_found' });
}

const callback = provider.callback();
server.on('request', (req, res) => {
  const url = new URL(req.url, issuer);
  if (url.pathname === '/.well-known/openid-configuration') {
    records.discovery_requests.push(req.headers['user-agent'] || '');
  }
  if (url.pathname.startsWith('/__test/')) {
    testRoutes(req, res, url).catch((err) => {
      res.writeHead(500);
      res.end(String(err));
    });
    return;
  }
  callback(req, res);
});

function shutdown() {
  server.close();
  server.closeAllConnections();
  process.exit(0);
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdin.on('end', shutdown);
process.stdin.on('close', shutdown);
process.stdin.resume();

emit({ event: 'ready', issuer, port, client_id: CLIENT_ID, access_token_ttl: ACCESS_TOKEN_TTL });
