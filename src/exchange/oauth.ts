/** OAuth 2.0 / RFC 8693 wire values the exchange modules share. */

export const GRANT_TYPE_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';

/** Scopes held by a token's claims: the one parser (core/scopes.ts) the Check path and the MCP stage use too. */
export { scopesOf } from '../core/scopes.js';

/** Strip an optional `Bearer ` prefix (scheme is case-insensitive, RFC 9110 §11.1). */
export function stripBearer(v: string): string {
  const t = v.trim();
  return /^bearer\s+/i.test(t) ? t.replace(/^bearer\s+/i, '').trim() : t;
}
